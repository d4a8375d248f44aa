//! What authorization costs: the same durable creates and lists, run in
//! alternating rounds by the admin (`system:masters`, which RBAC never
//! evaluates) and by a user RBAC authorizes through an `edit` RoleBinding,
//! among a few hundred other bindings. Prints the ratio of the user's
//! figures to the admin's. Run with `cargo run --release -p peapod-bench --bin authz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use peapod_bench::{Server, ms, summarize};
use serde_json::json;

const CREATES: usize = 3_000;
const CLIENTS: usize = 16;
const ROUNDS: usize = 3;
/// Bindings for other users, so the authorizer looks through a realistic set.
const OTHER_BINDINGS: usize = 300;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "authz"}}, "data": {"k": "v"}}))
    .expect("configmap")
}

fn binding(name: &str, user: &str, role: &str) -> serde_json::Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
}

/// Creates/s of `CREATES` config maps from `CLIENTS` concurrent clients.
async fn creates(cms: &Api<ConfigMap>, prefix: &str) -> anyhow::Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (cms, next, prefix) = (cms.clone(), next.clone(), prefix.to_string());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= CREATES {
                        return;
                    }
                    cms.create(
                        &PostParams::default(),
                        &config_map(&format!("{prefix}-{i}")),
                    )
                    .await
                    .expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(CREATES as f64 / started.elapsed().as_secs_f64())
}

async fn list_p50(cms: &Api<ConfigMap>) -> anyhow::Result<Duration> {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        cms.list(&ListParams::default().labels("bench=authz"))
            .await?;
        samples.push(t.elapsed());
    }
    Ok(summarize(samples).p50)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start()?;
    let admin = server.client().await?;
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for i in 0..OTHER_BINDINGS {
        let b = binding(&format!("other-{i}"), &format!("user-{i}"), "view");
        if i % 3 == 0 {
            crbs.create(&PostParams::default(), &serde_json::from_value(b)?)
                .await?;
        } else {
            rbs.create(&PostParams::default(), &serde_json::from_value(b)?)
                .await?;
        }
    }
    rbs.create(
        &PostParams::default(),
        &serde_json::from_value(binding("editor", "editor", "edit"))?,
    )
    .await?;
    let editor = server.client_as("editor", &["dev"]).await?;
    let as_admin: Api<ConfigMap> = Api::namespaced(admin, "default");
    let as_editor: Api<ConfigMap> = Api::namespaced(editor, "default");
    // Until the binding has reached the authorizer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while as_editor
        .list(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the editor's binding never took");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut admin_rates, mut editor_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        admin_rates.push(creates(&as_admin, &format!("admin-{round}")).await?);
        editor_rates.push(creates(&as_editor, &format!("editor-{round}")).await?);
    }
    let (mut admin_lists, mut editor_lists) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        admin_lists.push(list_p50(&as_admin).await?);
        editor_lists.push(list_p50(&as_editor).await?);
    }
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    println!(
        "creates/s ({CREATES} config maps from {CLIENTS} clients, {ROUNDS} alternating rounds): admin {:?}, RBAC-authorized user {:?}; ratio user/admin = {:.3} (goal >= 0.95)",
        admin_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        editor_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        sum(&editor_rates) / sum(&admin_rates)
    );
    let total = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
    println!(
        "list of {} config maps, p50 of 5, {ROUNDS} rounds: admin {:?}, user {:?}; ratio admin time / user time = {:.3} (goal >= 0.95)",
        CREATES * ROUNDS * 2,
        admin_lists.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        editor_lists.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        total(&admin_lists) / total(&editor_lists)
    );
    Ok(())
}
