//! The pod worker's decisions, apart from the work. From what the worker
//! knows of a pod (its restart policy, what each container is doing, the
//! back-offs) and the clock, this says what to do next; nothing here
//! touches a runtime, the network or the API, so each kubelet rule Peapod
//! follows is a row in the table tests below. `worker.rs` carries the
//! actions out.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::probes::ProbeKind;

/// Crash-loop back-off: the first restart at once, then 10 s doubling to
/// 5 min, reset after 10 min of running without trouble (the kubelet's
/// numbers). A start that fails backs off the same way.
pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// How long the worker sleeps when nothing is due.
const IDLE: Duration = Duration::from_secs(60);

/// A container of the pod, by its place in the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Init(usize),
    App(usize),
}

/// What one container's current run is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State<'a> {
    /// Not running, with the reason shown (`ContainerCreating`,
    /// `ErrImagePull`, `CrashLoopBackOff`, ...).
    Waiting(&'a str),
    Running,
    /// Ended with this exit code.
    Terminated(i32),
}

/// What the worker knows of one container.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seen<'a> {
    pub state: State<'a>,
    /// No (re)start before this.
    pub not_before: Option<Instant>,
    /// It has been started at least once (it has a run id).
    pub ever_started: bool,
}

/// What the worker knows of the pod.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    pub restart_policy: &'a str,
    /// The pod reached Succeeded or Failed: nothing runs any more.
    pub finished: bool,
    /// A failed step (sandbox, status report) is retried no sooner.
    pub retry_at: Option<Instant>,
    /// The sandbox (network, cgroup) and the volumes exist.
    pub prepared: bool,
    /// When volumes that follow API objects are next brought up to date.
    pub refresh_at: Option<Instant>,
    pub init_done: bool,
    pub init: Vec<Seen<'a>>,
    pub app: Vec<Seen<'a>>,
}

/// A pod's phase, as its status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// One step for the worker, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make the sandbox, the pod's cgroup and the volumes; plan again
    /// once they exist.
    PrepareSandbox,
    /// Bring ConfigMap, Secret, downward API and projected volumes up to date.
    RefreshVolumes,
    /// Every init container succeeded: the app containers may start.
    InitDone,
    /// Start a waiting container; `restart` counts one more restart (it
    /// waited out a crash-loop back-off).
    Start { slot: Slot, restart: bool },
    /// Start a terminated container again: its run becomes the last
    /// state and counts one more restart.
    Restart(Slot),
    /// A terminated container must wait this long before it restarts.
    CrashLoopBackOff { slot: Slot, wait: Duration },
    /// A container whose image could not be pulled waits out its back-off.
    ImagePullBackOff(Slot),
    /// The pod ended for good.
    Finish(Phase),
}

/// What to do now.
pub fn next(pod: &PodView, now: Instant) -> Vec<Action> {
    if pod.finished || pod.retry_at.is_some_and(|t| now < t) {
        return Vec::new();
    }
    if !pod.prepared {
        return vec![Action::PrepareSandbox];
    }
    let mut actions = Vec::new();
    if pod.refresh_at.is_some_and(|t| now >= t) {
        actions.push(Action::RefreshVolumes);
    }
    let policy = pod.restart_policy;
    let mut init_done = pod.init_done;
    if !init_done {
        // Init containers run one at a time, in order.
        match pod
            .init
            .iter()
            .enumerate()
            .find(|(_, c)| c.state != State::Terminated(0))
        {
            None => {
                actions.push(Action::InitDone);
                init_done = true;
            }
            Some((i, c)) => {
                let slot = Slot::Init(i);
                match c.state {
                    State::Running => {}
                    // Init containers restart unless the policy is Never.
                    State::Terminated(_) if policy != "Never" => {
                        actions.push(restart_when_due(slot, c, now));
                    }
                    State::Terminated(_) => {}
                    State::Waiting(reason) => actions.extend(start_when_due(slot, reason, c, now)),
                }
            }
        }
    }
    if init_done {
        for (i, c) in pod.app.iter().enumerate() {
            let slot = Slot::App(i);
            match c.state {
                State::Running => {}
                State::Terminated(code) if restarts(policy, code) => {
                    actions.push(restart_when_due(slot, c, now));
                }
                State::Terminated(_) => {}
                State::Waiting(reason) => actions.extend(start_when_due(slot, reason, c, now)),
            }
        }
    }
    let phase = phase(policy, &pod.init, &pod.app, init_done);
    if phase.is_terminal() {
        actions.push(Action::Finish(phase));
    }
    actions
}

