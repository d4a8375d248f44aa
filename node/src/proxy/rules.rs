//! The iptables rules that make Services work, rendered as the input of one
//! `iptables-restore --noflush` per table, in the manner of kube-proxy's
//! iptables mode. Pure: a model of Service ports in, rule text out.
//!
//! nat: `<P>-SERVICES` (from PREROUTING and OUTPUT) matches each cluster
//! IP and port and jumps to the port's `<P>-SVC-*` chain, which picks an
//! endpoint chain `<P>-SEP-*` at random (statistic mode) or by client
//! address (recent match, for `sessionAffinity: ClientIP`); the endpoint
//! chain DNATs. Node ports go through `<P>-NODEPORTS` for any local
//! destination address. Traffic that needs it (from outside the pod
//! network, to a node port, or a pod reaching itself) is marked and
//! masqueraded in `<P>-SNAT` (from POSTROUTING).
//! filter: `<P>-SERVICES` rejects traffic to Services without endpoints;
//! `<P>-FORWARD` accepts pod and Service traffic; `<P>-FIREWALL` (from
//! INPUT) drops loopback-addressed traffic from elsewhere, which
//! `route_localnet` (for node ports on 127.0.0.1) would otherwise let a
//! neighbour send to services bound to 127.0.0.1 (CVE-2020-8558).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use sha2::Digest;

/// The mark that asks for masquerading.
pub const MASQ_MARK: &str = "0x4000/0x4000";

/// One port of one Service, with where it leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// Ready endpoints.
    pub endpoints: Vec<SocketAddrV4>,
    /// Where traffic goes while there is no endpoint (the activator of a
    /// scale-to-zero Service); without one it is rejected.
    pub fallback: Option<SocketAddrV4>,
}

impl ServicePort {
    fn id(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }

    fn targets(&self) -> Vec<SocketAddrV4> {
        if self.endpoints.is_empty() {
            self.fallback.into_iter().collect()
        } else {
            self.endpoints.clone()
        }
    }
}

/// Names of the chains of one node's proxy.
pub struct Chains {
    prefix: String,
}

impl Chains {
    pub fn new(prefix: &str) -> Chains {
        Chains {
            prefix: prefix.to_string(),
        }
    }

    pub fn services(&self) -> String {
        format!("{}-SERVICES", self.prefix)
    }
    pub fn node_ports(&self) -> String {
        format!("{}-NODEPORTS", self.prefix)
    }
    pub fn mark_masq(&self) -> String {
        format!("{}-MARK-MASQ", self.prefix)
    }
    pub fn snat(&self) -> String {
        format!("{}-SNAT", self.prefix)
    }
    pub fn forward(&self) -> String {
        format!("{}-FORWARD", self.prefix)
    }
    pub fn firewall(&self) -> String {
        format!("{}-FIREWALL", self.prefix)
    }

    /// The per-object chain kinds, whose stale members are deleted.
    pub fn per_object_prefixes(&self) -> [String; 3] {
        ["SVC", "SEP", "EXT"].map(|k| format!("{}-{k}-", self.prefix))
    }

    /// `<P>-<kind>-<hash>`, within iptables' 28-character limit.
    fn hashed(&self, kind: &str, key: &str) -> String {
        let base = format!("{}-{kind}-", self.prefix);
        let room = 28usize.saturating_sub(base.len()).clamp(4, 16);
        let hex: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        format!("{base}{}", &hex[..room])
    }

    fn svc(&self, p: &ServicePort) -> String {
        self.hashed("SVC", &p.id())
    }
    fn ext(&self, p: &ServicePort) -> String {
        self.hashed("EXT", &p.id())
    }
    fn sep(&self, p: &ServicePort, ep: &SocketAddrV4) -> String {
        self.hashed("SEP", &format!("{}/{ep}", p.id()))
    }
}

/// The rules for both tables and the per-object chains they declare.
pub struct Rendered {
    pub nat: String,
    pub filter: String,
    pub chains: BTreeSet<String>,
}

fn comment(p: &ServicePort, what: &str) -> String {
    format!("-m comment --comment \"{} {what}\"", p.id())
}

