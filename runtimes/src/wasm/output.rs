//! A guest's stdout and stderr, written to the container's CRI-format log
//! as the guest produces it (see [`crate::logs`]).
//!
//! Each store gets its own pair of [`LogStream`]s, so lines of concurrent
//! requests of an HTTP function are not spliced together; a line still
//! unterminated when the store goes away is written as a partial entry.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::logs::{LineWriter, RotatingFile, Rotation, Stream};

/// How much a guest may write at once.
const WRITE_BUDGET: usize = 1024 * 1024;

/// One container's log file, shared by all its streams.
pub(crate) struct LogFile {
    file: Mutex<RotatingFile>,
}

impl LogFile {
    pub(crate) fn open(path: &Path, rotation: Rotation) -> io::Result<Arc<LogFile>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = RotatingFile::open(path, rotation)?;
        Ok(Arc::new(LogFile {
            file: Mutex::new(file),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RotatingFile> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new stream into this log.
    pub(crate) fn stream(self: &Arc<Self>, stream: Stream) -> LogStream {
        LogStream {
            state: Arc::new(Mutex::new(StreamState {
                file: self.clone(),
                writer: LineWriter::new(stream),
            })),
        }
    }

    /// Writes a message from the runtime itself (a trap, a failed
    /// request), one entry per line.
    pub(crate) fn message(&self, stream: Stream, text: &str) {
        let mut writer = LineWriter::new(stream);
        let mut file = self.lock();
        let _ = writer.write(&mut *file, text.trim_end().as_bytes());
        let _ = writer.write(&mut *file, b"\n");
    }
}

/// One guest stream (stdout or stderr of one store). Clones share the
/// unterminated tail.
#[derive(Clone)]
pub(crate) struct LogStream {
    state: Arc<Mutex<StreamState>>,
}

struct StreamState {
    file: Arc<LogFile>,
    writer: LineWriter,
}

impl StreamState {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.file.lock();
        self.writer.write(&mut *file, bytes)
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        let mut file = self.file.lock();
        let _ = self.writer.finish(&mut *file);
    }
}

impl LogStream {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(bytes)
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_all(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse;

    #[test]
    fn output_becomes_log_entries_and_tails_are_kept_until_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path, Rotation::default()).unwrap();
        let mut out = log.stream(Stream::Stdout);
        let err = log.stream(Stream::Stderr);
        OutputStream::write(&mut out, Bytes::from_static(b"hello\nwor")).unwrap();
        err.write_all(b"oops\n").unwrap();
        OutputStream::write(&mut out, Bytes::from_static(b"ld\ntail")).unwrap();
        drop(out);
        drop(err);
        log.message(Stream::Stderr, "trap: boom\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let entries: Vec<_> = text.lines().map(|l| parse(l).unwrap()).collect();
        let seen: Vec<_> = entries
            .iter()
            .map(|e| (e.stream, e.text, e.partial))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("stdout", "hello", false),
                ("stderr", "oops", false),
                ("stdout", "world", false),
                ("stdout", "tail", true),
                ("stderr", "trap: boom", false),
            ]
        );
    }
}
