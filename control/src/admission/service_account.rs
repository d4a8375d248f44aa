//! The ServiceAccount admission plugin: a pod runs as a ServiceAccount of
//! its namespace (`default` unless it names one, which must exist), takes
//! the account's `imagePullSecrets` when it has none, and, unless it or the
//! account sets `automountServiceAccountToken: false`, gets the
//! `kube-api-access-*` projected volume (a bound token, the cluster CA,
//! the namespace) mounted in every container at the path in-cluster
//! clients read.

use std::time::Duration;

use serde_json::{Value, json};

use crate::authz::resource_forbidden;
use crate::error::ApiResult;
use crate::objects::{Objects, Target};

/// Where in-cluster clients (client-go, the Python client, kubectl) read
/// the token, `ca.crt` and `namespace`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The name prefix of the projected token volume.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// kube-apiserver's: a little over an hour, so that the node refreshes
/// well before it runs out.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// How long a pod naming `default` waits for its namespace's account,
/// which the namespace controller makes just after the namespace.
const DEFAULT_ACCOUNT_WAIT: Duration = Duration::from_secs(5);

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub async fn admit(objects: &Objects, pod: &mut Value) -> ApiResult<()> {
    // Static pods' mirrors are the node's record of what it runs.
    if pod["metadata"]["annotations"]
        .get(MIRROR_ANNOTATION)
        .is_some()
    {
        return Ok(());
    }
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut pod["spec"];
    let name = [&spec["serviceAccountName"], &spec["serviceAccount"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(name);
    spec["serviceAccount"] = json!(name);
    let account = lookup(objects, &namespace, &name).await?;
    if spec["imagePullSecrets"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && let Some(secrets) = account["imagePullSecrets"]
            .as_array()
            .filter(|s| !s.is_empty())
    {
        spec["imagePullSecrets"] = json!(secrets);
    }
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or(account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// The account `name` of `namespace`; `default` is waited for a moment.
async fn lookup(objects: &Objects, namespace: &str, name: &str) -> ApiResult<Value> {
    let rt = objects
        .catalog()
        .lookup("", "v1", "serviceaccounts")
        .expect("serviceaccounts are served");
    let target = Target {
        rt,
        namespace: Some(namespace),
        name,
    };
    let deadline = tokio::time::Instant::now() + DEFAULT_ACCOUNT_WAIT;
    loop {
        match objects.get(target).await {
            Ok(o) => return Ok(o.as_ref().clone()),
            Err(e) if e.code == 404 => {
                if name != "default" || tokio::time::Instant::now() >= deadline {
                    let why = format!(
                        "error looking up service account {namespace}/{name}: serviceaccount {name:?} not found"
                    );
                    return Err(resource_forbidden("", "pods", "", &why));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Adds the token volume (unless one is there) and mounts it in every
/// container that has nothing mounted at [`TOKEN_MOUNT_PATH`].
fn mount_token(spec: &mut Value) {
    let taken: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let existing = taken
        .iter()
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .cloned();
    let volume = existing.clone().unwrap_or_else(|| {
        loop {
            let n = format!("{TOKEN_VOLUME_PREFIX}{}", crate::objects::random_suffix(5));
            if !taken.contains(&n) {
                break n;
            }
        }
    });
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let mounts = &mut c["volumeMounts"];
            let has = mounts.as_array().into_iter().flatten().any(|m| {
                m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(TOKEN_MOUNT_PATH)
            });
            if has {
                continue;
            }
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            if let Some(list) = mounts.as_array_mut() {
                list.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            }
            mounted = true;
        }
    }
    if existing.is_some() || !mounted {
        return;
    }
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    if let Some(list) = spec["volumes"].as_array_mut() {
        list.push(token_volume(&volume));
    }
}

/// The projected volume kube-apiserver adds: token, CA, namespace.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": crate::controllers::ROOT_CA_CONFIG_MAP,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn every_container_gets_the_token_mount_once() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x"},
                {"name": "b", "image": "x", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }));
        mount_token(&mut p["spec"]);
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        assert!(
            name.starts_with(TOKEN_VOLUME_PREFIX) && name.len() == TOKEN_VOLUME_PREFIX.len() + 5
        );
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
            name
        );
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["readOnly"],
            true
        );
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Admitting again (a pod that already has the volume) adds nothing.
        let before = p.clone();
        mount_token(&mut p["spec"]);
        assert_eq!(p, before);
    }

    async fn create(o: &Objects, plural: &str, body: Value) -> crate::error::ApiResult<Value> {
        let rt = o.catalog().lookup("", "v1", plural).unwrap();
        let ns = (plural != "namespaces").then_some("ns");
        Ok(o.create(rt, ns, body, Default::default())
            .await?
            .as_ref()
            .clone())
    }

    #[tokio::test]
    async fn pods_run_as_an_account_that_exists_and_take_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::RedbStore::open(&dir.path().join("db")).unwrap();
        let o = Objects::new(std::sync::Arc::new(store));
        create(&o, "namespaces", json!({"metadata": {"name": "ns"}}))
            .await
            .unwrap();
        let pod = |name: &str, extra: Value| {
            let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"metadata": {"name": name}, "spec": spec})
        };
        let e = create(&o, "pods", pod("a", json!({"serviceAccountName": "robot"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found"#
        );
        create(
            &o,
            "serviceaccounts",
            json!({"metadata": {"name": "robot"},
            "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "registry"}]}),
        )
        .await
        .unwrap();
        let a = create(&o, "pods", pod("a", json!({"serviceAccountName": "robot"})))
            .await
            .unwrap();
        assert_eq!(a["spec"]["serviceAccount"], "robot");
        assert_eq!(a["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
        assert!(a["spec"]["volumes"].is_null(), "the account opts out: {a}");
        // The pod's own setting wins over the account's.
        let b = create(
            &o,
            "pods",
            pod(
                "b",
                json!({"serviceAccountName": "robot",
            "automountServiceAccountToken": true}),
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            b["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        assert_eq!(
            b["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            TOKEN_MOUNT_PATH
        );
    }

    #[test]
    fn no_volume_when_every_container_mounts_its_own() {
        let mut p = pod(json!({"containers": [{"name": "b", "image": "x",
            "volumeMounts": [{"name": "own", "mountPath": format!("{TOKEN_MOUNT_PATH}/")}]}]}));
        mount_token(&mut p["spec"]);
        assert!(p["spec"]["volumes"].is_null());
    }
}
