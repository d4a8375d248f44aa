//! How a port-forward session arrives: a SPDY/3.1 upgrade, or a WebSocket
//! whose binary messages tunnel the SPDY bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::http::{HeaderMap, HeaderName, header};
use bytes::Bytes;
use futures::{Sink as _, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::PROTOCOL_HEADER;

/// Whether a request asks for a WebSocket.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a request asks for a SPDY/3.1 upgrade, checked as kubelet's
/// upgrader checks it.
pub fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let contains = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(token))
    };
    contains(header::CONNECTION, "upgrade") && contains(header::UPGRADE, "spdy/3.1")
}

/// The stream protocols a SPDY upgrade offers: `X-Stream-Protocol-Version`,
/// repeated or comma-separated.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A WebSocket as a byte stream, the way client-go's `TunnelingConnection`
/// uses one: each write is one binary message, and message boundaries mean
/// nothing to the reader.
pub struct WsStream {
    socket: Pin<Box<WebSocket>>,
    unread: Bytes,
    read_closed: bool,
    close_sent: bool,
}

impl WsStream {
    pub fn new(socket: WebSocket) -> WsStream {
        WsStream {
            socket: Box::pin(socket),
            unread: Bytes::new(),
            read_closed: false,
            close_sent: false,
        }
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.socket.as_mut().poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.unread = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message in a SPDY tunnel",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => this.read_closed = true,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &mut self.socket;
        ready!(socket.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
        socket
            .as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket
            .as_mut()
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.close_sent {
            ready!(this.socket.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
            // A normal closure (1000): client-go's tunnel reads it as the
            // end of the stream, and any other close as an error.
            let close = CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            };
            this.socket
                .as_mut()
                .start_send(Message::Close(Some(close)))
                .map_err(io::Error::other)?;
            this.close_sent = true;
        }
        this.socket
            .as_mut()
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
