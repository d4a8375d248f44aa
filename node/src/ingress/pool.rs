//! Connections to backends, kept open between requests: HTTP/1.1 over TCP,
//! per pod address. Each proxy worker thread has its own pool, so a
//! connection is only ever driven by the thread that uses it.
//!
//! A connection goes back to the pool when its response body has been
//! read to the end (HTTP/1.1 cannot reuse it earlier). A pooled connection
//! may have been closed by the pod meanwhile, or its address may now
//! belong to another pod: a request that a pooled connection could not
//! even send is sent again on another one, so the client never sees it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::proxy::Body;

/// A backend that does not accept within this long is given up for the
/// next one (a deleted pod's IP answers nothing at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per address; more are closed when given back.
const MAX_IDLE_PER_ADDRESS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: the next endpoint may do better.
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    /// The request went out on a kept-open connection that failed before
    /// any answer (closed by the pod meanwhile, or the address now someone
    /// else's): an idempotent request may be sent again on a new one.
    #[error("on a kept-open connection: {0}")]
    Stale(hyper::Error),
    /// The request went out and failed.
    #[error("{0}")]
    Request(hyper::Error),
}

#[derive(Clone, Default)]
pub struct Backends {
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<SendRequest<Body>>>>>,
}

/// A connection lent out for one request; given back to the pool by the
/// response body once read to the end.
pub struct Lease {
    pool: Backends,
    address: SocketAddr,
    connection: SendRequest<Body>,
}

impl Backends {
    /// Sends `request` to `address` on a pooled connection, or a new one
    /// (always, when `fresh`).
    pub async fn send(
        &self,
        address: SocketAddr,
        mut request: Request<Body>,
        fresh: bool,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        loop {
            let pooled = if fresh { None } else { self.take(address) };
            let (mut connection, pooled) = match pooled {
                Some(c) => (c, true),
                None => (connect(address).await?, false),
            };
            // A pooled connection may still be finishing its last exchange.
            if connection.ready().await.is_err() {
                if pooled {
                    continue;
                }
                return Err(SendError::Connect(std::io::Error::other(
                    "the connection closed before the first request",
                )));
            }
            match connection.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.clone(),
                        address,
                        connection,
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: a stale pooled connection. Another try.
                    Some(unsent) if pooled => request = unsent,
                    _ if pooled => return Err(SendError::Stale(e.into_error())),
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    fn take(&self, address: SocketAddr) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&address)?;
        while let Some(connection) = list.pop() {
            if !connection.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    fn give_back(&self, address: SocketAddr, connection: SendRequest<Body>) {
        if connection.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(address).or_default();
        if list.len() < MAX_IDLE_PER_ADDRESS {
            list.push(connection);
        }
    }

    #[cfg(test)]
    pub fn idle(&self, address: SocketAddr) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&address)
            .map_or(0, Vec::len)
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Body>, SendError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| {
            SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {address} within {CONNECT_TIMEOUT:?}"),
            ))
        })?
        .map_err(SendError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(SendError::Request)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("ingress: connection to {address}: {e}");
        }
    });
    Ok(sender)
}

impl Lease {
    /// The response body, which gives the connection back once read to
    /// the end.
    pub fn attach(self, body: Incoming) -> Returning {
        Returning {
            body,
            lease: Some(self),
        }
    }
}

/// A backend's response body that gives its connection back to the pool
/// when it has been read to the end (dropped before that, the connection
/// goes with it).
pub struct Returning {
    body: Incoming,
    lease: Option<Lease>,
}

impl Returning {
    fn finish(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.give_back(lease.address, lease.connection);
        }
    }
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // An empty body is never polled; it was still read to the end.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_once_per_connection, backend};
    use super::*;
    use http_body_util::{BodyExt, Empty};

    fn get(address: SocketAddr) -> Request<Body> {
        Request::get(format!("http://{address}/"))
            .header(http::header::HOST, "app.test")
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .expect("request")
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_was_read() {
        let address = backend("a").await;
        let pool = Backends::default();
        for _ in 0..3 {
            let (response, lease) = pool.send(address, get(address), false).await.expect("send");
            let (_, body) = response.into_parts();
            let body = lease.attach(body).collect().await.expect("body").to_bytes();
            assert!(body.starts_with(b"a "));
            assert_eq!(pool.idle(address), 1);
        }
    }

    #[tokio::test]
    async fn a_response_dropped_half_read_takes_its_connection_along() {
        let address = backend("a").await;
        let pool = Backends::default();
        let (response, lease) = pool.send(address, get(address), false).await.expect("send");
        drop(lease.attach(response.into_body()));
        assert_eq!(pool.idle(address), 0);
    }

    #[tokio::test]
    async fn a_kept_open_connection_that_fails_unanswered_is_stale() {
        let address = answers_once_per_connection().await;
        let pool = Backends::default();
        let (response, lease) = pool.send(address, get(address), false).await.expect("send");
        let body = lease
            .attach(response.into_body())
            .collect()
            .await
            .expect("body");
        assert_eq!(body.to_bytes(), "ok");
        assert_eq!(pool.idle(address), 1);
        let sent = pool.send(address, get(address), false).await;
        assert!(matches!(sent, Err(SendError::Stale(_))));
        let sent = pool.send(address, get(address), true).await;
        assert!(sent.is_ok());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        drop(listener);
        let sent = Backends::default().send(address, get(address), false).await;
        assert!(matches!(sent, Err(SendError::Connect(_))));
    }
}
