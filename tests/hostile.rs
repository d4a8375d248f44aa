//! Hostile workloads (needs root): what an image, a pod or a manifest
//! written by an attacker tries, played for real against `peapod up`, and
//! shown to fail with a clear error while the host stays as it was.

mod support;

use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(60);

/// `peapod up` pulling from `registry`, once its node is Ready.
struct Cluster {
    // Fields drop in order: the server (and its `up --cleanup`, which
    // finds the containers through the run directory) before the run
    // directory goes.
    server: Server,
    _run: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

/// `peapod up` pulling from `registry` (`host:port`) over plain HTTP,
/// with `extra` flags.
fn cluster(tag: &str, registry: &str, extra: &[&str]) -> Cluster {
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags(tag, run.path());
    flags.extend(["--insecure-registry".to_string(), registry.to_string()]);
    flags.extend(extra.iter().map(|f| f.to_string()));
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
    Cluster {
        server: s,
        _run: run,
    }
}

/// A layer with a symlink out of the rootfs and a whiteout through it
/// (the unpacker once followed the link and deleted the host's file).
#[test]
fn an_image_layer_cannot_delete_a_host_file_through_a_symlink() {
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"host data").unwrap();
    let registry = Registry::start();
    let image = registry.push_hostile(host.path());
    let s = cluster("hostile", &registry.address, &[]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: layer}}\nspec:\n  containers:\n  - {{name: c, image: \"{image}\"}}\n"
    ));
    let events = || s.events_of("layer");
    assert!(
        eventually(WAIT, || {
            let e = events();
            e.contains("Failed to pull image") || e.contains("Successfully pulled")
        }),
        "the pull did not end: {}\n{}",
        events(),
        s.log()
    );
    let meta = std::fs::symlink_metadata(&victim).expect("the host file is still there");
    assert!(meta.is_file(), "the host file was replaced: {meta:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"host data");
    assert!(
        events().contains("Failed to pull image"),
        "the layer should have been refused: {}",
        events()
    );
    assert!(
        events().contains("x is a symlink that leads out of the layer"),
        "the event should say why the layer was refused: {}",
        events()
    );
    assert!(
        s.ok(&["get", "pod", "layer"]).contains("ErrImagePull")
            || s.ok(&["get", "pod", "layer"]).contains("ImagePullBackOff"),
        "{}",
        s.ok(&["get", "pod", "layer"])
    );
}

/// subPath: the API refuses paths that leave the volume, and a symlink a
/// container plants in a shared volume cannot carry another container's
/// subPath mount out of it.
#[test]
fn a_sub_path_cannot_leave_its_volume() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let s = cluster("subpath", &registry.address, &[]);
    let pod = |name: &str, init: &str, sub: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
  - name: plant
    image: {image}
    command: ["sh", "-c", "{init}"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "ls /mnt; sleep 3600"]
    volumeMounts: [{{name: work, mountPath: /mnt, subPath: "{sub}"}}]
"#
        )
    };
    for (sub, why) in [
        ("../../etc", "must not contain '..'"),
        ("/etc", "must be a relative path"),
    ] {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &pod("refused", "true", sub));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sub} accepted");
        assert!(
            stderr.contains("spec.containers[0].volumeMounts[0].subPath") && stderr.contains(why),
            "{sub}: {stderr}"
        );
    }

    // The init container leaves a link to the host's root in the volume.
    s.apply(&pod(
        "planted",
        "ln -s / /work/escape && mkdir -p /work/ok",
        "escape",
    ));
    s.wait_pod_shows("planted", "CreateContainerConfigError", WAIT);
    let events = s.events_of("planted");
    assert!(
        events.contains("subPath \"escape\" leads out of the volume"),
        "{events}"
    );
    // A subPath inside the volume still works.
    s.apply(&pod(
        "inside",
        "mkdir -p /work/ok && echo hi > /work/ok/f",
        "ok",
    ));
    s.wait_pod_shows("inside", "Running", WAIT);
    assert_eq!(s.ok(&["exec", "inside", "--", "cat", "/mnt/f"]), "hi\n");
}

