//! Which fields strategic merge patch merges instead of replacing, and by
//! which key: the `patchStrategy` / `patchMergeKey` struct tags of the
//! Kubernetes API types. Every list not named here is atomic (replaced
//! whole); every map merges key by key.
//!
//! The same table decorates the served OpenAPI schemas with
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`, which is
//! where kubectl's client-side apply learns how to build its patches.

pub struct PatchField {
    /// OpenAPI schema name of the parent type.
    pub schema: &'static str,
    /// JSON name of the field.
    pub field: &'static str,
    /// `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    pub merge_key: Option<&'static str>,
}

const fn merge(schema: &'static str, field: &'static str, key: &'static str) -> PatchField {
    PatchField {
        schema,
        field,
        strategy: "merge",
        merge_key: Some(key),
    }
}

const fn set(schema: &'static str, field: &'static str) -> PatchField {
    PatchField {
        schema,
        field,
        strategy: "merge",
        merge_key: None,
    }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";

pub const PATCH_FIELDS: &[PatchField] = &[
    merge(META, "ownerReferences", "uid"),
    set(META, "finalizers"),
    PatchField {
        schema: POD_SPEC,
        field: "volumes",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge(POD_SPEC, "initContainers", "name"),
    merge(POD_SPEC, "containers", "name"),
    merge(POD_SPEC, "ephemeralContainers", "name"),
    merge(POD_SPEC, "imagePullSecrets", "name"),
    merge(POD_SPEC, "hostAliases", "ip"),
    merge(POD_SPEC, "topologySpreadConstraints", "topologyKey"),
    merge(POD_SPEC, "schedulingGates", "name"),
    PatchField {
        schema: POD_SPEC,
        field: "resourceClaims",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge(CONTAINER, "ports", "containerPort"),
    merge(CONTAINER, "env", "name"),
    merge(CONTAINER, "volumeMounts", "mountPath"),
    merge(CONTAINER, "volumeDevices", "devicePath"),
    merge(EPHEMERAL, "ports", "containerPort"),
    merge(EPHEMERAL, "env", "name"),
    merge(EPHEMERAL, "volumeMounts", "mountPath"),
    merge(EPHEMERAL, "volumeDevices", "devicePath"),
    merge(POD_STATUS, "conditions", "type"),
    merge(POD_STATUS, "hostIPs", "ip"),
    merge(POD_STATUS, "podIPs", "ip"),
    PatchField {
        schema: POD_STATUS,
        field: "resourceClaimStatuses",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge(
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "mountPath",
    ),
    merge(
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "name",
    ),
    merge("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
    merge("io.k8s.api.core.v1.ServiceStatus", "conditions", "type"),
    set("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
    merge("io.k8s.api.core.v1.NodeStatus", "conditions", "type"),
    merge("io.k8s.api.core.v1.NodeStatus", "addresses", "type"),
    merge("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type"),
    merge(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "type",
    ),
    merge("io.k8s.api.core.v1.ServiceAccount", "secrets", "name"),
    PatchField {
        schema: "io.k8s.api.apps.v1.DeploymentSpec",
        field: "strategy",
        strategy: "retainKeys",
        merge_key: None,
    },
    merge("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type"),
    merge("io.k8s.api.batch.v1.JobStatus", "conditions", "type"),
    merge(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "type",
    ),
];

/// The strategy of `field` in the type named `schema`, if it is not the default.
pub fn lookup(schema: &str, field: &str) -> Option<&'static PatchField> {
    PATCH_FIELDS
        .iter()
        .find(|f| f.schema == schema && f.field == field)
}
