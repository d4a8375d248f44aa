//! `kubectl exec` on the node: the Kubernetes remote-command protocol over
//! WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`). Each binary frame
//! starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final
//! status (a `Status` object), 4 terminal resize, 255 (v5) "close this
//! channel". The process runs through the OCI exec helper, on a pty when
//! the client asks for a terminal.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use peapod_runtimes::oci::Oci;

pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the client asked for.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The status frame kubectl turns into its exit code.
pub(super) fn status_frame(code: Option<i32>, error: Option<String>) -> Vec<u8> {
    let status = match (code, error) {
        (_, Some(message)) => {
            json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
        }
        (Some(0), None) => json!({"metadata": {}, "status": "Success"}),
        (code, None) => {
            let code = code.unwrap_or(-1);
            json!({
                "metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
    };
    let mut frame = vec![ERROR];
    frame.extend(serde_json::to_vec(&status).expect("serializes"));
    frame
}

fn set_size(master: &OwnedFd, json: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let Ok(size) = serde_json::from_slice::<Size>(json) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer on a pty fd.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The next frame from the client, split into its channel and data; none
/// once the client closed or went away.
pub(super) async fn next_client_frame(
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<(u8, Vec<u8>)> {
    while let Some(Ok(msg)) = stream.next().await {
        let mut data: Vec<u8> = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => return None,
            _ => continue,
        };
        if data.is_empty() {
            continue;
        }
        let channel = data.remove(0);
        return Some((channel, data));
    }
    None
}

/// Copies a reader to the outgoing frames on `channel`.
fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    channel: u8,
    out: mpsc::Sender<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&buf[..n]);
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Runs the exec session on an upgraded socket.
pub async fn serve(socket: WebSocket, oci: Oci, run: String, req: ExecRequest) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        // A normal closure (1000): clients treat a close without a code as
        // an error and lose the status frame.
        let close = axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    });

    let mut cmd = oci.exec_command(&run, &req.command);
    cmd.kill_on_drop(true);
    let mut pty_master: Option<OwnedFd> = None;
    let mut pumps = Vec::new();
    let mut stdin_writer: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    if req.tty {
        let pty = match nix::pty::openpty(None, None) {
            Ok(p) => p,
            Err(e) => {
                let _ = out_tx
                    .send(status_frame(
                        None,
                        Some(format!("allocating a terminal: {e}")),
                    ))
                    .await;
                drop(out_tx);
                let _ = writer.await;
                return;
            }
        };
        let slave = pty.slave;
        let (a, b, c) = (slave.try_clone(), slave.try_clone(), slave.try_clone());
        if let (Ok(a), Ok(b), Ok(c)) = (a, b, c) {
            cmd.stdin(Stdio::from(a))
                .stdout(Stdio::from(b))
                .stderr(Stdio::from(c));
        }
        // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        drop(slave);
        pty_master = Some(pty.master);
    } else {
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if req.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if req.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    }
    let spawned = cmd.spawn();
    // The command keeps its copies of the pty's slave end: they go now, or
    // the master never sees the end of the session.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = out_tx
                .send(status_frame(
                    None,
                    Some(format!("starting the exec helper: {e}")),
                ))
                .await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    if let Some(master) = &pty_master {
        if let Ok(r) = master.try_clone() {
            pumps.push(pump(
                tokio::fs::File::from_std(std::fs::File::from(r)),
                STDOUT,
                out_tx.clone(),
            ));
        }
        if req.stdin
            && let Ok(w) = master.try_clone()
        {
            stdin_writer = Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(w))));
        }
    } else {
        if let Some(o) = child.stdout.take() {
            pumps.push(pump(o, STDOUT, out_tx.clone()));
        }
        if let Some(e) = child.stderr.take() {
            pumps.push(pump(e, STDERR, out_tx.clone()));
        }
        if let Some(i) = child.stdin.take() {
            stdin_writer = Some(Box::new(i));
        }
    }

    // Client input: stdin data, resizes, and the end of stdin.
    let reader = tokio::spawn(async move {
        while let Some((channel, rest)) = next_client_frame(&mut stream).await {
            let rest = rest.as_slice();
            tracing::trace!("exec: client frame on channel {channel}: {rest:?}");
            match channel {
                STDIN => {
                    if let Some(w) = stdin_writer.as_mut()
                        && (w.write_all(rest).await.is_err() || w.flush().await.is_err())
                    {
                        stdin_writer = None;
                    }
                }
                RESIZE => {
                    if let Some(m) = &pty_master {
                        set_size(m, rest);
                    }
                }
                CLOSE if rest.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin_writer.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });

    let status = child.wait().await;
    for mut p in pumps {
        // Output still in flight is delivered; a pty reports EIO at its end
        // (later if a background process still holds the terminal, which
        // must not keep the session open).
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut p)
            .await
            .is_err()
        {
            p.abort();
        }
    }
    reader.abort();
    let frame = match status {
        Ok(s) => status_frame(s.code().or(s.signal().map(|n| 128 + n)), None),
        Err(e) => status_frame(None, Some(e.to_string())),
    };
    let _ = out_tx.send(frame).await;
    drop(out_tx);
    let _ = writer.await;
}
