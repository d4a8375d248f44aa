//! Several nodes (needs root): three `peapod node` agents, each in its own
//! network namespace on a shared bridge, join one `peapod server`; a pod on
//! the first reaches a pod on the third by pod IP, by Service and by name,
//! with no overlay (host-gw routes).

mod support;

use std::time::Duration;

use support::hosts::TestNet;
use support::registry::Registry;
use support::{Server, eventually};

const WAIT: Duration = Duration::from_secs(90);

#[test]
fn pods_reach_each_other_across_nodes() {
    let mut net = TestNet::new(3);
    let registry = Registry::start_on(net.gateway());
    let image = registry.push_busybox();
    let s = Server::start_on(&format!("{}:0", net.gateway()));
    let token = s.dir.path().join("node-token");
    let extra = vec!["--insecure-registry".to_string(), registry.address.clone()];
    for i in 0..3 {
        net.start_node(i, &s.url, &token, &extra);
    }
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).matches(" Ready ").count()
            == 3),
        "nodes: {}\n{}",
        s.ok(&["get", "nodes", "-o", "wide"]),
        net.log(0)
    );
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: far, labels: {{app: far}}}}
spec:
  nodeName: host-2
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo far away > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: far}}
spec:
  selector: {{app: far}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: near}}
spec:
  nodeName: host-0
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: {image}
    command: ["sleep", "3600"]
"#
    ));
    assert!(
        eventually(WAIT, || {
            let out = s.ok(&["get", "pods", "-o", "wide"]);
            out.matches("Running").count() == 2
        }),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let far_ip = s.ok(&["get", "pod", "far", "-o", "jsonpath={.status.podIP}"]);
    let near_ip = s.ok(&["get", "pod", "near", "-o", "jsonpath={.status.podIP}"]);
    assert_ne!(
        far_ip.rsplit_once('.').map(|(net, _)| net.to_string()),
        near_ip.rsplit_once('.').map(|(net, _)| net.to_string()),
        "the pods should be on different nodes' pod networks"
    );
    let get = |url: &str| {
        let out = s.kubectl(&["exec", "near", "--", "wget", "-q", "-O-", url]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(
        eventually(WAIT, || get(&format!("http://{far_ip}:8080/"))
            == "far away"),
        "by pod IP: routes on host 0: {}\nroutes on host 2: {}\nwget: {:?}",
        net.exec(0, &["ip", "route"]),
        net.exec(2, &["ip", "route"]),
        s.kubectl(&[
            "exec",
            "near",
            "--",
            "wget",
            "-q",
            "-O-",
            &format!("http://{far_ip}:8080/")
        ])
    );
    assert!(
        eventually(WAIT, || get("http://far/") == "far away"),
        "by Service name"
    );
    let cluster_ip = s.ok(&["get", "svc", "far", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(
        get(&format!("http://{cluster_ip}/")),
        "far away",
        "by cluster IP"
    );
    // Logs and exec reach every node through the API server.
    assert_eq!(
        s.ok(&["exec", "far", "--", "cat", "/www/index.html"]),
        "far away\n"
    );
}
