//! The OCI runtime spec (`config.json`) of a container: the process, the
//! root filesystem, the pod namespaces it joins, mounts, cgroup limits and
//! the default security profile.

use std::path::PathBuf;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
    get_default_maskedpaths, get_default_mounts, get_default_readonly_paths,
};

use super::ContainerConfig;
use super::profile;
use super::seccomp::{self, Seccomp};

/// The CFS period quotas are expressed against, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

fn bind(source: PathBuf, destination: &str, readonly: bool) -> Result<Mount, OciSpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
}

fn mounts(config: &ContainerConfig) -> Result<Vec<Mount>, OciSpecError> {
    let mut mounts: Vec<Mount> = get_default_mounts();
    if config.security.privileged {
        // A privileged container sees /sys read-write, as with Docker.
        for m in &mut mounts {
            if m.destination().as_os_str() == "/sys"
                && let Some(options) = m.options_mut()
            {
                options.retain(|o| o != "ro");
            }
        }
    }
    // Volumes hide what the image or defaults put at the same place.
    let taken: Vec<&str> = config
        .mounts
        .iter()
        .map(|m| m.destination.as_str())
        .collect();
    mounts.retain(|m| !taken.iter().any(|t| m.destination().as_os_str() == *t));
    for m in &config.mounts {
        mounts.push(bind(m.source.clone(), &m.destination, m.readonly)?);
    }
    Ok(mounts)
}

/// The device cgroup rules: everything denied but the standard character
/// devices (null, zero, full, random, urandom, tty, console, ptmx and the
/// pseudo-terminals) and making device nodes (`m`, not opening them), as
/// runc and containerd allow; a privileged container may use any device.
/// libcontainer writes them to the v1 devices controller, or compiles them
/// into the eBPF device filter of a v2 cgroup.
fn devices(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>, OciSpecError> {
    let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(major) = major {
            b = b.major(major);
        }
        if let Some(minor) = minor {
            b = b.minor(minor);
        }
        b.build()
    };
    if privileged {
        return Ok(vec![rule(true, LinuxDeviceType::A, None, None, "rwm")?]);
    }
    let mut rules = vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm")?,
        rule(true, LinuxDeviceType::C, None, None, "m")?,
        rule(true, LinuxDeviceType::B, None, None, "m")?,
    ];
    // null, zero, full, random, urandom; tty, console, ptmx; the pts.
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(
            true,
            LinuxDeviceType::C,
            Some(major),
            Some(minor),
            "rwm",
        )?);
    }
    rules.push(rule(true, LinuxDeviceType::C, Some(136), None, "rwm")?);
    Ok(rules)
}

