//! Where `kubectl logs --tail N` starts reading, found from the end of the
//! file backwards, block by block: the cost is the tail's size, not the
//! file's.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const BLOCK: usize = 64 * 1024;
/// Enough of a line's start to hold its timestamp, stream and tag.
const PREFIX: usize = 64;

/// The offset after the last complete entry of the first `len` bytes:
/// what follows it is still being written.
pub fn complete_end(file: &File, len: u64) -> io::Result<u64> {
    let mut hi = len;
    let mut buf = vec![0u8; BLOCK];
    while hi > 0 {
        let lo = hi.saturating_sub(BLOCK as u64);
        let block = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(block, lo)?;
        if let Some(i) = block.iter().rposition(|b| *b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(0)
}

/// The offset where the last `lines` whole lines of the complete entries
/// before `end` begin. A long line is several entries, partial (`P`) ones
/// and a final full (`F`) one; the partial ones belong to the full line
/// after them, and trailing partial entries come along too.
pub fn tail_start(file: &File, end: u64, lines: usize) -> io::Result<u64> {
    if lines == 0 {
        return Ok(end);
    }
    let mut full = 0;
    // The start of the entry after the one being looked at.
    let mut next_start = end;
    let mut hi = end.saturating_sub(1); // the final newline is no line start
    let mut buf = vec![0u8; BLOCK];
    while hi > 0 {
        let lo = hi.saturating_sub(BLOCK as u64);
        let block = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(block, lo)?;
        for i in (0..block.len()).rev() {
            if block[i] != b'\n' {
                continue;
            }
            let start = lo + i as u64 + 1;
            if is_full(file, start)? {
                if full == lines {
                    return Ok(next_start);
                }
                full += 1;
            }
            next_start = start;
        }
        hi = lo;
    }
    // The first entry of the file.
    if end > 0 && is_full(file, 0)? && full == lines {
        return Ok(next_start);
    }
    Ok(0)
}

/// Whether the entry starting at `at` ends a line (its tag is `F`).
fn is_full(file: &File, at: u64) -> io::Result<bool> {
    let mut prefix = [0u8; PREFIX];
    let n = file.read_at(&mut prefix, at)?;
    let prefix = &prefix[..n];
    let line = prefix.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(line.split(|b| *b == b' ').nth(2) == Some(b"F"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn log(entries: &[(&str, &str)]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for (tag, text) in entries {
            writeln!(f, "2026-01-01T00:00:00.000000000Z stdout {tag} {text}").unwrap();
        }
        let len = f.as_file().metadata().unwrap().len();
        (f, len)
    }

    fn tail(entries: &[(&str, &str)], n: usize) -> Vec<String> {
        let (f, len) = log(entries);
        let start = tail_start(f.as_file(), len, n).unwrap();
        let mut rest = vec![0u8; (len - start) as usize];
        f.as_file().read_exact_at(&mut rest, start).unwrap();
        String::from_utf8(rest)
            .unwrap()
            .lines()
            .map(|l| super::super::parse(l).unwrap().text.to_string())
            .collect()
    }

    #[test]
    fn the_tail_counts_whole_lines_from_the_end() {
        let entries = [("F", "a"), ("P", "b1"), ("F", "b2"), ("F", "c"), ("P", "d")];
        assert_eq!(tail(&entries, 0), Vec::<String>::new());
        assert_eq!(tail(&entries, 1), ["c", "d"]);
        assert_eq!(tail(&entries, 2), ["b1", "b2", "c", "d"]);
        assert_eq!(tail(&entries, 3), ["a", "b1", "b2", "c", "d"]);
        assert_eq!(tail(&entries, 10), ["a", "b1", "b2", "c", "d"]);
        assert_eq!(tail(&[], 3), Vec::<String>::new());
    }

    #[test]
    fn the_tail_of_a_big_file_crosses_blocks() {
        let long = "x".repeat(1000);
        let entries: Vec<(&str, &str)> = (0..500).map(|_| ("F", long.as_str())).collect();
        assert_eq!(tail(&entries, 200).len(), 200);
    }

    #[test]
    fn an_unfinished_entry_is_not_complete() {
        let (mut f, _) = log(&[("F", "a"), ("F", "b")]);
        write!(f, "2026-01-01T00:00:00.000000000Z stdout F unfini").unwrap();
        let len = f.as_file().metadata().unwrap().len();
        let end = complete_end(f.as_file(), len).unwrap();
        assert_eq!(
            end,
            len - "2026-01-01T00:00:00.000000000Z stdout F unfini".len() as u64
        );
        assert_eq!(complete_end(f.as_file(), 0).unwrap(), 0);
    }
}
