//! Starting one run of a container: pull its image, build its environment,
//! command, user, mounts, limits and security settings from the pod spec,
//! mount its root filesystem, and hand it to the OCI runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use kube::ResourceExt;
use peapod_common::quantity;
use peapod_runtimes::image::{self, Credentials, Image, PullPolicy};
use peapod_runtimes::oci::{
    BindMount, ContainerConfig, PodNamespaces, Resources, Running, Seccomp, Security, Streams, user,
};

use super::NodeCtx;
use super::env::{self, Addresses, Sources};
use super::sandbox::{PodDir, cgroup_parent};
use super::seccomp;
use super::volumes::Prepared;

/// Why a run could not start, as the container's waiting reason.
#[derive(Debug)]
pub struct LaunchError {
    pub reason: &'static str,
    pub message: String,
    /// Whether an event was already published for it.
    pub reported: bool,
}

impl LaunchError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> LaunchError {
        LaunchError {
            reason,
            message: message.into(),
            reported: false,
        }
    }
}

/// Everything about the pod a run needs.
pub struct PodContext<'a> {
    pub pod: &'a Pod,
    pub dir: &'a PodDir,
    pub namespaces: PodNamespaces,
    pub volumes: &'a Prepared,
    pub sources: &'a Sources,
    pub addrs: &'a Addresses,
    pub service_env: &'a BTreeMap<String, String>,
    pub credentials: &'a [Credentials],
    /// When the containers' logs rotate.
    pub log_rotation: peapod_runtimes::logs::Rotation,
}

/// The command line: `command`/`args` over the image's entrypoint/cmd,
/// with `$(VAR)` references expanded.
pub fn command_line(c: &Container, image: &Image, env: &[String]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let expand =
        |v: &Vec<String>| -> Vec<String> { v.iter().map(|s| env::expand(s, &vars)).collect() };
    let entrypoint = image.config.entrypoint.clone().unwrap_or_default();
    let cmd = image.config.cmd.clone().unwrap_or_default();
    match (&c.command, &c.args) {
        (Some(command), args) => {
            let mut line = expand(command);
            line.extend(args.as_ref().map(expand).unwrap_or_default());
            line
        }
        (None, Some(args)) => {
            let mut line = entrypoint;
            line.extend(expand(args));
            line
        }
        (None, None) => entrypoint.into_iter().chain(cmd).collect(),
    }
}

/// `cpu.shares` from a CPU request (the kubelet's formula).
fn shares(millis: i64) -> u64 {
    ((millis * 1024) / 1000).max(2) as u64
}

fn resources(c: &Container) -> Resources {
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let cpu_request = requests
        .get("cpu")
        .or(limits.get("cpu"))
        .and_then(|q| quantity::milli(&q.0));
    Resources {
        cpu_shares: cpu_request.map(shares),
        cpu_limit_millis: limits
            .get("cpu")
            .and_then(|q| quantity::milli(&q.0))
            .map(|m| m.max(1) as u64),
        memory_limit_bytes: limits.get("memory").and_then(|q| quantity::value(&q.0)),
    }
}

fn security(c: &Container, seccomp: Seccomp) -> Security {
    let s: SecurityContext = c.security_context.clone().unwrap_or_default();
    let caps = s.capabilities.clone().unwrap_or_default();
    Security {
        seccomp,
        privileged: s.privileged.unwrap_or(false),
        allow_privilege_escalation: s.allow_privilege_escalation.unwrap_or(false),
        readonly_rootfs: s.read_only_root_filesystem.unwrap_or(false),
        add_capabilities: caps.add.unwrap_or_default(),
        drop_capabilities: caps.drop.unwrap_or_default(),
    }
}

/// The user and group: the container's securityContext over the pod's.
fn run_as(pod: &Pod, c: &Container) -> (Option<u32>, Option<u32>) {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone());
    let c_sc = c.security_context.as_ref();
    let user = c_sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.as_ref().and_then(|s| s.run_as_user));
    let group = c_sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.as_ref().and_then(|s| s.run_as_group));
    (user.map(|u| u as u32), group.map(|g| g as u32))
}

