//! The cluster's credentials: a CA, the API server's serving certificate,
//! the admin token and the node join token, created on first start and
//! kept in the data directory; and the kubeconfig that uses them.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{0} groups asked for; a certificate carries at most {MAX_CERTIFICATE_GROUPS}")]
    TooManyGroups(usize),
}

type Result<T> = std::result::Result<T, PkiError>;

pub struct Credentials {
    pub ca_cert_pem: String,
    /// Signs the nodes' serving certificates.
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_token: String,
    pub node_token: String,
    /// The admin's client certificate (`CN=admin, O=system:masters`) and key.
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// Signs ServiceAccount tokens (`crate::tokens`).
    pub sa_key_pem: String,
}

fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, content: &str) -> Result<()> {
    let io_err = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        peapod_common::private::dir(dir).map_err(io_err)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    // Created 0600, so that the content is never readable by others.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| io::Write::write_all(&mut f, content.as_bytes()))
        .map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the token at `path`, creating it on first use as `prefix` + a
/// random secret.
fn token(path: &Path, prefix: &str) -> Result<String> {
    if let Some(t) = read(path)? {
        return Ok(t.trim().to_string());
    }
    let t = format!("{prefix}{}", random_token());
    write_private(path, &format!("{t}\n"))?;
    Ok(t)
}

/// The hex SHA-256 of the CA certificate (PEM), as node tokens carry it.
pub fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "peapod-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    Ok(params)
}

