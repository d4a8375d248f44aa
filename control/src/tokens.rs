//! ServiceAccount tokens: JWTs the server signs (ES256, its own key in
//! `<data dir>/pki/sa.key`) with kube-apiserver's claims (issuer,
//! `system:serviceaccount:<ns>:<name>` subject, audiences, expiry, and
//! the ServiceAccount and the Pod or Secret it is bound to), verified on
//! every request that presents one.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer and the audience of tokens meant for this API server.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubernetes {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Kubernetes,
}

impl Claims {
    /// The user the token authenticates as, with kube-apiserver's groups.
    pub fn user(&self) -> crate::api::auth::User {
        let ns = &self.kubernetes.namespace;
        crate::api::auth::User::authenticated(
            &self.sub,
            &[
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ],
        )
    }
}

pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The key's id: the SHA-256 of its public point.
    kid: String,
    /// The public point, uncompressed (`04 || x || y`).
    public_point: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the signing key: {0}")]
    Key(String),
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

impl Signer {
    /// From a PKCS#8 PEM P-256 key (as rcgen writes them).
    pub fn from_pem(key_pem: &str) -> Result<Signer, TokenError> {
        use base64::Engine;
        use sha2::Digest;
        let pair = rcgen::KeyPair::from_pem(key_pem).map_err(|e| TokenError::Key(e.to_string()))?;
        let public_pem = pair.public_key_pem();
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(pair.public_key_raw()));
        Ok(Signer {
            encoding: EncodingKey::from_ec_pem(key_pem.as_bytes())
                .map_err(|e| TokenError::Key(e.to_string()))?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())
                .map_err(|e| TokenError::Key(e.to_string()))?,
            kid,
            public_point: pair.public_key_raw().to_vec(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The claims of a token this server signed, unexpired, for one of
    /// `audiences`. (Whether what it is bound to still exists is the
    /// caller's to check, against the store.)
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(audiences);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.leeway = 0;
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)?.claims)
    }
}

impl Signer {
    /// The OIDC discovery document (`/.well-known/openid-configuration`),
    /// for audiences outside the cluster that verify these tokens.
    pub fn openid_configuration(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> serde_json::Value {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (x, y) = self
            .public_point
            .get(1..)
            .map(|xy| xy.split_at(xy.len() / 2))
            .unwrap_or_default();
        serde_json::json!({"keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": b64(x), "y": b64(y),
        }]})
    }
}

/// Whether a bearer token looks like a JWT (three dot-separated parts),
/// not one of the static tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64, aud: &str) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            iss: ISSUER.into(),
            sub: subject("ns", "bot"),
            aud: vec![aud.into()],
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "1".into(),
            kubernetes: Kubernetes {
                namespace: "ns".into(),
                serviceaccount: ObjectRef {
                    name: "bot".into(),
                    uid: "u".into(),
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn tokens_verify_only_with_the_key_audience_and_time_they_were_made_for() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let signer = Signer::from_pem(&key).unwrap();
        let t = signer.sign(&claims(600, ISSUER)).unwrap();
        assert!(looks_like_jwt(&t));
        let c = signer.verify(&t, &[ISSUER]).unwrap();
        assert_eq!(c.user().name, "system:serviceaccount:ns:bot");
        assert!(
            c.user()
                .groups
                .contains(&"system:serviceaccounts:ns".to_string())
        );
        assert!(signer.verify(&t, &["vault"]).is_err());
        let expired = signer.sign(&claims(-10, ISSUER)).unwrap();
        assert!(signer.verify(&expired, &[ISSUER]).is_err());
        let other = Signer::from_pem(&rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(other.verify(&t, &[ISSUER]).is_err());
        // A token with its payload edited fails its signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
        assert!(signer.verify(&forged, &[ISSUER]).is_err());
    }
}
