//! `peapod kubeconfig --user NAME --group G`: a kubeconfig for another
//! user, with a client certificate the cluster CA signs (what that user
//! may do is up to the RBAC bindings that name them or their groups).

use std::path::Path;

use crate::pki::{self, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("reading {0}: {1} (is this the server's --data-dir, and has it started once?)")]
    Read(String, std::io::Error),
    #[error("no server URL in {0}; pass --server")]
    NoServer(String),
    #[error("the user name must not be empty")]
    NoName,
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The kubeconfig for `user` in `groups`, against `server` (by default the
/// one in the admin kubeconfig the server wrote to `data_dir`).
pub fn kubeconfig(
    data_dir: &Path,
    user: &str,
    groups: &[String],
    server: Option<&str>,
) -> Result<String, UserError> {
    if user.trim().is_empty() {
        return Err(UserError::NoName);
    }
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| UserError::Read(path.display().to_string(), e))
    };
    let ca_cert = read("pki/ca.crt")?;
    let ca_key = read("pki/ca.key")?;
    let server = match server {
        Some(s) => s.to_string(),
        None => read("kubeconfig")?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(String::from))
            .ok_or_else(|| {
                UserError::NoServer(data_dir.join("kubeconfig").display().to_string())
            })?,
    };
    let (cert, key) = pki::client_certificate(&ca_cert, &ca_key, user, groups)?;
    Ok(pki::kubeconfig(&server, &ca_cert, user, &cert, &key))
}