/// A `Localhost` seccomp profile comes from the node's seccomp directory
/// and nowhere else: a name leading out is refused by the API, a link
/// leading out by the node, and a profile that is there is enforced.
#[test]
fn a_localhost_seccomp_profile_is_read_only_from_the_nodes_directory() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let s = cluster("seccomp", &registry.address, &[]);
    let profiles = s.dir.path().join("seccomp");
    std::fs::create_dir_all(profiles.join("profiles")).unwrap();
    // Everything allowed but making directories.
    let no_mkdir = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    std::fs::write(profiles.join("profiles/no-mkdir.json"), no_mkdir).unwrap();
    // A profile outside the directory, and a link to it inside.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("lax.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("lax.json"), profiles.join("lax.json")).unwrap();
    let pod = |name: &str, file: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    seccompProfile: {{type: Localhost, localhostProfile: "{file}"}}
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "mkdir /tmp/d && echo created; sleep 3600"]
"#
        )
    };

    let out = s.kubectl_stdin(&["apply", "-f", "-"], &pod("out", "../../etc/lax.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a profile name out of the directory was accepted"
    );
    assert!(
        stderr.contains("spec.securityContext.seccompProfile.localhostProfile")
            && stderr.contains("must not contain '..'"),
        "{stderr}"
    );

    for (name, file, why) in [
        ("link", "lax.json", "leads out of the seccomp directory"),
        ("missing", "profiles/none.json", "No such file"),
    ] {
        s.apply(&pod(name, file));
        s.wait_pod_shows(name, "CreateContainerError", WAIT);
        let events = s.events_of(name);
        assert!(events.contains(why), "{name}: {events}");
    }

    s.apply(&pod("enforced", "profiles/no-mkdir.json"));
    s.wait_pod_shows("enforced", "Running", WAIT);
    let logs = s.ok(&["logs", "enforced"]);
    assert!(
        logs.contains("Operation not permitted") && !logs.contains("created"),
        "{logs}"
    );
}

/// A pod that fills the node's disk past its limits is evicted (Failed,
/// reason Evicted, an event naming the limit) and what its emptyDir held
/// is freed; a memory-backed emptyDir is full at its limit.
#[test]
fn a_pod_over_its_local_storage_limits_is_evicted() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let s = cluster(
        "evict",
        &registry.address,
        &["--eviction-monitoring-interval", "1"],
    );
    let fill = |path: &str| format!("dd if=/dev/zero of={path} bs=1M count=4 2>&1; sleep 3600");
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: volume-filler}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: data, emptyDir: {{sizeLimit: 1Mi}}}}]
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "{}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: layer-filler}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: {image}
    command: ["sh", "-c", "{}"]
    resources: {{limits: {{ephemeral-storage: 1Mi}}}}
  - name: idle
    image: {image}
    command: ["sleep", "3600"]
    resources: {{limits: {{ephemeral-storage: 100Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: memory-filler}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: shm, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}]
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "{}"]
    volumeMounts: [{{name: shm, mountPath: /shm}}]
