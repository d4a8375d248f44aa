//! Field defaults, as kube-apiserver's `SetDefaults_*` functions apply
//! them on every write (so that what a client reads back is what a
//! controller or kubelet will act on): the helpers every kind's
//! `Kind::defaults` uses, and the pod spec defaults every pod template gets.

use serde_json::{Map, Value, json};

use super::ResourceType;

/// Applies the kind's defaults in place.
pub fn apply(rt: &ResourceType, object: &mut Value) {
    rt.rules.defaults(object);
}

/// Sets `v[key]` when `v` is an object without that key (or with `null`).
pub(crate) fn set_missing(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.into(), value);
    }
}

/// `v[key]`, inserting `init` first when absent.
pub(crate) fn entry<'a>(v: &'a mut Value, key: &str, init: Value) -> &'a mut Value {
    set_missing(v, key, init);
    &mut v[key]
}

pub(crate) fn entry_object<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.into(), json!({}));
    }
    m[key].as_object_mut().expect("object")
}

pub(crate) fn spec(object: &mut Value) -> &mut Value {
    entry(object, "spec", json!({}))
}

pub(crate) fn status(object: &mut Value) -> &mut Value {
    entry(object, "status", json!({}))
}

/// The elements of the list at `v[key]` (none when absent).
pub(crate) fn items_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
}

/// Defaults of the pod template inside a workload spec.
pub(crate) fn template(spec: &mut Value) {
    if let Some(pod) = spec.pointer_mut("/template/spec") {
        pod_spec(pod);
    }
}

/// `PodSpec` defaults (pods and every pod template).
pub fn pod_spec(spec: &mut Value) {
    set_missing(spec, "dnsPolicy", json!("ClusterFirst"));
    set_missing(spec, "restartPolicy", json!("Always"));
    set_missing(spec, "securityContext", json!({}));
    set_missing(spec, "terminationGracePeriodSeconds", json!(30));
    set_missing(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items_mut(spec, list) {
            container(c);
        }
    }
    for v in items_mut(spec, "volumes") {
        volume(v);
    }
}

/// The tag of an image reference, `latest` when it has neither tag nor digest.
pub fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest => "",
        None => "latest",
    }
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or_default();
    let policy = if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_missing(c, "imagePullPolicy", json!(policy));
    set_missing(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_missing(c, "terminationMessagePolicy", json!("File"));
    for p in items_mut(c, "ports") {
        set_missing(p, "protocol", json!("TCP"));
    }
    for e in items_mut(c, "env") {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef") {
            set_missing(f, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            for (k, d) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                if p.get(k).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p[k] = json!(d);
                }
            }
            http_get(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook) {
                http_get(h);
            }
        }
    }
}

fn http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        if h.get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            h["path"] = json!("/");
        }
        set_missing(h, "scheme", json!("HTTP"));
    }
}

/// Volume source fields (everything in `Volume` but its name).
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

pub(crate) fn volume_sources() -> &'static [&'static str] {
    VOLUME_SOURCES
}

fn volume(v: &mut Value) {
    if !VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
    {
        v["emptyDir"] = json!({});
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
            set_missing(s, "defaultMode", json!(420));
        }
    }
    for item in v
        .pointer_mut("/downwardAPI/items")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(f) = item.get_mut("fieldRef") {
            set_missing(f, "apiVersion", json!("v1"));
        }
    }
    if let Some(h) = v.get_mut("hostPath") {
        set_missing(h, "type", json!(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_without_a_tag_are_latest() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:1.25"), "1.25");
        assert_eq!(image_tag("localhost:5000/busybox"), "latest");
        assert_eq!(image_tag("localhost:5000/busybox:1"), "1");
        assert_eq!(image_tag("nginx@sha256:abc"), "");
        assert_eq!(image_tag("nginx:latest@sha256:abc"), "latest");
    }

    #[test]
    fn pod_spec_defaults_fill_only_what_is_missing() {
        let mut spec = json!({"containers": [{"name": "a", "image": "busybox", "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}}}], "restartPolicy": "Never",
            "volumes": [{"name": "v"}, {"name": "c", "configMap": {"name": "cm"}}]});
        pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
    }
}
