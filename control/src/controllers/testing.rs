//! A cluster for controllers' reconcile tests: the real API router over a
//! redb store in a temporary directory, reached through the in-process
//! client, so a reconcile reads and writes exactly as it does in the
//! server. Nothing else runs (no other controller, no node): a test steps
//! one controller by calling its reconcile and plays the rest of the
//! cluster (a pod becoming ready, a node joining) by writing objects.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Context, Settings};
use crate::api::auth::{Auth, User};
use crate::objects::Objects;
use crate::store::{RedbStore, Store};
use peapod_common::events::Recorder;

const TOKEN: &str = "reconcile-test";

pub struct Cluster {
    pub ctx: Arc<Context>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("open the store"));
        let objects = Objects::new(store);
        crate::server::bootstrap(&objects).await.expect("bootstrap");
        let auth = Auth::new().with_token(
            TOKEN,
            User {
                name: "system:kube-controller-manager".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        );
        let api = Arc::new(crate::api::Api::new(
            objects,
            auth,
            "127.0.0.1:6443".into(),
            String::new(),
            String::new(),
        ));
        let client = super::client::in_process(api, TOKEN);
        let ctx = Arc::new(Context {
            recorder: Recorder::new(client.clone(), "reconcile-test"),
            client,
            settings: Settings::default(),
        });
        Cluster { ctx, _dir: dir }
    }

    /// `K`s in the `default` namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), "default")
    }

    /// Creates `object` (JSON in the shape of a manifest) in `default`.
    pub async fn create<K>(&self, object: Value) -> Arc<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(object).expect("a valid object");
        Arc::new(
            self.api::<K>()
                .create(&PostParams::default(), &object)
                .await
                .expect("create"),
        )
    }

    /// The current state of `name`, as the next reconcile would get it.
    pub async fn get<K>(&self, name: &str) -> Arc<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Arc::new(self.api::<K>().get(name).await.expect("get"))
    }

    /// Every `K` in `default`, by name.
    pub async fn list<K>(&self) -> Vec<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let mut items = self
            .api::<K>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        items
    }

    /// Merges `status` into `name`'s status, as its kubelet or controller would.
    pub async fn set_status<K>(&self, name: &str, status: Value)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
            .expect("patch status");
    }

    /// Plays the kubelet: pod `name` is Running and Ready.
    pub async fn pod_ready(&self, name: &str) {
        let ready = serde_json::json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]});
        self.set_status::<k8s_openapi::api::core::v1::Pod>(name, ready)
            .await;
    }
}