"#,
        fill("/data/f"),
        fill("/tmp/f"),
        fill("/shm/f"),
    ));
    for (pod, why) in [
        (
            "volume-filler",
            r#"Usage of EmptyDir volume "data" exceeds the limit "1Mi"."#,
        ),
        (
            "layer-filler",
            r#"Container writer exceeded its local ephemeral storage limit "1Mi"."#,
        ),
    ] {
        let status = || {
            s.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.phase} {.status.reason} {.status.message}",
            ])
        };
        assert!(
            eventually(WAIT, || status().starts_with("Failed")),
            "{}",
            s.ok(&["describe", "pod", pod])
        );
        assert_eq!(status(), format!("Failed Evicted {why}"));
        assert!(s.events_of(pod).contains(why), "{}", s.events_of(pod));
    }
    // The evicted emptyDir's space is given back.
    let uid = s.ok(&[
        "get",
        "pod",
        "volume-filler",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let data = s
        .dir
        .path()
        .join("pods")
        .join(&uid)
        .join("volumes/empty-dir/data");
    assert_eq!(
        std::fs::read_dir(&data).map(|d| d.count()).ok(),
        Some(0),
        "{}",
        data.display()
    );
    // A memory-backed emptyDir is full at its limit; its pod runs on.
    assert!(
        eventually(WAIT, || s
            .ok(&["logs", "memory-filler"])
            .contains("No space left on device")),
        "{}",
        s.ok(&["logs", "memory-filler"])
    );
    assert!(s.ok(&["get", "pod", "memory-filler"]).contains("Running"));
}

/// ConfigMap (and Secret, downward API, projected) volumes are written by
/// the node: a container gets them read-only, so it cannot plant a link
/// that the node's next refresh would write through onto the host.
#[test]
fn a_container_cannot_write_into_a_config_map_volume() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"host data").unwrap();
    let s = cluster("configmap", &registry.address, &["--sync-frequency", "2"]);
    s.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{key: one}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: cfg, configMap: {{name: settings}}}}]
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
"#
    ));
    s.wait_pod_shows("reader", "Running", WAIT);
    let victim_path = victim.display().to_string();
    for attack in [
        format!("rm /cfg/key && ln -s {victim_path} /cfg/key"),
        format!(
            "rm /cfg/..data && ln -s {} /cfg/..data",
            host.path().display()
        ),
        "echo pwned > /cfg/..data/key".to_string(),
        "mkdir /cfg/..new".to_string(),
    ] {
        let out = s.kubectl(&["exec", "reader", "--", "sh", "-c", &attack]);
        assert!(!out.status.success(), "{attack} succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
            "{attack}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The node still refreshes the volume, and the host file is as it was.
    s.ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"key":"two"}}"#,
    ]);
    assert!(
        eventually(WAIT, || s.ok(&["exec", "reader", "--", "cat", "/cfg/key"])
            == "two"),
        "{}",
        s.ok(&["exec", "reader", "--", "cat", "/cfg/key"])
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"host data");
}

