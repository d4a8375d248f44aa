//! Container logs in the CRI format the kubelet uses, one line per entry:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <text>`, where `P` marks
//! a partial line (a long line split, or output without a final newline).
//! Both runtimes write it, rotated by size (`rotate`); the node reads it
//! for `kubectl logs`, from the end for a tail (`tail`).

use std::io::{self, Write};

mod rotate;
mod tail;

pub use self::rotate::{RotatingFile, Rotation, rotated};
pub use self::tail::{complete_end, tail_start};

/// Lines longer than this are split into partial entries.
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The current time as the log format writes it.
pub fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        .to_string()
}

/// Turns chunks of a stream's output into log entries, keeping an
/// unterminated tail until more output (or the end) arrives.
pub struct LineWriter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineWriter {
    pub fn new(stream: Stream) -> LineWriter {
        LineWriter {
            stream,
            pending: Vec::new(),
        }
    }

    fn entry(&self, out: &mut impl Write, text: &[u8], partial: bool) -> io::Result<()> {
        let tag = if partial { "P" } else { "F" };
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(timestamp().as_bytes());
        line.push(b' ');
        line.extend_from_slice(self.stream.name().as_bytes());
        line.push(b' ');
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(text);
        line.push(b'\n');
        out.write_all(&line)
    }

    /// Writes every complete line in `chunk` (and over-long partial ones).
    pub fn write(&mut self, out: &mut impl Write, chunk: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.entry(out, &line[..line.len() - 1], false)?;
        }
        while self.pending.len() >= MAX_LINE {
            let cut = char_boundary(&self.pending, MAX_LINE);
            let part: Vec<u8> = self.pending.drain(..cut).collect();
            self.entry(out, &part, true)?;
        }
        Ok(())
    }

    /// Writes what is left when the stream ends.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.entry(out, &rest, true)?;
        }
        Ok(())
    }
}

/// `at`, or up to three bytes before it where that is the start of the
/// UTF-8 character `at` falls inside, so a split keeps characters whole.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let continuation = |i: usize| bytes.get(i).is_some_and(|b| b & 0xc0 == 0x80);
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|i| !continuation(*i))
        .filter(|i| *i > 0)
        .unwrap_or(at)
}

/// One parsed log entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

/// Parses one line of a log file (without its newline).
pub fn parse(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Entry {
        timestamp,
        stream,
        partial: tag == "P",
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_and_partial_tails_kept() {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stderr);
        w.write(&mut out, b"hello\nwor").unwrap();
        w.write(&mut out, b"ld\nrest").unwrap();
        w.finish(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let entries: Vec<_> = text.lines().map(|l| parse(l).unwrap()).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].text, "hello");
        assert_eq!(entries[1].text, "world");
        assert!(!entries[1].partial);
        assert_eq!(entries[2].text, "rest");
        assert!(entries[2].partial);
        assert_eq!(entries[0].stream, "stderr");
        assert!(entries[0].timestamp.ends_with('Z'));
    }

    #[test]
    fn a_long_line_splits_between_characters() {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stdout);
        // "é" is two bytes: an odd prefix puts one across the split point.
        let line = format!("x{}", "é".repeat(MAX_LINE));
        w.write(&mut out, line.as_bytes()).unwrap();
        w.write(&mut out, b"\n").unwrap();
        let text = String::from_utf8(out).expect("every entry is whole UTF-8");
        let joined: String = text.lines().map(|l| parse(l).unwrap().text).collect();
        assert_eq!(joined, line);
        assert!(text.lines().count() > 1);
    }
}
