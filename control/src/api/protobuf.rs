//! Kubernetes protobuf request bodies, as `kubectl create configmap|secret|
//! deployment|...` sends them: the `k8s\0` envelope around a
//! `runtime.Unknown`, whose raw bytes are the object as a `k8s-pb` message.
//!
//! Each supported message is converted to its JSON form field by field.
//! The conversion names every field of every message (the destructuring
//! patterns are exhaustive, so a `k8s-pb` upgrade that adds fields fails to
//! compile here rather than dropping data): a field is converted, ignored
//! (status, which the server resets on create anyway), or rejected with a
//! clear error when set, so nothing a client sent is ever silently lost.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_pb::api::{
    apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
    autoscaling::v1 as autoscaling, batch::v1 as batch, core::v1 as core, networking::v1 as net,
    rbac::v1 as rbac,
};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

const MAGIC: &[u8] = b"k8s\0";

/// Converts a protobuf value to JSON; `Null` means "leave the field out".
trait ToJson {
    fn to_json(&self) -> Result<Value, String>;
}

/// Whether a rejected field carries anything.
trait IsSet {
    fn is_set(&self) -> bool;
}

impl<T: PartialEq + Default> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.as_ref().is_some_and(|v| *v != T::default())
    }
}

impl<T> IsSet for Vec<T> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl<K, V> IsSet for BTreeMap<K, V> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl ToJson for String {
    fn to_json(&self) -> Result<Value, String> {
        // Go writes unset strings as empty; JSON leaves them out.
        Ok(if self.is_empty() {
            Value::Null
        } else {
            json!(self)
        })
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Result<Value, String> {
        Ok(json!(self))
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Result<Value, String> {
        Ok(json!(self))
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Result<Value, String> {
        Ok(json!(self))
    }
}

impl ToJson for Vec<u8> {
    fn to_json(&self) -> Result<Value, String> {
        Ok(json!(STANDARD.encode(self)))
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Result<Value, String> {
        match self {
            Some(v) => v.to_json(),
            None => Ok(Value::Null),
        }
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Result<Value, String> {
        if self.is_empty() {
            return Ok(Value::Null);
        }
        // An empty string in a list is data (`apiGroups: [""]` is the
        // core group), not an unset field.
        self.iter()
            .map(|v| v.to_json().map(|j| if j.is_null() { json!("") } else { j }))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Result<Value, String> {
        if self.is_empty() {
            return Ok(Value::Null);
        }
        let mut m = Map::new();
        for (k, v) in self {
            // A map value is kept even when empty (`key: ""` is data).
            let v = v.to_json()?;
            m.insert(k.clone(), if v.is_null() { json!("") } else { v });
        }
        Ok(Value::Object(m))
    }
}

impl ToJson for meta::Time {
    fn to_json(&self) -> Result<Value, String> {
        let seconds = self.seconds.unwrap_or(0);
        // Go's zero time (year 1) and an empty message both mean "unset".
        if seconds == 0 || seconds == -62_135_596_800 {
            return Ok(Value::Null);
        }
        let t = jiff::Timestamp::from_second(seconds).map_err(|e| e.to_string())?;
        Ok(json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
    }
}

impl ToJson for IntOrString {
    fn to_json(&self) -> Result<Value, String> {
        Ok(match self.r#type.unwrap_or(0) {
            1 => json!(self.str_val.clone().unwrap_or_default()),
            _ => json!(self.int_val.unwrap_or(0)),
        })
    }
}

impl ToJson for Quantity {
    fn to_json(&self) -> Result<Value, String> {
        Ok(json!(self.string.clone().unwrap_or_default()))
    }
}

/// Puts one field into the JSON map: converted (`"name"`), converted but
/// left out when zero (`["name"]`: Go's non-pointer `omitempty` fields,
/// which protobuf always carries), ignored (`_`), rejected when set (`!`),
/// or inlined into the parent (`..`).
macro_rules! field {
    ($ty:literal, $m:ident, $f:ident, [$json:literal]) => {
        if IsSet::is_set($f) {
            field!($ty, $m, $f, $json);
        }
    };
    ($ty:literal, $m:ident, $f:ident, !) => {
        if IsSet::is_set($f) {
            return Err(format!("{}.{}", $ty, stringify!($f)));
        }
    };
    ($ty:literal, $m:ident, $f:ident, _) => {
        let _ = $f;
    };
    ($ty:literal, $m:ident, $f:ident, ..) => {
        if let Value::Object(inner) = ToJson::to_json($f)? {
            $m.extend(inner);
        }
    };
    ($ty:literal, $m:ident, $f:ident, $json:literal) => {
        let v = ToJson::to_json($f)?;
        if !v.is_null() {
            $m.insert($json.into(), v);
        }
    };
}

macro_rules! message {
    ($path:path, $name:literal { $($f:ident => $target:tt),* $(,)? }) => {
        impl ToJson for $path {
            fn to_json(&self) -> Result<Value, String> {
                let Self { $($f),* } = self;
                #[allow(unused_mut)]
                let mut m = Map::new();
                $( field!($name, m, $f, $target); )*
                Ok(Value::Object(m))
            }
        }
    };
}

message!(meta::ObjectMeta, "ObjectMeta" {
    name => "name", generate_name => "generateName", namespace => "namespace",
    self_link => _, uid => "uid", resource_version => "resourceVersion",
    generation => _, creation_timestamp => _, deletion_timestamp => _,
    deletion_grace_period_seconds => _, labels => "labels", annotations => "annotations",
    owner_references => "ownerReferences", finalizers => "finalizers", managed_fields => _,
});
message!(meta::OwnerReference, "OwnerReference" {
    api_version => "apiVersion", kind => "kind", name => "name", uid => "uid",
    controller => "controller", block_owner_deletion => "blockOwnerDeletion",
});
message!(meta::LabelSelector, "LabelSelector" {
    match_labels => "matchLabels", match_expressions => "matchExpressions",
});
message!(meta::LabelSelectorRequirement, "LabelSelectorRequirement" {
    key => "key", operator => "operator", values => "values",
});
message!(core::ConfigMap, "ConfigMap" {
    metadata => "metadata", immutable => "immutable", data => "data", binary_data => "binaryData",
});
message!(core::Secret, "Secret" {
    metadata => "metadata", immutable => "immutable", data => "data",
    string_data => "stringData", r#type => "type",
});
message!(core::Namespace, "Namespace" { metadata => "metadata", spec => "spec", status => _ });
message!(core::NamespaceSpec, "NamespaceSpec" { finalizers => "finalizers" });
message!(core::ServiceAccount, "ServiceAccount" {
    metadata => "metadata", secrets => "secrets", image_pull_secrets => "imagePullSecrets",
    automount_service_account_token => "automountServiceAccountToken",
});
message!(core::LocalObjectReference, "LocalObjectReference" { name => "name" });
message!(core::ObjectReference, "ObjectReference" {
    kind => "kind", namespace => "namespace", name => "name", uid => "uid",
    api_version => "apiVersion", resource_version => "resourceVersion", field_path => "fieldPath",
});
message!(core::Service, "Service" { metadata => "metadata", spec => "spec", status => _ });
message!(core::ServiceSpec, "ServiceSpec" {
    ports => "ports", selector => "selector", cluster_ip => "clusterIP", cluster_ips => "clusterIPs",
    r#type => "type", external_ips => "externalIPs", session_affinity => "sessionAffinity",
    load_balancer_ip => "loadBalancerIP", load_balancer_source_ranges => "loadBalancerSourceRanges",
    external_name => "externalName", external_traffic_policy => "externalTrafficPolicy",
    health_check_node_port => !, publish_not_ready_addresses => ["publishNotReadyAddresses"],
    session_affinity_config => !, ip_families => "ipFamilies", ip_family_policy => "ipFamilyPolicy",
    allocate_load_balancer_node_ports => "allocateLoadBalancerNodePorts",
    load_balancer_class => "loadBalancerClass", internal_traffic_policy => "internalTrafficPolicy",
    traffic_distribution => "trafficDistribution",
});
message!(core::ServicePort, "ServicePort" {
    name => "name", protocol => "protocol", app_protocol => "appProtocol", port => "port",
    target_port => "targetPort", node_port => ["nodePort"],
});
message!(apps::Deployment, "Deployment" { metadata => "metadata", spec => "spec", status => _ });
message!(apps::DeploymentSpec, "DeploymentSpec" {
    replicas => "replicas", selector => "selector", template => "template", strategy => "strategy",
    min_ready_seconds => ["minReadySeconds"], revision_history_limit => "revisionHistoryLimit",
    paused => ["paused"], progress_deadline_seconds => "progressDeadlineSeconds",
});
message!(apps::DeploymentStrategy, "DeploymentStrategy" {
    r#type => "type", rolling_update => "rollingUpdate",
});
message!(apps::RollingUpdateDeployment, "RollingUpdateDeployment" {
    max_unavailable => "maxUnavailable", max_surge => "maxSurge",
});
message!(core::PodTemplateSpec, "PodTemplateSpec" { metadata => "metadata", spec => "spec" });
message!(core::PodSpec, "PodSpec" {
    volumes => !, init_containers => "initContainers", containers => "containers",
    ephemeral_containers => !, restart_policy => "restartPolicy",
    termination_grace_period_seconds => "terminationGracePeriodSeconds",
    active_deadline_seconds => "activeDeadlineSeconds", dns_policy => "dnsPolicy",
    node_selector => "nodeSelector", service_account_name => "serviceAccountName",
    service_account => "serviceAccount",
    automount_service_account_token => "automountServiceAccountToken", node_name => "nodeName",
    host_network => ["hostNetwork"], host_pid => ["hostPID"], host_ipc => ["hostIPC"],
    share_process_namespace => "shareProcessNamespace", security_context => !,
    image_pull_secrets => "imagePullSecrets", hostname => "hostname", subdomain => "subdomain",
    affinity => !, scheduler_name => "schedulerName", tolerations => !, host_aliases => !,
    priority_class_name => "priorityClassName", priority => "priority", dns_config => !,
    readiness_gates => !, runtime_class_name => "runtimeClassName",
    enable_service_links => "enableServiceLinks", preemption_policy => "preemptionPolicy",
    overhead => "overhead", topology_spread_constraints => !,
    set_hostname_as_fqdn => "setHostnameAsFQDN", os => !, host_users => "hostUsers",
    scheduling_gates => !, resource_claims => !, resources => "resources",
    hostname_override => "hostnameOverride", workload_ref => !,
});
message!(core::Container, "Container" {
    name => "name", image => "image", command => "command", args => "args",
    working_dir => "workingDir", ports => "ports", env_from => !, env => "env",
    resources => "resources", resize_policy => !, restart_policy => "restartPolicy",
    restart_policy_rules => !, volume_mounts => !, volume_devices => !, liveness_probe => !,
    readiness_probe => !, startup_probe => !, lifecycle => !,
    termination_message_path => "terminationMessagePath",
    termination_message_policy => "terminationMessagePolicy",
    image_pull_policy => "imagePullPolicy", security_context => !, stdin => ["stdin"],
    stdin_once => ["stdinOnce"], tty => ["tty"],
});
message!(core::ContainerPort, "ContainerPort" {
    name => "name", host_port => ["hostPort"], container_port => "containerPort",
    protocol => "protocol", host_ip => "hostIP",
});
message!(core::EnvVar, "EnvVar" { name => "name", value => "value", value_from => ! });
message!(core::ResourceRequirements, "ResourceRequirements" {
    limits => "limits", requests => "requests", claims => !,
});
message!(batch::Job, "Job" { metadata => "metadata", spec => "spec", status => _ });
message!(batch::JobSpec, "JobSpec" {
    parallelism => "parallelism", completions => "completions",
    active_deadline_seconds => "activeDeadlineSeconds", pod_failure_policy => !,
    success_policy => !, backoff_limit => "backoffLimit",
    backoff_limit_per_index => "backoffLimitPerIndex", max_failed_indexes => "maxFailedIndexes",
    selector => "selector", manual_selector => "manualSelector", template => "template",
    ttl_seconds_after_finished => "ttlSecondsAfterFinished", completion_mode => "completionMode",
    suspend => "suspend", pod_replacement_policy => "podReplacementPolicy", managed_by => "managedBy",
});
message!(batch::CronJob, "CronJob" { metadata => "metadata", spec => "spec", status => _ });
message!(batch::CronJobSpec, "CronJobSpec" {
    schedule => "schedule", time_zone => "timeZone",
    starting_deadline_seconds => "startingDeadlineSeconds", concurrency_policy => "concurrencyPolicy",
    suspend => "suspend", job_template => "jobTemplate",
    successful_jobs_history_limit => "successfulJobsHistoryLimit",
    failed_jobs_history_limit => "failedJobsHistoryLimit",
});
message!(batch::JobTemplateSpec, "JobTemplateSpec" { metadata => "metadata", spec => "spec" });
message!(core::ResourceQuota, "ResourceQuota" { metadata => "metadata", spec => "spec", status => _ });
message!(core::ResourceQuotaSpec, "ResourceQuotaSpec" {
    hard => "hard", scopes => "scopes", scope_selector => !,
});
message!(net::Ingress, "Ingress" { metadata => "metadata", spec => "spec", status => _ });
message!(net::IngressSpec, "IngressSpec" {
    ingress_class_name => "ingressClassName", default_backend => "defaultBackend",
    tls => "tls", rules => "rules",
});
message!(net::IngressBackend, "IngressBackend" { service => "service", resource => ! });
message!(net::IngressServiceBackend, "IngressServiceBackend" { name => "name", port => "port" });
message!(net::ServiceBackendPort, "ServiceBackendPort" { name => "name", number => ["number"] });
message!(net::IngressTls, "IngressTLS" { hosts => "hosts", secret_name => "secretName" });
message!(net::IngressRule, "IngressRule" { host => "host", ingress_rule_value => .. });
message!(net::IngressRuleValue, "IngressRuleValue" { http => "http" });
message!(net::HttpIngressRuleValue, "HTTPIngressRuleValue" { paths => "paths" });
message!(net::HttpIngressPath, "HTTPIngressPath" {
    path => "path", path_type => "pathType", backend => "backend",
});

message!(autoscaling::HorizontalPodAutoscaler, "HorizontalPodAutoscaler" {
    metadata => "metadata", spec => "spec", status => _,
});
message!(autoscaling::HorizontalPodAutoscalerSpec, "HorizontalPodAutoscalerSpec" {
    scale_target_ref => "scaleTargetRef", min_replicas => "minReplicas",
    max_replicas => "maxReplicas",
    target_cpu_utilization_percentage => "targetCPUUtilizationPercentage",
});
message!(autoscaling::CrossVersionObjectReference, "CrossVersionObjectReference" {
    kind => "kind", name => "name", api_version => "apiVersion",
});

message!(rbac::Role, "Role" { metadata => "metadata", rules => "rules" });
message!(rbac::ClusterRole, "ClusterRole" {
    metadata => "metadata", rules => "rules", aggregation_rule => "aggregationRule",
});
message!(rbac::AggregationRule, "AggregationRule" {
    cluster_role_selectors => "clusterRoleSelectors",
});
message!(rbac::PolicyRule, "PolicyRule" {
    verbs => "verbs", api_groups => "apiGroups", resources => "resources",
    resource_names => "resourceNames", non_resource_ur_ls => "nonResourceURLs",
});
message!(rbac::RoleBinding, "RoleBinding" {
    metadata => "metadata", subjects => "subjects", role_ref => "roleRef",
});
message!(rbac::ClusterRoleBinding, "ClusterRoleBinding" {
    metadata => "metadata", subjects => "subjects", role_ref => "roleRef",
});
message!(rbac::Subject, "Subject" {
    kind => "kind", api_group => "apiGroup", name => "name", namespace => "namespace",
});
message!(rbac::RoleRef, "RoleRef" { api_group => "apiGroup", kind => "kind", name => "name" });
message!(authz::SelfSubjectAccessReview, "SelfSubjectAccessReview" {
    metadata => "metadata", spec => "spec", status => _,
});
message!(authz::SelfSubjectAccessReviewSpec, "SelfSubjectAccessReviewSpec" {
    resource_attributes => "resourceAttributes", non_resource_attributes => "nonResourceAttributes",
});
message!(authz::SelfSubjectRulesReview, "SelfSubjectRulesReview" {
    metadata => "metadata", spec => "spec", status => _,
});
message!(authz::SelfSubjectRulesReviewSpec, "SelfSubjectRulesReviewSpec" {
    namespace => "namespace",
});
message!(authz::SubjectAccessReview, "SubjectAccessReview" {
    metadata => "metadata", spec => "spec", status => _,
});
message!(authz::LocalSubjectAccessReview, "LocalSubjectAccessReview" {
    metadata => "metadata", spec => "spec", status => _,
});
message!(authz::SubjectAccessReviewSpec, "SubjectAccessReviewSpec" {
    resource_attributes => "resourceAttributes", non_resource_attributes => "nonResourceAttributes",
    user => "user", groups => "groups", extra => !, uid => "uid",
});
message!(authz::ResourceAttributes, "ResourceAttributes" {
    namespace => "namespace", verb => "verb", group => "group", version => "version",
    resource => "resource", subresource => "subresource", name => "name",
    field_selector => !, label_selector => !,
});
message!(authz::NonResourceAttributes, "NonResourceAttributes" { path => "path", verb => "verb" });
message!(authn::SelfSubjectReview, "SelfSubjectReview" { metadata => "metadata", status => _ });
message!(authn::TokenRequest, "TokenRequest" { metadata => "metadata", spec => "spec", status => _ });
message!(authn::TokenRequestSpec, "TokenRequestSpec" {
    audiences => "audiences", expiration_seconds => "expirationSeconds",
    bound_object_ref => "boundObjectRef",
});
message!(authn::BoundObjectReference, "BoundObjectReference" {
    kind => "kind", api_version => "apiVersion", name => "name", u_id => "uid",
});
message!(authn::TokenReview, "TokenReview" { metadata => "metadata", spec => "spec", status => _ });
message!(authn::TokenReviewSpec, "TokenReviewSpec" { token => "token", audiences => "audiences" });

fn object<M: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, String> {
    M::decode(raw)
        .map_err(|e| format!("invalid protobuf object: {e}"))?
        .to_json()
        .map_err(|field| {
            format!("the protobuf field {field} is not supported yet; send this object as JSON")
        })
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let payload = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("protobuf body does not start with the Kubernetes magic bytes")
    })?;
    let unknown = Unknown::decode(payload)
        .map_err(|e| ApiError::bad_request(format!("invalid protobuf envelope: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let converted = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => object::<core::ConfigMap>(&raw),
        ("v1", "Secret") => object::<core::Secret>(&raw),
        ("v1", "Namespace") => object::<core::Namespace>(&raw),
        ("v1", "ServiceAccount") => object::<core::ServiceAccount>(&raw),
        ("v1", "Service") => object::<core::Service>(&raw),
        ("v1", "ResourceQuota") => object::<core::ResourceQuota>(&raw),
        ("apps/v1", "Deployment") => object::<apps::Deployment>(&raw),
        ("batch/v1", "Job") => object::<batch::Job>(&raw),
        ("batch/v1", "CronJob") => object::<batch::CronJob>(&raw),
        ("networking.k8s.io/v1", "Ingress") => object::<net::Ingress>(&raw),
        ("rbac.authorization.k8s.io/v1", "Role") => object::<rbac::Role>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => object::<rbac::ClusterRole>(&raw),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => object::<rbac::RoleBinding>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            object::<rbac::ClusterRoleBinding>(&raw)
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            object::<authz::SelfSubjectAccessReview>(&raw)
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            object::<authz::SelfSubjectRulesReview>(&raw)
        }
        ("authorization.k8s.io/v1", "SubjectAccessReview") => {
            object::<authz::SubjectAccessReview>(&raw)
        }
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview") => {
            object::<authz::LocalSubjectAccessReview>(&raw)
        }
        ("authentication.k8s.io/v1", "TokenRequest") => object::<authn::TokenRequest>(&raw),
        ("authentication.k8s.io/v1", "TokenReview") => object::<authn::TokenReview>(&raw),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {
            object::<authn::SelfSubjectReview>(&raw)
        }
        ("autoscaling/v1", "HorizontalPodAutoscaler") => {
            object::<autoscaling::HorizontalPodAutoscaler>(&raw)
        }
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "application/vnd.kubernetes.protobuf for {api_version} {kind}"
            )));
        }
    };
    let mut value = converted.map_err(|e| ApiError::new(415, "UnsupportedMediaType", e))?;
    value["apiVersion"] = json!(api_version);
    value["kind"] = json!(kind);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn config_maps_decode_like_their_json() {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: Some("cfg".into()),
                namespace: Some(String::new()),
                creation_timestamp: Some(meta::Time::default()),
                ..Default::default()
            }),
            data: [
                ("a".to_string(), "1".to_string()),
                ("empty".to_string(), String::new()),
            ]
            .into(),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "empty": ""}})
        );
    }

    #[test]
    fn deployments_keep_their_template() {
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels: [("app".to_string(), "web".to_string())].into(),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("busybox".into()),
                            image: Some("busybox".into()),
                            resources: Some(Default::default()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(Default::default()),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox"
        );
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "web");
        assert!(v.get("status").is_none());
    }

    #[test]
    fn unsupported_fields_and_kinds_are_refused_not_dropped() {
        let pod_spec = core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                liveness_probe: Some(core::Probe {
                    period_seconds: Some(5),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let job = batch::Job {
            spec: Some(batch::JobSpec {
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(pod_spec),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = decode(&envelope("batch/v1", "Job", job.encode_to_vec())).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("liveness_probe"), "{}", e.message);
        let e = decode(&envelope("storage.k8s.io/v1", "StorageClass", vec![])).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
    }
}
