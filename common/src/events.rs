//! Writing core/v1 Events, the ones `kubectl describe` lists. Repeats of
//! the same event on the same object bump its count instead of adding a
//! new object, as Kubernetes' event recorder does.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::time::time_now;

/// (object uid, reason, message) → (namespace, event name, count).
type Seen = HashMap<(String, String, String), (String, String, i32)>;

/// Hands events to a background writer so that no reconcile or pod start
/// waits for an event's write; like Kubernetes' event broadcaster, events
/// beyond a full queue are dropped.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    about: ObjectReference,
    kind: Kind,
    reason: String,
    message: String,
}

/// Events waiting to be written at most; more are dropped.
const QUEUE: usize = 4096;

/// Writes the queued events in order.
struct Writer {
    client: kube::Client,
    component: String,
    seen: Seen,
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
    /// A recorder whose writer runs on the current Tokio runtime.
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        let (queue, mut pending) = mpsc::channel::<Pending>(QUEUE);
        let mut writer = Writer {
            client,
            component: component.to_string(),
            seen: Seen::new(),
        };
        tokio::spawn(async move {
            while let Some(p) = pending.recv().await {
                if let Err(e) = writer
                    .try_publish(&p.about, p.kind, &p.reason, &p.message)
                    .await
                {
                    tracing::debug!("event {} not recorded: {e}", p.reason);
                }
            }
        });
        Recorder { queue }
    }

    /// Records an event in the background; it is a courtesy, not part of
    /// reconciling, so failures are logged, never returned.
    pub fn publish(&self, about: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        let pending = Pending {
            about: about.clone(),
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if self.queue.try_send(pending).is_err() {
            tracing::debug!("event {reason} dropped: the event queue is full");
        }
    }
}

impl Writer {
    async fn try_publish(
        &mut self,
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
        let repeat = self.seen.get(&key).cloned();
        let now = time_now();
        if let Some((ns, name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen.insert(key, (ns, name, count + 1));
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
        if self.seen.len() > 10_000 {
            self.seen.clear();
        }
        self.seen.insert(
            key,
            (namespace, created.metadata.name.unwrap_or_default(), 1),
        );
        Ok(())
    }
}