fn restart_when_due(slot: Slot, c: &Seen, now: Instant) -> Action {
    match c.not_before.filter(|t| now < *t) {
        Some(t) => Action::CrashLoopBackOff {
            slot,
            wait: t - now,
        },
        None => Action::Restart(slot),
    }
}

fn start_when_due(slot: Slot, reason: &str, c: &Seen, now: Instant) -> Option<Action> {
    if c.not_before.is_none_or(|t| now >= t) {
        Some(Action::Start {
            slot,
            restart: reason == "CrashLoopBackOff",
        })
    } else if reason == "ErrImagePull" {
        Some(Action::ImagePullBackOff(slot))
    } else {
        None
    }
}

/// When the worker must look again (it also wakes on every message).
pub fn wake(pod: &PodView, now: Instant) -> Duration {
    let waits = pod
        .init
        .iter()
        .chain(&pod.app)
        .filter_map(|c| match c.state {
            State::Running => None,
            _ => c.not_before,
        });
    pod.retry_at
        .into_iter()
        .chain(pod.refresh_at)
        .chain(waits)
        .min()
        .map_or(IDLE, |t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(10))
        })
}

/// The pod's restart policy (`Always` when not given).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether a container that ended with `code` runs again under `policy`.
pub fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The pod's phase from its containers and restart policy.
pub fn phase(policy: &str, init: &[Seen], app: &[Seen], init_done: bool) -> Phase {
    let failed = |c: &Seen| matches!(c.state, State::Terminated(code) if code != 0);
    if policy == "Never" && init.iter().any(failed) {
        return Phase::Failed;
    }
    if !init_done || app.iter().all(|c| !c.ever_started) {
        return Phase::Pending;
    }
    let all_ended = app.iter().all(|c| matches!(c.state, State::Terminated(_)));
    if all_ended {
        let all_ok = !app.iter().any(failed);
        match policy {
            "Never" if all_ok => return Phase::Succeeded,
            "Never" => return Phase::Failed,
            "OnFailure" if all_ok => return Phase::Succeeded,
            _ => {}
        }
    }
    Phase::Running
}

/// How long a run waits before its next start, and the back-off after
/// that: `backoff` is the container's current one, `ran_for` how long the
/// run that ended lasted (none for a start that failed).
pub fn back_off(backoff: Duration, ran_for: Option<Duration>) -> (Duration, Duration) {
    let wait = if ran_for.is_some_and(|d| d >= BACKOFF_RESET) {
        Duration::ZERO
    } else {
        backoff
    };
    (wait, (wait * 2).clamp(BACKOFF_START, BACKOFF_MAX))
}

/// What a probe's verdict means for its container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probed {
    /// The container's readiness is now this.
    Ready(bool),
    /// The startup probe passed; readiness follows as given.
    Started {
        ready: bool,
    },
    /// A liveness or startup probe failed: kill the run (the restart
    /// policy decides what follows).
    Kill,
    Nothing,
}

/// `started`: the startup probe (if any) passed; `has_readiness`: the
/// container has a readiness probe.
pub fn probed(kind: ProbeKind, healthy: bool, started: bool, has_readiness: bool) -> Probed {
    match (kind, healthy) {
        (ProbeKind::Readiness, ok) => Probed::Ready(ok && started),
        (ProbeKind::Startup, true) => Probed::Started {
            ready: !has_readiness,
        },
        (ProbeKind::Liveness | ProbeKind::Startup, false) => Probed::Kill,
        (ProbeKind::Liveness, true) => Probed::Nothing,
    }
}

/// How the pod's containers are stopped once it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    /// Time for preStop hooks and SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Whether to run preStop hooks and, once all is gone, delete the pod
    /// from the API (it is still there, waiting for this node).
    pub graceful: bool,
}

/// How to stop the pod: `gone` when the pod object already left the API
/// (a forced delete), otherwise from its deletion timestamp; none if the
/// pod is not being deleted.
pub fn termination(pod: &Pod, gone: bool) -> Option<Termination> {
    if gone {
        return Some(Termination {
            grace: Duration::ZERO,
            graceful: false,
        });
    }
    pod.metadata.deletion_timestamp.as_ref()?;
    Some(Termination {
        grace: grace_period(pod),
        graceful: true,
    })
}

/// The time a container gets between SIGTERM and SIGKILL: the deletion's
/// grace period, else the pod's `terminationGracePeriodSeconds`, else 30 s.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

#[cfg(test)]
mod tests;
