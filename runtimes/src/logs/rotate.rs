//! A container's log file, rotated by size as the kubelet rotates it
//! (`containerLogMaxSize`, `containerLogMaxFiles`): once the file would
//! pass its size, it becomes `<name>.1` (older ones move up to
//! `<name>.<files - 1>`, the oldest is dropped) and a new file starts.
//! Rotation happens between entries, so no entry is split across files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How big a log grows and how many files of it are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    /// Files kept, the current one included (at least 2).
    pub max_files: u32,
}

impl Default for Rotation {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Rotation {
        Rotation {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// The path of rotated file `n` (1 the newest) of the log at `path`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// An append-only log file that rotates itself. Each `write` call must be
/// whole entries (the [`super::LineWriter`] writes one entry per call).
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation: Rotation {
                max_size: rotation.max_size.max(1),
                max_files: rotation.max_files.max(2),
            },
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.rotation.max_files - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingFile {
    fn write(&mut self, entry: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + entry.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(entry)?;
        self.size += entry.len() as u64;
        Ok(entry.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_log_moves_up_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotation = Rotation {
            max_size: 100,
            max_files: 3,
        };
        let mut log = RotatingFile::open(&path, rotation).unwrap();
        let entry = |i: usize| format!("{i:039}\n");
        for i in 0..10 {
            log.write_all(entry(i).as_bytes()).unwrap();
        }
        // 40-byte entries, two per file: 8,9 current; 6,7 in .1; 4,5 in .2.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), entry(8) + &entry(9));
        assert_eq!(read(rotated(&path, 1)), entry(6) + &entry(7));
        assert_eq!(read(rotated(&path, 2)), entry(4) + &entry(5));
        assert!(!rotated(&path, 3).exists());
        // Reopened (a new shim for the same run), it goes on from its size.
        drop(log);
        let mut log = RotatingFile::open(&path, rotation).unwrap();
        log.write_all(entry(10).as_bytes()).unwrap();
        assert_eq!(read(path.clone()), entry(10));
        assert_eq!(read(rotated(&path, 1)), entry(8) + &entry(9));
    }

    #[test]
    fn an_entry_bigger_than_the_limit_still_goes_whole_into_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotation = Rotation {
            max_size: 10,
            max_files: 2,
        };
        let mut log = RotatingFile::open(&path, rotation).unwrap();
        log.write_all(b"0123456789abcdef\n").unwrap();
        log.write_all(b"next\n").unwrap();
        assert_eq!(
            std::fs::read(rotated(&path, 1)).unwrap(),
            b"0123456789abcdef\n"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"next\n");
    }
}