/// Names the serving certificate must cover.
fn server_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in extra {
        if !n.is_empty() && n != "0.0.0.0" && n != "::" && !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

impl Credentials {
    /// Loads the credentials under `dir/pki`, creating what is missing. The
    /// serving certificate is re-issued when it lacks one of `names`
    /// (e.g. after a new `--listen` address).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Credentials> {
        let pki = dir.join("pki");
        let (ca_cert, ca_key) = match (read(&pki.join("ca.crt"))?, read(&pki.join("ca.key"))?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let cert = ca_params()?.self_signed(&key)?;
                write_private(&pki.join("ca.key"), &key.serialize_pem())?;
                write_private(&pki.join("ca.crt"), &cert.pem())?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let names = server_names(names);
        // The names the stored certificate was issued for, one per line.
        let issued = read(&pki.join("server.names"))?.unwrap_or_default();
        let covered = names.iter().all(|n| issued.lines().any(|l| l == n));
        let existing = match (
            read(&pki.join("server.crt"))?,
            read(&pki.join("server.key"))?,
        ) {
            (Some(c), Some(k)) if covered => Some((c, k)),
            _ => None,
        };
        let (server_cert, server_key) = match existing {
            Some(pair) => pair,
            None => {
                let issuer = Issuer::from_ca_cert_pem(&ca_cert, KeyPair::from_pem(&ca_key)?)?;
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(names.clone())?;
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "peapod-apiserver");
                params.distinguished_name = dn;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.not_after = rcgen::date_time_ymd(2099, 1, 1);
                let cert = params.signed_by(&key, &issuer)?;
                write_private(&pki.join("server.key"), &key.serialize_pem())?;
                write_private(&pki.join("server.crt"), &cert.pem())?;
                write_private(&pki.join("server.names"), &names.join("\n"))?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let node_token = token(
            &dir.join("node-token"),
            &format!("K10{}::node:", ca_hash(&ca_cert)),
        )?;
        let (admin_cert, admin_key) =
            match (read(&pki.join("admin.crt"))?, read(&pki.join("admin.key"))?) {
                (Some(c), Some(k)) => (c, k),
                _ => {
                    let (c, k) = client_certificate(
                        &ca_cert,
                        &ca_key,
                        "admin",
                        &["system:masters".to_string()],
                    )?;
                    write_private(&pki.join("admin.key"), &k)?;
                    write_private(&pki.join("admin.crt"), &c)?;
                    (c, k)
                }
            };
        let sa_key = match read(&pki.join("sa.key"))? {
            Some(k) => k,
            None => {
                let k = KeyPair::generate()?.serialize_pem();
                write_private(&pki.join("sa.key"), &k)?;
                k
            }
        };
        Ok(Credentials {
            sa_key_pem: sa_key,
            admin_cert_pem: admin_cert,
            admin_key_pem: admin_key,
            ca_cert_pem: ca_cert,
            ca_key_pem: ca_key,
            server_cert_pem: server_cert,
            server_key_pem: server_key,
            admin_token: token(&pki.join("admin-token"), "")?,
            // Like k3s's: the CA's hash lets a joining node trust the server
            // it fetches the CA from.
            node_token,
        })
    }

    /// A kubeconfig for the admin user against `server` (an `https://` URL).
    pub fn kubeconfig(&self, server: &str) -> String {
        kubeconfig(
            server,
            &self.ca_cert_pem,
            "admin",
            &self.admin_cert_pem,
            &self.admin_key_pem,
        )
    }

    /// Writes the kubeconfig to `path`, readable by its owner only.
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<()> {
        write_private(path, &self.kubeconfig(server))
    }
}

/// A kubeconfig for `user` against `server`, authenticating with a client
/// certificate and key (PEM).
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: peapod
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user:?}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: peapod
  context:
    cluster: peapod
    user: {user:?}
current-context: peapod
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// At most this many groups fit one certificate (one subject
/// organization each, and rcgen writes one value per attribute type).
pub const MAX_CERTIFICATE_GROUPS: usize = 2;

/// A client certificate for `user` in `groups` (subject CN and O, as
/// kube-apiserver reads them), signed by the cluster CA, valid a year.
pub fn client_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    user: &str,
    groups: &[String],
) -> Result<(String, String)> {
    if groups.len() > MAX_CERTIFICATE_GROUPS {
        return Err(PkiError::TooManyGroups(groups.len()));
    }
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    // The second organization under its OID spelled out: a second entry
    // of the same attribute type (rcgen keeps one per type).
    let types = [
        DnType::OrganizationName,
        DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (ty, group) in types.into_iter().zip(groups) {
        dn.push(ty, group.as_str());
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // An hour back, for clocks a little behind; a year on, as kubeadm's.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate and key for node `name` at `ips`, signed by
/// the cluster CA: the API server checks it before it sends the node
/// anything (as `--kubelet-certificate-authority` makes kube-apiserver).
pub fn node_serving(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    name: &str,
    ips: &[std::net::IpAddr],
) -> Result<(String, String)> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("system:node:{name}"));
    dn.push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_persist_and_reissue_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = Credentials::load_or_create(dir.path(), &["10.0.0.1".into()]).unwrap();
        let b = Credentials::load_or_create(dir.path(), &["10.0.0.1".into()]).unwrap();
        assert_eq!(a.admin_token, b.admin_token);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        assert_ne!(a.admin_token, a.node_token);
        let c = Credentials::load_or_create(dir.path(), &["10.0.0.2".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.server_cert_pem, c.server_cert_pem);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        assert!(
            a.kubeconfig("https://127.0.0.1:6443")
                .contains("client-certificate-data: ")
        );
    }

    #[test]
    fn node_serving_certificates_are_signed_by_the_ca_for_the_node() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::load_or_create(dir.path(), &[]).unwrap();
        let ip = "10.1.2.3".parse().unwrap();
        let (cert, _key) = node_serving(&c.ca_cert_pem, &c.ca_key_pem, "n1", &[ip]).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let ca =
            rustls::pki_types::CertificateDer::from_pem_slice(c.ca_cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for (name, ok) in [("n1", true), ("10.1.2.3", true), ("n2", false)] {
            let server = rustls::pki_types::ServerName::try_from(name).unwrap();
            assert_eq!(
                verifier
                    .verify_server_cert(&der, &[], &server, &[], now)
                    .is_ok(),
                ok,
                "{name}"
            );
        }
    }
}
