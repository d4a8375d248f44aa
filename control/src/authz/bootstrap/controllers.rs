//! The control plane's own loops, each with its own identity and only
//! the rights it uses, as kube-controller-manager run with
//! `--use-service-account-credentials`: controller `x` acts as the
//! ServiceAccount `kube-system/x`, bound to the ClusterRole
//! `system:controller:x`; the scheduler is the user `system:kube-scheduler`
//! with the role of that name.

use serde_json::{Value, json};

use super::{READ, cluster_role, metadata, rule};

/// The scheduler's user (and its role's name).
pub const SCHEDULER: &str = "system:kube-scheduler";

/// The controllers' ServiceAccounts in `kube-system`.
pub const REPLICASET: &str = "replicaset-controller";
pub const DEPLOYMENT: &str = "deployment-controller";
pub const STATEFULSET: &str = "statefulset-controller";
pub const DAEMONSET: &str = "daemon-set-controller";
pub const JOB: &str = "job-controller";
pub const CRONJOB: &str = "cronjob-controller";
pub const GARBAGE_COLLECTOR: &str = "generic-garbage-collector";
pub const ENDPOINTS: &str = "endpoint-controller";
pub const HPA: &str = "horizontal-pod-autoscaler";
pub const KNATIVE: &str = "knative-controller";
pub const AGGREGATION: &str = "clusterrole-aggregation-controller";
pub const ROOT_CA: &str = "root-ca-cert-publisher";
pub const NODE_IPAM: &str = "node-ipam-controller";
pub const NODE_LIFECYCLE: &str = "node-controller";

/// Every controller account, for the server to give each a credential.
pub const ACCOUNTS: &[&str] = &[
    REPLICASET,
    DEPLOYMENT,
    STATEFULSET,
    DAEMONSET,
    JOB,
    CRONJOB,
    GARBAGE_COLLECTOR,
    ENDPOINTS,
    HPA,
    KNATIVE,
    AGGREGATION,
    ROOT_CA,
    NODE_IPAM,
    NODE_LIFECYCLE,
];

/// The user name a controller account authenticates as.
pub fn user_name(account: &str) -> String {
    format!("system:serviceaccount:kube-system:{account}")
}

/// The groups of a controller account, as of any ServiceAccount.
pub fn groups() -> Vec<String> {
    [
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ]
    .map(String::from)
    .to_vec()
}

const ALL: &[&str] = &["*"];
const OWN: &[&str] = &["get", "list", "watch", "update", "patch"];
const STATUS: &[&str] = &["update", "patch"];
const CRUD: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn events() -> Value {
    rule(
        &["", "events.k8s.io"],
        &["events"],
        &["create", "update", "patch"],
    )
}

/// A workload controller's rules on its own kind (`group`/`plural`).
fn owns(group: &str, plural: &str) -> Vec<Value> {
    vec![
        rule(&[group], &[plural], OWN),
        rule(&[group], &[&format!("{plural}/status")], STATUS),
        rule(&[group], &[&format!("{plural}/finalizers")], &["update"]),
    ]
}

fn with(mut rules: Vec<Value>, more: Vec<Value>) -> Vec<Value> {
    rules.extend(more);
    rules.push(events());
    rules
}

