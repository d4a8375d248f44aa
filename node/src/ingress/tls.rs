//! Certificates for the HTTPS listener, chosen by SNI from the
//! `kubernetes.io/tls` Secrets that the class's Ingresses name in
//! `spec.tls`. The rustls configuration is made once; the resolver reads
//! the current table on every handshake, so a batch of changes swaps the
//! certificates without touching open connections.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::routes::{Key, Objects};

/// The Secret type that carries `tls.crt` and `tls.key`.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("secret is of type {0:?}, not kubernetes.io/tls")]
    NotTls(Option<String>),
    #[error("secret has no {0}")]
    Missing(&'static str),
    #[error("reading tls.crt: {0}")]
    Certificate(String),
    #[error("tls.crt holds no certificate")]
    NoCertificate,
    #[error("reading tls.key: {0}")]
    PrivateKey(String),
    #[error("certificate and key: {0}")]
    Key(#[source] rustls::Error),
    #[error("making the fallback certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// The crypto provider the whole module uses (ring, as the workspace does).
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A certificate and key from PEM: the chain in `cert_pem` (leaf first),
/// a PKCS#8, PKCS#1 or SEC1 key in `key_pem`.
pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::PrivateKey(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)
}

/// The certificate of a `kubernetes.io/tls` Secret.
pub fn from_secret(secret: &Secret) -> Result<CertifiedKey, TlsError> {
    if secret.type_.as_deref() != Some(TLS_SECRET_TYPE) {
        return Err(TlsError::NotTls(secret.type_.clone()));
    }
    let field = |name: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .ok_or(TlsError::Missing(name))
    };
    from_pem(field("tls.crt")?, field("tls.key")?)
}

/// A self-signed certificate for the given names, served when nothing
/// else fits (no SNI, an unknown name, no Ingress with TLS yet).
pub fn self_signed(names: Vec<String>) -> Result<CertifiedKey, TlsError> {
    let made = rcgen::generate_simple_self_signed(names)?;
    from_pem(
        made.cert.pem().as_bytes(),
        made.signing_key.serialize_pem().as_bytes(),
    )
}

/// Certificates by the host names the Ingresses list for them.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` kept as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first certificate of the oldest Ingress: the answer to a client
    /// that sends no SNI or a name no Ingress lists.
    first: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// The certificate for an SNI name: exact, then one-label wildcard,
    /// then the first one available.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = server_name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).cloned().or_else(|| {
                name.split_once('.')
                    .filter(|(label, _)| !label.is_empty())
                    .and_then(|(_, parent)| self.wildcard.get(parent).cloned())
            })
        });
        by_name.or_else(|| self.first.clone())
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// Parses Secrets into certificates, remembering each by resourceVersion
/// so a batch that changed only Endpoints costs no key parsing and a bad
/// Secret is reported once, not on every batch.
#[derive(Default)]
pub struct CertLoader {
    parsed: HashMap<Key, (Option<String>, Option<Arc<CertifiedKey>>)>,
}

impl CertLoader {
    /// The table for the class's Ingresses (in precedence order: the first
    /// Ingress to list a host gets it).
    pub fn build(&mut self, ingresses: &[&Ingress], secrets: &Objects<Secret>) -> CertTable {
        let mut table = CertTable::default();
        let mut used: BTreeSet<Key> = BTreeSet::new();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret_name) = tls.secret_name.clone() else {
                    continue;
                };
                let key = (namespace.clone(), secret_name);
                used.insert(key.clone());
                let Some(cert) = self.load(&key, secrets.get(&key).map(|s| &**s)) else {
                    continue;
                };
                if table.first.is_none() {
                    table.first = Some(cert.clone());
                }
                for host in tls.hosts.iter().flatten() {
                    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
                    let slot = match host.strip_prefix("*.") {
                        Some(parent) => table.wildcard.entry(parent.to_string()),
                        None => table.exact.entry(host.clone()),
                    };
                    slot.or_insert_with(|| cert.clone());
                }
            }
        }
        self.parsed.retain(|key, _| used.contains(key));
        table
    }

    fn load(&mut self, key: &Key, secret: Option<&Secret>) -> Option<Arc<CertifiedKey>> {
        let Some(secret) = secret else {
            tracing::debug!("ingress TLS: secret {}/{} not found", key.0, key.1);
            return None;
        };
        let version = secret.metadata.resource_version.clone();
        if let Some((seen, cert)) = self.parsed.get(key)
            && *seen == version
            && version.is_some()
        {
            return cert.clone();
        }
        let cert = match from_secret(secret) {
            Ok(cert) => Some(Arc::new(cert)),
            Err(e) => {
                tracing::warn!("ingress TLS: secret {}/{}: {e}", key.0, key.1);
                None
            }
        };
        self.parsed.insert(key.clone(), (version, cert.clone()));
        cert
    }
}

/// The current certificate table, swapped after each batch of changes.
pub type SharedCerts = Arc<RwLock<Arc<CertTable>>>;

/// Picks the certificate for each handshake from the current table, or the
/// fallback when the table has none.
#[derive(Debug)]
pub struct CertResolver {
    certs: SharedCerts,
    fallback: Arc<CertifiedKey>,
}

