//! The default security profile: Docker's default capability set, adjusted
//! by the container's `securityContext.capabilities`; every capability for
//! privileged containers.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

use super::Security;

/// Docker's (and containerd's) default set.
const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability the kernel knows, in the order of their numbers (as
/// in `linux/capability.h`), for privileged containers.
const KERNEL: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Every capability this process may pass on: the kernel's, less what
/// its bounding set lacks (as containerd's privileged containers get "all
/// current capabilities": where Peapod itself runs with fewer, as in some
/// containers and sandboxes, asking for more fails the container's start).
fn all() -> Capabilities {
    KERNEL
        .iter()
        .enumerate()
        .filter(|(number, _)| in_bounding_set(*number))
        .filter_map(|(_, n)| Capability::from_str(n).ok())
        .collect()
}

/// Whether capability `number` (its index in [`KERNEL`]) is in this
/// process's bounding set.
fn in_bounding_set(number: usize) -> bool {
    // SAFETY: PR_CAPBSET_READ only reads the calling thread's set.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, number as libc::c_ulong, 0, 0, 0) == 1 }
}

/// A capability as Kubernetes spells it (`NET_ADMIN` or `CAP_NET_ADMIN`).
fn parse(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    Capability::from_str(upper.strip_prefix("CAP_").unwrap_or(&upper)).ok()
}

fn set(security: &Security) -> Capabilities {
    if security.privileged {
        return all();
    }
    let mut caps: Capabilities = DEFAULT.iter().copied().collect();
    if security
        .drop_capabilities
        .iter()
        .any(|d| d.eq_ignore_ascii_case("ALL"))
    {
        caps.clear();
    }
    for d in &security.drop_capabilities {
        if let Some(c) = parse(d) {
            caps.remove(&c);
        }
    }
    if security
        .add_capabilities
        .iter()
        .any(|a| a.eq_ignore_ascii_case("ALL"))
    {
        return all();
    }
    caps.extend(security.add_capabilities.iter().filter_map(|a| parse(a)));
    caps
}

/// The capability sets of the container's process.
pub fn capabilities(security: &Security) -> LinuxCapabilities {
    let caps = set(security);
    LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .expect("every field is set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_drop_adjust_the_default_set() {
        let s = Security {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        let caps = set(&s);
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::Kill));
        let none = set(&Security {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        assert!(none.is_empty());
        assert!(all().contains(&Capability::SysAdmin));
    }

    #[test]
    fn privileged_means_every_capability_this_process_holds() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let bounding = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        let expected = (0..KERNEL.len())
            .filter(|n| bounding & (1 << n) != 0)
            .count();
        assert_eq!(all().len(), expected);
        assert_eq!(KERNEL[24], "SYS_RESOURCE");
        assert_eq!(KERNEL[40], "CHECKPOINT_RESTORE");
    }
}
