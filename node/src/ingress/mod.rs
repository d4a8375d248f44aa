//! The node's Ingress controller and L7 proxy (`networking.k8s.io/v1`):
//! serves the Ingresses of one class (`peapod`, and class-less ones while
//! it is the default) on a plain and a TLS listener, which the node steers
//! ports 80 and 443 to.
//!
//! - `routes`: the routing table (hosts, paths, default backend, Service
//!   ports to endpoints), pure;
//! - `headers`: hop-by-hop and `X-Forwarded-*` handling, pure;
//! - `proxy`: the worker threads and the hyper server, round robin with
//!   retry on refused endpoints, and the scale-from-zero fallback;
//! - `pool`: the kept-open HTTP/1.1 connections to pods;
//! - `tls`: certificates by SNI from `kubernetes.io/tls` Secrets;
//! - `status`: the node's IP in `status.loadBalancer.ingress`;
//! - `watch`: the watches that rebuild and swap the table and certificates.

pub mod headers;
pub mod pool;
pub mod proxy;
pub mod routes;
pub mod status;
pub mod tls;
pub mod watch;

#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;

use self::proxy::Proxy;
use self::routes::RouteTable;
use self::tls::{CertResolver, CertTable};

#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// This node's address, written into the Ingresses' status.
    pub node_ip: Ipv4Addr,
    /// Where plain HTTP is served (the node steers port 80 here).
    pub http: SocketAddr,
    /// Where HTTPS is served (the node steers port 443 here).
    pub https: SocketAddr,
    /// The IngressClass served (`peapod`).
    pub class: String,
    /// Threads serving connections; 0: half the cores, at least one.
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("binding the ingress listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the ingress threads: {0}")]
    Threads(std::io::Error),
    #[error("ingress TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("ingress TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
}

/// Binds both listeners, then watches and serves until the process ends.
/// `fallback` maps (namespace, Service) to where that Service's requests
/// go while it has no ready endpoint, instead of a 503.
pub async fn run(
    client: kube::Client,
    config: IngressConfig,
    fallback: Arc<RwLock<HashMap<(String, String), SocketAddr>>>,
) -> Result<(), IngressError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| IngressError::Bind { addr, source })
    };
    let http = bind(config.http).await?;
    let https = bind(config.https).await?;
    serve(client, config, fallback, http, https, Default::default()).await
}

/// [`run`] on listeners the caller has bound (tests, or ports picked by
/// the kernel: `config.http` and `config.https` are then not used).
pub async fn serve(
    client: kube::Client,
    config: IngressConfig,
    fallback: Arc<RwLock<HashMap<(String, String), SocketAddr>>>,
    http: TcpListener,
    https: TcpListener,
    traffic: crate::traffic::Traffic,
) -> Result<(), IngressError> {
    let routes: proxy::SharedRoutes = Arc::new(RwLock::new(Arc::new(RouteTable::default())));
    let certs: tls::SharedCerts = Arc::new(RwLock::new(Arc::new(CertTable::default())));
    // Until an Ingress names a Secret, and for clients without SNI when
    // none does, HTTPS still answers (with a certificate nobody trusts).
    let own_cert = tls::self_signed(vec!["localhost".into(), config.node_ip.to_string()])?;
    let resolver = Arc::new(CertResolver::new(certs.clone(), Arc::new(own_cert)));
    let tls_config = tls::server_config(resolver)?;
    let proxy = Proxy::with_traffic(routes.clone(), fallback, traffic, config.threads)
        .map_err(IngressError::Threads)?;
    tracing::info!(
        "ingress: class {:?}, HTTP on {:?}, HTTPS on {:?}",
        config.class,
        http.local_addr().ok(),
        https.local_addr().ok()
    );
    tokio::select! {
        () = watch::watch(client, config.class.clone(), config.node_ip, routes, certs) => {
            tracing::warn!("ingress: watches ended");
        }
        () = proxy.clone().serve_plain(http) => {}
        () = proxy.serve_tls(https, tls_config) => {}
    }
    Ok(())
}
