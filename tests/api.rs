//! The API server as kubectl users meet it: every test starts a real
//! `peapod server` and drives it with the real `kubectl`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use support::{Server, eventually, manifest};

fn everyday() -> String {
    manifest("everyday.yaml").display().to_string()
}

#[test]
fn apply_of_a_multi_document_manifest_creates_every_kind() {
    let s = Server::start();
    let out = s.ok(&["apply", "-f", &everyday()]);
    for line in [
        "namespace/shop created",
        "configmap/settings created",
        "secret/credentials created",
        "deployment.apps/web created",
        "service/web created",
        "ingress.networking.k8s.io/web created",
        "statefulset.apps/db created",
        "job.batch/migrate created",
        "cronjob.batch/report created",
        "horizontalpodautoscaler.autoscaling/web created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let all = s.ok(&["get", "all", "-n", "shop"]);
    for name in [
        "service/web",
        "deployment.apps/web",
        "statefulset.apps/db",
        "job.batch/migrate",
        "cronjob.batch/report",
        "horizontalpodautoscaler.autoscaling/web",
    ] {
        assert!(all.contains(name), "get all lacks {name}:\n{all}");
    }
    // Table columns as Kubernetes prints them, with -o wide extras.
    let svc = s.ok(&["get", "svc", "web", "-n", "shop", "-o", "wide"]);
    assert!(svc.starts_with("NAME   TYPE        CLUSTER-IP"), "{svc}");
    assert!(
        svc.contains("80/TCP,9090/TCP") && svc.contains("app=web"),
        "{svc}"
    );
    let deploy = s.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    assert!(
        deploy.contains("CONTAINERS") && deploy.contains("busybox:1.36") && deploy.contains("0/2"),
        "{deploy}"
    );
    let yaml = s.ok(&["get", "cm", "settings", "-n", "shop", "-o", "yaml"]);
    assert!(
        yaml.contains("greeting: hello") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let name = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].ports[0].name}",
    ]);
    assert_eq!(name, "http");
    // Server-set defaults and fields.
    let strategy = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.metadata.generation}",
    ]);
    assert_eq!(strategy, "25% 1");
    let secret = s.ok(&[
        "get",
        "secret",
        "credentials",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(secret, "czNjcjN0", "stringData is folded into data");
    let job = s.ok(&[
        "get",
        "job",
        "migrate",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.metadata.labels.job-name}",
    ]);
    assert_eq!(job, "migrate");
    let all_ns = s.ok(&["get", "deploy", "-A"]);
    assert!(all_ns.starts_with("NAMESPACE"), "{all_ns}");
}

#[test]
fn describe_label_annotate_edit_and_patch() {
    let s = Server::start();
    s.ok(&["apply", "-f", &everyday()]);
    let d = s.ok(&["describe", "deploy", "web", "-n", "shop"]);
    assert!(
        d.contains("Replicas:")
            && d.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{d}"
    );
    s.ok(&["label", "deploy", "web", "-n", "shop", "team=blue"]);
    s.ok(&["annotate", "deploy", "web", "-n", "shop", "owner=ops"]);
    let meta = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.labels.team} {.metadata.annotations.owner}",
    ]);
    assert_eq!(meta, "blue ops");

    let out = s
        .command(&["edit", "deploy", "web", "-n", "shop"])
        .env("KUBE_EDITOR", "sed -i s/replicas:\\ 2/replicas:\\ 4/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "4"
    );

    s.ok(&["patch", "deploy", "web", "-n", "shop", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","image":"busybox:1.37"}]}}}}"#]);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ]);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    let after = s.ok(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].command[0]} {.metadata.labels.merged} {.spec.replicas}"]);
    // The strategic patch merged into the container by name, keeping its command.
    assert_eq!(after, "busybox:1.37 httpd yes 3");
    s.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=1"]);
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "1"
    );
}