/// Builds the spec for `config`.
pub fn build(config: &ContainerConfig) -> Result<Spec, OciSpecError> {
    let privileged = config.security.privileged;
    let capabilities = profile::capabilities(&config.security);
    // Their names as the spec writes them (`CAP_SYS_ADMIN`), for seccomp.
    let bounding: Vec<String> = capabilities
        .bounding()
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
        .collect();
    let process = ProcessBuilder::default()
        .terminal(config.streams.tty)
        .user(
            UserBuilder::default()
                .uid(config.uid)
                .gid(config.gid)
                .additional_gids(config.additional_gids.clone())
                .build()?,
        )
        .args(config.args.clone())
        .env(config.env.clone())
        .cwd(if config.cwd.is_empty() {
            "/"
        } else {
            config.cwd.as_str()
        })
        .capabilities(capabilities)
        .no_new_privileges(!(privileged || config.security.allow_privilege_escalation))
        .build()?;

    let namespace = |typ, path: Option<&PathBuf>| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p.clone()).build(),
            None => b.build(),
        }
    };
    let ns = &config.namespaces;
    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Network, Some(&ns.net))?,
        namespace(LinuxNamespaceType::Ipc, Some(&ns.ipc))?,
        namespace(LinuxNamespaceType::Uts, Some(&ns.uts))?,
    ];

    let mut memory = LinuxMemoryBuilder::default();
    if let Some(limit) = config.resources.memory_limit_bytes {
        // No swap beyond the limit, so that going over it is an OOM kill.
        memory = memory.limit(limit).swap(limit);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(shares) = config.resources.cpu_shares {
        cpu = cpu.shares(shares);
    }
    if let Some(millis) = config.resources.cpu_limit_millis {
        let quota = (millis * CPU_PERIOD_US / 1000).max(1000);
        cpu = cpu.quota(quota as i64).period(CPU_PERIOD_US);
    }
    let resources = LinuxResourcesBuilder::default()
        .devices(devices(privileged)?)
        .memory(memory.build()?)
        .cpu(cpu.build()?)
        .build()?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(config.cgroup_path()))
        .resources(resources);
    let seccomp = match &config.security.seccomp {
        _ if privileged => None,
        Seccomp::Unconfined => None,
        Seccomp::RuntimeDefault => Some(seccomp::runtime_default(&bounding)?),
        Seccomp::Profile(p) => Some((**p).clone()),
    };
    if let Some(profile) = seccomp {
        linux = linux.seccomp(seccomp::for_libcontainer(profile)?);
    }
    linux = if privileged {
        linux.masked_paths(vec![]).readonly_paths(vec![])
    } else {
        linux
            .masked_paths(get_default_maskedpaths())
            .readonly_paths(get_default_readonly_paths())
    };

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(config.rootfs.clone())
                .readonly(config.security.readonly_rootfs)
                .build()?,
        )
        .process(process)
        .mounts(mounts(config)?)
        .linux(linux.build()?)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{BindMount, PodNamespaces, Resources, Security};

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "abc-web-0".into(),
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["PATH=/bin".into()],
            cwd: String::new(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
            rootfs: "/var/lib/peapod/containers/abc/rootfs".into(),
            mounts: vec![BindMount {
                source: "/var/lib/peapod/pods/abc/etc-hosts".into(),
                destination: "/etc/hosts".into(),
                readonly: false,
            }],
            namespaces: PodNamespaces {
                net: "/run/peapod/netns/abc".into(),
                ipc: "/run/peapod/ipcns/abc".into(),
                uts: "/run/peapod/utsns/abc".into(),
            },
            cgroup_parent: "peapod/podabc".into(),
            resources: Resources {
                cpu_shares: Some(102),
                cpu_limit_millis: Some(250),
                memory_limit_bytes: Some(64 << 20),
            },
            security: Security::default(),
            log: "/tmp/x.log".into(),
            log_rotation: Default::default(),
            streams: Default::default(),
        }
    }

    #[test]
    fn a_container_joins_the_pod_and_gets_its_limits() {
        let spec = build(&config()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let ns = &json["linux"]["namespaces"];
        assert!(
            ns.as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network" && n["path"] == "/run/peapod/netns/abc")
        );
        assert_eq!(json["linux"]["cgroupsPath"], "/peapod/podabc/abc-web-0");
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 25_000);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert!(json["linux"]["maskedPaths"].as_array().unwrap().len() > 3);
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(caps.iter().any(|c| c == "CAP_CHOWN"));
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(json["linux"].get("seccomp").is_none());
        let mut confined = config();
        confined.security.seccomp = Seccomp::RuntimeDefault;
        let json = serde_json::to_value(build(&confined).unwrap()).unwrap();
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = json["linux"]["seccomp"]["syscalls"][0]["names"]
            .as_array()
            .unwrap();
        assert!(
            allowed.iter().any(|n| n == "chroot"),
            "CAP_SYS_CHROOT is held"
        );
        assert!(!allowed.iter().any(|n| n == "mount"));
        confined.security.privileged = true;
        let json = serde_json::to_value(build(&confined).unwrap()).unwrap();
        assert!(json["linux"].get("seccomp").is_none());
    }

    #[test]
    fn devices_are_denied_but_the_standard_ones() {
        let json = serde_json::to_value(build(&config()).unwrap()).unwrap();
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0]["allow"], false);
        assert_eq!(rules[0]["type"], "a");
        let allowed = |major: i64, minor: i64| {
            rules.iter().any(|r| {
                r["allow"] == true
                    && r["major"] == major
                    && (r["minor"] == minor || r["minor"].is_null())
                    && r["access"].as_str().unwrap().contains('r')
            })
        };
        assert!(allowed(1, 3) && allowed(1, 9) && allowed(5, 2) && allowed(136, 4));
        // The host's disks (block devices) can be made but not opened.
        assert!(!allowed(8, 0) && !allowed(253, 0));
        let mut p = config();
        p.security.privileged = true;
        let json = serde_json::to_value(build(&p).unwrap()).unwrap();
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            (rules.len(), &rules[0]["type"]),
            (1, &serde_json::json!("a"))
        );
        assert_eq!(rules[0]["allow"], true);
    }

    #[test]
    fn privileged_containers_get_every_capability_and_no_masks() {
        let mut c = config();
        c.security.privileged = true;
        let json = serde_json::to_value(build(&c).unwrap()).unwrap();
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        let masked = json["linux"]["maskedPaths"].as_array();
        assert!(masked.is_none_or(|m| m.is_empty()));
    }
}
