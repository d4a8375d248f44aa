//! Static pods: manifests in the node's manifests directory (`*.yaml`,
//! `*.yml`, `*.json`) that the node runs on its own say. Each appears in
//! the API as a mirror pod named `<name>-<node>`, bound to this node, owned
//! by the Node, and marked with the `kubernetes.io/config.mirror`
//! annotation; the pod worker runs it like any other pod. Editing a
//! manifest replaces the pod, removing the file removes it, and a mirror
//! pod deleted through the API comes back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use sha2::Digest;

use super::config::AgentConfig;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// How often the directory is read again.
const RESYNC: Duration = Duration::from_secs(5);

/// The mirror pods the manifests in `dir` ask for, by name.
pub fn desired(dir: &Path, config: &AgentConfig, node_uid: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let parsed: Result<Value, String> = if ext == "json" {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_yaml::from_str(&text).map_err(|e| e.to_string())
        };
        let mut pod = match parsed {
            Ok(v) if v["kind"] == "Pod" => v,
            Ok(_) => {
                tracing::warn!("static pod manifest {} is not a Pod", path.display());
                continue;
            }
            Err(e) => {
                tracing::warn!("static pod manifest {}: {e}", path.display());
                continue;
            }
        };
        let hash: String = sha2::Sha256::digest(text.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let Some(name) = pod["metadata"]["name"].as_str().map(String::from) else {
            tracing::warn!("static pod manifest {} has no name", path.display());
            continue;
        };
        let full = format!("{name}-{}", config.name);
        let meta = pod["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        meta.insert("name".into(), json!(full));
        meta.entry("namespace").or_insert(json!("default"));
        let annotations = meta.entry("annotations").or_insert(json!({}));
        annotations[MIRROR_ANNOTATION] = json!(hash);
        annotations[HASH_ANNOTATION] = json!(hash);
        annotations[SOURCE_ANNOTATION] = json!("file");
        meta.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "v1", "kind": "Node", "name": config.name, "uid": node_uid, "controller": true}]),
        );
        pod["spec"]["nodeName"] = json!(config.name);
        out.insert(full, pod);
    }
    out
}

/// Keeps the mirror pods in line with the manifests for as long as the
/// agent runs.
pub async fn run(client: kube::Client, config: AgentConfig) {
    loop {
        if let Err(e) = sync(&client, &config).await {
            tracing::debug!("static pods: {e}");
        }
        tokio::time::sleep(RESYNC).await;
    }
}

async fn sync(client: &kube::Client, config: &AgentConfig) -> Result<(), kube::Error> {
    let node_uid = Api::<Node>::all(client.clone())
        .get(&config.name)
        .await?
        .uid()
        .unwrap_or_default();
    let want = desired(&config.manifests_dir, config, &node_uid);
    let all: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.name);
    let have: Vec<Pod> = all
        .list(&ListParams::default().fields(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.annotations().contains_key(MIRROR_ANNOTATION))
        .collect();
    for pod in &have {
        let stale = match want.get(&pod.name_any()) {
            None => true,
            Some(w) => {
                w["metadata"]["annotations"][MIRROR_ANNOTATION].as_str()
                    != pod.annotations().get(MIRROR_ANNOTATION).map(String::as_str)
                    || w["metadata"]["namespace"].as_str() != pod.namespace().as_deref()
            }
        };
        if stale && pod.metadata.deletion_timestamp.is_none() {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            api.delete(&pod.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    for (name, pod) in want {
        let exists = have.iter().any(|p| {
            p.name_any() == name
                && p.namespace().as_deref() == pod["metadata"]["namespace"].as_str()
        });
        if exists {
            continue;
        }
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod: Pod = match serde_json::from_value(pod) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("static pod {name}: {e}");
                continue;
            }
        };
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => tracing::info!("static pod {ns}/{name} mirrored to the API"),
            // The old one is still terminating: the next pass creates it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => tracing::warn!("static pod {ns}/{name}: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_mirror_pods_bound_to_the_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let config = AgentConfig {
            name: "n1".into(),
            node_ip: "10.0.0.1".parse().unwrap(),
            data_dir: dir.path().into(),
            run_dir: dir.path().into(),
            exe: dir.path().into(),
            network_name: "peapod".into(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            kubelet_port: 0,
            token: String::new(),
            insecure_registries: vec![],
            labels: Default::default(),
            max_pods: 110,
            pod_pids_limit: None,
            container_log: Default::default(),
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            manifests_dir: dir.path().into(),
            ingress_port: 80,
            ingress_tls_port: 443,
            ingress_threads: 0,
            wasm_instance_pool: 0,
            sync_frequency: std::time::Duration::from_secs(60),
            eviction_interval: std::time::Duration::from_secs(10),
            wasm: false,
        };
        let want = desired(dir.path(), &config, "node-uid");
        assert_eq!(want.len(), 1);
        let pod = &want["web-n1"];
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert!(pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string());
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Node");
    }
}
