//! Bearer-token authentication: the admin token from the kubeconfig and
//! the node join token.

use axum::http::{HeaderMap, header};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
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

    /// The user a request's `Authorization: Bearer` header names, if any.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = peapod_common::token::bearer(value)?;
        self.tokens
            .iter()
            .find(|(t, _)| peapod_common::token::matches(t, token))
            .map(|(_, u)| u.clone())
    }
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
        assert_eq!(auth.authenticate(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(auth.authenticate(&h), None);
        h.insert(header::AUTHORIZATION, "Basic secret".parse().unwrap());
        assert_eq!(auth.authenticate(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert_eq!(auth.authenticate(&h), Some(admin));
    }
}
