//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for with
//! `Accept: application/json;as=Table`, with the columns kube-apiserver
//! prints for each kind. The server always sends every column; kubectl
//! hides priority-1 columns unless `-o wide`.

mod format;
mod pod;

pub use format::human_duration;

use serde_json::{Value, json};

use self::format::{containers, int, labels, or, selector, selector_string, since};
use super::ResourceType;

/// (name, type, priority); the first column is always the object name.
type Column = (&'static str, &'static str, u8);

const AGE: Column = ("Age", "string", 0);
const NAME: Column = ("Name", "string", 0);

fn columns(kind: &str) -> Vec<Column> {
    let s = |n: &'static str| (n, "string", 0);
    let wide = |n: &'static str| (n, "string", 1);
    let int = |n: &'static str| (n, "integer", 0);
    match kind {
        "Pod" => vec![
            NAME,
            s("Ready"),
            s("Status"),
            s("Restarts"),
            AGE,
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        "Service" => vec![
            NAME,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            AGE,
            wide("Selector"),
        ],
        "Endpoints" => vec![NAME, s("Endpoints"), AGE],
        "Node" => vec![
            NAME,
            s("Status"),
            s("Roles"),
            AGE,
            s("Version"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
        ],
        "Namespace" => vec![NAME, s("Status"), AGE],
        "ConfigMap" => vec![NAME, s("Data"), AGE],
        "Secret" => vec![NAME, s("Type"), s("Data"), AGE],
        "ServiceAccount" => vec![NAME, s("Secrets"), AGE],
        "Event" => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            wide("Subobject"),
            wide("Source"),
            s("Message"),
            wide("First Seen"),
            wide("Count"),
            ("Name", "string", 1),
        ],
        "LimitRange" => vec![NAME, ("Created At", "date", 0)],
        "PersistentVolume" => vec![
            NAME,
            s("Capacity"),
            s("Access Modes"),
            s("Reclaim Policy"),
            s("Status"),
            s("Claim"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            s("Reason"),
            AGE,
            wide("VolumeMode"),
        ],
        "PersistentVolumeClaim" => vec![
            NAME,
            s("Status"),
            s("Volume"),
            s("Capacity"),
            s("Access Modes"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            AGE,
            wide("VolumeMode"),
        ],
        "ResourceQuota" => vec![NAME, s("Request"), s("Limit"), AGE],
        "Deployment" => vec![
            NAME,
            s("Ready"),
            s("Up-to-date"),
            s("Available"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "ReplicaSet" => vec![
            NAME,
            int("Desired"),
            int("Current"),
            int("Ready"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "StatefulSet" => vec![NAME, s("Ready"), AGE, wide("Containers"), wide("Images")],
        "DaemonSet" => vec![
            NAME,
            int("Desired"),
            int("Current"),
            int("Ready"),
            int("Up-to-date"),
            int("Available"),
            s("Node Selector"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "ControllerRevision" => vec![NAME, s("Controller"), s("Revision"), AGE],
        "Job" => vec![
            NAME,
            s("Status"),
            s("Completions"),
            s("Duration"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "CronJob" => vec![
            NAME,
            s("Schedule"),
            s("Timezone"),
            ("Suspend", "boolean", 0),
            int("Active"),
            s("Last Schedule"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "HorizontalPodAutoscaler" => vec![
            NAME,
            s("Reference"),
            s("Targets"),
            s("MinPods"),
            s("MaxPods"),
            s("Replicas"),
            AGE,
        ],
        "Ingress" => vec![NAME, s("Class"), s("Hosts"), s("Address"), s("Ports"), AGE],
        "IngressClass" => vec![NAME, s("Controller"), s("Parameters"), AGE],
        "knative.Service" => vec![
            NAME,
            s("URL"),
            s("LatestCreated"),
            s("LatestReady"),
            s("Ready"),
            s("Reason"),
        ],
        "knative.Revision" => vec![
            NAME,
            s("Config Name"),
            s("Generation"),
            s("Ready"),
            s("Reason"),
            s("Actual Replicas"),
            s("Desired Replicas"),
        ],
        "RuntimeClass" => vec![NAME, s("Handler"), AGE],
        "Lease" => vec![NAME, s("Holder"), AGE],
        "EndpointSlice" => vec![NAME, s("AddressType"), s("Ports"), s("Endpoints"), AGE],
        _ => vec![NAME, AGE],
    }
}

fn column_definitions(kind: &str) -> Value {
    Value::Array(
        columns(kind)
            .into_iter()
            .map(|(name, ty, priority)| {
                let format = if name == "Name" { "name" } else { "" };
                json!({"name": name, "type": ty, "format": format, "description": describe(name), "priority": priority})
            })
            .collect(),
    )
}

fn describe(column: &str) -> String {
    match column {
        "Name" => "Name must be unique within a namespace.".into(),
        "Age" => "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        other => format!("{other} of the object."),
    }
}

/// What each row carries as `object` (`?includeObject=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<IncludeObject, String> {
        match s.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: {other:?}: must be 'Metadata', 'Object', 'None', or empty"
            )),
        }
    }
}

/// Which printer a kind gets: its kind name, qualified by group for kinds
/// outside Kubernetes that share a name with a built-in one.
fn printer(rt: &ResourceType) -> String {
    if rt.group == crate::resources::knative::GROUP {
        format!("knative.{}", rt.kind)
    } else {
        rt.kind.to_string()
    }
}

/// A Table of `objects`; `headers` false leaves out column definitions (as
/// on every watch event after the first).
pub fn table(
    rt: &ResourceType,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, conditions) = row(&printer(rt), o, now);
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Object => (*o).clone(),
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }),
            };
            let mut r = json!({"cells": cells, "object": object});
            if let Some(c) = conditions {
                r["conditions"] = c;
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if headers { column_definitions(&printer(rt)) } else { Value::Null },
        "rows": rows,
    })
}

fn first_of_type<'a>(list: &'a Value, ty: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|a| a["type"] == ty)
}

fn lb_addresses(ingress: &Value) -> Vec<String> {
    let mut out: Vec<String> = ingress
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or_else(|| i["hostname"].as_str())
                .map(String::from)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn access_modes(modes: &Value) -> String {
    let list = modes.as_array().cloned().unwrap_or_default();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| list.iter().any(|x| x == m))
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(",")
}

fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown: Vec<String> = items.into_iter().take(max).collect();
    let mut ret = shown.join(",");
    if count > max {
        ret = format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

fn condition_true(o: &Value, ty: &str) -> bool {
    first_of_type(&o["status"]["conditions"], ty).is_some_and(|c| c["status"] == "True")
}

/// The cells of one object's row, and row conditions (pods only).
fn row(kind: &str, o: &Value, now: jiff::Timestamp) -> (Vec<Value>, Option<Value>) {
    if kind == "Pod" {
        return pod::row(o, now);
    }
    let name = json!(o["metadata"]["name"]);
    let age = json!(since(&o["metadata"]["creationTimestamp"], now));
    let spec = &o["spec"];
    let status = &o["status"];
    let cells = match kind {
        "Service" => {
            let ty = spec["type"].as_str().unwrap_or_default();
            let external_ips: Vec<String> = spec["externalIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let external = match ty {
                "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
                "ClusterIP" | "NodePort" => "<none>".into(),
                "LoadBalancer" => {
                    let mut all = lb_addresses(&status["loadBalancer"]["ingress"]);
                    all.extend(external_ips);
                    if all.is_empty() {
                        "<pending>".into()
                    } else {
                        all.join(",")
                    }
                }
                "ExternalName" => or(&spec["externalName"], ""),
                _ => "<unknown>".into(),
            };
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64().filter(|n| *n > 0) {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let ports = if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            };
            let cluster_ip = spec["clusterIPs"][0]
                .as_str()
                .or_else(|| spec["clusterIP"].as_str().filter(|s| !s.is_empty()))
                .unwrap_or("<none>");
            vec![
                name,
                json!(ty),
                json!(cluster_ip),
                json!(external),
                json!(ports),
                age,
                json!(labels(&spec["selector"])),
            ]
        }
        "Endpoints" => vec![name, json!(endpoints(o)), age],
        "Node" => {
            let ready = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .rfind(|c| c["type"] == "Ready");
            let mut st = vec![match ready {
                Some(c) if c["status"] == "True" => "Ready",
                Some(_) => "NotReady",
                None => "Unknown",
            }];
            if spec["unschedulable"] == true {
                st.push("SchedulingDisabled");
            }
            let mut roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!r.is_empty()).then(|| r.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().filter(|s| !s.is_empty()).map(String::from)
                    } else {
                        None
                    }
                })
                .collect();
            roles.sort();
            roles.dedup();
            let info = &status["nodeInfo"];
            let addr = |t: &str| {
                first_of_type(&status["addresses"], t)
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            let mut kernel = or(&info["kernelVersion"], "<unknown>");
            if let Some(arch) = info["architecture"].as_str().filter(|a| !a.is_empty()) {
                kernel = format!("{kernel} ({arch})");
            }
            vec![
                name,
                json!(st.join(",")),
                json!(if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                }),
                age,
                json!(or(&info["kubeletVersion"], "")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(or(&info["osImage"], "<unknown>")),
                json!(kernel),
                json!(or(&info["containerRuntimeVersion"], "<unknown>")),
            ]
        }
        "Namespace" => vec![name, json!(or(&status["phase"], "")), age],
        "ConfigMap" => {
            let n = o["data"].as_object().map_or(0, |m| m.len())
                + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        "Secret" => vec![
            name,
            json!(or(&o["type"], "")),
            json!(o["data"].as_object().map_or(0, |m| m.len())),
            age,
        ],
        "ServiceAccount" => vec![
            name,
            json!(o["secrets"].as_array().map_or(0, Vec::len)),
            age,
        ],
        "Event" => return (event(o, now), None),
        "LimitRange" => vec![name, json!(or(&o["metadata"]["creationTimestamp"], ""))],
        "PersistentVolume" => {
            let claim = match spec.get("claimRef").filter(|c| c.is_object()) {
                Some(c) => format!("{}/{}", or(&c["namespace"], ""), or(&c["name"], "")),
                None => String::new(),
            };
            vec![
                name,
                json!(or(&spec["capacity"]["storage"], "0")),
                json!(access_modes(&spec["accessModes"])),
                json!(or(&spec["persistentVolumeReclaimPolicy"], "")),
                json!(terminating_or(o, &status["phase"])),
                json!(claim),
                json!(storage_class(o)),
                json!(or(&spec["volumeAttributesClassName"], "<unset>")),
                json!(or(&status["reason"], "")),
                age,
                json!(or(&spec["volumeMode"], "<unset>")),
            ]
        }
        "PersistentVolumeClaim" => {
            let bound = spec["volumeName"].as_str().is_some_and(|v| !v.is_empty());
            vec![
                name,
                json!(terminating_or(o, &status["phase"])),
                json!(or(&spec["volumeName"], "")),
                json!(if bound {
                    or(&status["capacity"]["storage"], "0")
                } else {
                    String::new()
                }),
                json!(if bound {
                    access_modes(&status["accessModes"])
                } else {
                    String::new()
                }),
                json!(storage_class(o)),
                json!(or(&spec["volumeAttributesClassName"], "<unset>")),
                age,
                json!(or(&spec["volumeMode"], "<unset>")),
            ]
        }
        "ResourceQuota" => {
            let mut keys: Vec<&String> = status["hard"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            keys.sort();
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            for k in keys {
                let entry = format!(
                    "{k}: {}/{}",
                    or(&status["used"][k.as_str()], "0"),
                    or(&status["hard"][k.as_str()], "0")
                );
                if k.starts_with("limits.") {
                    lim.push(entry)
                } else {
                    req.push(entry)
                }
            }
            vec![name, json!(req.join(", ")), json!(lim.join(", ")), age]
        }
        "Deployment" => {
            let (names, images) = containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(selector_string(&spec["selector"])),
            ]
        }
        "ReplicaSet" => {
            let (names, images) = containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(1)),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(selector(&spec["selector"])),
            ]
        }
        "StatefulSet" => {
            let (names, images) = containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                age,
                json!(names),
                json!(images),
            ]
        }
        "DaemonSet" => {
            let (names, images) = containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(int(&status["desiredNumberScheduled"])),
                json!(int(&status["currentNumberScheduled"])),
                json!(int(&status["numberReady"])),
                json!(int(&status["updatedNumberScheduled"])),
                json!(int(&status["numberAvailable"])),
                json!(labels(&spec["template"]["spec"]["nodeSelector"])),
                age,
                json!(names),
                json!(images),
                json!(selector(&spec["selector"])),
            ]
        }
        "ControllerRevision" => {
            let controller = o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["controller"] == true)
                .map(|r| {
                    let api = r["apiVersion"].as_str().unwrap_or_default();
                    let kind = r["kind"].as_str().unwrap_or_default();
                    let gk = match api.split_once('/') {
                        Some((g, _)) => format!("{kind}.{g}"),
                        None => kind.to_string(),
                    };
                    format!("{}/{}", gk.to_lowercase(), or(&r["name"], ""))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(controller), json!(int(&o["revision"])), age]
        }
        "Job" => {
            let st = if condition_true(o, "Complete") {
                "Complete"
            } else if condition_true(o, "Failed") {
                "Failed"
            } else if o["metadata"].get("deletionTimestamp").is_some() {
                "Terminating"
            } else if condition_true(o, "Suspended") {
                "Suspended"
            } else if condition_true(o, "FailureTarget") {
                "FailureTarget"
            } else if condition_true(o, "SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else {
                "Running"
            };
            let succeeded = int(&status["succeeded"]);
            let completions = match spec["completions"].as_i64() {
                Some(c) => format!("{succeeded}/{c}"),
                None => match int(&spec["parallelism"]) {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let duration = match (
                status["startTime"].as_str(),
                status["completionTime"].as_str(),
            ) {
                (None, _) => String::new(),
                (Some(_), None) => since(&status["startTime"], now),
                (Some(start), Some(end)) => match (
                    start.parse::<jiff::Timestamp>(),
                    end.parse::<jiff::Timestamp>(),
                ) {
                    (Ok(s), Ok(e)) => human_duration(e.duration_since(s).as_secs()),
                    _ => String::new(),
                },
            };
            let (names, images) = containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(st),
                json!(completions),
                json!(duration),
                age,
                json!(names),
                json!(images),
                json!(selector(&spec["selector"])),
            ]
        }
        "CronJob" => {
            let (names, images) =
                containers(&spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]);
            let suspend = match spec["suspend"].as_bool() {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let last = if status["lastScheduleTime"].is_string() {
                since(&status["lastScheduleTime"], now)
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(or(&spec["schedule"], "")),
                json!(or(&spec["timeZone"], "<none>")),
                json!(suspend),
                json!(status["active"].as_array().map_or(0, Vec::len)),
                json!(last),
                age,
                json!(names),
                json!(images),
                json!(selector(&spec["jobTemplate"]["spec"]["selector"])),
            ]
        }
        "HorizontalPodAutoscaler" => vec![
            name,
            json!(format!(
                "{}/{}",
                or(&spec["scaleTargetRef"]["kind"], ""),
                or(&spec["scaleTargetRef"]["name"], "")
            )),
            json!(hpa_targets(o)),
            json!(
                spec["minReplicas"]
                    .as_i64()
                    .map_or("<unset>".to_string(), |m| m.to_string())
            ),
            json!(int(&spec["maxReplicas"])),
            json!(int(&status["currentReplicas"])),
            age,
        ],
        "Ingress" => {
            let rules = spec["rules"].as_array().cloned().unwrap_or_default();
            let hosts: Vec<String> = rules
                .iter()
                .filter_map(|r| {
                    r["host"]
                        .as_str()
                        .filter(|h| !h.is_empty())
                        .map(String::from)
                })
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if rules.len() > 3 {
                format!(
                    "{} + {} more...",
                    hosts.into_iter().take(3).collect::<Vec<_>>().join(","),
                    rules.len() - 3
                )
            } else {
                hosts.join(",")
            };
            let tls = spec["tls"].as_array().is_some_and(|t| !t.is_empty());
            vec![
                name,
                json!(or(&spec["ingressClassName"], "<none>")),
                json!(hosts),
                json!(lb_addresses(&status["loadBalancer"]["ingress"]).join(",")),
                json!(if tls { "80, 443" } else { "80" }),
                age,
            ]
        }
        "IngressClass" => {
            let default = o["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"]
                == "true";
            let shown = format!(
                "{}{}",
                name.as_str().unwrap_or_default(),
                if default { " (default)" } else { "" }
            );
            let params = match spec.get("parameters").filter(|p| p.is_object()) {
                None => "<none>".to_string(),
                Some(p) => {
                    let group = p["apiGroup"]
                        .as_str()
                        .map(|g| format!(".{g}"))
                        .unwrap_or_default();
                    format!("{}{group}/{}", or(&p["kind"], ""), or(&p["name"], ""))
                }
            };
            vec![
                json!(shown),
                json!(or(&spec["controller"], "")),
                json!(params),
                age,
            ]
        }
        "knative.Service" | "knative.Revision" => {
            let ready = first_of_type(&status["conditions"], "Ready");
            let state = ready.map_or(String::new(), |c| or(&c["status"], ""));
            let reason = ready.map_or(String::new(), |c| or(&c["reason"], ""));
            if kind == "knative.Service" {
                vec![
                    name,
                    json!(or(&status["url"], "")),
                    json!(or(&status["latestCreatedRevisionName"], "")),
                    json!(or(&status["latestReadyRevisionName"], "")),
                    json!(state),
                    json!(reason),
                ]
            } else {
                let labels = &o["metadata"]["labels"];
                vec![
                    name,
                    json!(or(&labels["serving.knative.dev/configuration"], "")),
                    json!(or(
                        &labels["serving.knative.dev/configurationGeneration"],
                        ""
                    )),
                    json!(state),
                    json!(reason),
                    json!(int(&status["actualReplicas"])),
                    json!(int(&status["desiredReplicas"])),
                ]
            }
        }
        "RuntimeClass" => vec![name, json!(or(&o["handler"], "")), age],
        "Lease" => vec![name, json!(or(&spec["holderIdentity"], "")), age],
        "EndpointSlice" => {
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["port"].as_i64() {
                    Some(n) => n.to_string(),
                    None => p["name"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("*")
                        .to_string(),
                })
                .collect();
            let addrs: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                name,
                json!(or(&o["addressType"], "")),
                json!(list_with_more(ports, 3)),
                json!(list_with_more(addrs, 3)),
                age,
            ]
        }
        _ => vec![name, age],
    };
    (cells, None)
}

