//! A pod's sandbox: its directory on the node, its network namespace and
//! address (through [`crate::network`]), the IPC and UTS namespaces its
//! containers share, the `/etc/hosts`, `/etc/resolv.conf` and
//! `/etc/hostname` files written for it, and its cgroup parent.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::config::AgentConfig;

/// Where a pod's files live: `<data>/pods/<uid>/`.
#[derive(Clone, Debug)]
pub struct PodDir(PathBuf);

impl PodDir {
    pub fn new(config: &AgentConfig, uid: &str) -> PodDir {
        PodDir(config.data_dir.join("pods").join(uid))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn hosts(&self) -> PathBuf {
        self.0.join("etc-hosts")
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.0.join("resolv.conf")
    }

    pub fn hostname(&self) -> PathBuf {
        self.0.join("hostname")
    }

    pub fn volumes(&self) -> PathBuf {
        self.0.join("volumes")
    }

    /// A container instance's root filesystem directories.
    pub fn container(&self, id: &str) -> PathBuf {
        self.0.join("containers").join(id)
    }

    /// The log of a container's `attempt`-th run.
    pub fn log(&self, container: &str, attempt: u32) -> PathBuf {
        self.0
            .join("logs")
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// The node's record of a container (its current id and restarts).
    pub fn record(&self, container: &str) -> PathBuf {
        self.0.join("state").join(format!("{container}.json"))
    }
}

/// The cgroup (relative to each hierarchy) every pod's goes under.
pub const CGROUP_ROOT: &str = "peapod";

/// The cgroup (relative to each hierarchy) the pod's containers go under.
pub fn cgroup_parent(uid: &str) -> String {
    format!("{CGROUP_ROOT}/pod{}", uid.replace('-', ""))
}

/// Removes the pod's cgroups (its containers' are gone by then; a
/// crashed run's leftover leaves go with it).
pub fn remove_cgroup(uid: &str) {
    peapod_runtimes::cgroups::Hierarchies::host().remove(&cgroup_parent(uid));
}

/// The pod's hostname: `spec.hostname` or its name (at most 63 characters).
/// Whether the pod uses the host's network (and so its hostname).
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name_any());
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// The kubelet's `/etc/hosts` for a pod.
pub fn hosts_file(pod: &Pod, ip: Ipv4Addr, cluster_domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let spec = pod.spec.as_ref();
    match spec.and_then(|s| s.subdomain.as_ref()) {
        Some(sub) => {
            let ns = pod.namespace().unwrap_or_default();
            out.push_str(&format!(
                "{ip}\t{host}.{sub}.{ns}.svc.{cluster_domain}\t{host}\n"
            ));
        }
        None => out.push_str(&format!("{ip}\t{host}\n")),
    }
    for alias in spec
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{names}\n",
            alias.ip
        ));
    }
    out
}

/// The pod's `/etc/resolv.conf` for its `dnsPolicy` and `dnsConfig`.
pub fn resolv_conf(pod: &Pod, cluster_dns: Option<Ipv4Addr>, cluster_domain: &str) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut nameservers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let host_values = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|v| v.split_whitespace().map(String::from))
            .collect()
    };
    let cluster_first = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    match (policy, cluster_dns) {
        ("None", _) => {}
        (_, Some(dns)) if cluster_first => {
            let ns = pod.namespace().unwrap_or_default();
            nameservers.push(dns.to_string());
            searches.extend([
                format!("{ns}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ]);
            searches.extend(host_values("search "));
            options.push("ndots:5".into());
        }
        _ => {
            nameservers.extend(host_values("nameserver "));
            searches.extend(host_values("search "));
            options.extend(host_values("options "));
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        nameservers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.clone().unwrap_or_default() {
            let Some(name) = o.name else { continue };
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut out = String::new();
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Writes the pod's `/etc` files.
pub fn write_files(
    dir: &PodDir,
    pod: &Pod,
    ip: Ipv4Addr,
    config: &AgentConfig,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.path())?;
    // A pod on the host's network sees the host's names, as the kubelet
    // arranges it.
    let (hosts, name) = if host_network(pod) {
        let name = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| config.name.clone());
        (std::fs::read_to_string("/etc/hosts")?, name)
    } else {
        (hosts_file(pod, ip, &config.cluster_domain), hostname(pod))
    };
    std::fs::write(dir.hosts(), hosts)?;
    std::fs::write(
        dir.resolv_conf(),
        resolv_conf(pod, config.cluster_dns, &config.cluster_domain),
    )?;
    std::fs::write(dir.hostname(), format!("{name}\n"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn hosts_name_the_pod_and_its_subdomain() {
        let p = pod(serde_json::json!({"containers": [], "subdomain": "web",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}]}));
        let hosts = hosts_file(&p, "10.244.0.7".parse().unwrap(), "cluster.local");
        assert!(hosts.contains("10.244.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n"));
        assert!(hosts.contains("10.1.2.3\tdb\tdb.local\n"));
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_search_path() {
        let p = pod(serde_json::json!({"containers": []}));
        let conf = resolv_conf(&p, Some("10.96.0.10".parse().unwrap()), "cluster.local");
        assert!(conf.starts_with(
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local"
        ));
        assert!(conf.contains("options ndots:5"));
        let none = pod(serde_json::json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}}));
        assert_eq!(
            resolv_conf(&none, Some("10.96.0.10".parse().unwrap()), "cluster.local"),
            "nameserver 1.1.1.1\noptions ndots:2\n"
        );
    }
}
