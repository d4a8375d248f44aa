//! The node agent end to end (needs root): `peapod up` runs real pods from
//! a local registry, driven by the real kubectl. Pods get an IP that
//! answers from the host; containers share localhost and volumes; config
//! arrives as files and variables; OOM kills, liveness failures and crash
//! loops restart containers; logs, exec and re-adoption after an agent
//! restart work; deleting the pods leaves nothing behind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::registry::Registry;
use support::{Server, eventually, flag_value, manifest, up_flags};

fn pod(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.ok(&["get", "pod", name, "-o", "json"])).expect("pod JSON")
}

fn container_status(s: &Server, pod_name: &str, container: &str) -> Value {
    pod(s, pod_name)["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .cloned()
        .unwrap_or(Value::Null)
}

fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// Everything of the test's pods on the host: veths, mounts, cgroups.
/// What the node keeps ready ahead of pods (warm sandboxes, the standby
/// sandbox) is not a leftover, but each of those holds exactly one veth.
fn leftovers(
    data: &std::path::Path,
    run: &std::path::Path,
    bridge: &str,
    uids: &[String],
) -> Vec<String> {
    let node_owned = |name: &str| name.starts_with("warm-") || name == "peapod-standby";
    let mut found = Vec::new();
    let mut sandboxes = 0;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let m = line.split(' ').nth(4).unwrap_or_default();
        let ours = m.starts_with(&data.join("pods").display().to_string())
            || m.starts_with(&run.display().to_string());
        let name = m.rsplit('/').next().unwrap_or_default();
        // The run directory's own tmpfs belongs to the node while it runs.
        if !ours || line.contains(" - tmpfs peapod-run ") {
            continue;
        }
        if !node_owned(name) {
            found.push(format!("mount {m}"));
        } else if m.contains("/netns/") {
            sandboxes += 1;
        }
    }
    let ports = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    let ports = String::from_utf8_lossy(&ports.stdout).lines().count();
    if ports != sandboxes {
        found.push(format!(
            "{ports} veths on {bridge} for {sandboxes} sandboxes of the node"
        ));
    }
    for uid in uids {
        let cgroup = format!("/sys/fs/cgroup/memory/peapod/pod{}", uid.replace('-', ""));
        if std::path::Path::new(&cgroup).exists() {
            found.push(format!("cgroup {cgroup}"));
        }
        if data.join("pods").join(uid).exists() {
            found.push(format!("directory of pod {uid}"));
        }
    }
    found
}

/// Waits for the one-container pod `name` to run.
fn wait_running(s: &Server, name: &str) {
    assert!(
        eventually(Duration::from_secs(30), || s
            .ok(&["get", "pod", name])
            .contains("1/1     Running")),
        "{name}: {}",
        s.ok(&["describe", "pod", name])
    );
}

