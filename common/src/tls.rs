//! Serving a router over TLS (rustls), HTTP/1.1 and HTTP/2 by ALPN, with
//! connection upgrades for WebSocket-based streams.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::conn;

/// A rustls server configuration from PEM certificate chain and key.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    build(cert_pem, key_pem, None)
}

/// The same, asking clients for a certificate and accepting one only when
/// `client_ca_pem` signed it (clients without one still connect, and
/// authenticate otherwise): kube-apiserver's `--client-ca-file`.
pub fn server_config_with_client_ca(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<ServerConfig>, String> {
    build(cert_pem, key_pem, Some(client_ca_pem))
}

fn build(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("reading private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                let c = c.map_err(|e| format!("reading the client CA: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("loading the client CA: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("loading certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate a client presented and the server's verifier accepted
/// (DER), in each request's extensions.
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Arc<CertificateDer<'static>>);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections for ever, serving each on its own task. A failed
/// accept (out of file descriptors, a connection reset before it was
/// taken) is waited out with a growing pause, never the end of serving.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let clients = conn::Clients::default();
    let mut pause = Duration::from_millis(5);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => {
                pause = Duration::from_millis(5);
                accepted
            }
            Err(e) => {
                tracing::warn!("accepting a connection: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(counted) = clients.admit(peer.ip()) else {
            tracing::debug!("{peer}: over its connection limit, closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {peer} timed out");
                    return;
                }
            };
            // The protocol is the one ALPN chose (HTTP/1.1 when none):
            // sniffing for HTTP/2's preface would wait, with no timeout, on
            // a client that sends nothing.
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let verified = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| ClientCertificate(Arc::new(c.clone().into_owned())));
            // Handlers see the client's address (axum's `ConnectInfo`) and
            // the certificate it proved it holds.
            let app = app
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
                .layer(axum::Extension(verified));
            let io = TokioIo::new(stream);
            let service = TowerToHyperService::new(app);
            let served = if h2 {
                conn::http2().serve_connection(io, service).await
            } else {
                conn::http1()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await
            };
            if let Err(e) = served {
                tracing::debug!("connection from {peer} ended: {e}");
            }
        });
    }
}
