//! Talking to iptables: whole-table transactions through
//! `iptables-restore --noflush`, the chains present (from `iptables-save`),
//! and the jumps from the built-in chains into Peapod's.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::rules::Chains;

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("running {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
}

type Result<T> = std::result::Result<T, IptablesError>;

/// Applies `rules` (one or more tables) in one transaction.
pub fn restore(rules: &str) -> Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IptablesError::Spawn("iptables-restore", e))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rules.as_bytes())
        .map_err(|e| IptablesError::Spawn("iptables-restore", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| IptablesError::Spawn("iptables-restore", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IptablesError::Failed(
            "iptables-restore",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The chains of `table` whose names start with one of `prefixes`.
pub fn chains(table: &str, prefixes: &[String]) -> Result<BTreeSet<String>> {
    let out = Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map_err(|e| IptablesError::Spawn("iptables-save", e))?;
    if !out.status.success() {
        return Err(IptablesError::Failed(
            "iptables-save",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| prefixes.iter().any(|p| c.starts_with(p.as_str())))
        .map(String::from)
        .collect())
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The jumps from built-in chains into ours: (table, chain, match).
fn hooks(chains: &Chains) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let services = chains.services();
    let new = ["-m", "conntrack", "--ctstate", "NEW"]
        .map(String::from)
        .to_vec();
    let jump = |target: String| vec!["-j".to_string(), target];
    vec![
        ("filter", "INPUT", jump(chains.firewall())),
        ("nat", "PREROUTING", jump(services.clone())),
        ("nat", "OUTPUT", jump(services.clone())),
        ("nat", "POSTROUTING", jump(chains.snat())),
        (
            "filter",
            "INPUT",
            [new.clone(), jump(services.clone())].concat(),
        ),
        (
            "filter",
            "OUTPUT",
            [new.clone(), jump(services.clone())].concat(),
        ),
        // Each hook is inserted first in its chain: the accepting FORWARD
        // hook goes in before the rejecting one, so that it ends up after.
        ("filter", "FORWARD", jump(chains.forward())),
        ("filter", "FORWARD", [new, jump(services)].concat()),
    ]
}

/// Makes sure the built-in chains jump into ours (the chains must exist).
pub fn ensure_hooks(chains: &Chains) {
    for (table, chain, rule) in hooks(chains) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check = [&["-t", table, "-C", chain][..], &rule].concat();
        if !iptables(&check) {
            let insert = [&["-t", table, "-I", chain, "1"][..], &rule].concat();
            if !iptables(&insert) {
                tracing::warn!("could not hook {table}/{chain} into Peapod's service chains");
            }
        }
    }
}

/// Removes the jumps and every chain of ours (`--cleanup`).
pub fn remove_all(chains: &Chains) {
    for (table, chain, rule) in hooks(chains) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let delete = [&["-t", table, "-D", chain][..], &rule].concat();
        while iptables(&delete) {}
    }
    let prefix = format!("{}-", chains_prefix(chains));
    for table in ["nat", "filter"] {
        let Ok(ours) = self::chains(table, std::slice::from_ref(&prefix)) else {
            continue;
        };
        // The pod masquerading chain belongs to the network; it goes with it.
        let ours: Vec<String> = ours
            .into_iter()
            .filter(|c| !c.ends_with("-POSTROUTING"))
            .collect();
        for c in &ours {
            iptables(&["-t", table, "-F", c]);
        }
        for c in &ours {
            iptables(&["-t", table, "-X", c]);
        }
    }
}

fn chains_prefix(chains: &Chains) -> String {
    chains.services().trim_end_matches("-SERVICES").to_string()
}
