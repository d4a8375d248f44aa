//! Joining a cluster with a node token: fetch the cluster CA from the
//! server, check it against the hash the token carries (so a node never
//! trusts a server that merely answers at the address), then talk to the
//! API over verified TLS with the token as bearer.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::Digest;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("reading the token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid server URL {0:?}")]
    Url(String),
    #[error("fetching the cluster CA from {server}: {source}")]
    Fetch { server: String, source: kube::Error },
    #[error("the CA served by {0} does not match the hash in the node token")]
    Mismatch(String),
    #[error("the CA served by the server is not a PEM certificate")]
    Pem,
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// Reads a token file (the `node-token` the server wrote).
pub fn read_token(path: &Path) -> Result<String, JoinError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| JoinError::Token {
            path: path.display().to_string(),
            source,
        })
}

/// The CA hash in a `K10<hash>::...` token, if it has one.
fn pinned_hash(token: &str) -> Option<&str> {
    token.strip_prefix("K10")?.split("::").next()
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long the CA fetch may wait for an answer.
const BOOTSTRAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long any API response may go silent. Watches are asked for
/// bookmarks (every 60 s here) and end within 290 s, so only a server
/// that stopped answering goes past it (kube-rs's former default).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(295);

/// An API client for `server` authenticated with `token`.
pub async fn client(server: &str, token: &str) -> Result<kube::Client, JoinError> {
    let url: http::Uri = server.parse().map_err(|_| JoinError::Url(server.into()))?;
    let mut bootstrap = kube::Config::new(url.clone());
    bootstrap.accept_invalid_certs = true;
    // A server that accepts and then says nothing must not hold the join.
    bootstrap.read_timeout = Some(BOOTSTRAP_TIMEOUT);
    let ca = kube::Client::try_from(bootstrap)?
        .request_text(
            http::Request::get("/cacerts")
                .body(Vec::new())
                .expect("a valid request"),
        )
        .await
        .map_err(|source| JoinError::Fetch {
            server: server.into(),
            source,
        })?;
    if let Some(hash) = pinned_hash(token)
        && sha256_hex(ca.as_bytes()) != hash
    {
        return Err(JoinError::Mismatch(server.into()));
    }
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(ca.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| JoinError::Pem)?;
    if certs.is_empty() {
        return Err(JoinError::Pem);
    }
    let mut config = kube::Config::new(url);
    config.root_cert = Some(certs);
    config.auth_info.token = Some(secrecy::SecretString::from(token.to_string()));
    config.read_timeout = Some(READ_TIMEOUT);
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_pin_the_ca_hash() {
        assert_eq!(pinned_hash("K10abc::node:secret"), Some("abc"));
        assert_eq!(pinned_hash("plain"), None);
    }
}
