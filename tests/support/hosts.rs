//! Test hosts: network namespaces on a shared bridge, each with its own
//! address, standing in for machines of a cluster. Each runs a real
//! `peapod node`; everything (processes, containers, namespaces, bridge)
//! is removed on drop.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

/// A bridge in the host's namespace and `n` namespaces attached to it.
pub struct TestNet {
    /// The nodes' directories (and a copy of the join token), kept until
    /// the nodes have cleaned up after themselves.
    pub work: tempfile::TempDir,
    pub bridge: String,
    /// The third octet of `10.77.x.0/24`.
    subnet: u8,
    pub hosts: Vec<String>,
    nodes: Vec<NodeProcess>,
}

struct NodeProcess {
    child: Child,
    netns: String,
    args: Vec<String>,
}

impl TestNet {
    pub fn new(n: usize) -> TestNet {
        // Unique per process and per net: tests of one binary run side by side.
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = (std::process::id() * 4 + NEXT.fetch_add(1, Ordering::Relaxed)) & 0xffff;
        let subnet = (id % 200 + 20) as u8;
        let bridge = format!("tb{id:x}");
        let mut net = TestNet {
            work: tempfile::tempdir().expect("temp dir"),
            bridge: bridge.clone(),
            subnet,
            hosts: Vec::new(),
            nodes: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("th{id:x}-{i}");
            let (outer, inner) = (format!("tv{id:x}-{i}"), format!("tp{id:x}-{i}"));
            ip(&["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            let addr = format!("{}/24", net.host_ip(i));
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &net.gateway().to_string(),
            ]);
        }
        // Hosts reach each other through the bridge as through a switch.
        // With br_netfilter loaded (as where Docker runs) bridged frames
        // cross the host's FORWARD chain, whose policy may be DROP: let
        // this bridge's own traffic through, until drop.
        net.bridge_rule("-I");
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        net
    }

    /// Inserts (`-I`) or deletes (`-D`) the host FORWARD rules that
    /// accept traffic in and out of the test bridge.
    fn bridge_rule(&self, op: &str) {
        let comment = format!("peapod test net {}", self.bridge);
        for dir in ["-i", "-o"] {
            let mut args = vec!["-w", op, "FORWARD"];
            if op == "-I" {
                args.push("1");
            }
            args.extend([dir, &self.bridge, "-m", "comment", "--comment", &comment]);
            args.extend(["-j", "ACCEPT"]);
            let ok = Command::new("iptables")
                .args(&args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok || op == "-D", "iptables {}", args.join(" "));
        }
    }

    /// The bridge's address, where the API server listens.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8)
    }

    /// Starts `peapod node` on host `i`, joining the server at `url`.
    pub fn start_node(&mut self, i: usize, url: &str, token: &Path, extra: &[String]) {
        let dir = self.work.path().join(format!("host{i}"));
        std::fs::create_dir_all(&dir).expect("host dir");
        // The cleanup at the end needs the token after the server is gone.
        let token_copy = dir.join("node-token");
        std::fs::copy(token, &token_copy).expect("copy the node token");
        let token = token_copy.as_path();
        let args: Vec<String> = [
            "node",
            "--server",
            url,
            "--token-file",
            &token.display().to_string(),
            "--name",
            &format!("host-{i}"),
            "--node-ip",
            &self.host_ip(i).to_string(),
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--run-dir",
            &dir.join("run").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect();
        let log = std::fs::File::create(dir.join("node.log")).expect("log");
        // nsenter switches the network namespace only; `ip netns exec`
        // would also remount /sys and hide the cgroup hierarchies.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.hosts[i]))
            .arg(env!("CARGO_BIN_EXE_peapod"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start peapod node");
        self.nodes.push(NodeProcess {
            child,
            netns: self.hosts[i].clone(),
            args,
        });
    }

    /// The log of host `i`'s node agent.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.work.path().join(format!("host{i}/node.log")))
            .unwrap_or_default()
    }

    /// Runs a command in host `i`'s namespace; returns its stdout.
    pub fn exec(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.hosts[i]))
            .args(args)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
            let _ = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", n.netns))
                .arg(env!("CARGO_BIN_EXE_peapod"))
                .args(&n.args)
                .arg("--cleanup")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        self.bridge_rule("-D");
    }
}