#[test]
fn create_generators_send_protobuf_and_work() {
    let s = Server::start();
    s.ok(&["create", "namespace", "gen"]);
    s.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "gen",
        "--from-literal=a=1",
        "--from-literal=b=",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "gen",
        "--from-literal=user=admin",
    ]);
    s.ok(&[
        "create",
        "deployment",
        "app",
        "-n",
        "gen",
        "--image=busybox",
        "--replicas=2",
        "--port=8080",
        "--",
        "sleep",
        "3600",
    ]);
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "app",
        "-n",
        "gen",
        "--tcp=80:8080",
    ]);
    s.ok(&[
        "create",
        "job",
        "once",
        "-n",
        "gen",
        "--image=busybox",
        "--",
        "true",
    ]);
    s.ok(&[
        "create",
        "cronjob",
        "tick",
        "-n",
        "gen",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "date",
    ]);
    s.ok(&["create", "serviceaccount", "robot", "-n", "gen"]);
    s.ok(&["create", "quota", "q", "-n", "gen", "--hard=pods=10"]);
    s.ok(&[
        "create",
        "ingress",
        "ing",
        "-n",
        "gen",
        "--rule=app.example.com/*=app:80",
    ]);
    assert_eq!(
        s.ok(&["get", "cm", "cfg", "-n", "gen", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "secret",
            "sec",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.user}"
        ]),
        "YWRtaW4="
    );
    let d = s.ok(&["get", "deploy", "app", "-n", "gen", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].command[1]} {.spec.template.spec.containers[0].ports[0].containerPort}"]);
    assert_eq!(d, "2 3600 8080");
    let svc = s.ok(&[
        "get",
        "svc",
        "app",
        "-n",
        "gen",
        "-o",
        "jsonpath={.spec.ports[0].port}:{.spec.ports[0].targetPort}",
    ]);
    assert_eq!(svc, "80:8080");
    assert_eq!(
        s.ok(&[
            "get",
            "cronjob",
            "tick",
            "-n",
            "gen",
            "-o",
            "jsonpath={.spec.schedule}"
        ]),
        "*/1 * * * *"
    );
    let ing = s.ok(&[
        "get",
        "ing",
        "ing",
        "-n",
        "gen",
        "-o",
        "jsonpath={.spec.rules[0].host} {.spec.rules[0].http.paths[0].backend.service.name}",
    ]);
    assert_eq!(ing, "app.example.com app");
}

/// A `kind: List` manifest, as `kubectl get -o yaml` writes one, applies
/// again; kubectl validates Lists against OpenAPI v2, and the server still
/// refuses an item with an unknown field.
#[test]
fn a_list_from_get_o_yaml_applies_again() {
    let s = Server::start();
    s.ok(&["create", "configmap", "one", "--from-literal=a=1"]);
    s.ok(&["create", "configmap", "two", "--from-literal=b=2"]);
    let saved = s.ok(&["get", "configmaps", "one", "two", "-o", "yaml"]);
    assert!(saved.contains("kind: List"), "{saved}");
    s.ok(&["delete", "configmap", "one", "two"]);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &saved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.ok(&[
            "get",
            "configmaps",
            "one",
            "two",
            "-o",
            "jsonpath={.items[*].data}"
        ]),
        r#"{"a":"1"} {"b":"2"}"#
    );
    let bad = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "three"}, "bogus": 1}]}"#;
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"unknown field "bogus""#), "{err}");
}

