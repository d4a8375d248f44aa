//! A container's environment: the image's variables, then `envFrom`, then
//! `env` (values with `$(VAR)` expansion, field and resource references,
//! ConfigMap and Secret keys), as the kubelet builds it.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use peapod_common::quantity;

/// Keys and values of a ConfigMap (`data` and `binaryData`) or Secret.
pub type Data = BTreeMap<String, Vec<u8>>;

/// Data of the ConfigMaps and Secrets a pod refers to (`None`: not found).
#[derive(Default, Debug)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<Data>>,
    pub secrets: HashMap<String, Option<Data>>,
    /// The pod's projected ServiceAccount tokens.
    pub tokens: super::sa_token::Tokens,
}

/// What the pod refers to, to be fetched before containers start.
pub fn references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut maps = Vec::new();
    let mut secrets = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                maps.push(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.push(r.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            let Some(v) = &e.value_from else { continue };
            if let Some(r) = &v.config_map_key_ref {
                maps.push(r.name.clone());
            }
            if let Some(r) = &v.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            maps.push(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                maps.push(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    maps.sort();
    maps.dedup();
    secrets.sort();
    secrets.dedup();
    (maps, secrets)
}

/// Addresses known once the sandbox exists.
pub struct Addresses {
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

/// Expands `$(NAME)` references to earlier variables; `$$` escapes.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A `fieldRef` path's value.
pub fn field(pod: &Pod, path: &str, addrs: &Addresses) -> Option<String> {
    let key_in = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(String::from)
    };
    if let Some(k) = key_in("metadata.labels['") {
        return Some(pod.labels().get(&k).cloned().unwrap_or_default());
    }
    if let Some(k) = key_in("metadata.annotations['") {
        return Some(pod.annotations().get(&k).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => addrs.node_name.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => addrs.host_ip.clone(),
        "status.podIP" | "status.podIPs" => addrs.pod_ip.clone(),
        _ => return None,
    })
}

/// A `resourceFieldRef` value (`limits.cpu`, `requests.memory`, ...) with
/// its divisor; CPU rounds up to whole cores (or divisor units).
fn resource(container: &Container, resource: &str, divisor: Option<&str>) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let res = container.resources.as_ref();
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    let value = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
    let is_cpu = name == "cpu";
    let amount = match value {
        Some(v) if is_cpu => quantity::milli(&v)? as f64 / 1000.0,
        Some(v) => quantity::value(&v)? as f64,
        // Without a limit the node's allocatable is the answer; a large
        // number stands in for it.
        None if is_cpu => std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        None => i64::MAX as f64,
    };
    let divisor = match divisor {
        Some(d) if is_cpu => quantity::milli(d)? as f64 / 1000.0,
        Some(d) => quantity::value(d)? as f64,
        None => 1.0,
    };
    Some(format!("{}", (amount / divisor).ceil() as i64))
}

/// Why a container's environment cannot be built
/// (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    MissingConfigMap(String),
    #[error("secret \"{0}\" not found")]
    MissingSecret(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldRef {0}")]
    Field(String),
}

/// The container's environment as `NAME=value` strings.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    sources: &Sources,
    addrs: &Addresses,
    service_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, EnvError> {
    let ns = pod.namespace().unwrap_or_default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for kv in image_env {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut vars, k.into(), v.into());
        }
    }
    for (k, v) in service_env {
        set(&mut vars, k.clone(), v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, missing) = if let Some(r) = &from.config_map_ref {
            (
                sources.config_maps.get(&r.name).cloned().flatten(),
                r.optional.unwrap_or(false),
                EnvError::MissingConfigMap(r.name.clone()),
            )
        } else if let Some(r) = &from.secret_ref {
            (
                sources.secrets.get(&r.name).cloned().flatten(),
                r.optional.unwrap_or(false),
                EnvError::MissingSecret(r.name.clone()),
            )
        } else {
            continue;
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    set(
                        &mut vars,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(missing),
        }
    }
    for e in container.env.iter().flatten() {
        let value = match &e.value_from {
            None => Some(expand(e.value.as_deref().unwrap_or(""), &vars)),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    Some(
                        field(pod, &f.field_path, addrs)
                            .ok_or_else(|| EnvError::Field(f.field_path.clone()))?,
                    )
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match &r.container_name {
                        Some(n) if !n.is_empty() => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|c| &c.name == n))
                            .unwrap_or(container),
                        _ => container,
                    };
                    resource(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                    )
                } else if let Some(r) = &from.config_map_key_ref {
                    key_value(
                        &sources.config_maps,
                        "configmap",
                        &ns,
                        &r.name,
                        &r.key,
                        r.optional,
                    )?
                } else if let Some(r) = &from.secret_key_ref {
                    key_value(&sources.secrets, "secret", &ns, &r.name, &r.key, r.optional)?
                } else {
                    None
                }
            }
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            format!("{k}={v}")
        })
        .collect())
}

fn key_value(
    from: &HashMap<String, Option<Data>>,
    kind: &'static str,
    ns: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let optional = optional.unwrap_or(false);
    match from.get(name).cloned().flatten() {
        None if optional => Ok(None),
        None if kind == "secret" => Err(EnvError::MissingSecret(name.into())),
        None => Err(EnvError::MissingConfigMap(name.into())),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(EnvError::MissingKey {
                kind,
                namespace: ns.into(),
                name: name.into(),
                key: key.into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_expand_and_later_values_win() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y$(B)$$(A)", &vars), "x1y$(B)$(A)");
    }

    #[test]
    fn env_is_built_from_every_kind_of_source() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x",
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "GREETING", "value": "hello $(CM_who)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                ]}]},
        }))
        .unwrap();
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cm".into(),
            Some([("who".to_string(), b"world".to_vec())].into()),
        );
        sources.secrets.insert(
            "s".into(),
            Some([("password".to_string(), b"hunter2".to_vec())].into()),
        );
        sources.secrets.insert("nope".into(), None);
        let addrs = Addresses {
            pod_ip: "10.244.0.9".into(),
            host_ip: "192.168.1.2".into(),
            node_name: "n1".into(),
        };
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let env = resolve(
            &pod,
            c,
            &["PATH=/bin".into()],
            &sources,
            &addrs,
            &BTreeMap::new(),
        )
        .unwrap();
        for want in [
            "PATH=/bin",
            "CM_who=world",
            "GREETING=hello world",
            "POD=p",
            "APP=web",
            "IP=10.244.0.9",
            "MEM=64",
            "CPU=1",
            "PASS=hunter2",
        ] {
            assert!(
                env.contains(&want.to_string()),
                "{want} missing from {env:?}"
            );
        }
        assert!(!env.iter().any(|e| e.starts_with("OPT=")));

        sources.secrets.insert("s".into(), None);
        let err = resolve(&pod, c, &[], &sources, &addrs, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "secret \"s\" not found");
    }
}
