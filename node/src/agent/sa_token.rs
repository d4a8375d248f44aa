//! Projected ServiceAccount tokens, as the kubelet's token manager: each
//! `serviceAccountToken` projection of a pod is a token the node requests
//! through the TokenRequest API, bound to the pod (so it dies with it),
//! and requests again once 80 % of its life has passed or it is a day old.
//! A failed renewal keeps the token it had until that one expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

/// What one projection asks for: its audience ("" for the API's own) and
/// lifetime. Two projections asking the same share a token.
pub fn key(p: &ServiceAccountTokenProjection) -> String {
    format!(
        "{}|{}",
        p.audience.as_deref().unwrap_or_default(),
        p.expiration_seconds.unwrap_or(3600)
    )
}

/// The token projections of `pod`'s volumes.
fn projections(pod: &Pod) -> Vec<ServiceAccountTokenProjection> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.clone())
        .collect()
}

struct Held {
    token: Vec<u8>,
    renew_at: Instant,
    expires_at: Instant,
}

/// The tokens of one pod, by [`key`].
#[derive(Default)]
pub struct Tokens {
    held: HashMap<String, Held>,
    failed: HashMap<String, String>,
}

impl std::fmt::Debug for Tokens {
    // Never print a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("held", &self.held.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tokens {
    /// The token for projection `key`, or why there is none.
    pub fn get(&self, key: &str) -> Result<&[u8], String> {
        match self.held.get(key) {
            Some(h) if h.expires_at > Instant::now() => Ok(&h.token),
            _ => Err(self
                .failed
                .get(key)
                .cloned()
                .unwrap_or_else(|| "no token requested yet".into())),
        }
    }

    /// Requests the tokens `pod` projects that are missing or due.
    pub async fn refresh(&mut self, client: &kube::Client, pod: &Pod) {
        let now = Instant::now();
        for p in projections(pod) {
            let key = key(&p);
            if self.held.get(&key).is_some_and(|h| h.renew_at > now) {
                continue;
            }
            match request(client, pod, &p).await {
                Ok(held) => {
                    self.failed.remove(&key);
                    self.held.insert(key, held);
                }
                Err(e) => {
                    tracing::warn!(
                        "pod {}/{}: requesting its ServiceAccount token: {e}",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any()
                    );
                    self.failed
                        .insert(key, format!("failed to fetch token: {e}"));
                }
            }
        }
    }
}

async fn request(
    client: &kube::Client,
    pod: &Pod,
    p: &ServiceAccountTokenProjection,
) -> Result<Held, String> {
    let ns = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let seconds = p.expiration_seconds.unwrap_or(3600);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: p
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..Default::default()
    };
    let sent = Instant::now();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let answer = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        })?;
    let status = answer.status.ok_or("the API server sent no token")?;
    // Its life from what the server granted, measured on this clock.
    let granted = status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    let life = Duration::from_secs(granted.clamp(0, seconds.max(0)) as u64);
    Ok(Held {
        token: status.token.into_bytes(),
        renew_at: sent + (life * 4 / 5).min(Duration::from_secs(24 * 3600)),
        expires_at: sent + life,
    })
}