/// Connections: 2,000 idle ones from one client address and a slow-loris
/// handshake from another do not stop kubectl from being answered; the
/// server closes those over the per-client cap at once and the rest when
/// their time to finish the TLS handshake is up.
#[test]
fn idle_and_slow_connections_do_not_take_the_api_server_down() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpSocket;

    peapod_common::conn::raise_fd_limit();
    let s = Server::start();
    let server: std::net::SocketAddr = s.url.trim_start_matches("https://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |from: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind((std::net::Ipv4Addr::from(from), 0).into())
            .unwrap();
        socket.connect(server).await
    };
    // Plain sockets, read without the runtime: a read says at once
    // whether the server closed them.
    let idle: Vec<std::net::TcpStream> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..2000 {
            let c = connect([127, 0, 0, 2])
                .await
                .expect("connect")
                .into_std()
                .unwrap();
            c.set_nonblocking(true).unwrap();
            out.push(c);
        }
        out
    });
    let mut loris = rt.block_on(connect([127, 0, 0, 3])).unwrap();
    // A TLS record header, a byte at a time: a handshake that never ends.
    let mut loris_closed = None;
    let started = std::time::Instant::now();
    let open = |conns: &[std::net::TcpStream]| {
        conns
            .iter()
            .filter(|c| {
                let mut b = [0u8; 1];
                let mut c: &std::net::TcpStream = c;
                matches!(std::io::Read::read(&mut c, &mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(8) {
        if loris_closed.is_none() && rt.block_on(loris.write_all(&[0x16])).is_err() {
            loris_closed = Some(started.elapsed());
        }
        let out = s.kubectl(&["get", "namespaces", "--request-timeout=5s"]);
        assert!(
            out.status.success(),
            "kubectl was not answered: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(answered >= 5, "{answered}");
    let still_open = open(&idle);
    assert!(
        still_open <= peapod_common::conn::MAX_CONNECTIONS_PER_CLIENT,
        "{still_open} idle connections from one address are open"
    );
    assert!(
        eventually(Duration::from_secs(15), || open(&idle) == 0),
        "{} idle connections outlived the handshake timeout",
        open(&idle)
    );
    assert!(
        eventually(Duration::from_secs(15), || {
            loris_closed.is_some() || rt.block_on(loris.write_all(&[0x16])).is_err()
        }),
        "the slow handshake was never cut"
    );
    assert!(s.kubectl(&["get", "--raw", "/readyz"]).status.success());
}

/// Out of file descriptors, the API server waits until connections go
/// (their handshake time runs out) and serves again; it used to stop
/// accepting for good.
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_api_server() {
    use tokio::net::TcpSocket;

    peapod_common::conn::raise_fd_limit();
    let s = Server::start_with_fd_limit(256);
    let server: std::net::SocketAddr = s.url.trim_start_matches("https://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // More idle connections, from several addresses, than the server has
    // descriptors for.
    let idle: Vec<std::net::TcpStream> = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..400u32 {
            let socket = TcpSocket::new_v4().unwrap();
            let from = std::net::Ipv4Addr::new(127, 0, 1, 2 + (i % 4) as u8);
            socket.bind((from, 0).into()).unwrap();
            out.push(
                socket
                    .connect(server)
                    .await
                    .expect("connect")
                    .into_std()
                    .unwrap(),
            );
        }
        out
    });
    assert!(
        eventually(Duration::from_secs(10), || s
            .log()
            .contains("accepting a connection")),
        "the server never ran out: {}",
        s.log()
    );
    assert!(
        eventually(Duration::from_secs(40), || s
            .kubectl(&["get", "namespaces", "--request-timeout=5s"])
            .status
            .success()),
        "the server did not serve again: {}",
        s.log()
    );
    drop(idle);
    assert!(s.kubectl(&["get", "--raw", "/readyz"]).status.success());
}

/// A client that completes the TLS handshake and then sends nothing (over
/// HTTP/1.1, as ALPN chose) is cut once its time to send headers is up.
#[test]
fn a_silent_client_after_the_handshake_is_cut() {
    let s = Server::start();
    let server = s.url.trim_start_matches("https://").to_string();
    let mut client = std::process::Command::new("openssl")
        .args([
            "s_client", "-quiet", "-alpn", "http/1.1", "-connect", &server,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client (apt-get install openssl)");
    let cut = eventually(Duration::from_secs(50), || {
        client.try_wait().ok().flatten().is_some()
    });
    let _ = client.kill();
    let _ = client.wait();
    assert!(cut, "the silent connection was never closed");
}

/// Small requests that ask for unbounded work: a JSON patch whose copies
/// double the object, one whose copies nest it deeper than any JSON reader
/// accepts, a body nested deeper than the store can read back. Each is
/// refused with its status, the object is unchanged, and the store still
/// loads after a restart.
#[test]
fn requests_that_ask_for_unbounded_work_are_refused() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(64 * 1024);
    s.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: target\n  annotations:\n    pad: {big}\ndata:\n  a: b\n"
    ));
    let patch = |ops: Vec<serde_json::Value>| {
        let file = dir.path().join("patch.json");
        std::fs::write(&file, serde_json::to_vec(&ops).unwrap()).unwrap();
        s.fails(&[
            "patch",
            "configmap",
            "target",
            "--type=json",
            "--patch-file",
            file.to_str().unwrap(),
        ])
    };
    // Each copy of the metadata into itself doubles it: 64 KiB passes the
    // 3 MiB object limit in six of the forty.
    let doubling = (0..40)
        .map(|i| serde_json::json!({"op": "copy", "from": "/metadata", "path": format!("/metadata/m{i}")}))
        .collect();
    let e = patch(doubling);
    assert!(e.contains("Request entity too large"), "{e}");
    // Each copy of /x into /x/x nests it one level deeper.
    let mut nesting = vec![serde_json::json!({"op": "add", "path": "/x", "value": {}})];
    nesting
        .extend((0..500).map(|_| serde_json::json!({"op": "copy", "from": "/x", "path": "/x/x"})));
    let e = patch(nesting);
    assert!(e.contains("levels deep"), "{e}");

    // Bodies nested deeper than the limit (120) and than the JSON reader's
    // (500) are bad requests.
    for levels in [120, 500] {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"data":{}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let file = dir.path().join("deep.json");
        std::fs::write(&file, body).unwrap();
        let e = s.fails(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            file.to_str().unwrap(),
        ]);
        assert!(
            e.contains("BadRequest") || e.contains("nest") || e.contains("recursion"),
            "{e}"
        );
    }
    assert_eq!(
        s.ok(&[
            "get",
            "configmap",
            "target",
            "-o",
            "jsonpath={.data.a} {.metadata.annotations.m0}"
        ]),
        "b "
    );
    assert!(s.kubectl(&["get", "configmap", "deep"]).status.code() == Some(1));

    let data = s.kill();
    let s = Server::start_in(data);
    assert_eq!(
        s.ok(&["get", "configmap", "target", "-o", "jsonpath={.data.a}"]),
        "b"
    );
}

/// A watcher that stops reading is closed once its buffer has stayed full
/// for 30 s, instead of holding the events it has not read (up to the
/// server's memory) for the watch's whole timeout.
#[test]
fn a_watcher_that_stops_reading_is_closed() {
    use std::io::Read;

    let s = Server::start();
    let mut watcher = s
        .command(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run kubectl");
    // 30 events of 900 KiB: far more than kubectl's HTTP/2 window, the
    // pipe nobody reads and the server's buffer together hold.
    let padding = "x".repeat(900 * 1024);
    let stream: String = (0..30)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big{i}}}\ndata: {{k: {padding}}}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, stream).unwrap();
    s.ok(&["create", "-f", file.to_str().unwrap()]);
    assert!(
        eventually(Duration::from_secs(60), || s
            .log()
            .contains("closed a watch on configmaps")),
        "the stalled watch was never closed: {}",
        s.log()
    );
    // What was sent before the close is read, then the stream ends.
    let mut seen = Vec::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut seen)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || watcher
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "kubectl's watch did not end"
    );
    let lines = seen
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!((1..30).contains(&lines), "{lines} events were delivered");
    assert!(s.kubectl(&["get", "--raw", "/readyz"]).status.success());
}

