//! Field defaults, as kube-apiserver's `SetDefaults_*` functions apply
//! them on every write (so that what a client reads back is what a
//! controller or kubelet will act on).

use serde_json::{Map, Value, json};

use super::ResourceType;

/// Applies the kind's defaults in place.
pub fn apply(rt: &ResourceType, object: &mut Value) {
    match (rt.group, rt.kind) {
        ("", "Pod") => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec(spec);
                pod_only(spec);
            }
        }
        ("", "Service") => service(object),
        ("", "Namespace") => {
            let name = object["metadata"]["name"].clone();
            if let Some(meta) = object["metadata"].as_object_mut() {
                let labels = entry_object(meta, "labels");
                labels.insert("kubernetes.io/metadata.name".into(), name);
            }
        }
        ("", "Secret") => {
            set_missing(object, "type", json!("Opaque"));
            merge_string_data(object);
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = object.get_mut("spec") {
                set_missing(spec, "volumeMode", json!("Filesystem"));
            }
            set_missing(status(object), "phase", json!("Pending"));
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = object.get_mut("spec") {
                set_missing(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_missing(spec, "volumeMode", json!("Filesystem"));
            }
            set_missing(status(object), "phase", json!("Pending"));
        }
        ("", "Node") => {
            if let Some(capacity) = object.pointer("/status/capacity").cloned() {
                set_missing(status(object), "allocatable", capacity);
            }
        }
        ("", "Endpoints") => {
            for subset in items_mut(object, "subsets") {
                for port in items_mut(subset, "ports") {
                    set_missing(port, "protocol", json!("TCP"));
                }
            }
        }
        ("apps", "Deployment") => {
            let spec = spec(object);
            set_missing(spec, "replicas", json!(1));
            let strategy = entry(spec, "strategy", json!({}));
            set_missing(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = entry(strategy, "rollingUpdate", json!({}));
                set_missing(ru, "maxUnavailable", json!("25%"));
                set_missing(ru, "maxSurge", json!("25%"));
            }
            set_missing(spec, "revisionHistoryLimit", json!(10));
            set_missing(spec, "progressDeadlineSeconds", json!(600));
            template(spec);
        }
        ("apps", "ReplicaSet") => {
            let spec = spec(object);
            set_missing(spec, "replicas", json!(1));
            template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = spec(object);
            set_missing(spec, "replicas", json!(1));
            set_missing(spec, "podManagementPolicy", json!("OrderedReady"));
            let strategy = entry(spec, "updateStrategy", json!({}));
            if strategy.get("type").is_none() {
                strategy["type"] = json!("RollingUpdate");
                set_missing(strategy, "rollingUpdate", json!({}));
            }
            if strategy["type"] == "RollingUpdate"
                && let Some(ru) = strategy.get_mut("rollingUpdate")
            {
                set_missing(ru, "partition", json!(0));
            }
            set_missing(spec, "revisionHistoryLimit", json!(10));
            set_missing(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            for pvc in items_mut(spec, "volumeClaimTemplates") {
                set_missing(pvc, "apiVersion", json!("v1"));
                set_missing(pvc, "kind", json!("PersistentVolumeClaim"));
                if let Some(s) = pvc.get_mut("spec") {
                    set_missing(s, "volumeMode", json!("Filesystem"));
                }
                set_missing(status(pvc), "phase", json!("Pending"));
            }
            template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = spec(object);
            let strategy = entry(spec, "updateStrategy", json!({}));
            set_missing(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = entry(strategy, "rollingUpdate", json!({}));
                set_missing(ru, "maxUnavailable", json!(1));
                set_missing(ru, "maxSurge", json!(0));
            }
            set_missing(spec, "revisionHistoryLimit", json!(10));
            template(spec);
        }
        ("batch", "Job") => {
            let template_labels = object.pointer("/spec/template/metadata/labels").cloned();
            let spec = spec(object);
            job_spec(spec);
            template(spec);
            if let (Some(labels), Some(meta)) =
                (template_labels, object["metadata"].as_object_mut())
                && meta
                    .get("labels")
                    .is_none_or(|l| l.as_object().is_none_or(Map::is_empty))
            {
                meta.insert("labels".into(), labels);
            }
        }
        ("batch", "CronJob") => {
            let spec = spec(object);
            set_missing(spec, "concurrencyPolicy", json!("Allow"));
            set_missing(spec, "suspend", json!(false));
            set_missing(spec, "successfulJobsHistoryLimit", json!(3));
            set_missing(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
                template(job);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let spec = spec(object);
            set_missing(spec, "minReplicas", json!(1));
            if spec
                .get("metrics")
                .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
            {
                spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
            }
        }
        ("networking.k8s.io", "IngressClass") => {
            if let Some(p) = object.pointer_mut("/spec/parameters") {
                set_missing(p, "scope", json!("Cluster"));
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in items_mut(object, "ports") {
                set_missing(port, "protocol", json!("TCP"));
                set_missing(port, "name", json!(""));
            }
        }
        _ => {}
    }
}

/// A Secret's `stringData` is write-only: it is folded into `data`.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            data.insert(k, json!(encoded));
        }
    }
}

