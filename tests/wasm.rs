//! Wasm containers end to end (needs root and the wasm32-wasip2 target):
//! the samples, pushed to a local registry as Wasm OCI artifacts, run as
//! pods of `peapod up` with the real kubectl. The HTTP function answers on
//! its pod IP, its Service and an Ingress; the mixed pod's sidecar reaches
//! it over localhost; the command exits with its code; a memory bomb and
//! an endless loop are contained, as commands and as HTTP requests, and a
//! flood of requests is queued or turned away; an agent restart restarts Wasm
//! containers and counts it; 200 Wasm pods run on one node.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::registry::Registry;
use support::{Server, eventually, flag_value, up_flags};

const WAIT: Duration = Duration::from_secs(120);

fn push_samples(registry: &Registry) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/push.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&registry.address)
        .env("PEAPOD", env!("CARGO_BIN_EXE_peapod"))
        .output()
        .expect("run push.sh");
    assert!(
        out.status.success(),
        "pushing the Wasm samples failed (is the wasm32-wasip2 target installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sample(name: &str, registry: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/wasm")
        .join(name);
    std::fs::read_to_string(path)
        .expect("sample manifest")
        .replace("REGISTRY", registry)
}

fn http(addr: &str, host: Option<&str>, path: &str) -> Option<String> {
    exchange(addr, host, path, Duration::from_secs(3)).map(|(_, body)| body)
}

/// One HTTP/1.0 request: the status code and the body, `None` when no
/// answer came within `wait`.
fn exchange(addr: &str, host: Option<&str>, path: &str, wait: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(wait)).ok()?;
    let host = host.unwrap_or(addr);
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    let code = reply.split_whitespace().nth(1)?.parse().ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| (code, b.to_string()))
}

fn status(s: &Server, pod: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(&["get", "pod", pod, "-o", "json"])).unwrap();
    v["status"]["containerStatuses"][0].clone()
}

#[test]
fn wasm_pods_serve_run_and_are_contained() {
    let registry = Registry::start();
    registry.push_busybox();
    push_samples(&registry);
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("wasm", run.path());
    let ingress_port = flag_value(&flags, "--ingress-port");
    flags.extend(
        [
            "--insecure-registry",
            &registry.address,
            "--max-pods",
            "250",
        ]
        .map(String::from),
    );
    let s = Server::up(flags.clone());
    assert!(eventually(WAIT, || s
        .ok(&["get", "nodes", "--show-labels"])
        .contains("runtime.peapod.dev/wasm=true")));
    for manifest in [
        "hello-http.yaml",
        "mixed.yaml",
        "read-volume.yaml",
        "misbehave.yaml",
    ] {
        s.apply(&sample(manifest, &registry.address));
    }

    // The HTTP function on its pod IP, its Service, and the Ingress.
    assert!(
        eventually(WAIT, || s.ok(&[
            "get",
            "pods",
            "-l",
            "app=hello-wasm",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[*].ready}"
        ]) == "true"),
        "{}\n{}",
        s.ok(&["describe", "pods", "-l", "app=hello-wasm"]),
        s.log()
    );
    let ip = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=hello-wasm",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    assert_eq!(
        http(&format!("{ip}:8080"), None, "/by-ip").as_deref(),
        Some("hello from wasm at /by-ip (0 bytes received)\n")
    );
    let cluster_ip = s.ok(&[
        "get",
        "svc",
        "hello-wasm",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    // The Service's rules follow the pod's readiness within moments.
    assert!(eventually(WAIT, || http(
        &format!("{cluster_ip}:80"),
        None,
        "/by-service"
    )
    .is_some_and(|b| b.contains("at /by-service"))));
    assert!(eventually(WAIT, || http(
        &format!("127.0.0.1:{ingress_port}"),
        Some("hello.example.com"),
        "/by-ingress"
    )
    .is_some_and(|b| b.contains("at /by-ingress"))));
    let err = s.fails(&["exec", "deploy/hello-wasm", "--", "ls"]);
    assert!(
        err.contains("WebAssembly container: exec is not supported"),
        "{err}"
    );

    // The mixed pod: the sidecar reaches the function over localhost.
    assert!(
        eventually(WAIT, || String::from_utf8_lossy(
            &s.kubectl(&["logs", "mixed", "-c", "sidecar"]).stdout
        )
        .contains("hello neighbour from wasm at /from-sidecar")),
        "{}",
        s.ok(&["describe", "pod", "mixed"])
    );

    // The command runs to completion; its exit code is in the status.
    assert!(eventually(
        WAIT,
        || status(&s, "reader")["state"]["terminated"]["exitCode"] == 3
    ));
    assert!(
        s.ok(&["logs", "reader"])
            .starts_with("/data/input.txt: 3 lines\n")
    );
    // A Wasm container gets its ServiceAccount volume as a preopened
    // directory, at the path in-cluster clients read.
    let reader = sample("read-volume.yaml", &registry.address);
    let image = reader
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("the sample's image");
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: token-reader}}
spec:
  restartPolicy: Never
  containers:
  - name: reader
    image: {image}
    args: ["/var/run/secrets/kubernetes.io/serviceaccount/namespace"]
