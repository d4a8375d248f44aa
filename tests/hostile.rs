//! Hostile workloads (needs root): what an image, a pod or a manifest
//! written by an attacker tries, played for real against `peapod up`, and
//! shown to fail with a clear error while the host stays as it was.

mod support;

use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(60);

/// `peapod up` pulling from `registry`, with `extra` flags, once its node
/// is Ready; the run directory goes after the server.
fn cluster(tag: &str, registry: &Registry, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags(tag, run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    flags.extend(extra.iter().map(|f| f.to_string()));
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
    (s, run)
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
    let (s, _run) = cluster("hostile", &registry, &[]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: layer}}\nspec:\n  containers:\n  - {{name: c, image: \"{image}\"}}\n"
    ));
    let events = || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=layer",
            "-o",
            "jsonpath={.items[*].message}",
        ])
    };
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
    let (s, _run) = cluster("subpath", &registry, &[]);
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
    assert!(
        eventually(WAIT, || s
            .ok(&["get", "pod", "planted"])
            .contains("CreateContainerConfigError")),
        "{}",
        s.ok(&["describe", "pod", "planted"])
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=planted",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
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
    assert!(
        eventually(WAIT, || s.ok(&["get", "pod", "inside"]).contains("Running")),
        "{}",
        s.ok(&["describe", "pod", "inside"])
    );
    assert_eq!(s.ok(&["exec", "inside", "--", "cat", "/mnt/f"]), "hi\n");
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
    let (s, _run) = cluster("configmap", &registry, &["--sync-frequency", "2"]);
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
    assert!(
        eventually(WAIT, || s.ok(&["get", "pod", "reader"]).contains("Running")),
        "{}",
        s.ok(&["describe", "pod", "reader"])
    );
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
