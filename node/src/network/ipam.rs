//! Pod IP addresses from the node's pod CIDR, recorded one file per
//! address (named after it, holding the pod uid) so that allocations
//! survive agent restarts. The files are read once; an index in memory
//! answers lookups (a node with a thousand pods would otherwise read a
//! thousand files for each sandbox).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ipnet::Ipv4Net;

pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Net,
    /// Address -> owner, as the files say.
    leases: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl Ipam {
    pub fn new(dir: &Path, cidr: Ipv4Net) -> io::Result<Ipam> {
        let dir = dir.join(cidr.to_string().replace('/', "_"));
        std::fs::create_dir_all(&dir)?;
        let leases = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_string_lossy().parse().ok()?;
                let owner = std::fs::read_to_string(e.path()).ok()?;
                Some((ip, owner.trim().to_string()))
            })
            .collect();
        Ok(Ipam {
            dir,
            cidr,
            leases: Mutex::new(leases),
        })
    }

    fn leases(&self) -> MutexGuard<'_, BTreeMap<Ipv4Addr, String>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bridge's address: the first in the range.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.hosts().next().expect("a /24 or larger has hosts")
    }

    pub fn prefix_len(&self) -> u8 {
        self.cidr.prefix_len()
    }

    /// The address held by `owner`, if any.
    pub fn lookup(&self, owner: &str) -> Option<Ipv4Addr> {
        held_by(&self.leases(), owner)
    }

    /// An address for `owner` (the one it already holds, if any).
    pub fn allocate(&self, owner: &str) -> io::Result<Ipv4Addr> {
        let mut leases = self.leases();
        if let Some(ip) = held_by(&leases, owner) {
            return Ok(ip);
        }
        let gateway = self.gateway();
        for ip in self.cidr.hosts().filter(|ip| *ip != gateway) {
            if leases.contains_key(&ip) {
                continue;
            }
            let file = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
                    leases.insert(ip, owner.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free address left in {}",
            self.cidr
        )))
    }

    /// Hands the address `from` holds to `to`.
    pub fn transfer(&self, from: &str, to: &str) -> io::Result<Ipv4Addr> {
        let mut leases = self.leases();
        let ip = held_by(&leases, from)
            .ok_or_else(|| io::Error::other(format!("{from} holds no address")))?;
        let file = self.dir.join(ip.to_string());
        let temp = self.dir.join(format!(".{ip}.new"));
        std::fs::write(&temp, to)?;
        std::fs::rename(&temp, &file)?;
        leases.insert(ip, to.to_string());
        Ok(ip)
    }

    /// Frees every address `owner` holds.
    pub fn release(&self, owner: &str) {
        let mut leases = self.leases();
        while let Some(ip) = held_by(&leases, owner) {
            match std::fs::remove_file(self.dir.join(ip.to_string())) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return,
            }
            leases.remove(&ip);
        }
    }

    /// Owners holding addresses, for cleaning up after pods that are gone.
    pub fn owners(&self) -> Vec<String> {
        self.leases().values().cloned().collect()
    }
}

fn held_by(leases: &BTreeMap<Ipv4Addr, String>, owner: &str) -> Option<Ipv4Addr> {
    leases
        .iter()
        .find_map(|(ip, held)| (held == owner).then_some(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_unique_stable_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "10.244.3.0/24".parse().unwrap()).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 3, 1));
        let a = ipam.allocate("pod-a").unwrap();
        let b = ipam.allocate("pod-b").unwrap();
        assert_ne!(a, b);
        assert_eq!(ipam.allocate("pod-a").unwrap(), a);
        // A new agent over the same directory sees the same leases.
        let again = Ipam::new(dir.path(), "10.244.3.0/24".parse().unwrap()).unwrap();
        assert_eq!(again.lookup("pod-b"), Some(b));
        assert_eq!(again.transfer("pod-b", "pod-d").unwrap(), b);
        assert_eq!(
            (again.lookup("pod-b"), again.lookup("pod-d")),
            (None, Some(b))
        );
        again.release("pod-a");
        assert_eq!(again.lookup("pod-a"), None);
        assert_eq!(again.allocate("pod-c").unwrap(), a);
    }
}