impl CertResolver {
    pub fn new(certs: SharedCerts, fallback: Arc<CertifiedKey>) -> CertResolver {
        CertResolver { certs, fallback }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Some(
            table
                .lookup(client_hello.server_name())
                .unwrap_or_else(|| self.fallback.clone()),
        )
    }
}

/// The HTTPS listener's configuration: certificates from `resolver`, and
/// HTTP/2 or HTTP/1.1 by ALPN.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use serde_json::json;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::proxy::{Fallbacks, Proxy};
    use super::super::testing;
    use super::*;

    fn ingress(tls: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"tls": tls},
        }))
        .expect("ingress")
    }

    fn served(table: &CertTable, name: Option<&str>) -> Option<CertificateDer<'static>> {
        table.lookup(name).map(|c| c.cert[0].clone())
    }

    #[test]
    fn certificates_are_chosen_by_exact_then_wildcard_name_then_first() {
        let (app, app_cert) = testing::tls_secret("default", "app-tls", &["app.test"]);
        let (wild, wild_cert) = testing::tls_secret("default", "wild-tls", &["*.wild.test"]);
        let secrets = Objects::from([
            (("default".to_string(), "app-tls".to_string()), app.into()),
            (("default".to_string(), "wild-tls".to_string()), wild.into()),
        ]);
        let ing = ingress(json!([
            {"hosts": ["App.Test"], "secretName": "app-tls"},
            {"hosts": ["*.wild.test"], "secretName": "wild-tls"},
            {"hosts": ["missing.test"], "secretName": "not-there"},
        ]));
        let table = CertLoader::default().build(&[&ing], &secrets);
        assert_eq!(served(&table, Some("app.test")), Some(app_cert.clone()));
        assert_eq!(served(&table, Some("x.wild.test")), Some(wild_cert.clone()));
        assert_eq!(
            served(&table, Some("a.b.wild.test")),
            Some(app_cert.clone())
        );
        assert_eq!(served(&table, Some("missing.test")), Some(app_cert.clone()));
        assert_eq!(served(&table, None), Some(app_cert));
        assert!(CertTable::default().lookup(Some("app.test")).is_none());
    }

    #[test]
    fn a_bad_secret_is_skipped() {
        let (mut secret, _) = testing::tls_secret("default", "bad", &["bad.test"]);
        if let Some(data) = secret.data.as_mut() {
            data.insert(
                "tls.key".into(),
                k8s_openapi::ByteString(b"garbage".to_vec()),
            );
        }
        assert!(from_secret(&secret).is_err());
        let secrets = Objects::from([(
            ("default".to_string(), "bad".to_string()),
            secret.clone().into(),
        )]);
        let ing = ingress(json!([{"hosts": ["bad.test"], "secretName": "bad"}]));
        assert!(CertLoader::default().build(&[&ing], &secrets).is_empty());

        let opaque = Secret {
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        assert!(matches!(from_secret(&opaque), Err(TlsError::NotTls(_))));
    }

    /// A TLS connection that trusts only `trusted`.
    async fn connect(
        addr: std::net::SocketAddr,
        name: &'static str,
        trusted: &CertificateDer<'static>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.clone()).expect("trust anchor");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let server_name = rustls::pki_types::ServerName::try_from(name).expect("server name");
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
    }

    #[tokio::test]
    async fn https_serves_the_certificate_for_the_sni_name_over_http2() {
        let backend = testing::backend("a").await;
        let (app, app_cert) = testing::tls_secret("default", "app-tls", &["app.test"]);
        let (wild, wild_cert) = testing::tls_secret("default", "wild-tls", &["*.wild.test"]);
        let secrets = Objects::from([
            (("default".to_string(), "app-tls".to_string()), app.into()),
            (("default".to_string(), "wild-tls".to_string()), wild.into()),
        ]);
        let ing = ingress(json!([
            {"hosts": ["app.test"], "secretName": "app-tls"},
            {"hosts": ["*.wild.test"], "secretName": "wild-tls"},
        ]));
        let certs: SharedCerts = Arc::new(RwLock::new(Arc::new(
            CertLoader::default().build(&[&ing], &secrets),
        )));
        let fallback = Arc::new(self_signed(vec!["localhost".into()]).expect("self-signed"));
        let config = server_config(Arc::new(CertResolver::new(certs, fallback))).expect("config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes = Arc::new(RwLock::new(Arc::new(testing::web_table(&[backend.port()]))));
        let proxy = Proxy::new(routes, Fallbacks::default()).expect("proxy threads");
        tokio::spawn(proxy.serve_tls(listener, config));

        let tls = connect(addr, "app.test", &app_cert)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let request = Request::get("https://app.test/hello")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with("a "), "{body}");
        assert!(body.contains("host=app.test "), "{body}");
        assert!(body.contains("proto=https "), "{body}");

        assert!(connect(addr, "x.wild.test", &wild_cert).await.is_ok());
        assert!(connect(addr, "x.wild.test", &app_cert).await.is_err());
    }
}
