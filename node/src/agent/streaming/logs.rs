//! `kubectl logs` on the node: reads a container run's CRI-format log and
//! renders it as plain text, with `previous`, `tailLines`, `sinceTime` /
//! `sinceSeconds`, `timestamps` and `limitBytes`, and follows it while the
//! run lasts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use peapod_runtimes::logs::{self, Entry};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use crate::agent::NodeCtx;

#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    /// RFC 3339; entries before it are skipped.
    pub since: Option<jiff::Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// Why there is no log to show (a 400 or 404 for the client).
#[derive(Debug)]
pub struct LogError {
    pub code: u16,
    pub message: String,
}

fn render(e: &Entry, timestamps: bool, at_line_start: &mut bool) -> String {
    let mut out = String::new();
    if timestamps && *at_line_start {
        out.push_str(e.timestamp);
        out.push(' ');
    }
    out.push_str(e.text);
    if !e.partial {
        out.push('\n');
    }
    *at_line_start = !e.partial;
    out
}

fn wanted(e: &Entry, since: Option<jiff::Timestamp>) -> bool {
    since.is_none_or(|s| e.timestamp.parse::<jiff::Timestamp>().is_ok_and(|t| t >= s))
}

/// Streams a container's log as text chunks.
pub fn stream(
    node: Arc<NodeCtx>,
    ns: &str,
    pod: &str,
    container: &str,
    opts: LogOptions,
) -> Result<mpsc::Receiver<Bytes>, LogError> {
    let entry = node
        .table
        .lock()
        .expect("lock")
        .get(&(ns.to_string(), pod.to_string()))
        .cloned()
        .ok_or_else(|| LogError {
            code: 404,
            message: format!("pod \"{pod}\" is not running on this node"),
        })?;
    let run = entry.runs.get(container).cloned().ok_or_else(|| LogError {
        code: 400,
        message: format!("container \"{container}\" in pod \"{pod}\" is not valid"),
    })?;
    let attempt = if opts.previous {
        if run.restart_count == 0 || (!run.running && run.id.is_none()) {
            return Err(LogError {
                code: 400,
                message: format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ),
            });
        }
        run.restart_count - 1
    } else {
        run.restart_count
    };
    let path = entry.dir.log(container, attempt);
    if run.id.is_none() || !path.exists() {
        return Err(LogError {
            code: 400,
            message: format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        });
    }
    let follow = opts.follow && !opts.previous;
    let (tx, rx) = mpsc::channel(64);
    let key = (ns.to_string(), pod.to_string(), container.to_string());
    tokio::spawn(async move {
        let running = move || still_running(&node, &key, attempt);
        if let Err(e) = pump(&path, &opts, follow, running, tx).await {
            tracing::debug!("reading {}: {e}", path.display());
        }
    });
    Ok(rx)
}

/// Whether run `attempt` of the container is still the running one.
fn still_running(
    node: &NodeCtx,
    (ns, pod, container): &(String, String, String),
    attempt: u32,
) -> bool {
    node.table
        .lock()
        .expect("lock")
        .get(&(ns.clone(), pod.clone()))
        .and_then(|e| e.runs.get(container).cloned())
        .is_some_and(|r| r.running && r.restart_count == attempt)
}

/// Frames of whole lines of about this size go to the client.
const FRAME: usize = 32 * 1024;
/// One line longer than this goes out in pieces.
const MAX_FRAME: usize = 1024 * 1024;

/// What goes to the client: rendered entries gathered into frames that
/// end at line ends and are whole UTF-8, within the byte budget.
struct Out {
    tx: mpsc::Sender<Bytes>,
    budget: usize,
    timestamps: bool,
    at_line_start: bool,
    frame: String,
}

impl Out {
    /// Adds an entry; false once nothing more may go.
    async fn push(&mut self, e: &Entry<'_>) -> bool {
        self.frame
            .push_str(&render(e, self.timestamps, &mut self.at_line_start));
        let full = self.at_line_start && self.frame.len() >= FRAME.min(self.budget);
        if full || self.frame.len() >= MAX_FRAME {
            return self.flush().await;
        }
        true
    }

    async fn flush(&mut self) -> bool {
        let frame = std::mem::take(&mut self.frame);
        send(&self.tx, frame, &mut self.budget).await
    }

    /// Adds the entry on one line of the file (its newline cut off).
    async fn line(&mut self, line: &[u8], since: Option<jiff::Timestamp>) -> bool {
        let text = String::from_utf8_lossy(line);
        match logs::parse(&text) {
            Some(e) if wanted(&e, since) => self.push(&e).await,
            _ => true,
        }
    }
}

