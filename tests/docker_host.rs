//! Peapod beside Docker (needs root and a running Docker engine): Docker's
//! FORWARD policy is DROP and br_netfilter sends bridged frames through
//! iptables. With a Docker container and a Peapod pod on the same host,
//! each reaches the other, Docker's containers reach each other and their
//! published port, the pod answers by pod IP, cluster IP and node port, and
//! Peapod's `--cleanup` leaves Docker's rules exactly as they were.

mod support;

use std::time::Duration;

use support::docker::{Container, Image, docker_rules};
use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(60);

fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("socket address"),
        Duration::from_secs(2),
    ) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(conn, "GET / HTTP/1.0\r\n\r\n");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default()
}

fn ours_in(rules: &str, prefix: &str) -> Vec<String> {
    rules
        .lines()
        .filter(|l| l.contains(prefix))
        .map(String::from)
        .collect()
}

fn iptables_save() -> String {
    let out = std::process::Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn docker_containers_and_pods_both_keep_their_network() {
    let image = Image::busybox();
    let serve = |text: &str| {
        format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8080 -h /www")
    };
    let web = Container::run(
        &image,
        "web",
        &["-p", "127.0.0.1::8080"],
        &["sh", "-c", &serve("from-docker")],
    );
    let client = Container::run(&image, "client", &[], &["sleep", "3600"]);
    let docker_ip = web.ip();
    let published = support::docker::docker_ok(&["port", &web.name, "8080/tcp"]);
    let before = docker_rules();

    let registry = Registry::start();
    let pod_image = registry.push_busybox();
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("dock", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    let prefix = support::flag_value(&flags, "--network-name").to_uppercase();
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
    let node_port = 30000 + (std::process::id() % 2000);
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {pod_image}
    command: ["sh", "-c", "{}"]
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {node_port}}}]
"#,
        serve("from-a-pod")
    ));
    assert!(
        eventually(WAIT, || s
            .ok(&[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}"
            ])
            .contains('.')),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let pod_ip = s.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let cluster_ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);

    // Peapod accepts its traffic in a chain of its own, jumped to from
    // FORWARD, in front of Docker's rules and the DROP policy.
    let rules = iptables_save();
    assert!(
        rules.contains(&format!("-A FORWARD -j {prefix}-FORWARD")),
        "no jump to {prefix}-FORWARD:\n{rules}"
    );
    assert!(rules.contains(":FORWARD DROP"), "{rules}");

    // The pod, from the host.
    assert!(
        eventually(WAIT, || http_get(&format!("{pod_ip}:8080")) == "from-a-pod"),
        "pod IP from the host"
    );
    assert_eq!(http_get(&format!("{cluster_ip}:80")), "from-a-pod");
    assert_eq!(http_get(&format!("127.0.0.1:{node_port}")), "from-a-pod");

    // Docker's containers, from the host, each other and the pod.
    assert_eq!(http_get(&format!("{docker_ip}:8080")), "from-docker");
    assert_eq!(
        http_get(&published),
        "from-docker",
        "Docker's published port"
    );
    assert!(
        eventually(WAIT, || client.get(&format!("http://{docker_ip}:8080/"))
            == "from-docker"),
        "container to container on Docker's bridge"
    );
    let from_pod = |url: &str| {
        let out = s.kubectl(&[
            "exec", "web", "--", "timeout", "5", "wget", "-q", "-O-", url,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        from_pod(&format!("http://{docker_ip}:8080/")),
        "from-docker",
        "a pod reaches a Docker container"
    );

    // And the pod from Docker's containers: by pod IP, cluster IP, node port.
    assert_eq!(
        client.get(&format!("http://{pod_ip}:8080/")),
        "from-a-pod",
        "a Docker container reaches a pod"
    );
    assert_eq!(
        client.get(&format!("http://{cluster_ip}/")),
        "from-a-pod",
        "a Docker container reaches a Service"
    );
    let gateway = support::docker::docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Gateway}}",
        &client.name,
    ]);
    assert_eq!(
        client.get(&format!("http://{gateway}:{node_port}/")),
        "from-a-pod",
        "a Docker container reaches a node port"
    );

    assert_eq!(docker_rules(), before, "Peapod changed Docker's rules");
    drop(s); // `peapod up --cleanup`
    let rules = iptables_save();
    assert!(
        ours_in(&rules, &format!("{prefix}-")).is_empty(),
        "left behind: {:?}",
        ours_in(&rules, &format!("{prefix}-"))
    );
    assert_eq!(docker_rules(), before, "the cleanup changed Docker's rules");
    assert_eq!(http_get(&format!("{docker_ip}:8080")), "from-docker");
    assert_eq!(
        client.get(&format!("http://{docker_ip}:8080/")),
        "from-docker"
    );
}
