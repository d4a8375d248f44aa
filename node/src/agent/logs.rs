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

use super::NodeCtx;

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
        let _ = pump(node, key, path, attempt, opts, follow, tx).await;
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

async fn pump(
    node: Arc<NodeCtx>,
    key: (String, String, String),
    path: std::path::PathBuf,
    attempt: u32,
    opts: LogOptions,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut budget = opts.limit_bytes.unwrap_or(usize::MAX);
    let mut at_line_start = true;
    let text = tokio::fs::read_to_string(&path).await?;
    let mut offset = text.len() as u64;
    // Only complete lines are read now; a trailing partial one waits.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    offset -= (text.len() - complete.len()) as u64;
    let mut entries: Vec<Entry> = complete
        .lines()
        .filter_map(logs::parse)
        .filter(|e| wanted(e, opts.since))
        .collect();
    if let Some(n) = opts.tail_lines {
        // Count whole lines: a partial entry belongs to the next full one.
        let mut full = 0;
        let mut cut = entries.len();
        for (i, e) in entries.iter().enumerate().rev() {
            if !e.partial {
                if full == n {
                    break;
                }
                full += 1;
            }
            cut = i;
        }
        if n == 0 {
            cut = entries.len();
        }
        entries.drain(..cut);
    }
    let mut chunk = String::new();
    for e in &entries {
        chunk.push_str(&render(e, opts.timestamps, &mut at_line_start));
    }
    if !send(&tx, chunk, &mut budget).await {
        return Ok(());
    }
    if !follow {
        return Ok(());
    }
    let file = tokio::fs::File::open(&path).await?;
    let mut reader = BufReader::new(file);
    reader.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        if n > 0 && line.ends_with('\n') {
            if let Some(e) = logs::parse(line.trim_end_matches('\n'))
                && wanted(&e, opts.since)
                && !send(
                    &tx,
                    render(&e, opts.timestamps, &mut at_line_start),
                    &mut budget,
                )
                .await
            {
                return Ok(());
            }
            continue;
        }
        if n > 0 {
            // A line still being written: read it again once complete.
            reader.seek(std::io::SeekFrom::Current(-(n as i64))).await?;
        }
        if !still_running(&node, &key, attempt) {
            // The run ended: the shim has written everything.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut rest = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut rest).await?;
            let mut chunk = String::new();
            for e in rest
                .lines()
                .filter_map(logs::parse)
                .filter(|e| wanted(e, opts.since))
            {
                chunk.push_str(&render(&e, opts.timestamps, &mut at_line_start));
            }
            send(&tx, chunk, &mut budget).await;
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
}