/// Two image names that once mapped onto one record on the node
/// (`a/b_c` and `a_b/c`): the second is pulled for itself, not served
/// from the first's record. Here the second is the hostile image, so its
/// own pull fails where the shared record would have run busybox.
#[test]
fn look_alike_image_names_are_different_images() {
    let registry = Registry::start();
    let busybox = registry.push_busybox();
    let host = tempfile::tempdir().unwrap();
    let hostile = registry.push_hostile(host.path());
    let copy = |from: &str, to: &str| {
        let out = std::process::Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{from}"))
            .arg(format!("docker://{}/{to}", registry.address))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/{to}", registry.address)
    };
    let first = copy(&busybox, "look/a_b:1");
    let second = copy(&hostile, "look_a/b:1");
    let s = cluster("lookalike", &registry.address, &[]);
    let pod = |name: &str, image: &str| {
        s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: \"{image}\", imagePullPolicy: IfNotPresent, command: [sleep, \"3600\"]}}\n"
        ));
    };
    pod("first", &first);
    s.wait_pod_shows("first", "Running", WAIT);
    pod("second", &second);
    assert!(
        eventually(WAIT, || {
            let p = s.ok(&["get", "pod", "second"]);
            p.contains("ErrImagePull") || p.contains("ImagePullBackOff") || p.contains("Running")
        }),
        "{}",
        s.ok(&["describe", "pod", "second"])
    );
    let p = s.ok(&["get", "pod", "second"]);
    assert!(
        !p.contains("Running"),
        "the second name ran the first image: {p}"
    );
    let events = s.events_of("second");
    assert!(events.contains("leads out of the layer"), "{events}");
}