/// The container's bind mounts; subPaths are pinned under `pins` (in the
/// container's own directory, unmounted with it).
fn mounts(
    ctx: &PodContext,
    c: &Container,
    termination_log: PathBuf,
    pins: &Path,
) -> Result<Vec<BindMount>, LaunchError> {
    let mut out = vec![
        BindMount {
            source: ctx.dir.hosts(),
            destination: "/etc/hosts".into(),
            readonly: false,
        },
        BindMount {
            source: ctx.dir.resolv_conf(),
            destination: "/etc/resolv.conf".into(),
            readonly: false,
        },
        BindMount {
            source: ctx.dir.hostname(),
            destination: "/etc/hostname".into(),
            readonly: false,
        },
        BindMount {
            source: termination_log,
            destination: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            readonly: false,
        },
    ];
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(base) = ctx.volumes.get(&m.name) else {
            return Err(LaunchError::new(
                "CreateContainerConfigError",
                format!("volume \"{}\" not found in the pod", m.name),
            ));
        };
        let mut source = base.clone();
        if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
            source = pins.join(i.to_string());
            super::subpath::pin(base, sub, &source).map_err(|e| {
                LaunchError::new(
                    "CreateContainerConfigError",
                    format!("volume \"{}\": {e}", m.name),
                )
            })?;
        }
        out.retain(|b| b.destination != m.mount_path);
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            readonly: m.read_only.unwrap_or(false)
                || super::volumes::agent_written(ctx.pod, &m.name),
        });
    }
    Ok(out)
}

/// The `imageID` pods report: `<repository>@<digest>`.
pub fn image_id(image: &Image) -> String {
    let repo = image
        .reference
        .split('@')
        .next()
        .unwrap_or_default()
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(image.reference.as_str(), |(r, _)| r)
        .to_string();
    format!("{repo}@{}", image.digest)
}