#[test]
fn reapplying_a_changed_manifest_updates_and_bumps_generation() {
    let s = Server::start();
    s.ok(&["apply", "-f", &everyday()]);
    let changed = std::fs::read_to_string(manifest("everyday.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 5")
        .replace("mode: production", "mode: staging");
    let out = s.apply(&changed);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let d = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(d, "5 2");
    // Server-side apply creates and updates too.
    let ssa = std::fs::read_to_string(manifest("everyday.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &ssa);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web serverside-applied")
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
    let fresh = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-new\n  namespace: default\ndata:\n  k: v\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.ok(&["get", "cm", "ssa-new", "-o", "jsonpath={.data.k}"]),
        "v"
    );
}

#[test]
fn watch_sees_added_modified_and_deleted() {
    let s = Server::start();
    let mut watch = s
        .command(&[
            "get",
            "configmaps",
            "-n",
            "default",
            "-w",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Wait until the watch is established (it lists first).
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    s.ok(&["label", "configmap", "watched", "x=y"]);
    s.ok(&["delete", "configmap", "watched"]);
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        seen.push(line);
        if seen.iter().any(|l| l.starts_with("DELETED")) {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let kinds: Vec<&str> = seen
        .iter()
        .filter(|l| l.contains("watched"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{seen:?}");
}

#[test]
fn label_selectors_equality_and_set_based() {
    let s = Server::start();
    // (`set=s` keeps out the namespace's own kube-root-ca.crt.)
    for (name, labels) in [
        ("a", "set=s,env=prod,tier=web"),
        ("b", "set=s,env=dev,tier=web"),
        ("c", "set=s,env=prod"),
    ] {
        s.ok(&["create", "configmap", name]);
        let mut args = vec!["label", "configmap", name];
        args.extend(labels.split(','));
        s.ok(&args);
    }
    let names = |sel: &str| {
        s.ok(&[
            "get",
            "cm",
            "-l",
            &format!("set=s,{sel}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
    };
    assert_eq!(names("env=prod"), "a c");
    assert_eq!(names("env!=prod"), "b");
    assert_eq!(names("env in (prod,dev),tier=web"), "a b");
    assert_eq!(names("env notin (prod)"), "b");
    assert_eq!(names("!tier"), "c");
    assert_eq!(names("tier"), "a b");
    let fields = s.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=b",
        "-o",
        "name",
    ]);
    assert_eq!(fields.trim(), "configmap/b");
    let err = s.fails(&["get", "cm", "-l", "env in prod"]);
    assert!(!err.is_empty());
}

#[test]
fn api_resources_and_explain() {
    let s = Server::start();
    let r = s.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "horizontalpodautoscalers",
        "endpointslices",
        "runtimeclasses",
        "leases",
    ] {
        assert!(r.contains(line), "api-resources lacks {line}:\n{r}");
    }
    let e = s.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        e.contains("rollingUpdate") && e.contains("KIND:       Deployment"),
        "{e}"
    );
    let e = s.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(e.contains("containerPort"), "{e}");
}

#[test]
fn invalid_manifests_and_stale_updates_get_kubernetes_errors() {
    let s = Server::start();
    let bad = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: Bad_Name
spec:
  selector:
    matchLabels: {app: one}
  template:
    metadata:
      labels: {app: two}
    spec:
      containers:
      - name: c
";
    let out = s.kubectl_stdin(&["apply", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"The Deployment "Bad_Name" is invalid"#),
        "{err}"
    );
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    assert!(err.contains("spec.template.metadata.labels: Invalid value: {\"app\":\"two\"}: `selector` does not match template `labels`"), "{err}");
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );

    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\nbogus: 1\n";
    let out = s.kubectl_stdin(&["apply", "-f", "-"], unknown);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(r#"strict decoding error: unknown field "bogus""#)
    );

    s.ok(&["create", "configmap", "stale", "--from-literal=a=1"]);
    let old = s.ok(&["get", "configmap", "stale", "-o", "json"]);
    s.ok(&["label", "configmap", "stale", "bump=1"]);
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &old);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"Operation cannot be fulfilled on configmaps "stale": the object has been modified; please apply your changes to the latest version and try again"#), "{err}");

    let err = s.fails(&["get", "deployment", "missing"]);
    assert!(
        err.contains(r#"Error from server (NotFound): deployments.apps "missing" not found"#),
        "{err}"
    );
    let err = s.fails(&["create", "configmap", "stale"]);
    assert!(
        err.contains(r#"configmaps "stale" already exists"#),
        "{err}"
    );
    let err = s.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
}

#[test]
fn requests_without_a_valid_token_are_unauthorized() {
    let s = Server::start();
    let config = s.kubeconfig_without_credentials();
    let with_token = |token: &str| {
        s.command(&["get", "pods", "--token", token])
            .env("KUBECONFIG", &config)
            .output()
            .unwrap()
    };
    let out = with_token("not-the-token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("You must be logged in to the server"), "{err}");
    // The admin token (beside the admin's certificate) still works.
    let admin = std::fs::read_to_string(s.dir.path().join("pki/admin-token")).unwrap();
    let out = with_token(admin.trim());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Health endpoints stay open, as in Kubernetes.
    let out = s.ok(&["get", "--raw", "/healthz"]);
    assert_eq!(out, "ok");
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    let s = Server::start();
    s.ok(&["apply", "-f", &everyday()]);
    let out = s.ok(&["delete", "namespace", "shop", "--timeout=60s"]);
    assert!(out.contains("namespace \"shop\" deleted"), "{out}");
    assert!(eventually(Duration::from_secs(10), || {
        !s.ok(&["get", "ns", "-o", "name"])
            .contains("namespace/shop")
    }));
    let err = s.fails(&["create", "configmap", "late", "-n", "shop"]);
    assert!(err.contains("namespaces \"shop\" not found"), "{err}");
    // Every namespace has its default service account.
    assert!(eventually(Duration::from_secs(10), || {
        s.kubectl(&["get", "sa", "default", "-n", "kube-system"])
            .status
            .success()
    }));
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let s = Server::start();
    s.ok(&["apply", "-f", &everyday()]);
    s.ok(&["create", "configmap", "last-write", "--from-literal=k=v"]);
    let before = s.ok(&["get", "all,cm,secret", "-A", "-o", "name"]);
    let dir = s.kill();
    let s = Server::start_in(dir);
    let after = s.ok(&["get", "all,cm,secret", "-A", "-o", "name"]);
    assert_eq!(before, after);
    assert_eq!(
        s.ok(&["get", "cm", "last-write", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    // Revisions continue where they left off.
    s.ok(&["label", "cm", "last-write", "after=restart"]);
}
