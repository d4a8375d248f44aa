//! Storage a pod brings with it: registry credentials from
//! `imagePullSecrets`, and PersistentVolumeClaims, bound on first use to a
//! node-local directory (a minimal local-path provisioner: the claim gets a
//! hostPath PersistentVolume pinned to this node).

use std::path::PathBuf;

use base64::Engine;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use peapod_runtimes::image::Credentials;
use serde_json::{Value, json};

use super::NodeCtx;
use super::env::Data;
use super::volumes::ClaimPaths;

/// Credentials in a `kubernetes.io/dockerconfigjson` (or legacy
/// `.dockercfg`) Secret's data.
pub fn docker_credentials(data: &Data) -> Vec<Credentials> {
    let parsed: Option<Value> = data
        .get(".dockerconfigjson")
        .or_else(|| data.get(".dockercfg"))
        .and_then(|d| serde_json::from_slice(d).ok());
    let Some(config) = parsed else {
        return Vec::new();
    };
    let auths = config.get("auths").unwrap_or(&config);
    let Some(auths) = auths.as_object() else {
        return Vec::new();
    };
    auths
        .iter()
        .filter_map(|(host, entry)| {
            let (username, password) = match (entry.get("username"), entry.get("password")) {
                (Some(u), Some(p)) => (u.as_str()?.to_string(), p.as_str()?.to_string()),
                _ => {
                    let auth = entry.get("auth")?.as_str()?;
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth)
                        .ok()?;
                    let text = String::from_utf8(decoded).ok()?;
                    let (u, p) = text.split_once(':')?;
                    (u.to_string(), p.to_string())
                }
            };
            let registry = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string();
            Some(Credentials {
                registry,
                username,
                password,
            })
        })
        .collect()
}

/// The local path of a PersistentVolume, if it has one.
fn pv_path(pv: &PersistentVolume) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| PathBuf::from(&h.path))
        .or_else(|| spec.local.as_ref().map(|l| PathBuf::from(&l.path)))
}

/// Where every claim the pod uses lives on this node, provisioning and
/// binding claims that have no volume yet.
pub async fn claim_paths(node: &NodeCtx, pod: &Pod) -> ClaimPaths {
    let ns = pod.namespace().unwrap_or_default();
    let claims: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim.map(|c| c.claim_name))
        .collect();
    let mut out = ClaimPaths::new();
    for claim in claims {
        let path = match bind(node, &ns, &claim).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("claim {ns}/{claim}: {e}");
                None
            }
        };
        out.insert(claim, path);
    }
    out
}

async fn bind(node: &NodeCtx, ns: &str, claim: &str) -> Result<Option<PathBuf>, kube::Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(node.client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(node.client.clone());
    let Some(pvc) = pvcs.get_opt(claim).await? else {
        return Ok(None);
    };
    if let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) {
        return Ok(pvs.get_opt(&volume).await?.as_ref().and_then(pv_path));
    }
    let uid = pvc.uid().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let path = node.config.data_dir.join("volumes").join(&name);
    std::fs::create_dir_all(&path).map_err(|e| kube::Error::Service(Box::new(e)))?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or("1Gi".to_string(), |q| q.0.clone());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"peapod.dev/provisioned-by": "local-path"},
            "annotations": {"pv.kubernetes.io/provisioned-by": "peapod.dev/local-path"}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": uid},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node.config.name]}]}]}},
        },
    }))
    .expect("a valid PersistentVolume");
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    pvs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
    )
    .await?;
    pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&json!({
        "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"volumeName": name},
    })))
    .await?;
    pvcs.patch_status(claim, &PatchParams::default(), &Patch::Merge(&json!({"status": {
        "phase": "Bound", "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
        "capacity": {"storage": storage},
    }})))
    .await?;
    tracing::info!(
        "provisioned {name} at {} for claim {ns}/{claim}",
        path.display()
    );
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_secrets_give_credentials() {
        let mut data = Data::new();
        data.insert(
            ".dockerconfigjson".into(),
            br#"{"auths":{"https://reg.example:5000":{"auth":"dXNlcjpwYXNz"},"other.io":{"username":"a","password":"b"}}}"#.to_vec(),
        );
        let mut creds = docker_credentials(&data);
        creds.sort_by(|a, b| a.registry.cmp(&b.registry));
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].registry, "other.io");
        assert_eq!(
            (
                creds[1].registry.as_str(),
                creds[1].username.as_str(),
                creds[1].password.as_str()
            ),
            ("reg.example:5000", "user", "pass")
        );
    }
}
