//! The host's Docker engine in tests: a busybox image loaded into it, and
//! containers run from it, each removed (with the image) on drop.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `docker` with `args`.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker (a Docker engine must be running)")
}

/// Runs `docker` and returns its trimmed stdout, panicking on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Docker's own iptables rules (its chains and the jumps into them), in
/// order, without counters: what Peapod must leave as it found it.
pub fn docker_rules() -> Vec<String> {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    let mut table = String::new();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            if let Some(t) = l.strip_prefix('*') {
                table = t.to_string();
                return None;
            }
            (l.contains("DOCKER") || l.contains("docker0")).then(|| {
                let l = l.split(" [").next().unwrap_or(l);
                format!("{table}: {l}")
            })
        })
        .collect()
}

/// A busybox image in the local engine, under a name of this test's.
pub struct Image {
    pub name: String,
}

impl Image {
    pub fn busybox() -> Image {
        let name = format!("peapod-test/busybox:{}", std::process::id());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/busybox.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(format!("docker-daemon:{name}"))
            .output()
            .expect("run busybox.sh");
        assert!(
            out.status.success(),
            "loading busybox into Docker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Image { name }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.name]);
    }
}

/// A running container, removed on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d` of `image` with `args` (options, then the command
    /// after `--`).
    pub fn run(image: &Image, tag: &str, options: &[&str], command: &[&str]) -> Container {
        let name = format!("peapod-test-{}-{tag}", std::process::id());
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend(options);
        args.push(&image.name);
        args.extend(command);
        docker_ok(&args);
        Container { name }
    }

    /// The container's address on Docker's default bridge.
    pub fn ip(&self) -> String {
        docker_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            &self.name,
        ])
    }

    /// Runs `command` in the container; returns its output.
    pub fn exec(&self, command: &[&str]) -> Output {
        let mut args = vec!["exec", &self.name];
        args.extend(command);
        docker(&args)
    }

    /// Fetches `url` from inside the container; the body, trimmed.
    pub fn get(&self, url: &str) -> String {
        // `timeout` rather than wget's `-T`, which crashes busybox-static's wget.
        let out = self.exec(&["timeout", "5", "wget", "-q", "-O-", url]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}
