//! Helpers the workload controllers share: owner references, pod states,
//! selectors, pod templates.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, ObjectList};

use crate::selector;

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A controller owner reference pointing at `owner`.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The selector in the `-l` string form.
pub fn selector_string(sel: &LabelSelector) -> String {
    let value = serde_json::to_value(sel).unwrap_or_default();
    selector::LabelSelector::from_k8s(Some(&value))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Whether a structured selector matches a label map (a nil selector matches nothing).
pub fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let value = sel.map(|s| serde_json::to_value(s).unwrap_or_default());
    let Ok(s) = selector::LabelSelector::from_k8s(value.as_ref()) else {
        return false;
    };
    s.matches(&labels.cloned().unwrap_or_default())
}

/// Lists objects matching a structured selector.
pub async fn list_selected<K>(api: &Api<K>, sel: &LabelSelector) -> kube::Result<ObjectList<K>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default().labels(&selector_string(sel)))
        .await
}

/// Deletes `name`; one that is already gone is no error (another writer,
/// or an earlier reconcile, got there first).
pub async fn delete<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> kube::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Counts towards a controller's replicas: not finished, not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !is_terminating(&pod.metadata) && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time
        .as_ref()
        .is_some_and(|t| now.as_second() - t.0.as_second() >= i64::from(min_ready_seconds))
}

/// A new pod from a controller's template.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    generate_name: &str,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// FNV-1a, 32 bits: Kubernetes' hash for pod templates and collision counts.
pub fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// A hash rendered with the alphabet Kubernetes uses in generated names.
pub fn safe_encode(mut n: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize]);
        n /= ALPHABET.len() as u32;
        if n == 0 {
            break;
        }
    }
    String::from_utf8(out).expect("ascii")
}

/// Stable hash of a pod template (the `pod-template-hash` label), changing
/// with the collision count when two templates collide.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let mut bytes = serde_json::to_vec(&t).unwrap_or_default();
    // No collisions yet, whether recorded as 0 or not at all, hash alike.
    if let Some(c) = collision_count.filter(|c| *c > 0) {
        bytes.extend(c.to_le_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// Whether two pod templates are the same, ignoring `pod-template-hash`.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

pub use peapod_common::time::time_now;
