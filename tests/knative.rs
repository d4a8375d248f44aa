//! Scale-to-zero functions end to end (needs root and the wasm32-wasip2
//! target): a real Knative Service manifest running the Wasm HTTP sample
//! answers through the Ingress, scales to zero after its grace period,
//! comes back on the next request (answered by the function's standby,
//! even while its pod cannot be scheduled), scales out under load and back, loses
//! no request while scaling from zero under concurrent load, makes a new
//! Revision when its template changes, and sizes a function by requests
//! per second when asked to.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, flag_value, up_flags};

const WAIT: Duration = Duration::from_secs(120);

fn get(port: &str, host: &str, path: &str) -> Option<(u16, String)> {
    get_at(&format!("127.0.0.1:{port}"), host, path)
}

fn get_at(address: &str, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(address).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n")?.1.to_string()))
}

fn replicas(s: &Server, deployment: &str) -> i64 {
    s.ok(&[
        "get",
        "deployment",
        deployment,
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .parse()
    .unwrap_or(-1)
}

fn pods(s: &Server) -> usize {
    s.ok(&[
        "get",
        "pods",
        "-l",
        "serving.knative.dev/service=hello",
        "-o",
        "name",
    ])
    .lines()
    .count()
}

#[test]
fn functions_scale_to_zero_and_back() {
    let registry = Registry::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/push.sh");
    let pushed = Command::new("bash")
        .arg(script)
        .arg(&registry.address)
        .env("PEAPOD", env!("CARGO_BIN_EXE_peapod"))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("kn", run.path());
    flags.extend(
        [
            "--insecure-registry",
            &registry.address,
            "--scale-to-zero-grace-period",
            "6",
        ]
        .map(String::from),
    );
    let port = flag_value(&flags, "--ingress-port");
    let s = Server::up(flags);
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/knative-hello.yaml"),
    )
    .unwrap()
    .replace("REGISTRY", &registry.address);
    s.apply(&manifest);
    let host = "hello.default.example.com";

    // Ready, with Knative's status, and answering through the Ingress.
    assert!(
        eventually(WAIT, || s
            .ok(&["get", "ksvc", "hello"])
            .contains("http://hello.default.example.com")
            && s.ok(&[
                "get",
                "ksvc",
                "hello",
                "-o",
                "jsonpath={.status.latestReadyRevisionName}"
            ]) == "hello-00001"),
        "{}\n{}",
        s.ok(&["get", "ksvc,revisions,deployments,pods", "-o", "wide"]),
        s.log()
    );
    assert!(eventually(WAIT, || get(&port, host, "/first").is_some_and(
        |(code, body)| code == 200 && body.contains("Knative on Peapod from wasm at /first")
    )));
    let labels = s.ok(&[
        "get",
        "pods",
        "-l",
        "serving.knative.dev/revision=hello-00001",
        "-o",
        "jsonpath={.items[0].metadata.labels}",
    ]);
    assert!(
        labels.contains("serving.knative.dev/configuration"),
        "{labels}"
    );

    // Idle: down to zero pods.
    assert!(
        eventually(WAIT, || replicas(&s, "hello-00001-deployment") == 0
            && pods(&s) == 0),
        "did not scale to zero: {}",
        s.ok(&["get", "deployment,pods"])
    );
    // A request brings a pod back and is answered.
    let (code, body) = get(&port, host, "/cold").expect("an answer from zero");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("at /cold"));
    assert!(eventually(WAIT, || replicas(&s, "hello-00001-deployment") == 1));

    // At zero on a cordoned node, the function's standby still answers at
    // once, and the pod it asked for waits to be scheduled.
    assert!(eventually(WAIT, || replicas(&s, "hello-00001-deployment")
        == 0
        && pods(&s) == 0));
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    s.ok(&["cordon", &node]);
    let answer = get(&port, host, "/standby");
    let asked = eventually(WAIT, || replicas(&s, "hello-00001-deployment") == 1);
    let unbound = s.ok(&[
        "get",
        "pods",
        "-l",
        "serving.knative.dev/service=hello",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    s.ok(&["uncordon", &node]);
    assert!(
        answer
            .as_ref()
            .is_some_and(|(code, body)| *code == 200 && body.contains("at /standby")),
        "{answer:?}\n{}",
        s.log()
    );
    assert!(asked, "the standby's request asked for no pod");
    assert_eq!(unbound, "", "the pod was not waiting to be scheduled");
    assert!(eventually(WAIT, || s
        .ok(&["get", "pods", "-l", "serving.knative.dev/service=hello"])
        .contains("Running")));

    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains(
            "activator_cold_start_duration_seconds_count{namespace=\"default\",function=\"hello\"}"
        ),
        "{metrics}"
    );

    // From zero again, through the ClusterIP Service named after it.
    assert!(eventually(WAIT, || replicas(&s, "hello-00001-deployment")
        == 0
        && pods(&s) == 0));
    let ip = s.ok(&[
        "get",
        "service",
        "hello",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let (code, body) = get_at(&format!("{ip}:80"), host, "/inside").expect("an answer from zero");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("at /inside"));

    // Back at zero, a burst of concurrent requests: every one is answered.
    assert!(eventually(WAIT, || replicas(&s, "hello-00001-deployment")
        == 0
        && pods(&s) == 0));
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let port = port.clone();
            std::thread::spawn(move || get(&port, host, &format!("/burst-{i}")))
        })
        .collect();
    for (i, t) in burst.into_iter().enumerate() {
        let answer = t.join().unwrap();
        assert!(
            answer
                .as_ref()
                .is_some_and(|(code, body)| *code == 200 && body.contains(&format!("/burst-{i}"))),
            "request {i}: {answer:?}"
        );
    }

    // Under sustained concurrent load it scales out, and back in after.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..24)
        .map(|_| {
            let (port, stop) = (port.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = get(&port, host, "/load");
                }
            })
        })
        .collect();
    let scaled_out = eventually(WAIT, || replicas(&s, "hello-00001-deployment") > 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    assert!(
        scaled_out,
        "no scale out under load: {}",
        s.ok(&["get", "deployment"])
    );
    assert!(eventually(WAIT, || replicas(&s, "hello-00001-deployment") <= 1));

    // A new template makes a new Revision, which takes the traffic.
    s.ok(&["patch", "ksvc", "hello", "--type", "merge", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"image":"IMG","ports":[{"containerPort":8080}],"env":[{"name":"GREETING","value":"second"}]}]}}}}"#
            .replace("IMG", &format!("{}/samples/hello-http:v1", registry.address))
            .as_str()]);
    assert!(eventually(WAIT, || s.ok(&[
        "get",
        "ksvc",
        "hello",
        "-o",
        "jsonpath={.status.latestReadyRevisionName}"
    ]) == "hello-00002"));
    assert!(eventually(WAIT, || get(&port, host, "/")
        .is_some_and(|(_, body)| body.starts_with("second from wasm"))));
    assert!(s.ok(&["get", "revisions"]).contains("hello-00001"));

    // Sized by requests per second: one request at a time, 1.4 requests
    // per second per pod (70 % of the target 2), so steady sequential
    // traffic needs more than one pod although it never has more than one
    // request in flight.
    s.apply(
        &r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "rps", "namespace": "default"},
            "spec": {"template": {
                "metadata": {"annotations": {
                    "autoscaling.knative.dev/metric": "rps",
                    "autoscaling.knative.dev/target": "2",
                    "autoscaling.knative.dev/window": "6s",
                    "autoscaling.knative.dev/min-scale": "1",
                    "autoscaling.knative.dev/max-scale": "3"}},
                "spec": {"containers": [{"image": "IMG", "ports": [{"containerPort": 8080}]}]}}}}"#
            .replace(
                "IMG",
                &format!("{}/samples/hello-http:v1", registry.address),
            ),
    );
    let rps_host = "rps.default.example.com";
    assert!(eventually(WAIT, || get(&port, rps_host, "/")
        .is_some_and(|(code, _)| code == 200)));
    let sequential = eventually(WAIT, || {
        for _ in 0..20 {
            let _ = get(&port, rps_host, "/steady");
        }
        replicas(&s, "rps-00001-deployment") > 1
    });
    assert!(
        sequential,
        "steady sequential requests did not scale out by rps: {}",
        s.ok(&["get", "deployment"])
    );
    assert!(replicas(&s, "rps-00001-deployment") <= 3, "max-scale");
}
