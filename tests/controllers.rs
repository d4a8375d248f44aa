//! The scheduler and the workload controllers, driven with the real
//! kubectl against `peapod server` and hollow nodes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Hollow, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// `name -> node` of the pods matching a selector.
fn placement(s: &Server, selector: &str) -> BTreeMap<String, String> {
    let out = s.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, node, phase) = (parts.next()?, parts.next()?, parts.next()?);
            (phase == "Running").then(|| (name.to_string(), node.to_string()))
        })
        .collect()
}

fn running(s: &Server, selector: &str, n: usize) -> bool {
    eventually(WAIT, || placement(s, selector).len() == n)
}

#[test]
fn deployment_spreads_rolls_out_rolls_back_and_scales() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "hn", 3);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=6",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(
        running(&s, "app=web", 6),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let pods = placement(&s, "app=web");
    let rs = s.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let hash = rs
        .strip_prefix("web-")
        .expect("replica set named <deployment>-<hash>");
    assert!(!hash.is_empty());
    for name in pods.keys() {
        let suffix = name
            .strip_prefix(&format!("{rs}-"))
            .expect("pods named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
    }
    let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
    for node in pods.values() {
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "spread: {per_node:?}"
    );

    s.ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let images = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(
        images.split_whitespace().all(|i| i == "busybox:1.37"),
        "{images}"
    );
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    s.ok(&["rollout", "undo", "deployment/web"]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let image = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.36");
    // The undo brought the first ReplicaSet back rather than making a third.
    let sets = s.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(sets.lines().count(), 2, "{sets}");
    assert!(sets.contains(&rs), "{sets}");

    s.ok(&["scale", "deployment/web", "--replicas=2"]);
    assert!(running(&s, "app=web", 2));
    let ready = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}/{.status.replicas}",
    ]);
    assert!(
        eventually(WAIT, || s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.replicas}"
        ]) == "2/2"),
        "{ready}"
    );
    let events = s.ok(&["describe", "deployment", "web"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

#[test]
fn statefulset_pods_come_up_in_order_with_claims() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "hn", 2);
    s.apply(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: busybox
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
",
    );
    assert!(running(&s, "app=db", 3));
    // Each pod was created only after the previous one was running: the
    // controller's events, in the order they were written.
    let created = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=db,reason=SuccessfulCreate",
        "-o",
        "jsonpath={range .items[*]}{.metadata.resourceVersion} {.message}{\"\\n\"}{end}",
    ]);
    let mut order: Vec<(u64, String)> = created
        .lines()
        .filter_map(|l| {
            let (rv, msg) = l.split_once(' ')?;
            Some((rv.parse().ok()?, msg.to_string()))
        })
        .collect();
    order.sort();
    let messages: Vec<&str> = order.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "create Pod db-0 in StatefulSet db successful",
            "create Pod db-1 in StatefulSet db successful",
            "create Pod db-2 in StatefulSet db successful",
        ]
    );
    let claims = s.ok(&["get", "pvc", "-o", "name"]);
    for i in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/data-db-{i}")),
            "{claims}"
        );
    }
    s.ok(&["scale", "statefulset/db", "--replicas=1"]);
    assert!(running(&s, "app=db", 1));
    assert!(placement(&s, "app=db").contains_key("db-0"));
    // Claims outlive their pods.
    assert_eq!(s.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
}

#[test]
fn daemonset_follows_nodes() {
    let s = Server::start();
    let _a = Hollow::start(&s, "ha", 2);
    s.apply(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - {name: agent, image: busybox}
",
    );
    assert!(running(&s, "app=agent", 2));
    let _b = Hollow::start(&s, "hb", 1);
    assert!(running(&s, "app=agent", 3));
    assert!(placement(&s, "app=agent").values().any(|n| n == "hb-0"));
    s.ok(&["delete", "node", "hb-0"]);
    assert!(eventually(WAIT, || !placement(&s, "app=agent")
        .values()
        .any(|n| n == "hb-0")));
    assert!(running(&s, "app=agent", 2));
}

#[test]
fn jobs_complete_and_cronjobs_fire() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "hn", 2);
    s.apply(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: batch
spec:
  completions: 3
  parallelism: 2
  template:
    metadata:
      annotations: {peapod.dev/hollow-exit-code: \"0\"}
    spec:
      restartPolicy: Never
      containers:
      - {name: work, image: busybox}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: \"* * * * *\"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {peapod.dev/hollow-exit-code: \"0\"}
        spec:
          restartPolicy: Never
          containers:
          - {name: tick, image: busybox}
",
    );
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/batch",
        "--timeout=60s",
    ]);
    let done = s.ok(&["get", "job", "batch", "-o", "jsonpath={.status.succeeded}"]);
    assert_eq!(done, "3");
    // The schedule fires at the next minute boundary.
    assert!(
        eventually(Duration::from_secs(90), || {
            s.ok(&["get", "jobs", "-o", "name"])
                .contains("job.batch/tick-")
        }),
        "{}",
        s.ok(&["get", "cronjob,jobs"])
    );
    assert!(eventually(WAIT, || {
        !s.ok(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ])
        .is_empty()
    }));
}