fn terminating_or(o: &Value, phase: &Value) -> String {
    if o["metadata"].get("deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        or(phase, "")
    }
}

fn storage_class(o: &Value) -> String {
    match o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str() {
        Some(s) => s.to_string(),
        None => or(&o["spec"]["storageClassName"], ""),
    }
}

fn endpoints(o: &Value) -> String {
    let subsets = o["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for ss in &subsets {
        let addrs: Vec<String> = ss["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(String::from))
            .collect();
        let ports = ss["ports"].as_array().cloned().unwrap_or_default();
        if ports.is_empty() {
            count += addrs.len();
            list.extend(addrs.iter().cloned());
            continue;
        }
        for p in &ports {
            count += addrs.len();
            for a in &addrs {
                if a.contains(':') {
                    list.push(format!("[{a}]:{}", p["port"]));
                } else {
                    list.push(format!("{a}:{}", p["port"]));
                }
            }
        }
    }
    let shown: Vec<String> = list.into_iter().take(3).collect();
    if count > 3 {
        format!("{} + {} more...", shown.join(","), count - 3)
    } else {
        shown.join(",")
    }
}

fn event(o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first = if o["firstTimestamp"].is_string() {
        since(&o["firstTimestamp"], now)
    } else {
        since(&o["eventTime"], now)
    };
    let mut last = if o["lastTimestamp"].is_string() {
        since(&o["lastTimestamp"], now)
    } else {
        first.clone()
    };
    let mut count = int(&o["count"]);
    if o["series"].is_object() {
        last = since(&o["series"]["lastObservedTime"], now);
        count = int(&o["series"]["count"]);
    } else if count == 0 {
        count = 1;
    }
    let io = &o["involvedObject"];
    let kind = io["kind"].as_str().unwrap_or_default().to_lowercase();
    let object = match io["name"].as_str().filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let comp = o["source"]["component"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(o["reportingComponent"].as_str())
        .unwrap_or_default();
    let inst = o["source"]["host"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(o["reportingInstance"].as_str())
        .unwrap_or_default();
    let source = if inst.is_empty() {
        comp.to_string()
    } else {
        format!("{comp}, {inst}")
    };
    vec![
        json!(last),
        json!(or(&o["type"], "")),
        json!(or(&o["reason"], "")),
        json!(object),
        json!(or(&io["fieldPath"], "")),
        json!(source),
        json!(o["message"].as_str().unwrap_or_default().trim()),
        json!(first),
        json!(count),
        json!(o["metadata"]["name"]),
    ]
}

fn hpa_targets(o: &Value) -> String {
    let specs = o["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = o["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let st = statuses.get(i);
            let ty = m["type"].as_str().unwrap_or_default();
            match ty {
                "Resource" | "ContainerResource" => {
                    let key = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let r = &m[key];
                    let target = &r["target"];
                    let name = or(&r["name"], "");
                    let current = st.map(|s| &s[key]["current"]);
                    if target["averageValue"].is_string() {
                        let cur = current
                            .and_then(|c| c["averageValue"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{name}: {cur}/{}", or(&target["averageValue"], ""))
                    } else {
                        let cur = current
                            .and_then(|c| c["averageUtilization"].as_i64())
                            .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                        let tgt = target["averageUtilization"]
                            .as_i64()
                            .map_or("<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {cur}/{tgt}")
                    }
                }
                "Pods" => {
                    let cur = st
                        .and_then(|s| s["pods"]["current"]["averageValue"].as_str())
                        .unwrap_or("<unknown>");
                    format!("{cur}/{}", or(&m["pods"]["target"]["averageValue"], ""))
                }
                "Object" | "External" => {
                    let key = if ty == "Object" { "object" } else { "external" };
                    let target = &m[key]["target"];
                    if target["averageValue"].is_string() {
                        let cur = st
                            .and_then(|s| s[key]["current"]["averageValue"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{cur}/{} (avg)", or(&target["averageValue"], ""))
                    } else {
                        let cur = st
                            .and_then(|s| s[key]["current"]["value"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{cur}/{}", or(&target["value"], ""))
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}