/// The data directory holds the store (Secrets in it), the keys and the
/// tokens: another user of the host can read none of them, even when the
/// directory was made world-readable before the server started.
#[test]
fn another_host_user_cannot_read_the_store_keys_or_tokens() {
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start_in(data);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    let dir = s.dir.path().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // server.log is the test's own (the server's stderr).
        if !path.ends_with("server.log") {
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        }
        // As nobody: not even a listing of the directory.
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(&path)
            .output()
            .expect("setpriv (util-linux)");
        assert!(!out.status.success(), "nobody read {}", path.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A neighbour on the node's network sends packets to 127.0.0.2: with
/// `route_localnet` (which the proxy sets, for node ports on 127.0.0.1)
/// they would reach services bound to loopback (CVE-2020-8558). The node's
/// firewall chain drops them. The node runs in a test host's namespace,
/// the neighbour in another's.
#[test]
fn a_neighbour_cannot_reach_services_bound_to_loopback() {
    use support::hosts::TestNet;

    let mut net = TestNet::new(2);
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "loopback only\n").unwrap();
    // The victim: a web server on 127.0.0.2 of host 0.
    let _httpd = KilledOnDrop(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.hosts[0]))
            .args(["busybox", "httpd", "-f", "-p", "127.0.0.2:18080", "-h"])
            .arg(web.path())
            .spawn()
            .expect("busybox httpd"),
    );
    let hosts = net.hosts.clone();
    let in_host = |i: usize, script: &str| {
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", hosts[i]))
            .args(["sh", "-c", script])
            .status()
            .is_ok_and(|s| s.success())
    };
    // The neighbour routes loopback addresses to host 0, as an attacker
    // on the same link can.
    assert!(in_host(
        1,
        &format!(
            "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && ip route del local 127.0.0.0/8 dev lo table local && ip route add 127.0.0.0/8 via {}",
            net.host_ip(0)
        )
    ));
    // bash's /dev/tcp: a plain HTTP/1.0 GET, given 3 s.
    const GET: &str = "timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.2/18080 && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 | grep -q \"loopback only\"'";
    let reached = || in_host(1, GET);
    // The path is real: with route_localnet alone the neighbour gets in.
    assert!(in_host(
        0,
        "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet"
    ));
    assert!(
        eventually(Duration::from_secs(10), reached),
        "the attack path does not work here, so the test proves nothing"
    );
    let s = Server::start_on(&format!("{}:0", net.gateway()));
    let token = s.dir.path().join("node-token");
    net.start_node(0, &s.url, &token, &[]);
    assert!(
        eventually(WAIT, || net
            .exec(0, &["iptables-save", "-t", "filter"])
            .contains("block incoming localnet")),
        "the node never installed its firewall: {}",
        net.log(0)
    );
    assert!(
        !reached(),
        "the neighbour reached 127.0.0.2 through the node"
    );
    // Loopback traffic of the host itself still flows.
    assert!(in_host(0, GET));
}

