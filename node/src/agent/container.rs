//! One container of a pod as the node tracks it: its current run (waiting,
//! running or terminated), restarts and back-off, readiness, and the small
//! record kept on disk so that a restarted agent finds running containers
//! again instead of starting them twice.

use std::time::{Duration, Instant};

use peapod_runtimes::oci::Exit;
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use super::plan::{self, Seen, State};
use super::run::Run;
use super::sandbox::PodDir;

/// How a run ended, as the pod status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
    pub container_id: Option<String>,
}

impl Terminated {
    pub fn from_exit(exit: &Exit, id: &str, message: Option<String>) -> Terminated {
        let reason = if exit.error.is_some() {
            "StartError"
        } else if exit.oom_killed {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: reason.into(),
            message: exit.error.clone().or(message).or(exit.message.clone()),
            started_at: exit.started_at.clone(),
            finished_at: exit.finished_at.clone(),
            container_id: Some(container_id(id)),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Current {
    /// Not running, with the reason (`ContainerCreating`, `ErrImagePull`,
    /// `CrashLoopBackOff`, ...).
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running(Run),
    Terminated(Terminated),
}

/// The `containerID` shown in pod status.
pub fn container_id(id: &str) -> String {
    format!("peapod://{id}")
}

#[derive(Debug)]
pub struct ContainerState {
    pub name: String,
    pub restart_count: u32,
    pub current: Current,
    pub last_terminated: Option<Terminated>,
    /// The runtime id of the current (or last) run.
    pub id: Option<String>,
    /// Whether it runs in the Wasm runtime.
    pub wasm: bool,
    pub image_id: Option<String>,
    pub ready: bool,
    /// Whether the startup probe (if any) has passed.
    pub started: bool,
    pub backoff: Duration,
    /// No restart before this.
    pub not_before: Option<Instant>,
    /// Probes of the current run.
    pub probes: Option<AbortHandle>,
    pub waiter: Option<AbortHandle>,
}

/// What is kept on disk per container.
#[derive(Serialize, Deserialize, Default)]
pub struct Record {
    pub id: String,
    pub restart_count: u32,
    pub image_id: Option<String>,
    /// A Wasm run (which does not outlive the agent).
    #[serde(default)]
    pub wasm: bool,
}

impl ContainerState {
    pub fn new(name: &str) -> ContainerState {
        ContainerState {
            name: name.to_string(),
            restart_count: 0,
            current: Current::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_terminated: None,
            id: None,
            wasm: false,
            image_id: None,
            ready: false,
            started: false,
            backoff: Duration::ZERO,
            not_before: None,
            probes: None,
            waiter: None,
        }
    }

    /// The runtime id of run number `restart_count` of this container.
    pub fn next_id(&self, pod_uid: &str) -> String {
        run_id(pod_uid, &self.name, self.restart_count)
    }

    pub fn is_running(&self) -> bool {
        matches!(self.current, Current::Running(_))
    }

    pub fn terminated(&self) -> Option<&Terminated> {
        match &self.current {
            Current::Terminated(t) => Some(t),
            _ => None,
        }
    }

    pub fn set_waiting(&mut self, reason: &str, message: Option<String>) {
        self.current = Current::Waiting {
            reason: reason.into(),
            message,
        };
        self.ready = false;
    }

    /// What the plan needs to know of it.
    pub fn seen(&self) -> Seen<'_> {
        Seen {
            state: match &self.current {
                Current::Waiting { reason, .. } => State::Waiting(reason),
                Current::Running(_) => State::Running,
                Current::Terminated(t) => State::Terminated(t.exit_code),
            },
            not_before: self.not_before,
            ever_started: self.id.is_some(),
        }
    }

    /// Schedules the next start after a run ended (`ran_for`) or a start
    /// failed (none).
    pub fn back_off(&mut self, ran_for: Option<Duration>) {
        let (wait, next) = plan::back_off(self.backoff, ran_for);
        self.not_before = Some(Instant::now() + wait);
        self.backoff = next;
    }

    /// Records the end of the current run and schedules the back-off.
    pub fn ended(&mut self, t: Terminated, ran_for: Option<Duration>) {
        self.back_off(ran_for);
        self.current = Current::Terminated(t);
        self.ready = false;
        self.started = false;
        self.stop_tasks();
    }

    pub fn stop_tasks(&mut self) {
        if let Some(p) = self.probes.take() {
            p.abort();
        }
        if let Some(w) = self.waiter.take() {
            w.abort();
        }
    }

    pub fn save(&self, dir: &PodDir) {
        let Some(id) = &self.id else { return };
        let record = Record {
            id: id.clone(),
            restart_count: self.restart_count,
            image_id: self.image_id.clone(),
            wasm: self.wasm,
        };
        let path = dir.record(&self.name);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, serde_json::to_vec(&record).expect("serializes"));
    }

    pub fn load(dir: &PodDir, name: &str) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(dir.record(name)).ok()?).ok()
    }
}

/// Runtime ids: short enough for libcontainer's socket paths, unique per
/// pod, container and run, and readable (`<uid prefix>-<name>-<run>`).
pub fn run_id(pod_uid: &str, name: &str, run: u32) -> String {
    let uid: String = pod_uid.chars().filter(|c| *c != '-').take(12).collect();
    let name = if name.len() <= 24 {
        name.to_string()
    } else {
        // Long names keep a prefix and a hash of the whole, to stay unique.
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        format!("{}-{:08x}", &name[..15], hash as u32)
    };
    format!("{uid}-{name}-{run}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_unique_and_readable() {
        let uid = "0b7c2f1e-55aa-4c3e-9d0e-1234567890ab";
        assert_eq!(run_id(uid, "web", 2), "0b7c2f1e55aa-web-2");
        let a = run_id(uid, "a-very-long-container-name-number-one", 0);
        let b = run_id(uid, "a-very-long-container-name-number-two", 0);
        assert_ne!(a, b);
        assert!(a.len() < 48);
    }

    #[test]
    fn each_end_of_a_run_backs_off_further() {
        let mut c = ContainerState::new("web");
        let t = Terminated {
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            message: None,
            started_at: None,
            finished_at: String::new(),
            container_id: None,
        };
        for _ in 0..10 {
            c.ended(t.clone(), Some(Duration::from_secs(1)));
        }
        assert_eq!(c.backoff, plan::BACKOFF_MAX);
        assert_eq!(c.seen().state, State::Terminated(1));
        let before = Instant::now();
        c.ended(t, Some(Duration::from_secs(700)));
        assert_eq!(c.backoff, plan::BACKOFF_START);
        assert!(
            c.not_before
                .is_some_and(|t| t <= Instant::now() && t >= before)
        );
    }
}
