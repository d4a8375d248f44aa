//! Namespace lifecycle: every namespace gets a `default` ServiceAccount;
//! a namespace being deleted has its contents deleted, then its
//! `kubernetes` finalizer removed so that it goes away.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::objects::{DeleteOptions, ListOptions, Objects, Target};
use crate::resources::Subresource;

const RESYNC: Duration = Duration::from_secs(2);

/// Runs until the store's watch ends.
pub async fn run(objects: Objects) {
    let Some(ns_type) = objects.catalog().lookup("", "v1", "namespaces") else {
        return;
    };
    loop {
        let listed = match objects.list(ns_type, None, &ListOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("namespace controller: {e}");
                tokio::time::sleep(RESYNC).await;
                continue;
            }
        };
        let mut terminating = false;
        for ns in &listed.items {
            terminating |= ns["metadata"].get("deletionTimestamp").is_some();
            if let Err(e) = reconcile(&objects, ns).await {
                tracing::warn!("namespace {}: {e}", ns["metadata"]["name"]);
            }
        }
        // Wait for a change, or poll while a deletion is in progress.
        let Ok(mut events) = objects.watch(ns_type, None, listed.revision) else {
            continue;
        };
        let wait = if terminating {
            RESYNC
        } else {
            Duration::from_secs(300)
        };
        let _ = tokio::time::timeout(wait, events.next()).await;
    }
}

async fn reconcile(objects: &Objects, ns: &Value) -> ApiResult<()> {
    let name = ns["metadata"]["name"].as_str().unwrap_or_default();
    if ns["metadata"].get("deletionTimestamp").is_none() {
        return ensure_default_service_account(objects, name).await;
    }
    let mut remaining = 0;
    for rt in objects.catalog().all().iter().filter(|rt| rt.namespaced) {
        let listed = objects
            .list(rt, Some(name), &ListOptions::default())
            .await?;
        for o in &listed.items {
            remaining += 1;
            if o["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let target = Target {
                rt,
                namespace: Some(name),
                name: crate::objects::name_of(o),
            };
            match objects.delete(target, &DeleteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    let ns_type = objects
        .catalog()
        .lookup("", "v1", "namespaces")
        .expect("namespaces are served");
    let target = Target {
        rt: ns_type,
        namespace: None,
        name,
    };
    let mut finalized = ns.clone();
    let finalizers: Vec<Value> = ns["spec"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != "kubernetes")
        .cloned()
        .collect();
    finalized["spec"]["finalizers"] = json!(finalizers);
    match objects
        .update(
            target,
            finalized,
            Some(Subresource::Finalize),
            Default::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the `default` ServiceAccount of `namespace` unless it exists.
pub async fn ensure_default_service_account(objects: &Objects, namespace: &str) -> ApiResult<()> {
    let Some(sa) = objects.catalog().lookup("", "v1", "serviceaccounts") else {
        return Ok(());
    };
    let target = Target {
        rt: sa,
        namespace: Some(namespace),
        name: "default",
    };
    match objects.get(target).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => {
            let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            match objects
                .create(sa, Some(namespace), body, Default::default())
                .await
            {
                Ok(_) => Ok(()),
                // Raced with another writer, or the namespace just started terminating.
                Err(e) if e.code == 409 || e.code == 403 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}