/// A child process killed when the test ends, passed or not.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One client address may hold a bounded number of watches: past it the
/// server answers 429 with `Retry-After`, other requests are still served,
/// and when a watch closes the waiting client (client-go retries on 429)
/// gets in.
#[test]
fn watches_per_client_are_capped() {
    let s = Server::start_with(&["--max-watches-per-client", "3"]);
    let watch = |timeout: &str| {
        KilledOnDrop(
            s.command(&[
                "get",
                "--raw",
                &format!(
                    "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds={timeout}"
                ),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl"),
        )
    };
    let mut held: Vec<KilledOnDrop> = (0..3).map(|_| watch("3600")).collect();
    let mut fourth = watch("1");
    assert!(
        eventually(Duration::from_secs(20), || s
            .log()
            .contains("holds 3 watches: refused one more")),
        "the fourth watch was not refused: {}",
        s.log()
    );
    // Requests other than watches are still served.
    s.ok(&["get", "configmaps"]);
    assert!(
        fourth.0.try_wait().unwrap().is_none(),
        "kubectl gave up at once"
    );
    drop(held.pop());
    assert!(
        eventually(Duration::from_secs(20), || fourth
            .0
            .try_wait()
            .unwrap()
            .is_some_and(|status| status.success())),
        "the fourth watch never got in"
    );
}

/// Node objects are data anyone with write access to the API can make: a
/// Node claiming the host's LAN, half the Internet or the whole cluster
/// CIDR as its pod CIDR gets no route on the other nodes; a proper block
/// of the cluster CIDR does.
#[test]
fn a_node_object_cannot_route_the_hosts_traffic_away() {
    use support::hosts::TestNet;

    let mut net = TestNet::new(1);
    let s = Server::start_on(&format!("{}:0", net.gateway()));
    let token = s.dir.path().join("node-token");
    net.start_node(0, &s.url, &token, &[]);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        net.log(0)
    );
    let [a, b, c, _] = net.gateway().octets();
    let lan = format!("{a}.{b}.{c}.0/24");
    let peer = format!("{a}.{b}.{c}.200");
    for (name, cidr) in [
        ("good", "10.244.200.0/24"),
        ("lan", lan.as_str()),
        ("everything", "0.0.0.0/1"),
        ("whole", "10.244.0.0/16"),
    ] {
        s.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDR: \"{cidr}\"}}\n"
        ));
        s.ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{peer}"}}]}}}}"#
            ),
        ]);
    }
    let routes = || net.exec(0, &["ip", "route"]);
    assert!(
        eventually(WAIT, || routes()
            .contains(&format!("10.244.200.0/24 via {peer}"))),
        "the proper block was never routed: {}\n{}",
        routes(),
        net.log(0)
    );
    let r = routes();
    for hostile in [lan.as_str(), "0.0.0.0/1", "10.244.0.0/16"] {
        assert!(
            !r.contains(&format!("{hostile} via")),
            "{hostile} was routed: {r}"
        );
    }
    assert!(
        net.log(0).contains("is not a block of the cluster CIDR"),
        "{}",
        net.log(0)
    );
}

/// Accepts connections on loopback and never answers on them.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    address
}

/// A registry that accepts the connection and then sends nothing: the
/// pull fails within about a minute (two requests of a 30 s read timeout)
/// with an event, instead of hanging the pod.
#[test]
fn a_registry_that_goes_silent_fails_the_pull() {
    let registry = silent_server();
    let s = cluster("stall", &registry, &[]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: stalled}}\nspec:\n  containers:\n  - {{name: c, image: \"{registry}/stall:1\"}}\n"
    ));
    let events = || s.events_of("stalled");
    assert!(
        eventually(Duration::from_secs(150), || events()
            .contains("Failed to pull image")),
        "the pull never failed: {}\n{}",
        events(),
        s.log()
    );
}

/// A server that accepts the node's connection and says nothing: the
/// join fails with an error instead of waiting for ever.
#[test]
fn a_node_does_not_wait_for_ever_on_a_silent_server() {
    let server = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "K10abc::node:secret\n").unwrap();
    let started = std::time::Instant::now();
    let mut node = KilledOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
            .args([
                "node",
                "--server",
                &format!("https://{server}"),
                "--token-file",
            ])
            .arg(&token)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start peapod node"),
    );
    assert!(
        eventually(Duration::from_secs(60), || node
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "the node still waits after {:?}",
        started.elapsed()
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!node.0.wait().unwrap().success());
    assert!(err.contains(&server), "{err}");
}