/// Pulls the container's image as its policy says, with events.
pub async fn pull(
    node: &NodeCtx,
    ctx: &PodContext<'_>,
    c: &Container,
) -> Result<Image, LaunchError> {
    let reference = c.image.clone().unwrap_or_default();
    let policy = PullPolicy::parse(c.image_pull_policy.as_deref());
    if policy != PullPolicy::Always
        && let Some(image) = node.images.local(&reference)
    {
        if policy == PullPolicy::IfNotPresent {
            node.event(
                ctx.pod,
                "Normal",
                "Pulled",
                &format!("Container image \"{reference}\" already present on machine"),
            );
        }
        return Ok(image);
    }
    if policy == PullPolicy::Never {
        let message =
            format!("Container image \"{reference}\" is not present with pull policy of Never");
        node.event(ctx.pod, "Warning", "ErrImageNeverPull", &message);
        return Err(LaunchError {
            reason: "ErrImageNeverPull",
            message,
            reported: true,
        });
    }
    node.event(
        ctx.pod,
        "Normal",
        "Pulling",
        &format!("Pulling image \"{reference}\""),
    );
    let started = Instant::now();
    match node.images.pull(&reference, policy, ctx.credentials).await {
        Ok(image) => {
            node.event(
                ctx.pod,
                "Normal",
                "Pulled",
                &format!(
                    "Successfully pulled image \"{reference}\" in {:.3}s",
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(image)
        }
        Err(e) => {
            let message = format!("Failed to pull image \"{reference}\": {e}");
            node.event(ctx.pod, "Warning", "Failed", &message);
            node.event(ctx.pod, "Warning", "Failed", "Error: ErrImagePull");
            Err(LaunchError {
                reason: "ErrImagePull",
                message,
                reported: true,
            })
        }
    }
}

/// Starts run `id` of container `c` from `image`.
pub async fn start(
    node: &NodeCtx,
    ctx: &PodContext<'_>,
    c: &Container,
    image: &Image,
    id: &str,
    log: PathBuf,
) -> Result<Running, LaunchError> {
    let env = env::resolve(
        ctx.pod,
        c,
        image.config.env.as_deref().unwrap_or(&[]),
        ctx.sources,
        ctx.addrs,
        ctx.service_env,
    )
    .map_err(|e| LaunchError::new("CreateContainerConfigError", e.to_string()))?;
    let args = command_line(c, image, &env);
    if args.is_empty() {
        return Err(LaunchError::new(
            "CreateContainerConfigError",
            "no command specified: the image has no entrypoint and the container no command",
        ));
    }
    let seccomp = seccomp::resolve(&node.config.data_dir.join("seccomp"), ctx.pod, c)
        .map_err(|e| LaunchError::new("CreateContainerError", e))?;
    let base = ctx.dir.container(id);
    let rootfs = base.join("rootfs");
    image::mount_rootfs(
        &image.layers,
        &base.join("upper"),
        &base.join("work"),
        &rootfs,
    )
    .map_err(|e| {
        LaunchError::new(
            "CreateContainerError",
            format!("mounting the root filesystem: {e}"),
        )
    })?;
    let (run_as_user, run_as_group) = run_as(ctx.pod, c);
    let identity = user::resolve(
        &rootfs,
        image.config.user.as_deref().unwrap_or(""),
        run_as_user,
        run_as_group,
    )
    .map_err(|e| LaunchError::new("CreateContainerConfigError", e.to_string()))?;
    let run_as_non_root = c
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        .or(ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if run_as_non_root && identity.uid == 0 {
        return Err(LaunchError::new(
            "CreateContainerConfigError",
            "container has runAsNonRoot and image will run as root",
        ));
    }
    let termination_log = base.with_extension("termination-log");
    std::fs::write(&termination_log, b"")
        .map_err(|e| LaunchError::new("CreateContainerError", e.to_string()))?;
    let mut gids = identity.additional_gids.clone();
    let pod_sc = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone());
    gids.extend(
        pod_sc
            .as_ref()
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|g| g as u32),
    );
    if let Some(fs_group) = pod_sc.as_ref().and_then(|s| s.fs_group) {
        gids.push(fs_group as u32);
    }
    let config = ContainerConfig {
        id: id.to_string(),
        args,
        env,
        cwd: c
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .unwrap_or_default(),
        uid: identity.uid,
        gid: identity.gid,
        additional_gids: gids,
        rootfs,
        mounts: mounts(ctx, c, termination_log, &base.join("subpaths"))?,
        namespaces: ctx.namespaces.clone(),
        cgroup_parent: cgroup_parent(&ctx.pod.uid().unwrap_or_default()),
        resources: resources(c),
        security: security(c, seccomp),
        log,
        log_rotation: ctx.log_rotation,
        streams: Streams {
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        },
    };
    node.oci
        .start(&config)
        .await
        .map_err(|e| LaunchError::new("RunContainerError", e.to_string()))
}

/// The message a container left in its termination log (at most 4 KiB),
/// or the tail of its log when it asks for `FallbackToLogsOnError`.
pub fn termination_message(
    dir: &PodDir,
    c: &Container,
    id: &str,
    log: &std::path::Path,
    failed: bool,
) -> Option<String> {
    let text =
        std::fs::read(dir.container(id).with_extension("termination-log")).unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text[..text.len().min(4096)]).to_string();
    if message.is_empty()
        && failed
        && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter_map(|l| peapod_runtimes::logs::parse(l).map(|e| e.text))
            .collect();
        message = lines[lines.len().saturating_sub(80)..].join("\n");
    }
    (!message.is_empty()).then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peapod_runtimes::image::ImageConfig;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> Image {
        Image {
            reference: "127.0.0.1:5000/busybox:1.36".into(),
            digest: "sha256:abc".into(),
            config: ImageConfig {
                entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
                cmd: cmd.map(|e| e.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            layers: vec![],
            wasm: None,
        }
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "c".into(),
            command: command.map(|e| e.iter().map(|s| s.to_string()).collect()),
            args: args.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_override_entrypoint_and_cmd_as_in_kubernetes() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        assert_eq!(
            command_line(&container(None, None), &img, &[]),
            ["/entry", "default"]
        );
        assert_eq!(
            command_line(&container(None, Some(&["x"])), &img, &[]),
            ["/entry", "x"]
        );
        assert_eq!(
            command_line(&container(Some(&["sh"]), None), &img, &[]),
            ["sh"]
        );
        assert_eq!(
            command_line(
                &container(Some(&["echo"]), Some(&["$(MSG)"])),
                &img,
                &["MSG=hi".into()]
            ),
            ["echo", "hi"]
        );
        assert_eq!(image_id(&img), "127.0.0.1:5000/busybox@sha256:abc");
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
        }))
        .unwrap();
        let r = resources(&c);
        assert_eq!(r.cpu_shares, Some(102));
        assert_eq!(r.cpu_limit_millis, Some(500));
        assert_eq!(r.memory_limit_bytes, Some(64 << 20));
    }
}