/// Each controller account and its rules.
fn rules() -> Vec<(&'static str, Vec<Value>)> {
    let pods_managed = rule(
        &[""],
        &["pods"],
        &["get", "list", "watch", "create", "delete", "patch"],
    );
    let revisions = rule(&["apps"], &["controllerrevisions"], CRUD);
    let node_stats = vec![
        rule(&[""], &["nodes"], READ),
        rule(&[""], &["nodes/proxy"], &["get"]),
    ];
    vec![
        (
            REPLICASET,
            with(owns("apps", "replicasets"), vec![pods_managed.clone()]),
        ),
        (
            DEPLOYMENT,
            with(
                owns("apps", "deployments"),
                vec![
                    rule(&["apps"], &["replicasets"], CRUD),
                    rule(&[""], &["pods"], &["get", "list", "watch", "update"]),
                ],
            ),
        ),
        (
            STATEFULSET,
            with(
                owns("apps", "statefulsets"),
                vec![
                    rule(
                        &[""],
                        &["pods"],
                        &[
                            "get", "list", "watch", "create", "delete", "update", "patch",
                        ],
                    ),
                    revisions.clone(),
                    rule(&[""], &["persistentvolumeclaims"], CRUD),
                ],
            ),
        ),
        (
            DAEMONSET,
            with(
                owns("apps", "daemonsets"),
                vec![
                    rule(&[""], &["nodes"], READ),
                    pods_managed.clone(),
                    rule(&[""], &["pods/binding"], &["create"]),
                    revisions,
                ],
            ),
        ),
        (JOB, with(owns("batch", "jobs"), vec![pods_managed])),
        (
            CRONJOB,
            with(
                owns("batch", "cronjobs"),
                vec![
                    rule(&["batch"], &["jobs"], CRUD),
                    rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                ],
            ),
        ),
        (
            GARBAGE_COLLECTOR,
            vec![rule(
                ALL,
                ALL,
                &["get", "list", "watch", "patch", "update", "delete"],
            )],
        ),
        (
            ENDPOINTS,
            with(
                vec![
                    rule(&[""], &["services", "pods"], READ),
                    rule(&[""], &["endpoints"], CRUD),
                    rule(&[""], &["endpoints/restricted"], &["create"]),
                    rule(&["discovery.k8s.io"], &["endpointslices"], CRUD),
                ],
                vec![],
            ),
        ),
        (
            HPA,
            with(
                vec![
                    rule(&["autoscaling"], &["horizontalpodautoscalers"], READ),
                    rule(
                        &["autoscaling"],
                        &["horizontalpodautoscalers/status"],
                        STATUS,
                    ),
                    rule(ALL, &["*/scale"], &["get", "update", "patch"]),
                    rule(&[""], &["pods"], READ),
                    rule(&["metrics.k8s.io"], &["pods"], &["get", "list"]),
                ],
                node_stats.clone(),
            ),
        ),
        (
            KNATIVE,
            with(
                vec![
                    rule(&["serving.knative.dev"], ALL, ALL),
                    rule(&["apps"], &["deployments", "deployments/scale"], ALL),
                    rule(&[""], &["services"], ALL),
                    rule(&["networking.k8s.io"], &["ingresses"], ALL),
                    rule(&[""], &["pods"], READ),
                ],
                node_stats,
            ),
        ),
        (
            AGGREGATION,
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["escalate", "get", "list", "patch", "update", "watch"],
            )],
        ),
        (
            ROOT_CA,
            with(
                vec![
                    rule(
                        &[""],
                        &["configmaps"],
                        &["get", "list", "watch", "create", "update", "patch"],
                    ),
                    rule(&[""], &["namespaces"], READ),
                ],
                vec![],
            ),
        ),
        (
            NODE_IPAM,
            with(
                vec![
                    rule(
                        &[""],
                        &["nodes"],
                        &["get", "list", "watch", "update", "patch"],
                    ),
                    rule(&[""], &["nodes/status"], STATUS),
                ],
                vec![],
            ),
        ),
        (
            NODE_LIFECYCLE,
            with(
                vec![
                    rule(
                        &[""],
                        &["nodes"],
                        &["get", "list", "watch", "update", "patch", "delete"],
                    ),
                    rule(&[""], &["nodes/status"], STATUS),
                    rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                    rule(&[""], &["pods/status"], STATUS),
                    rule(&["coordination.k8s.io"], &["leases"], READ),
                ],
                vec![],
            ),
        ),
    ]
}

fn scheduler_rules() -> Vec<Value> {
    vec![
        rule(&[""], &["nodes"], READ),
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
        rule(&[""], &["pods/binding", "bindings"], &["create"]),
        rule(&[""], &["pods/status"], STATUS),
        rule(&["node.k8s.io"], &["runtimeclasses"], READ),
        rule(&["coordination.k8s.io"], &["leases"], CRUD),
        events(),
    ]
}

pub fn cluster_roles() -> Vec<Value> {
    let mut out: Vec<Value> = rules()
        .into_iter()
        .map(|(account, rules)| cluster_role(&format!("system:controller:{account}"), &[], rules))
        .collect();
    out.push(cluster_role(SCHEDULER, &[], scheduler_rules()));
    out
}

pub fn cluster_role_bindings() -> Vec<Value> {
    let bind = |name: &str, subject: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": metadata(name, &[]),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject]})
    };
    let mut out: Vec<Value> = ACCOUNTS
        .iter()
        .map(|account| {
            bind(
                &format!("system:controller:{account}"),
                json!({"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}),
            )
        })
        .collect();
    out.push(bind(
        SCHEDULER,
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SCHEDULER}),
    ));
    out
}
