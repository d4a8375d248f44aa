//! Writing core/v1 Events, the ones `kubectl describe` lists. Repeats of
//! the same event on the same object bump its count instead of adding a
//! new object, as Kubernetes' event recorder does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::time_now;

/// (object uid, reason, message) → (namespace, event name, count).
type Seen = HashMap<(String, String, String), (String, String, i32)>;

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Normal,
    Warning,
}

/// A reference to `obj` for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            seen: Arc::default(),
        }
    }

    /// Records an event; failures are logged, never returned (an event is
    /// a courtesy, not part of reconciling).
    pub async fn publish(&self, about: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        if let Err(e) = self.try_publish(about, kind, reason, message).await {
            tracing::debug!("event {reason} not recorded: {e}");
        }
    }

    async fn try_publish(
        &self,
        about: &ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> kube::Result<()> {
        let namespace = about.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = (
            about.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let repeat = self.seen.lock().expect("lock").get(&key).cloned();
        let now = time_now();
        if let Some((ns, name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen
                    .lock()
                    .expect("lock")
                    .insert(key, (ns, name, count + 1));
                return Ok(());
            }
        }
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", about.name.clone().unwrap_or_default())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: about.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(
                match kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .to_string(),
            ),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &event).await?;
        let mut seen = self.seen.lock().expect("lock");
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert(
            key,
            (namespace, created.metadata.name.unwrap_or_default(), 1),
        );
        Ok(())
    }
}
