//! A node's watches relist after falling out of the API server's history
//! (needs root): a `peapod node` in its own network namespace is cut off
//! from the server, the server restarts (its watch history is in memory,
//! so the node's resourceVersion is then too old: 410 Gone), a Service is
//! deleted and another created meanwhile; once the node reaches the server
//! again, its proxy rules and DNS records hold exactly the Services that
//! exist: the relist replaced its caches rather than only adding to them.

mod support;

use std::process::Command;
use std::time::Duration;

use support::hosts::TestNet;
use support::{Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// Drops the node's traffic to the API server while it lives (the rule is
/// in the test's own namespace, which goes away with the test anyway).
struct Cut {
    netns: String,
    rule: Vec<String>,
}

impl Cut {
    fn new(netns: &str, server: &str) -> Cut {
        let (ip, port) = server.rsplit_once(':').expect("host:port");
        let rule: Vec<String> = [
            "OUTPUT",
            "-d",
            ip,
            "-p",
            "tcp",
            "--dport",
            port,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cut = Cut {
            netns: netns.to_string(),
            rule,
        };
        assert!(cut.iptables("-I"), "cutting the node off");
        cut
    }

    fn iptables(&self, op: &str) -> bool {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("iptables")
            .arg(op)
            .args(&self.rule)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.iptables("-D");
    }
}

#[test]
fn a_relist_drops_what_was_deleted_while_the_watch_was_down() {
    let mut net = TestNet::new(1);
    let s = Server::start_on(&format!("{}:0", net.gateway()));
    let listen = s.url.trim_start_matches("https://").to_string();
    let token = s.dir.path().join("node-token");
    net.start_node(0, &s.url, &token, &[]);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        net.log(0)
    );
    let service = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n"
        )
    };
    s.apply(&format!("{}---\n{}", service("gone"), service("kept")));
    let ip =
        |s: &Server, name: &str| s.ok(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"]);
    let (gone, kept) = (ip(&s, "gone"), ip(&s, "kept"));
    let cidr = s.ok(&["get", "node", "host-0", "-o", "jsonpath={.spec.podCIDR}"]);
    let dns = cidr.replace(".0/24", ".1");
    let rules = || net.exec(0, &["iptables-save"]);
    let routed = |rules: &str, ip: &str| rules.contains(&format!("-d {ip}/32"));
    let answers = |out: &str, ip: &str| out.lines().any(|l| l.trim() == format!("Address: {ip}"));
    let lookup = |name: &str| {
        net.exec(
            0,
            &[
                "busybox",
                "nslookup",
                &format!("{name}.default.svc.cluster.local"),
                &dns,
            ],
        )
    };
    assert!(
        eventually(WAIT, || routed(&rules(), &gone)
            && answers(&lookup("gone"), &gone)),
        "the node never served {gone}: {}\n{}\n{}",
        rules(),
        lookup("gone"),
        net.log(0)
    );

    let cut = Cut::new(&net.hosts[0], &listen);
    // A write the node cannot see: after the restart its last
    // resourceVersion is older than anything the server can replay.
    s.ok(&["create", "configmap", "moved-on"]);
    let dir = s.kill();
    let s = Server::restart_on(dir, &listen);
    // Created first, so that it cannot take the deleted one's address.
    s.apply(&service("new"));
    s.ok(&["delete", "svc", "gone"]);
    let new = ip(&s, "new");
    assert!(
        routed(&rules(), &gone),
        "the node should not have heard of the deletion yet"
    );
    drop(cut);

    assert!(
        eventually(WAIT, || {
            let r = rules();
            !routed(&r, &gone) && routed(&r, &kept) && routed(&r, &new)
        }),
        "proxy rules after the relist (gone {gone}, kept {kept}, new {new}): {}\n{}",
        rules(),
        net.log(0)
    );
    assert!(
        eventually(WAIT, || lookup("gone").contains("NXDOMAIN")
            && answers(&lookup("kept"), &kept)
            && answers(&lookup("new"), &new)),
        "DNS after the relist: {}\n{}\n{}",
        lookup("gone"),
        lookup("kept"),
        lookup("new")
    );
    assert!(
        net.log(0).contains("410") || net.log(0).to_lowercase().contains("too old"),
        "the node's watches should have relisted after a 410: {}",
        net.log(0)
    );
}