/// Sends the log at `path` as `opts` ask, following it (across rotations)
/// while `running` says the run goes on.
async fn pump(
    path: &std::path::Path,
    opts: &LogOptions,
    follow: bool,
    running: impl Fn() -> bool,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut out = Out {
        tx,
        budget: opts.limit_bytes.unwrap_or(usize::MAX),
        timestamps: opts.timestamps,
        at_line_start: true,
        frame: String::new(),
    };
    // Where to begin and end, found without reading the whole file: only
    // complete entries now, a trailing one still being written waits.
    let file = std::fs::File::open(path)?;
    let tail = opts.tail_lines;
    let (file, start, end) = tokio::task::spawn_blocking(move || {
        let end = logs::complete_end(&file, file.metadata()?.len())?;
        let start = match tail {
            Some(n) => logs::tail_start(&file, end, n)?,
            None => 0,
        };
        std::io::Result::Ok((file, start, end))
    })
    .await
    .map_err(std::io::Error::other)??;
    let mut reader = BufReader::new(tokio::fs::File::from_std(file));
    reader.seek(std::io::SeekFrom::Start(start)).await?;
    let mut line = Vec::new();
    let mut at = start;
    while at < end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            break;
        }
        at += n as u64;
        if !out
            .line(line.strip_suffix(b"\n").unwrap_or(&line), opts.since)
            .await
        {
            return Ok(());
        }
    }
    if !out.flush().await || !follow {
        return Ok(());
    }
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n > 0 && line.ends_with(b"\n") {
            if !out.line(&line[..n - 1], opts.since).await {
                return Ok(());
            }
            continue;
        }
        if n > 0 {
            // A line still being written: read it again once complete.
            reader.seek(std::io::SeekFrom::Current(-(n as i64))).await?;
        }
        if !out.flush().await {
            return Ok(());
        }
        if rotated(path, reader.get_ref()).await {
            // The writer finished the old file before starting the new
            // one: what is left of it is whole entries.
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                if !out.line(text, opts.since).await {
                    return Ok(());
                }
            }
            reader = BufReader::new(tokio::fs::File::open(path).await?);
            continue;
        }
        if !running() {
            // The run ended: the shim has written everything.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut rest = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut rest).await?;
            for l in rest.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if !out.line(l, opts.since).await {
                    return Ok(());
                }
            }
            out.flush().await;
            return Ok(());
        }
        if out.tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the log at `path` is no longer the file being read (it was
/// rotated away and a new one started).
async fn rotated(path: &std::path::Path, reading: &tokio::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(now), Ok(ours)) = (tokio::fs::metadata(path).await, reading.metadata().await) else {
        return false;
    };
    (now.dev(), now.ino()) != (ours.dev(), ours.ino())
}

/// Sends what the byte budget allows; false once nothing more may go.
async fn send(tx: &mpsc::Sender<Bytes>, mut chunk: String, budget: &mut usize) -> bool {
    if chunk.is_empty() {
        return *budget > 0;
    }
    if chunk.len() > *budget {
        let mut cut = *budget;
        while !chunk.is_char_boundary(cut) {
            cut -= 1;
        }
        chunk.truncate(cut);
    }
    *budget -= chunk.len();
    tx.send(Bytes::from(chunk)).await.is_ok() && *budget > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_with_optional_timestamps_and_joined_partials() {
        let lines = [
            "2026-01-01T00:00:00.000000001Z stdout P hel",
            "2026-01-01T00:00:00.000000002Z stdout F lo",
            "2026-01-01T00:00:01.000000000Z stderr F world",
        ];
        let mut start = true;
        let plain: String = lines
            .iter()
            .filter_map(|l| logs::parse(l))
            .map(|e| render(&e, false, &mut start))
            .collect();
        assert_eq!(plain, "hello\nworld\n");
        let mut start = true;
        let stamped: String = lines
            .iter()
            .filter_map(|l| logs::parse(l))
            .map(|e| render(&e, true, &mut start))
            .collect();
        assert_eq!(
            stamped,
            "2026-01-01T00:00:00.000000001Z hello\n2026-01-01T00:00:01.000000000Z world\n"
        );
        let since: jiff::Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let e = logs::parse(lines[0]).unwrap();
        assert!(!wanted(&e, Some(since)));
    }

    #[tokio::test]
    async fn a_follower_reads_on_across_rotations() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotation = logs::Rotation {
            max_size: 64 << 10,
            max_files: 3,
        };
        let mut file = logs::RotatingFile::open(&path, rotation).unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(64);
        let follower = {
            let (path, running) = (path.clone(), running.clone());
            tokio::spawn(async move {
                let opts = LogOptions::default();
                pump(&path, &opts, true, || running.load(Ordering::Relaxed), tx).await
            })
        };
        let writer = {
            let running = running.clone();
            std::thread::spawn(move || {
                let mut w = logs::LineWriter::new(logs::Stream::Stdout);
                let pad = "x".repeat(1000);
                for n in 1..=400 {
                    w.write(&mut file, format!("line {n} {pad}\n").as_bytes())
                        .unwrap();
                    if n % 20 == 0 {
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
                running.store(false, Ordering::Relaxed);
            })
        };
        let mut text = String::new();
        while let Some(chunk) = rx.recv().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        writer.join().unwrap();
        follower.await.unwrap().unwrap();
        let numbers: Vec<u32> = text
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(numbers, (1..=400).collect::<Vec<_>>());
        assert!(
            logs::rotated(&path, 2).exists(),
            "the log rotated twice or more"
        );
    }
}