#[test]
fn pods_run_for_real_and_leave_nothing_behind() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("node", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    // Mounted ConfigMaps, Secrets and pod labels follow changes within seconds.
    flags.extend(["--sync-frequency".to_string(), "2".to_string()]);
    let bridge = format!("{}0", flag_value(&flags, "--network-name"));
    let s = Server::up(flags.clone());
    assert!(
        eventually(Duration::from_secs(30), || s
            .ok(&["get", "nodes"])
            .contains(" Ready ")),
        "the node did not become Ready: {}",
        s.log()
    );
    let pods = std::fs::read_to_string(manifest("node.yaml"))
        .unwrap()
        .replace("IMAGE", &image);
    s.apply(&pods);

    // Two containers in one pod: an init container, a shared emptyDir,
    // localhost between them, ConfigMap and Secret as files and variables.
    assert!(
        eventually(Duration::from_secs(60), || s
            .ok(&["get", "pod", "duo"])
            .contains("2/2     Running")),
        "duo did not run: {}\n{}",
        s.ok(&["describe", "pod", "duo"]),
        s.log()
    );
    let ip = pod(&s, "duo")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10."), "pod IP {ip}");
    let page = http_get(&ip, 8080, "/index.html");
    assert_eq!(page.as_deref(), Some("hello from duo with hunter2\n"));
    assert!(eventually(Duration::from_secs(20), || {
        s.kubectl(&[
            "exec",
            "duo",
            "-c",
            "writer",
            "--",
            "cat",
            "/shared/seen.txt",
        ])
        .stdout
            == b"prepared\n"
    }));
    assert!(s.ok(&["logs", "duo", "-c", "writer"]).contains("port=8080"));
    // A ConfigMap key mounted alone (subPath, through the volume's links).
    assert_eq!(
        s.ok(&["exec", "duo", "-c", "writer", "--", "cat", "/etc/app.conf"]),
        "port=8080\n"
    );

    // exec: exit codes and stdin.
    let out = s.kubectl(&[
        "exec",
        "duo",
        "-c",
        "writer",
        "--",
        "sh",
        "-c",
        "echo out; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    let out = s.kubectl_stdin(
        &["exec", "-i", "duo", "-c", "writer", "--", "sh"],
        "echo $((6*7))\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    // On a terminal, the session ends with the command (it used to wait for
    // kubectl's read timeout, a minute, and fail).
    let began = std::time::Instant::now();
    let out = s.kubectl_tty(
        &[
            "exec",
            "-it",
            "duo",
            "-c",
            "writer",
            "--",
            "sh",
            "-c",
            "echo on-tty; exit 4",
        ],
        "",
    );
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "exec -it took {:?}",
        began.elapsed()
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // The terminal carries kubectl's own message too, as on any cluster.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "on-tty\r\ncommand terminated with exit code 4\r\n"
    );

    // attach: a container's stdin (closed after the first session with
    // stdinOnce) and output, and `kubectl run -it --rm` on a terminal.
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: reader\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    stdin: true\n    stdinOnce: true\n    command: [sh, -c, 'read line; echo got $line; read more || echo stdin closed']\n"
    ));
    wait_running(&s, "reader");
    let out = s.kubectl_stdin(&["attach", "-i", "reader"], "hello\n");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("got hello"), "{out:?}");
    assert!(
        eventually(Duration::from_secs(20), || s
            .ok(&["logs", "reader"])
            .contains("stdin closed")),
        "stdin stayed open: {}",
        s.ok(&["logs", "reader"])
    );
    let out = s.kubectl_tty(
        &[
            "run",
            "-it",
            "--rm",
            "typist-with-a-long-name-for-the-socket-paths-0123",
            "--image",
            &image,
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "read x; echo got-$x; tty; exit 3",
        ],
        "hi\r",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("got-hi") && said.contains("/dev/pts/"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(eventually(Duration::from_secs(20), || s
        .ok(&["get", "pods", "-o", "name"])
        .lines()
        .all(
            |l| l != "pod/typist-with-a-long-name-for-the-socket-paths-0123"
        )));
    s.ok(&["delete", "pod", "reader"]);

    // pods/proxy: HTTP to a pod's port through the API server, by number
    // or by the container port's name; the pod's own errors come back.
    assert_eq!(
        s.ok(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/duo:8080/proxy/index.html"
        ]),
        "hello from duo with hunter2\n"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/http:duo:http/proxy/init.txt"
        ]),
        "prepared\n"
    );
    let missing = s.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/duo:8080/proxy/nope",
    ]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NotFound"),
        "{missing:?}"
    );

    // services/proxy: through the Service's port to a ready pod behind it.
    s.ok(&[
        "expose",
        "pod",
        "duo",
        "--name",
        "duo-web",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    assert!(
        eventually(Duration::from_secs(20), || s
            .kubectl(&[
                "get",
                "--raw",
                "/api/v1/namespaces/default/services/duo-web:80/proxy/index.html"
            ])
            .stdout
            == b"hello from duo with hunter2\n"),
        "services/proxy did not reach duo"
    );
    s.ok(&["delete", "service", "duo-web"]);

    // A pod on the host's network: the node's address and name.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostnet\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {image}\n    command: [httpd, -f, -p, '{port}', -h, /etc]\n"
    ));
    wait_running(&s, "hostnet");
    let status = pod(&s, "hostnet")["status"].clone();
    assert_eq!(status["podIP"], status["hostIP"], "{status}");
    let host_ip = status["hostIP"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), || http_get(
            &host_ip,
            port,
            "/hostname"
        )
        .is_some()),
        "nothing answers on the node's port {port}"
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(s.ok(&["exec", "hostnet", "--", "hostname"]), host_name);

    // Volumes follow the ConfigMap, the Secret and the pod's labels.
    s.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"app.conf":"port=9090\n"}}"#,
    ]);
    s.ok(&[
        "patch",
        "secret",
        "credentials",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"swordfish"}}"#,
    ]);
    s.ok(&["label", "pod", "duo", "tier=web"]);
    let cat = |path: &str| {
        let out = s.kubectl(&["exec", "duo", "-c", "writer", "--", "cat", path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        eventually(Duration::from_secs(30), || cat("/config/app.conf")
            == "port=9090\n"
            && cat("/secret/password") == "swordfish"
            && cat("/podinfo/labels").contains("tier=\"web\"")),
        "volumes did not follow: {:?} {:?} {:?}",
        cat("/config/app.conf"),
        cat("/secret/password"),
        cat("/podinfo/labels")
    );

    // port-forward reaches the pod's port from a local one.
    let mut forward = s
        .command(&["port-forward", "pod/duo", ":8080"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut forwarding = BufReader::new(forward.stdout.take().unwrap()).lines();
    let first = forwarding.next().unwrap().unwrap();
    let local = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected port-forward output {first:?}"))
        .to_string();
    let port: u16 = local.parse().unwrap();
    assert_eq!(
        http_get("127.0.0.1", port, "/index.html").as_deref(),
        Some("hello from duo with hunter2\n")
    );
    let _ = forward.kill();
    let _ = forward.wait();

    // logs -f follows new output.
    let mut follow = s
        .command(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let n = |l: &str| l.trim_start_matches("tick ").parse::<u32>().unwrap();
    assert!(n(&second) > n(&first), "{first} then {second}");
    let _ = follow.kill();
    let _ = follow.wait();

    // OOM kill, liveness failure, crash loop: restarts with the reasons.
    assert!(
        eventually(Duration::from_secs(60), || {
            let c = container_status(&s, "hog", "hog");
            c["lastState"]["terminated"]["reason"] == "OOMKilled"
                && c["restartCount"].as_u64() >= Some(1)
        }),
        "hog: {}",
        s.ok(&["describe", "pod", "hog"])
    );
    assert!(
        eventually(Duration::from_secs(60), || container_status(
            &s, "sick", "app"
        )["restartCount"]
            .as_u64()
            >= Some(1)),
        "sick: {}",
        s.ok(&["describe", "pod", "sick"])
    );
    assert!(
        s.ok(&["describe", "pod", "sick"])
            .contains("failed liveness probe, will be restarted")
    );
    assert!(
        eventually(Duration::from_secs(60), || s
            .ok(&["get", "pod", "crasher"])
            .contains("CrashLoopBackOff")),
        "crasher: {}",
        s.ok(&["describe", "pod", "crasher"])
    );
    assert_eq!(s.ok(&["logs", "crasher", "--previous"]), "crashing\n");

    // A static pod: a manifest in the node's directory runs, mirrored.
    let manifests = s.dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("static-web.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {image}\n    command: [sleep, '3600']\n"
        ),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || s
            .ok(&["get", "pod", "static-web-node-node", "--ignore-not-found"])
            .contains("Running")),
        "the static pod did not appear"
    );
    let mirror = pod(&s, "static-web-node-node");
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    std::fs::remove_file(manifests.join("static-web.yaml")).unwrap();

    // The agent dies and comes back: containers keep running, unrestarted.
    let before = container_status(&s, "duo", "server");
    let dir = s.kill();
    assert_eq!(
        http_get(&ip, 8080, "/index.html").as_deref(),
        Some("hello from duo with hunter2\n")
    );
    let s = Server::up_in(dir, flags);
    assert!(eventually(Duration::from_secs(30), || {
        let after = container_status(&s, "duo", "server");
        after["ready"] == true && after["containerID"] == before["containerID"]
    }));
    let after = container_status(&s, "duo", "server");
    assert_eq!(after["restartCount"], before["restartCount"]);
    assert_eq!(
        after["state"]["running"]["startedAt"],
        before["state"]["running"]["startedAt"]
    );
    // The stored status was right all along; the node's API comes back
    // with the agent.
    assert!(eventually(Duration::from_secs(30), || {
        let out = s.kubectl(&["logs", "duo", "-c", "writer"]);
        String::from_utf8_lossy(&out.stdout).contains("port=8080")
    }));

    // Deleting every pod removes all of them from the host.
    let uids: Vec<String> = serde_json::from_str::<Value>(&s.ok(&["get", "pods", "-o", "json"]))
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    s.ok(&["delete", "pods", "--all", "--grace-period=1"]);
    assert!(eventually(Duration::from_secs(30), || s
        .ok(&["get", "pods", "-o", "name"])
        .is_empty()));
    let data = s.dir.path().to_path_buf();
    assert!(
        eventually(Duration::from_secs(10), || leftovers(
            &data,
            run.path(),
            &bridge,
            &uids
        )
        .is_empty()),
        "left behind: {:?}",
        leftovers(&data, run.path(), &bridge, &uids)
    );
}
