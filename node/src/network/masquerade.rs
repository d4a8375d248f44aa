//! Masquerading pod traffic that leaves the cluster network, with rules in
//! a chain Peapod owns (written in one `iptables-restore` transaction).

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

/// The chain's name unless configured otherwise.
pub const CHAIN: &str = "PEAPOD-POSTROUTING";

fn iptables(args: &[&str]) -> std::io::Result<bool> {
    Ok(Command::new("iptables")
        .args(["-w", "-t", "nat"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success())
}

/// Installs (or refreshes) in `chain` the masquerade rule for `pods`
/// leaving `cluster`.
pub fn install(chain: &str, pods: Ipv4Net, cluster: Ipv4Net) -> std::io::Result<()> {
    let rules = format!(
        "*nat\n:{chain} - [0:0]\n-A {chain} -s {pods} ! -d {cluster} -m comment --comment \"peapod: pod traffic leaving the cluster\" -j MASQUERADE\nCOMMIT\n"
    );
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    if !iptables(&["-C", "POSTROUTING", "-j", chain])?
        && !iptables(&["-A", "POSTROUTING", "-j", chain])?
    {
        return Err(std::io::Error::other(
            "cannot hook the masquerade chain into POSTROUTING",
        ));
    }
    Ok(())
}

/// Removes the chain and its hook.
pub fn remove(chain: &str) -> std::io::Result<()> {
    while iptables(&["-D", "POSTROUTING", "-j", chain])? {}
    iptables(&["-F", chain])?;
    iptables(&["-X", chain])?;
    Ok(())
}
