//! Hostile workloads (needs root): what an image, a pod or a manifest
//! written by an attacker tries, played for real against `peapod up`, and
//! shown to fail with a clear error while the host stays as it was.

mod support;

use std::time::Duration;

use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(60);

/// A layer with a symlink out of the rootfs and a whiteout through it
/// (the unpacker once followed the link and deleted the host's file).
#[test]
fn an_image_layer_cannot_delete_a_host_file_through_a_symlink() {
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"host data").unwrap();
    let registry = Registry::start();
    let image = registry.push_hostile(host.path());
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("hostile", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
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
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("subpath", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
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
    let run = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"host data").unwrap();
    let mut flags = up_flags("configmap", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    flags.extend(["--sync-frequency".to_string(), "2".to_string()]);
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
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
