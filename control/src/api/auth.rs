//! Authentication: who is asking. A client certificate the cluster CA
//! signed (user = CN, groups = O, as kube-apiserver), or a bearer token
//! (the admin's, the controllers', the node join token); a request with
//! neither is `system:anonymous`, which RBAC grants almost nothing.

use axum::http::{HeaderMap, header};
use peapod_common::tls::ClientCertificate;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

pub const AUTHENTICATED: &str = "system:authenticated";
pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

impl User {
    pub fn anonymous() -> User {
        User {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
        }
    }

    /// A user with these groups and `system:authenticated`, as every
    /// authenticated user is.
    pub fn authenticated(name: &str, groups: &[String]) -> User {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        User {
            name: name.into(),
            groups,
        }
    }
}

#[derive(Clone, Default)]
pub struct Auth {
    tokens: Vec<(String, User)>,
}

impl Auth {
    pub fn new() -> Auth {
        Auth::default()
    }

    pub fn with_token(mut self, token: &str, user: User) -> Auth {
        self.tokens.push((token.to_string(), user));
        self
    }

    /// The user a request authenticates as; `None` when it carries a
    /// credential that is not valid (a 401), anonymous when it carries
    /// none. The certificate was verified against the cluster CA during
    /// the TLS handshake.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        certificate: Option<&ClientCertificate>,
    ) -> Option<User> {
        if let Some(user) = certificate.and_then(|c| from_certificate(&c.0)) {
            return Some(user);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Some(User::anonymous());
        };
        let token = peapod_common::token::bearer(value.to_str().ok()?)?;
        self.tokens
            .iter()
            .find(|(t, _)| peapod_common::token::matches(t, token))
            .map(|(_, u)| u.clone())
    }
}

/// The user a verified client certificate names: its subject's common
/// name, and its organizations as groups.
fn from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(String::from)
        .collect();
    Some(User::authenticated(name, &groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_bearer_tokens_authenticate() {
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let auth = Auth::new().with_token("secret", admin.clone());
        let mut h = HeaderMap::new();
        assert_eq!(auth.authenticate(&h, None), Some(User::anonymous()));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(auth.authenticate(&h, None), None);
        h.insert(header::AUTHORIZATION, "Basic secret".parse().unwrap());
        assert_eq!(auth.authenticate(&h, None), None);
        h.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert_eq!(auth.authenticate(&h, None), Some(admin));
    }

    #[test]
    fn a_certificate_names_its_user_and_groups() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "alice");
        dn.push(rcgen::DnType::OrganizationName, "dev");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let presented = ClientCertificate(std::sync::Arc::new(cert.der().clone()));
        let user = Auth::new()
            .authenticate(&HeaderMap::new(), Some(&presented))
            .unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, vec!["dev", AUTHENTICATED]);
    }
}
