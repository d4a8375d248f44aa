//! Resource metrics and the HorizontalPodAutoscaler end to end (needs
//! root): `kubectl top` shows the CPU and memory of real OCI pods and of
//! the node; `kubectl autoscale` (which writes `autoscaling/v1`) on a
//! CPU-burning busybox Deployment scales it out to its maximum, and once
//! the pods go idle the HPA scales it back in.

mod support;

use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(120);

fn replicas(s: &Server) -> i64 {
    s.ok(&[
        "get",
        "deployment",
        "burn",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .parse()
    .unwrap_or(-1)
}

#[test]
fn top_shows_usage_and_the_hpa_scales_on_cpu() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("hpa", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    let s = Server::up(flags);
    s.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {{app: burn}}
  template:
    metadata:
      labels: {{app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: burn
          image: {image}
          command: ["sh", "-c", "while true; do :; done"]
          resources:
            requests: {{cpu: 100m, memory: 8Mi}}
"#
    ));

    // The metrics API: a busy pod uses most of a core; the node shows too.
    let burning = || {
        let top = s.kubectl(&["top", "pods", "--no-headers"]);
        let out = String::from_utf8_lossy(&top.stdout).to_string();
        out.lines().any(|l| {
            l.starts_with("burn-")
                && l.split_whitespace()
                    .nth(1)
                    .and_then(|c| c.strip_suffix('m'))
                    .and_then(|c| c.parse::<u32>().ok())
                    .is_some_and(|m| m > 300)
        })
    };
    assert!(
        eventually(WAIT, burning),
        "{}\n{}",
        String::from_utf8_lossy(&s.kubectl(&["top", "pods"]).stderr),
        s.log()
    );
    let nodes = s.ok(&["top", "nodes", "--no-headers"]);
    assert!(nodes.starts_with("hpa-node"), "{nodes}");
    let containers = s.ok(&["top", "pods", "--containers", "--no-headers"]);
    assert!(containers.contains(" burn "), "{containers}");

    // Prometheus metrics of the API server, the scheduler and the node.
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for family in [
        "apiserver_request_duration_seconds_count{verb=\"GET\",code=\"200\"}",
        "scheduler_pod_scheduling_duration_seconds_count",
        "kubelet_pod_start_duration_seconds_count{runtime=\"oci\"}",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }

    // kubectl autoscale writes autoscaling/v1; the controller scales out.
    s.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    assert_eq!(
        s.ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "burn",
            "-o",
            "jsonpath={.spec.targetCPUUtilizationPercentage}"
        ]),
        "50"
    );
    assert!(
        eventually(WAIT, || replicas(&s) == 3),
        "{}",
        s.ok(&["describe", "hpa", "burn"])
    );
    let described = s.ok(&["describe", "hpa", "burn"]);
    assert!(described.contains("SuccessfulRescale"), "{described}");

    // Idle pods: with no stabilization window it scales back in.
    s.ok(&[
        "patch",
        "hpa",
        "burn",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#,
    ]);
    s.ok(&["patch", "deployment", "burn", "--type", "json", "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sleep","3600"]}]"#]);
    assert!(
        eventually(Duration::from_secs(180), || replicas(&s) == 1),
        "{}\n{}",
        s.ok(&["describe", "hpa", "burn"]),
        s.ok(&["top", "pods"])
    );
}
