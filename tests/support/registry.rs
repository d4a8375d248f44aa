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

    /// Runs `tests/images/<script>` with this registry and `args`, which
    /// builds an image and pushes it.
    fn push_with(&self, script: &str, args: &[&std::ffi::OsStr]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/images")
            .join(script);
        let out = Command::new("bash")
            .arg(path)
            .arg(&self.address)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(
            out.status.success(),
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Builds and pushes the busybox test image; returns its reference.
    pub fn push_busybox(&self) -> String {
        self.push_with("busybox.sh", &[]);
        format!("{}/busybox:1.36", self.address)
    }

    /// Pushes an image whose layer whites out `target/victim` through a
    /// symlink to `target` (tests/images/hostile.sh); returns its reference.
    pub fn push_hostile(&self, target: &Path) -> String {
        self.push_with("hostile.sh", &[target.as_os_str()]);
        format!("{}/hostile:1", self.address)
    }

    /// Pushes the system call prober (tests/images/probe.c); returns its
    /// reference.
    pub fn push_probe(&self) -> String {
        self.push_with("probe.sh", &[]);
        format!("{}/probe:1", self.address)
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