/// Sets `v[key]` when `v` is an object without that key (or with `null`).
fn set_missing(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.into(), value);
    }
}

/// `v[key]`, inserting `init` first when absent.
fn entry<'a>(v: &'a mut Value, key: &str, init: Value) -> &'a mut Value {
    set_missing(v, key, init);
    &mut v[key]
}

fn entry_object<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.into(), json!({}));
    }
    m[key].as_object_mut().expect("object")
}

fn spec(object: &mut Value) -> &mut Value {
    entry(object, "spec", json!({}))
}

fn status(object: &mut Value) -> &mut Value {
    entry(object, "status", json!({}))
}

/// The elements of the list at `v[key]` (none when absent).
fn items_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
}

/// Defaults of the pod template inside a workload spec.
fn template(spec: &mut Value) {
    if let Some(pod) = spec.pointer_mut("/template/spec") {
        pod_spec(pod);
    }
}

fn job_spec(spec: &mut Value) {
    let completions = spec.get("completions").is_some_and(|v| !v.is_null());
    let parallelism = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !completions && !parallelism {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    } else {
        set_missing(spec, "parallelism", json!(1));
    }
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_missing(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_missing(spec, "completionMode", json!("NonIndexed"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "manualSelector", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_missing(spec, "podReplacementPolicy", json!(replacement));
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

/// Defaults that apply to Pods but not to pod templates.
fn pod_only(spec: &mut Value) {
    set_missing(spec, "enableServiceLinks", json!(true));
    let host_network = spec["hostNetwork"] == true;
    for list in ["containers", "initContainers"] {
        for c in items_mut(spec, list) {
            // Requests default to limits for resources with only a limit.
            if let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            {
                let resources = entry(c, "resources", json!({}));
                let requests = entry(resources, "requests", json!({}));
                for (k, v) in limits {
                    set_missing(requests, &k, v);
                }
            }
            if host_network {
                for p in items_mut(c, "ports") {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        p["hostPort"] = p["containerPort"].clone();
                    }
                }
            }
        }
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

pub fn volume_sources() -> &'static [&'static str] {
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

fn service(object: &mut Value) {
    let spec = spec(object);
    set_missing(spec, "type", json!("ClusterIP"));
    set_missing(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "None" {
        if let Some(m) = spec.as_object_mut() {
            m.remove("sessionAffinityConfig");
        }
    } else if spec["sessionAffinity"] == "ClientIP" {
        let cfg = entry(spec, "sessionAffinityConfig", json!({}));
        let client = entry(cfg, "clientIP", json!({}));
        set_missing(client, "timeoutSeconds", json!(10800));
    }
    for p in items_mut(spec, "ports") {
        set_missing(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset {
            p["targetPort"] = p["port"].clone();
        }
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    let external = matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        || spec["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    if external {
        set_missing(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind != "ExternalName" {
        set_missing(spec, "internalTrafficPolicy", json!("Cluster"));
        set_missing(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_missing(spec, "ipFamilies", json!(["IPv4"]));
    }
    if kind == "LoadBalancer" {
        set_missing(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // `clusterIPs` mirrors `clusterIP` once it is known.
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let ip = ip.to_string();
        set_missing(spec, "clusterIPs", json!([ip]));
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
