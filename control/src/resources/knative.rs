//! Knative Serving's `serving.knative.dev/v1` kinds that Peapod serves:
//! Service (`ksvc`) and Revision, with the fields real Knative manifests
//! use. `k8s-openapi` has no types for them, so they are declared here and
//! given the same traits, which lets the catalog, OpenAPI and kube-rs treat
//! them like the built-in kinds.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "serving.knative.dev";
pub const VERSION: &str = "v1";

/// What a Revision runs: a pod spec plus Knative's serving settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSpec {
    #[serde(flatten)]
    pub pod: PodSpec,
    /// Requests one pod serves at once (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// A request still running after this many seconds fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<RevisionSpec>,
}

/// Where a share of the traffic goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<RevisionTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Vec<TrafficTarget>>,
}

macro_rules! knative_kind {
    ($name:ident, $spec:ty, $kind:literal, $list:literal, $plural:literal, $schema:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        #[schemars(rename = $schema)]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub spec: Option<$spec>,
            /// Written by Peapod's controller, in Knative's shape.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
            pub status: Option<Value>,
        }

        served_kind!(
            $name,
            "serving.knative.dev/v1",
            GROUP,
            VERSION,
            $kind,
            $list,
            $plural,
            NamespaceResourceScope
        );
    };
}

knative_kind!(
    KnativeService,
    ServiceSpec,
    "Service",
    "ServiceList",
    "services",
    "dev.knative.serving.v1.Service",
    "A Knative Service: a function's template and its traffic."
);
knative_kind!(
    Revision,
    RevisionSpec,
    "Revision",
    "RevisionList",
    "revisions",
    "dev.knative.serving.v1.Revision",
    "An immutable snapshot of a Knative Service's template."
);
