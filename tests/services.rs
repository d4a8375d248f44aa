//! Services end to end on one node (needs root): a two-replica Deployment
//! behind a Service answers on its cluster IP from the host and from a pod
//! (both replicas seen), on its NodePort at 127.0.0.1 and at the node IP,
//! by DNS name from a pod; a pod started after the Service gets its
//! variables; a headless Service resolves to the pods; a deleted Service's
//! rules are gone.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, flag_value, manifest, up_flags};

const WAIT: Duration = Duration::from_secs(60);

fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(conn, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
}

/// The distinct answers of `n` requests made by `get`.
fn answers(n: usize, mut get: impl FnMut() -> Option<String>) -> BTreeSet<String> {
    (0..n).filter_map(|_| get()).collect()
}

fn iptables_mentions(what: &str) -> bool {
    let out = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(what)
}

#[test]
fn services_answer_by_cluster_ip_node_port_and_name() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("svc", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    let node_ip = peapod_node_ip();
    flags.extend(["--node-ip".to_string(), node_ip.clone()]);
    let s = Server::up(flags.clone());
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
    let node_port = 30000 + (std::process::id() % 2000);
    let text = std::fs::read_to_string(manifest("services.yaml"))
        .unwrap()
        .replace("IMAGE", &image)
        .replace("NODEPORT", &node_port.to_string());
    s.apply(&text);
    s.ok(&[
        "run",
        "client",
        "--image",
        &image,
        "--restart=Never",
        "--command",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(
        eventually(WAIT, || {
            s.ok(&[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ])
            .split_whitespace()
            .count()
                == 2
                && s.ok(&["get", "pod", "client"]).contains("Running")
        }),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let pods: BTreeSet<String> = s
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(String::from)
        .collect();

    // From the host: cluster IP, and the node port on loopback and node IP.
    let ip = s.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(
        answers(30, || http_get(&format!("{ip}:80"))),
        pods,
        "cluster IP from the host"
    );
    assert_eq!(
        answers(30, || http_get(&format!("127.0.0.1:{node_port}"))),
        pods,
        "node port on 127.0.0.1"
    );
    assert_eq!(
        answers(30, || http_get(&format!("{node_ip}:{node_port}"))),
        pods,
        "node port on the node IP"
    );

    // From a pod, by name through cluster DNS.
    let from_pod = |url: &str| {
        let out = s.kubectl(&["exec", "client", "--", "wget", "-q", "-O-", url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    assert_eq!(
        answers(30, || from_pod("http://web/")),
        pods,
        "by name from a pod"
    );
    assert_eq!(
        answers(1, || from_pod("http://web.default.svc.cluster.local/")).len(),
        1
    );
    let lookup = s.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "web.default.svc.cluster.local",
    ]);
    assert!(lookup.contains(&format!("Address: {ip}")), "{lookup}");
    let headless = s.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "web-headless.default.svc.cluster.local",
    ]);
    for pod_ip in s
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .split_whitespace()
    {
        assert!(headless.contains(pod_ip), "{pod_ip} missing: {headless}");
    }

    // Variables of Services that existed when the pod started.
    let env = s.ok(&["exec", "client", "--", "env"]);
    assert!(env.contains(&format!("WEB_SERVICE_HOST={ip}\n")), "{env}");
    assert!(env.contains("WEB_SERVICE_PORT_HTTP=80\n"), "{env}");
    assert!(env.contains(&format!("WEB_PORT=tcp://{ip}:80\n")), "{env}");

    // Through an Ingress, by host and path, over plain HTTP and TLS (SNI).
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=web.example.com",
        ])
        .args(["-addext", "subjectAltName=DNS:web.example.com", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    s.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]);
    s.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  tls: [{hosts: [web.example.com], secretName: web-tls}]\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n",
    );
    let (http_port, tls_port) = (
        flag_value(&flags, "--ingress-port"),
        flag_value(&flags, "--ingress-tls-port"),
    );
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-m", "3"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let plain = format!("http://127.0.0.1:{http_port}/");
    assert!(
        eventually(WAIT, || pods.contains(&curl(&[
            "-H",
            "Host: web.example.com",
            &plain
        ]))),
        "ingress over HTTP: {}",
        curl(&["-i", "-H", "Host: web.example.com", &plain])
    );
    let resolve = format!("web.example.com:{tls_port}:127.0.0.1");
    let secure = format!("https://web.example.com:{tls_port}/");
    let tls_answers = answers(10, || {
        let body = curl(&[
            "--cacert",
            &cert.display().to_string(),
            "--resolve",
            &resolve,
            &secure,
        ]);
        (!body.is_empty()).then_some(body)
    });
    assert_eq!(
        tls_answers, pods,
        "ingress over TLS with the Secret's certificate"
    );
    assert!(curl(&["-i", "-H", "Host: nobody.example.com", &plain]).contains(" 404 "));
    let address = s.ok(&[
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]);
    assert_eq!(
        address, node_ip,
        "the Ingress status carries the node address"
    );

    // A deleted Service takes its rules with it.
    assert!(iptables_mentions("default/web:http"));
    s.ok(&["delete", "svc", "web"]);
    assert!(eventually(Duration::from_secs(10), || !iptables_mentions(
        "default/web:http"
    )));
    // (Whatever the host's own network does with the address now, no pod answers.)
    let after = http_get(&format!("{ip}:80")).unwrap_or_default();
    assert!(!pods.contains(&after), "{after}");
}

/// The address a node takes by default, for the NodePort check.
fn peapod_node_ip() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .unwrap_or("127.0.0.1")
        .to_string()
}