/// A Node object pointing its address at a host that is not a node (here
/// a TLS server with a certificate of its own, as anyone could run): the
/// API server does not finish the handshake, so the node token never
/// reaches it, and `kubectl logs` says why.
#[test]
fn the_node_token_goes_only_to_a_node_the_cluster_ca_certified() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=impostor"])
        .args(["-addext", "subjectAltName=DNS:impostor,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let received = dir.path().join("received");
    let impostor = KilledOnDrop(
        std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&received).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server"),
    );
    assert!(eventually(WAIT, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    s.apply(&format!(
        "apiVersion: v1
kind: Node
metadata: {{name: impostor}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}]
  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: lured, namespace: default}}
spec:
  nodeName: impostor
  containers: [{{name: c, image: busybox}}]
"
    ));
    let err = s.fails(&["logs", "lured"]);
    assert!(
        err.contains("impostor") && err.contains("certificate"),
        "{err}"
    );
    drop(impostor);
    let seen = std::fs::read_to_string(&received).unwrap_or_default();
    assert!(
        !seen.contains("Bearer"),
        "the impostor got the token: {seen}"
    );
    assert!(!seen.contains("GET "), "the impostor got a request: {seen}");
}

/// The files of container `c`'s first run under `dir`, with their sizes.
fn log_files(dir: &std::path::Path, c: &str) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if p.parent().is_some_and(|d| d.ends_with(format!("logs/{c}")))
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("0.log"))
            {
                found.push((p, meta.len()));
            }
        }
    }
    found
}

#[test]
fn a_container_cannot_fill_the_disk_with_its_log() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let s = cluster(
        "logs",
        &registry.address,
        &[
            "--container-log-max-size",
            "256Ki",
            "--container-log-max-files",
            "3",
        ],
    );
    // 800 numbered lines of 1 KiB in batches, rotating the log three times
    // while `kubectl logs -f` follows; then a 40 KB line of two-byte
    // characters, bytes that are not UTF-8, and a marker. (`yes | head`
    // also needs SIGPIPE at its default in the container: ignored, as the
    // shim has it, `yes` spins for ever.)
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: chatty}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command:
    - sh
    - -c
    - |
      sleep 4
      pad=$(printf '%01000d' 0)
      n=0
      for b in 1 2 3 4 5 6 7 8; do
        for i in $(seq 100); do n=$((n+1)); echo "line $n $pad"; done
        sleep 0.6
      done
      yes é | head -n 20000 | tr -d '\n'; echo
      printf 'bad \377\376 bytes\n'
      echo done
      sleep 3600
"#
    ));
    s.wait_pod_shows("chatty", "Running", WAIT);
    let follow = s
        .command(&["logs", "-f", "chatty"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut follow = KilledOnDrop(follow);
    // Read as it comes: a full pipe would stall kubectl.
    let mut stdout = follow.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    assert!(
        eventually(WAIT, || s
            .kubectl(&["logs", "chatty", "--tail", "1"])
            .stdout
            == b"done\n"),
        "{:?}",
        s.ok(&["logs", "chatty", "--tail", "3", "--limit-bytes", "300"])
    );
    // At most three files, each about the limit: the disk use is bounded.
    let files = log_files(s.dir.path(), "c");
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    assert!((2..=3).contains(&files.len()), "{files:?}");
    assert!(total <= 3 * (256 << 10) + (64 << 10), "{files:?}");
    // The follower read across every rotation: all 800 lines, in order.
    std::thread::sleep(Duration::from_secs(1));
    let _ = follow.0.kill();
    let followed = String::from_utf8(reader.join().unwrap()).expect("the stream is UTF-8");
    let numbers: Vec<u32> = followed
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(numbers, (1..=800).collect::<Vec<_>>());
    assert!(
        followed.contains(&format!("\n{}\n", "é".repeat(20000))),
        "the long line arrives whole"
    );
    assert!(
        followed.contains("bad \u{fffd}\u{fffd} bytes\n"),
        "{}",
        &followed[followed.len() - 200..]
    );
    // A tail is read from the end; a byte limit cuts where it says.
    assert_eq!(
        s.ok(&["logs", "chatty", "--tail", "3"]),
        format!("{}\nbad \u{fffd}\u{fffd} bytes\ndone\n", "é".repeat(20000))
    );
    assert_eq!(
        s.ok(&["logs", "chatty", "--tail", "1", "--limit-bytes", "2"]),
        "do"
    );
}
