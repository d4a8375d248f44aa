//! List and watch with label and field selectors, and `limit`/`continue`
//! pagination.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Objects, store_error};
use crate::error::{ApiError, ApiResult};
use crate::resources::{ResourceType, fields};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Object, WatchStream};

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Object>,
    pub revision: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

impl ListOptions {
    /// Checks that every field in the field selector is one the kind supports.
    pub fn check(&self, rt: &ResourceType) -> ApiResult<()> {
        for r in &self.fields.requirements {
            if !fields::supported(rt, &r.field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(())
    }

    pub fn matches(&self, rt: &ResourceType, object: &Value) -> bool {
        self.labels.matches_object(object)
            && self
                .fields
                .matches(|field| fields::value(rt, object, field))
    }
}

/// Where a paginated list resumes: the key to start from.
fn decode_continue(token: &str) -> ApiResult<(u64, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let start = v["start"].as_str().map(String::from).ok_or_else(bad)?;
    let revision = v["rv"].as_u64().ok_or_else(bad)?;
    Ok((revision, start))
}

fn encode_continue(revision: u64, start: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start}).to_string())
}

impl Objects {
    pub async fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        opts.check(rt)?;
        // A name in the field selector narrows the scan to one key.
        let prefix = rt.namespace_prefix(namespace);
        let (all, current) = self
            .store
            .list(&prefix)
            .await
            .map_err(|e| store_error(rt, "", e))?;
        // Every page of a paginated list reports the revision of the first
        // page. Later pages show newer states, but a watch from that
        // revision replays every change made since, so a client that lists
        // page by page and then watches misses nothing.
        let (revision, start) = match &opts.continue_token {
            Some(t) if !t.is_empty() => {
                let (rv, start) = decode_continue(t)?;
                (rv, Some(start))
            }
            _ => (current, None),
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        let candidates = all.iter().filter(|o| {
            start
                .as_ref()
                .is_none_or(|s| object_key(rt, o).as_str() >= s.as_str())
        });
        let mut matching = candidates.filter(|o| opts.matches(rt, o));
        for o in matching.by_ref() {
            if opts.limit.is_some_and(|l| l > 0 && items.len() == l) {
                continue_token = Some(encode_continue(revision, &object_key(rt, o)));
                break;
            }
            items.push(o.clone());
        }
        if continue_token.is_some() {
            remaining = Some(1 + matching.count());
        }
        Ok(ListResult {
            items,
            revision,
            continue_token,
            remaining,
        })
    }

    /// Watches objects of `rt` (in `namespace`, or all) changed after
    /// revision `after`; events whose objects do not match are dropped.
    pub fn watch(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        after: u64,
    ) -> ApiResult<WatchStream> {
        self.store
            .watch(&rt.namespace_prefix(namespace), after)
            .map_err(|e| store_error(rt, "", e))
    }
}

fn object_key(rt: &ResourceType, o: &Value) -> String {
    let ns = super::namespace_of(o);
    rt.key((!ns.is_empty()).then_some(ns), super::name_of(o))
}

/// Keeps only the events of a watch that match the options.
///
/// Like Kubernetes' watch cache filter: an object that stops matching is
/// reported as DELETED, one that starts matching as ADDED.
pub fn filter_watch(
    rt: &'static ResourceType,
    stream: WatchStream,
    opts: ListOptions,
) -> WatchStream {
    use crate::store::{Event, EventType};
    use std::sync::Arc;
    if opts.labels.is_everything() && opts.fields.requirements.is_empty() {
        return stream;
    }
    // Last known match state per key, for transitions.
    let mut seen: std::collections::HashMap<Arc<str>, bool> = std::collections::HashMap::new();
    Box::pin(stream.filter_map(move |item| {
        let out = match item {
            Err(e) => Some(Err(e)),
            Ok(event) => {
                let now = event.kind != EventType::Deleted && opts.matches(rt, &event.object);
                let before = match event.kind {
                    EventType::Added => false,
                    // An unknown key matched before if its last state matches.
                    _ => *seen
                        .get(&event.key)
                        .unwrap_or(&opts.matches(rt, &event.object)),
                };
                if event.kind == EventType::Deleted {
                    seen.remove(&event.key);
                } else {
                    seen.insert(event.key.clone(), now);
                }
                let kind = match (before, now) {
                    (false, false) => None,
                    (false, true) => Some(EventType::Added),
                    (true, true) => Some(EventType::Modified),
                    (true, false) => Some(EventType::Deleted),
                };
                kind.map(|kind| {
                    Ok(if kind == event.kind {
                        event
                    } else {
                        Arc::new(Event {
                            kind,
                            ..(*event).clone()
                        })
                    })
                })
            }
        };
        futures::future::ready(out)
    }))
}