"#
    ));
    assert!(
        eventually(
            WAIT,
            || status(&s, "token-reader")["state"]["terminated"]["exitCode"] == 0
        ),
        "{}",
        s.ok(&["describe", "pod", "token-reader"])
    );
    assert_eq!(
        s.ok(&["logs", "token-reader"]),
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace: 1 lines\n> default\n"
    );

    // Contained: the memory bomb is OOM killed and restarted; the endless
    // loop runs on while the function keeps answering promptly.
    assert!(
        eventually(WAIT, || {
            let c = status(&s, "memory-bomb");
            c["lastState"]["terminated"]["reason"] == "OOMKilled"
                && c["restartCount"].as_u64() >= Some(1)
        }),
        "{}",
        s.ok(&["describe", "pod", "memory-bomb"])
    );
    assert!(eventually(WAIT, || {
        status(&s, "spinner")["state"]["running"].is_object()
    }));
    let started = Instant::now();
    for _ in 0..20 {
        assert!(http(&format!("{ip}:8080"), None, "/").is_some());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?} for 20 requests",
        started.elapsed()
    );

    // A misbehaving HTTP function, two requests at a time and two seconds
    // a request: a request that spins ends at its timeout, one that hoards
    // memory at its instance's limit, a flood of 10,000 requests is queued
    // or turned away — and the other function answers all the while.
    s.apply(&sample("misbehave-http.yaml", &registry.address));
    assert!(
        eventually(WAIT, || status(&s, "misbehave-http")["ready"] == true),
        "{}",
        s.ok(&["describe", "pod", "misbehave-http"])
    );
    let bad = format!(
        "{}:8080",
        s.ok(&[
            "get",
            "pod",
            "misbehave-http",
            "-o",
            "jsonpath={.status.podIP}"
        ])
    );
    let long = Duration::from_secs(30);
    assert_eq!(exchange(&bad, None, "/", long), Some((200, "ok\n".into())));
    // Without the timeout this would never be answered.
    let (code, _) = exchange(&bad, None, "/loop", long).expect("an answer to /loop");
    assert_eq!(code, 500);
    let (code, _) = exchange(&bad, None, "/memory", long).expect("an answer to /memory");
    assert_eq!(code, 500);
    let logs = s.ok(&["logs", "misbehave-http"]);
    assert!(logs.contains("out of memory"), "{logs}");
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let bad = bad.clone();
            std::thread::spawn(move || {
                let mut codes = std::collections::BTreeMap::<u16, u32>::new();
                for j in 0..100 {
                    // Four spinning requests hold both slots for a while.
                    let path = if i < 4 && j == 0 { "/loop" } else { "/" };
                    let code = exchange(&bad, None, path, long).map_or(0, |(c, _)| c);
                    *codes.entry(code).or_default() += 1;
                }
                codes
            })
        })
        .collect();
    for _ in 0..20 {
        assert_eq!(
            exchange(&format!("{ip}:8080"), None, "/", Duration::from_secs(10)).map(|(c, _)| c),
            Some(200),
            "the other function stopped answering during the flood"
        );
    }
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    for t in flood {
        for (code, n) in t.join().unwrap() {
            *codes.entry(code).or_default() += n;
        }
    }
    assert_eq!(codes.values().sum::<u32>(), 10_000);
    assert!(codes.get(&503).is_some_and(|n| *n > 0), "{codes:?}");
    assert!(codes.get(&200).is_some_and(|n| *n > 0), "{codes:?}");
    assert_eq!(codes.get(&0), None, "requests went unanswered: {codes:?}");
    assert_eq!(exchange(&bad, None, "/", long), Some((200, "ok\n".into())));
    assert_eq!(status(&s, "misbehave-http")["restartCount"], 0);
    s.ok(&["delete", "pod", "misbehave-http", "--grace-period=0"]);

    // Bounds out of range are refused with the field at fault.
    let refused = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &sample("misbehave-http.yaml", &registry.address).replace(
            "request-timeout-seconds: \"2\"",
            "request-timeout-seconds: \"forever\"",
        ),
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("metadata.annotations[peapod.dev/request-timeout-seconds]"),
        "{err}"
    );

    // A Wasm container's subPath is pinned as an OCI one's: a link that an
    // init container planted in the volume, leading out of it, is refused
    // rather than preopened.
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: wasm-escape}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
  - name: plant
    image: {r}/busybox:1.36
    command: ["sh", "-c", "ln -s / /work/escape"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: function
    image: {r}/samples/hello-http:v1
    volumeMounts: [{{name: work, mountPath: /data, subPath: escape}}]
"#,
        r = registry.address
    ));
    s.wait_pod_shows("wasm-escape", "CreateContainerConfigError", WAIT);
    let events = s.events_of("wasm-escape");
    assert!(
        events.contains("subPath \"escape\" leads out of the volume"),
        "{events}"
    );
    s.ok(&["delete", "pod", "wasm-escape", "--grace-period=0"]);

    // An agent restart restarts Wasm containers, and counts it.
    let before = status(&s, "mixed");
    let dir = s.kill();
    let s = Server::up_in(dir, flags);
    assert!(
        eventually(WAIT, || {
            let v: Value =
                serde_json::from_str(&s.ok(&["get", "pod", "mixed", "-o", "json"])).unwrap();
            let function = v["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == "function")
                .cloned()
                .unwrap_or_default();
            function["ready"] == true
                && function["restartCount"].as_u64() > before["restartCount"].as_u64().or(Some(0))
        }),
        "{}",
        s.ok(&["get", "pod", "mixed", "-o", "yaml"])
    );

    // Two hundred Wasm pods on one node.
    s.ok(&[
        "delete",
        "pod",
        "memory-bomb",
        "spinner",
        "--grace-period=0",
    ]);
    s.ok(&["scale", "deployment", "hello-wasm", "--replicas=200"]);
    assert!(
        eventually(Duration::from_secs(300), || s.ok(&[
            "get",
            "deployment",
            "hello-wasm",
            "-o",
            "jsonpath={.status.readyReplicas}"
        ]) == "200"),
        "{}\n{}\n{}",
        s.ok(&["get", "deployment", "hello-wasm"]),
        s.ok(&["get", "pods", "-o", "wide"])
            .lines()
            .filter(|l| !l.contains("Running"))
            .collect::<Vec<_>>()
            .join("\n"),
        s.ok(&["get", "events", "--field-selector", "type=Warning"])
    );
    let ips = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=hello-wasm",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 200);
    for ip in ips.iter().step_by(20) {
        assert!(
            http(&format!("{ip}:8080"), None, "/").is_some(),
            "{ip} does not answer"
        );
    }
    s.ok(&["delete", "deployment", "hello-wasm"]);
    assert!(eventually(Duration::from_secs(300), || s
        .ok(&["get", "pods", "-l", "app=hello-wasm", "-o", "name"])
        .is_empty()));
}
