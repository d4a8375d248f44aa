//! A real OCI registry for tests: Debian's `docker-registry` on a free
//! loopback port with its storage in a temporary directory, and the busybox
//! image built from Debian's `busybox-static` pushed to it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub address: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_on(std::net::Ipv4Addr::LOCALHOST)
    }

    /// A registry listening on `ip` (for test hosts to reach).
    pub fn start_on(ip: std::net::Ipv4Addr) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("{ip}:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let registry = Registry {
            child: Some(child),
            _dir: dir,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Builds and pushes the busybox test image; returns its reference.
    pub fn push_busybox(&self) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/busybox.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&self.address)
            .output()
            .expect("run busybox.sh");
        assert!(
            out.status.success(),
            "pushing busybox failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/busybox:1.36", self.address)
    }

    /// Pushes an image whose layer whites out `target/victim` through a
    /// symlink to `target` (tests/images/hostile.sh); returns its reference.
    pub fn push_hostile(&self, target: &Path) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/hostile.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&self.address)
            .arg(target)
            .output()
            .expect("run hostile.sh");
        assert!(
            out.status.success(),
            "pushing the hostile image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/hostile:1", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
