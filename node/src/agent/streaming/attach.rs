//! `kubectl attach` on the node: the remote-command WebSocket (as for
//! exec) bridged to the container's shim, which relays the container's
//! output and takes its input (`peapod_runtimes::oci::attach`).

use std::path::PathBuf;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use peapod_runtimes::oci::attach;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::{next_client_frame, status_frame};

/// Runs an attach session on an upgraded socket, until the container's
/// streams end (it exited) or the client goes.
pub async fn serve(socket: WebSocket, shim: PathBuf) {
    let (mut sink, mut stream) = socket.split();
    let status = match tokio::net::UnixStream::connect(&shim).await {
        Err(e) => status_frame(None, Some(format!("attaching to the container: {e}"))),
        Ok(unix) => {
            let (mut from_shim, mut to_shim) = unix.into_split();
            let input = tokio::spawn(async move {
                while let Some((channel, data)) = next_client_frame(&mut stream).await {
                    if to_shim
                        .write_all(&attach::frame(channel, &data))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            'relay: loop {
                let n = from_shim.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                let Some(frames) = attach::take_frames(&mut pending) else {
                    break;
                };
                for (channel, data) in frames {
                    let mut out = Vec::with_capacity(data.len() + 1);
                    out.push(channel);
                    out.extend(data);
                    if sink.send(Message::Binary(out.into())).await.is_err() {
                        break 'relay;
                    }
                }
            }
            input.abort();
            status_frame(Some(0), None)
        }
    };
    let _ = sink.send(Message::Binary(status.into())).await;
    let close = CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
}