/// Renders the rules for `ports`; chains of `existing` (per-object chains
/// on the host) that are no longer wanted are flushed and deleted in the
/// same transaction. `ingress` lists (node port, local port) pairs steered
/// to the Ingress proxy on every local address.
pub fn render(
    chains: &Chains,
    cluster_cidr: Ipv4Net,
    ports: &[ServicePort],
    ingress: &[(u16, u16)],
    existing: &BTreeSet<String>,
) -> Rendered {
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut rules: Vec<String> = Vec::new();
    let (services, node_ports, mark, snat) = (
        chains.services(),
        chains.node_ports(),
        chains.mark_masq(),
        chains.snat(),
    );
    rules.push(format!("-A {snat} -m mark ! --mark {MASQ_MARK} -j RETURN"));
    rules.push(format!("-A {snat} -j MARK --xor-mark 0x4000"));
    rules.push(format!(
        "-A {snat} -m comment --comment \"peapod service traffic requiring SNAT\" -j MASQUERADE"
    ));
    rules.push(format!("-A {mark} -j MARK --or-mark 0x4000"));
    let mut filter_rules: Vec<String> = Vec::new();
    let filter_services = chains.services();
    for p in ports {
        let proto = &p.protocol;
        let targets = p.targets();
        if targets.is_empty() {
            if let Some(ip) = p.cluster_ip {
                filter_rules.push(format!(
                    "-A {filter_services} {} -d {ip}/32 -p {proto} -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    comment(p, "has no endpoints"),
                    p.port
                ));
            }
            if let Some(np) = p.node_port {
                filter_rules.push(format!(
                    "-A {filter_services} {} -m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {np} -j REJECT --reject-with icmp-port-unreachable",
                    comment(p, "has no endpoints"),
                ));
            }
            continue;
        }
        let svc = chains.svc(p);
        declared.insert(svc.clone());
        if let Some(ip) = p.cluster_ip {
            rules.push(format!(
                "-A {services} {} -d {ip}/32 -p {proto} -m {proto} --dport {} -j {svc}",
                comment(p, "cluster IP"),
                p.port
            ));
            rules.push(format!(
                "-A {svc} {} ! -s {cluster_cidr} -d {ip}/32 -p {proto} -m {proto} --dport {} -j {mark}",
                comment(p, "cluster IP"),
                p.port
            ));
        }
        if let Some(np) = p.node_port {
            let ext = chains.ext(p);
            declared.insert(ext.clone());
            rules.push(format!(
                "-A {node_ports} {} -p {proto} -m {proto} --dport {np} -j {ext}",
                comment(p, "node port")
            ));
            rules.push(format!("-A {ext} -j {mark}"));
            rules.push(format!("-A {ext} -j {svc}"));
        }
        let seps: Vec<(String, &SocketAddrV4)> =
            targets.iter().map(|t| (chains.sep(p, t), t)).collect();
        if let Some(secs) = p.affinity_seconds {
            for (sep, _) in &seps {
                rules.push(format!("-A {svc} -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {secs} --reap -j {sep}"));
            }
        }
        let n = seps.len();
        for (i, (sep, target)) in seps.iter().enumerate() {
            declared.insert(sep.clone());
            let left = n - i;
            if left > 1 {
                rules.push(format!(
                    "-A {svc} {} -m statistic --mode random --probability {:.10} -j {sep}",
                    comment(p, &format!("-> {target}")),
                    1.0 / left as f64
                ));
            } else {
                rules.push(format!(
                    "-A {svc} {} -j {sep}",
                    comment(p, &format!("-> {target}"))
                ));
            }
            // A pod reaching itself through the Service needs SNAT.
            rules.push(format!("-A {sep} -s {}/32 -j {mark}", target.ip()));
            let affinity = if p.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
            } else {
                String::new()
            };
            rules.push(format!(
                "-A {sep} -p {proto}{affinity} -m {proto} -j DNAT --to-destination {target}"
            ));
        }
    }
    // Port 0: Ingress is not steered from any node port.
    for (port, local) in ingress.iter().filter(|(port, _)| *port != 0) {
        rules.push(format!(
            "-A {services} -m comment --comment \"ingress\" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport {port} -j REDIRECT --to-ports {local}"
        ));
    }
    rules.push(format!("-A {services} -m comment --comment \"node ports\" -m addrtype --dst-type LOCAL -j {node_ports}"));

    let mut nat = String::from("*nat\n");
    for c in [&services, &node_ports, &mark, &snat] {
        nat.push_str(&format!(":{c} - [0:0]\n"));
    }
    for c in declared.union(existing) {
        nat.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in &rules {
        nat.push_str(r);
        nat.push('\n');
    }
    for c in existing.difference(&declared) {
        nat.push_str(&format!("-X {c}\n"));
    }
    nat.push_str("COMMIT\n");

    let (forward, firewall) = (chains.forward(), chains.firewall());
    let mut filter =
        format!("*filter\n:{filter_services} - [0:0]\n:{forward} - [0:0]\n:{firewall} - [0:0]\n");
    // Node ports on 127.0.0.1 are DNATed before INPUT: those pass.
    filter.push_str(&format!(
        "-A {firewall} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"peapod: block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"
    ));
    for r in &filter_rules {
        filter.push_str(r);
        filter.push('\n');
    }
    filter.push_str(&format!(
        "-A {forward} -m mark --mark {MASQ_MARK} -j ACCEPT\n"
    ));
    filter.push_str(&format!("-A {forward} -s {cluster_cidr} -j ACCEPT\n"));
    filter.push_str(&format!("-A {forward} -d {cluster_cidr} -j ACCEPT\n"));
    filter.push_str("COMMIT\n");
    Rendered {
        nat,
        filter,
        chains: declared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
            protocol: "tcp".into(),
            cluster_ip: Some("10.96.0.20".parse().unwrap()),
            port: 80,
            node_port: Some(30080),
            affinity_seconds: None,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            fallback: None,
        }
    }

    #[test]
    fn endpoints_are_chosen_at_random_and_dnat_ed() {
        let chains = Chains::new("PEAPOD");
        let r = render(
            &chains,
            "10.244.0.0/16".parse().unwrap(),
            &[port(&["10.244.0.5:8080", "10.244.1.7:8080"])],
            &[],
            &BTreeSet::new(),
        );
        assert!(
            r.nat
                .contains("-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j PEAPOD-SVC-")
        );
        assert!(r.nat.contains("--probability 0.5000000000"));
        assert!(r.nat.contains("-j DNAT --to-destination 10.244.0.5:8080"));
        assert!(r.nat.contains("-j DNAT --to-destination 10.244.1.7:8080"));
        assert!(r.nat.contains("PEAPOD-NODEPORTS -m comment --comment \"default/web:http node port\" -p tcp -m tcp --dport 30080"));
        assert_eq!(r.chains.len(), 4, "{:?}", r.chains);
        assert!(r.chains.iter().all(|c| c.len() <= 28));
        assert!(!r.filter.contains("REJECT"));
    }

    #[test]
    fn services_without_endpoints_reject_and_stale_chains_go() {
        let chains = Chains::new("PEAPOD");
        let stale: BTreeSet<String> = ["PEAPOD-SVC-0123456789ABCDEF".to_string()].into();
        let r = render(
            &chains,
            "10.244.0.0/16".parse().unwrap(),
            &[port(&[])],
            &[(80, 41234)],
            &stale,
        );
        assert!(r.nat.contains("--dport 80 -j REDIRECT --to-ports 41234"));
        assert!(
            r.filter
                .contains("-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j REJECT")
        );
        assert!(r.filter.contains("--dport 30080 -j REJECT"));
        assert!(r.nat.contains("-X PEAPOD-SVC-0123456789ABCDEF\n"));
        assert!(r.chains.is_empty());
    }

    #[test]
    fn a_fallback_takes_traffic_while_there_are_no_endpoints() {
        let chains = Chains::new("PEAPOD");
        let mut p = port(&[]);
        p.fallback = Some("10.244.0.1:8012".parse().unwrap());
        let r = render(
            &chains,
            "10.244.0.0/16".parse().unwrap(),
            &[p],
            &[],
            &BTreeSet::new(),
        );
        assert!(r.nat.contains("-j DNAT --to-destination 10.244.0.1:8012"));
        assert!(!r.filter.contains("REJECT"));
    }

    #[test]
    fn client_ip_affinity_uses_recent_matches() {
        let chains = Chains::new("PEAPOD");
        let mut p = port(&["10.244.0.5:8080"]);
        p.affinity_seconds = Some(10800);
        let r = render(
            &chains,
            "10.244.0.0/16".parse().unwrap(),
            &[p],
            &[],
            &BTreeSet::new(),
        );
        assert!(r.nat.contains("--rcheck --seconds 10800 --reap"));
        assert!(r.nat.contains("--rsource --set -m tcp -j DNAT"));
    }
}
