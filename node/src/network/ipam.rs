//! Pod IP addresses from the node's pod CIDR, recorded one file per
//! address (named after it, holding the pod uid) so that allocations
//! survive agent restarts.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Net,
}

impl Ipam {
    pub fn new(dir: &Path, cidr: Ipv4Net) -> io::Result<Ipam> {
        let dir = dir.join(cidr.to_string().replace('/', "_"));
        std::fs::create_dir_all(&dir)?;
        Ok(Ipam { dir, cidr })
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
        std::fs::read_dir(&self.dir).ok()?.flatten().find_map(|e| {
            let held = std::fs::read_to_string(e.path()).ok()?;
            (held.trim() == owner)
                .then(|| e.file_name().to_string_lossy().parse().ok())
                .flatten()
        })
    }

    /// An address for `owner` (the one it already holds, if any).
    pub fn allocate(&self, owner: &str) -> io::Result<Ipv4Addr> {
        if let Some(ip) = self.lookup(owner) {
            return Ok(ip);
        }
        let gateway = self.gateway();
        for ip in self.cidr.hosts().filter(|ip| *ip != gateway) {
            let file = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
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
        let ip = self
            .lookup(from)
            .ok_or_else(|| io::Error::other(format!("{from} holds no address")))?;
        let file = self.dir.join(ip.to_string());
        let temp = self.dir.join(format!(".{ip}.new"));
        std::fs::write(&temp, to)?;
        std::fs::rename(&temp, &file)?;
        Ok(ip)
    }

    /// Frees every address `owner` holds.
    pub fn release(&self, owner: &str) {
        while let Some(ip) = self.lookup(owner) {
            if std::fs::remove_file(self.dir.join(ip.to_string())).is_err() {
                return;
            }
        }
    }

    /// Owners holding addresses, for cleaning up after pods that are gone.
    pub fn owners(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }
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
