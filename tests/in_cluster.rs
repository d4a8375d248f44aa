//! Workloads that talk to the API (needs root): a pod's ServiceAccount
//! token, the cluster CA and its namespace are mounted where in-cluster
//! clients look; the official Python client (`load_incluster_config`) and
//! kubectl inside the pod reach the API through the `kubernetes` Service,
//! get what their Role grants and kube-apiserver's 403 beyond it; the
//! token dies with the pod. The pod runs the host's python3 and kubectl
//! through read-only hostPath mounts of `/usr`.

mod support;

use std::time::Duration;

use support::hosts::TestNet;
use support::registry::Registry;
use support::{Server, eventually};

const WAIT: Duration = Duration::from_secs(90);
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const PYTHON: &str = r#"
from kubernetes import client, config
config.load_incluster_config()
v1 = client.CoreV1Api()
print("mine:", ",".join(sorted(p.metadata.name for p in v1.list_namespaced_pod("app").items)))
try:
    v1.list_namespaced_pod("default")
    print("other: allowed")
except client.exceptions.ApiException as e:
    print("other:", e.status, e.reason)
"#;

#[test]
fn pods_reach_the_api_as_their_service_account() {
    let mut net = TestNet::new(1);
    let registry = Registry::start_on(net.gateway());
    let image = registry.push_busybox();
    let s = Server::start_on(&format!("{}:0", net.gateway()));
    let token = s.dir.path().join("node-token");
    let extra = vec!["--insecure-registry".to_string(), registry.address.clone()];
    net.start_node(0, &s.url, &token, &extra);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        net.log(0)
    );
    s.ok(&["create", "namespace", "app"]);
    s.ok(&["create", "serviceaccount", "reader", "-n", "app"]);
    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "app",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "reader",
        "-n",
        "app",
        "--role=pod-reader",
        "--serviceaccount=app:reader",
    ]);
    let host_usr = |name: &str, path: &str| {
        format!("{{name: {name}, hostPath: {{path: {path}, type: Directory}}}}")
    };
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: app}}
spec:
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: {image}
    command: ["sleep", "3600"]
    env: [{{name: HOME, value: /tmp}}]
    volumeMounts:
    - {{name: usr, mountPath: /usr, readOnly: true}}
    - {{name: lib, mountPath: /lib, readOnly: true}}
    - {{name: lib64, mountPath: /lib64, readOnly: true}}
  volumes: [{usr}, {lib}, {lib64}]
---
apiVersion: v1
kind: Pod
metadata: {{name: quiet, namespace: app}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {image}, command: ["sleep", "3600"]}}
"#,
        usr = host_usr("usr", "/usr"),
        lib = host_usr("lib", "/usr/lib"),
        lib64 = host_usr("lib64", "/usr/lib64"),
    ));
    assert!(
        eventually(WAIT, || s
            .ok(&["get", "pods", "-n", "app"])
            .matches("Running")
            .count()
            == 2),
        "{}\n{}",
        s.ok(&["get", "pods", "-n", "app", "-o", "wide"]),
        s.ok(&["get", "events", "-n", "app"])
    );
    // What admission put in: the account, the volume, the mounts.
    assert_eq!(
        s.ok(&[
            "get",
            "pod",
            "quiet",
            "-n",
            "app",
            "-o",
            "jsonpath={.spec.serviceAccountName} {.spec.volumes}"
        ]),
        "default "
    );
    let volume = s.ok(&[
        "get",
        "pod",
        "client",
        "-n",
        "app",
        "-o",
        "jsonpath={.spec.volumes[3].name}",
    ]);
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let exec_in = |pod: &str, args: &[&str]| {
        let mut all = vec!["exec", pod, "-n", "app", "--"];
        all.extend_from_slice(args);
        let out = s.kubectl(&all);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let exec = |args: &[&str]| exec_in("client", args);
    assert_eq!(exec(&["cat", &format!("{TOKEN_DIR}/namespace")]), "app");
    let ca = std::fs::read_to_string(s.dir.path().join("pki/ca.crt")).unwrap();
    assert_eq!(exec(&["cat", &format!("{TOKEN_DIR}/ca.crt")]), ca);
    let quiet = exec_in("quiet", &["ls", TOKEN_DIR]);
    assert!(
        quiet.contains("No such file"),
        "the quiet pod has no token: {quiet}"
    );

    // The official Python client, configured in-cluster.
    let python = exec(&["python3", "-c", PYTHON]);
    assert!(python.contains("mine: client,quiet"), "{python}");
    assert!(python.contains("other: 403 Forbidden"), "{python}");

    // kubectl in-cluster: no kubeconfig, the mounted token and CA.
    let mine = exec(&["kubectl", "get", "pods", "-o", "name"]);
    assert_eq!(mine, "pod/client\npod/quiet\n", "{mine}");
    let other = exec(&["kubectl", "get", "pods", "-n", "default"]);
    assert!(
        other.contains(
            r#"User "system:serviceaccount:app:reader" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{other}"
    );

    // The token is bound to the pod: it works until the pod is gone.
    let token = exec(&["cat", &format!("{TOKEN_DIR}/token")]);
    let bare = s.kubeconfig_without_credentials();
    let whoami = || {
        std::process::Command::new(support::kubectl_binary())
            .arg("--kubeconfig")
            .arg(&bare)
            .args([
                "--token",
                &token,
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .output()
            .expect("run kubectl")
    };
    let before = whoami();
    assert_eq!(
        String::from_utf8_lossy(&before.stdout),
        "system:serviceaccount:app:reader",
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    s.ok(&["delete", "pod", "client", "-n", "app", "--wait=true"]);
    let after = whoami();
    assert!(!after.status.success());
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}