#[test]
fn cascading_orphaning_and_foreground_deletes() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "hn", 2);
    for name in ["bg", "orphan", "fg"] {
        s.ok(&[
            "create",
            "deployment",
            name,
            "--image=busybox",
            "--replicas=2",
        ]);
    }
    for name in ["bg", "orphan", "fg"] {
        assert!(running(&s, &format!("app={name}"), 2));
    }
    s.ok(&["delete", "deployment", "bg"]);
    assert!(eventually(WAIT, || s
        .ok(&["get", "rs,pods", "-l", "app=bg", "-o", "name"])
        .is_empty()));

    let rs = s.ok(&[
        "get",
        "rs",
        "-l",
        "app=orphan",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    s.ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    s.ok(&["delete", "rs", &rs, "--cascade=orphan"]);
    std::thread::sleep(Duration::from_secs(2));
    let left = placement(&s, "app=orphan");
    assert_eq!(left.len(), 2, "orphaned pods stay");
    let owners = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=orphan",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}",
    ]);
    assert!(owners.trim().is_empty(), "{owners}");

    s.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(eventually(WAIT, || s
        .ok(&["get", "deploy,rs,pods", "-l", "app=fg", "-o", "name"])
        .is_empty()));
}

#[test]
fn pods_of_a_dead_node_come_back_elsewhere() {
    let s = Server::start_with(&[
        "--node-monitor-grace-period",
        "15",
        "--pod-eviction-timeout",
        "2",
    ]);
    let _healthy = Hollow::start(&s, "ok", 2);
    let doomed = Hollow::start(&s, "doomed", 1);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=6",
    ]);
    assert!(running(&s, "app=web", 6));
    assert!(placement(&s, "app=web").values().any(|n| n == "doomed-0"));
    doomed.kill();
    assert!(
        eventually(Duration::from_secs(90), || {
            let p = placement(&s, "app=web");
            p.len() == 6 && p.values().all(|n| n.starts_with("ok-"))
        }),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let node = s.ok(&[
        "get",
        "node",
        "doomed-0",
        "-o",
        "jsonpath={.spec.taints[0].key} {.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(node, "node.kubernetes.io/unreachable Unknown");
}

#[test]
fn scheduler_filters_and_explains_pending_pods() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "hn", 3);
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - name: c
    image: busybox
    resources: {requests: {cpu: \"64\"}}
---
apiVersion: v1
kind: Pod
metadata: {name: hoarder}
spec:
  # Three near the largest quantity: their sum must not overflow.
  containers:
  - {name: a, image: busybox, resources: {limits: {ephemeral-storage: 7Ei}}}
  - {name: b, image: busybox, resources: {limits: {ephemeral-storage: 7Ei}}}
  - {name: c, image: busybox, resources: {limits: {ephemeral-storage: 7Ei}}}
",
    );
    for (pod, why) in [
        ("huge", "3 Insufficient cpu."),
        ("hoarder", "3 Insufficient ephemeral-storage."),
    ] {
        assert!(eventually(WAIT, || s.ok(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}"
        ]) == "Unschedulable"));
        let d = s.ok(&["describe", "pod", pod]);
        assert!(
            d.contains(&format!("0/3 nodes are available: {why}")),
            "{d}"
        );
    }

    s.ok(&["label", "node", "hn-1", "disk=ssd"]);
    s.ok(&["taint", "node", "hn-2", "dedicated=infra:NoSchedule"]);
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {disk: ssd}
  containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: spread}}
            topologyKey: kubernetes.io/hostname
      containers: [{name: c, image: busybox}]
",
    );
    assert!(eventually(WAIT, || s.ok(&[
        "get",
        "pod",
        "picky",
        "-o",
        "jsonpath={.spec.nodeName}"
    ]) == "hn-1"));
    // hn-2 is tainted and anti-affinity allows one per node: two run, one waits.
    assert!(running(&s, "app=spread", 2));
    let nodes: Vec<String> = placement(&s, "app=spread").into_values().collect();
    assert!(!nodes.contains(&"hn-2".to_string()), "{nodes:?}");
    assert!(eventually(WAIT, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .contains("node(s) didn't match pod anti-affinity rules")
    }));
}

#[test]
fn services_get_addresses_ports_and_endpoints() {
    let s = Server::start();
    let _nodes = Hollow::start(&s, "svc", 2);
    s.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9000, targetPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
"#,
    );
    // Cluster IPs come from the Service range, the API's own first.
    let ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        ip.starts_with("10.96.") && ip != "10.96.0.1",
        "cluster IP {ip}"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}"
        ]),
        "10.96.0.1"
    );
    assert_eq!(
        s.ok(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "web-np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        "30080"
    );
    // An address or node port already taken is refused as Kubernetes does.
    let err = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n",
    );
    let err = String::from_utf8_lossy(&err.stderr).to_string();
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{err}"
    );
    let err = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: clash2}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"),
    );
    assert!(String::from_utf8_lossy(&err.stderr).contains("provided IP is already allocated"));
    // Endpoints follow the ready pods, with named ports resolved.
    assert!(eventually(WAIT, || {
        let eps = s.ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}|{.subsets[0].ports[*].port}",
        ]);
        let (ips, ports) = eps.split_once('|').unwrap_or_default();
        ips.split_whitespace().count() == 2 && ports.contains("8080") && ports.contains("9090")
    }));
    assert!(eventually(WAIT, || s
        .ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[*].addresses[0]}"
        ])
        .split_whitespace()
        .count()
        == 2));
    s.ok(&["scale", "deployment", "web", "--replicas=1"]);
    assert!(eventually(WAIT, || s
        .ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}"
        ])
        .split_whitespace()
        .count()
        == 1));
    s.ok(&["delete", "svc", "web"]);
    assert!(eventually(WAIT, || !s
        .kubectl(&["get", "endpoints", "web"])
        .status
        .success()));
}
