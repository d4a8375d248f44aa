//! Bounds on what one client can hold of a server: connections per
//! client address, time to send a request's headers, and the process's
//! file descriptors. Shared by every server Peapod runs (the API server,
//! the node's API, the Ingress).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

/// How long a client has to send a request's headers, and how long an
/// HTTP/1.1 connection may sit idle between requests (kube-apiserver's
/// `ReadHeaderTimeout`). Streams (watch, exec, logs) are bodies, not
/// headers, and are not cut.
const HEADER_TIMEOUT: Duration = Duration::from_secs(32);
/// Connections one client address may hold at once; more are closed at
/// accept, so that one client cannot take every file descriptor.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 512;

/// What one client address holds open (connections, or watches), at
/// most `limit` at once.
#[derive(Clone)]
pub struct Clients {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    limit: usize,
}

impl Default for Clients {
    /// Connections: [`MAX_CONNECTIONS_PER_CLIENT`].
    fn default() -> Self {
        Clients::with_limit(MAX_CONNECTIONS_PER_CLIENT)
    }
}

/// One counted connection (or watch); uncounted when dropped.
pub struct Counted {
    clients: Clients,
    ip: IpAddr,
}

impl Clients {
    pub fn with_limit(limit: usize) -> Clients {
        Clients {
            open: Arc::default(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts one more from `ip`, or `None` when it holds its limit.
    pub fn admit(&self, ip: IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().expect("lock");
        let n = open.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Counted {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().expect("lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An HTTP/1.1 server connection builder with the header timeout.
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
}

/// An HTTP/2 server connection builder that pings idle peers (a vanished
/// one's connection is dropped).
pub fn http2() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// An HTTP/1.1 and HTTP/2 connection builder (for plain connections, where
/// no ALPN says which) with the header timeout and HTTP/2 keep-alive pings.
pub fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Raises this process's open file limit to its hard limit: every
/// connection, watch and pod takes descriptors, and the usual soft limit
/// (1024) is a few hundred clients.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("raising the open file limit: {e}");
        }
    }
}
