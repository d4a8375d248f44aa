//! The pod worker's rules, one row per case.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

const WAITING: State = State::Waiting("ContainerCreating");

fn seen(state: State<'static>) -> Seen<'static> {
    Seen {
        state,
        not_before: None,
        ever_started: !matches!(state, State::Waiting(_)),
    }
}

/// Started before, and may not start again for `secs`.
fn backing_off(state: State<'static>, now: Instant, secs: u64) -> Seen<'static> {
    Seen {
        state,
        not_before: Some(now + Duration::from_secs(secs)),
        ever_started: true,
    }
}

fn pod(
    policy: &'static str,
    init: Vec<Seen<'static>>,
    app: Vec<Seen<'static>>,
) -> PodView<'static> {
    PodView {
        restart_policy: policy,
        finished: false,
        retry_at: None,
        prepared: true,
        refresh_at: None,
        init_done: false,
        init,
        app,
    }
}

fn started(mut p: PodView<'static>) -> PodView<'static> {
    p.init_done = true;
    p
}

use Action::*;
use Slot::{App, Init};

#[test]
fn nothing_runs_before_the_sandbox_and_nothing_after_the_end() {
    let now = Instant::now();
    let mut p = pod("Always", vec![], vec![seen(WAITING)]);
    p.prepared = false;
    assert_eq!(next(&p, now), [PrepareSandbox]);
    p.retry_at = Some(now + Duration::from_secs(2));
    assert_eq!(
        next(&p, now),
        [],
        "a failed sandbox is retried after its pause"
    );
    p.retry_at = Some(now);
    assert_eq!(next(&p, now), [PrepareSandbox]);
    let mut done = started(pod("Never", vec![], vec![seen(State::Terminated(0))]));
    done.finished = true;
    assert_eq!(next(&done, now), []);
}

#[test]
fn a_new_pod_starts_every_app_container_at_once() {
    let now = Instant::now();
    let p = pod("Always", vec![], vec![seen(WAITING), seen(WAITING)]);
    assert_eq!(
        next(&p, now),
        [
            InitDone,
            Start {
                slot: App(0),
                restart: false
            },
            Start {
                slot: App(1),
                restart: false
            },
        ]
    );
}

#[test]
fn init_containers_run_one_at_a_time_in_order_before_the_app() {
    let now = Instant::now();
    let ok = seen(State::Terminated(0));
    let rows: Vec<(Vec<Seen>, Vec<Action>)> = vec![
        (
            vec![seen(WAITING), seen(WAITING)],
            vec![Start {
                slot: Init(0),
                restart: false,
            }],
        ),
        (vec![seen(State::Running), seen(WAITING)], vec![]),
        (
            vec![ok, seen(WAITING)],
            vec![Start {
                slot: Init(1),
                restart: false,
            }],
        ),
        (vec![ok, seen(State::Running)], vec![]),
        (
            vec![ok, ok],
            vec![
                InitDone,
                Start {
                    slot: App(0),
                    restart: false,
                },
            ],
        ),
    ];
    for (init, want) in rows {
        let p = pod("Always", init.clone(), vec![seen(WAITING)]);
        assert_eq!(next(&p, now), want, "init containers {init:?}");
    }
}

#[test]
fn a_failed_init_container_restarts_unless_the_policy_is_never() {
    let now = Instant::now();
    let failed = State::Terminated(1);
    for policy in ["Always", "OnFailure"] {
        let due = pod(policy, vec![seen(failed)], vec![seen(WAITING)]);
        assert_eq!(next(&due, now), [Restart(Init(0))], "{policy}");
        let waiting = pod(
            policy,
            vec![backing_off(failed, now, 20)],
            vec![seen(WAITING)],
        );
        assert_eq!(
            next(&waiting, now),
            [CrashLoopBackOff {
                slot: Init(0),
                wait: Duration::from_secs(20)
            }],
            "{policy}"
        );
    }
    let never = pod("Never", vec![seen(failed)], vec![seen(WAITING)]);
    assert_eq!(next(&never, now), [Finish(Phase::Failed)]);
}

#[test]
fn the_restart_policy_decides_what_follows_an_exit() {
    let now = Instant::now();
    let (ok, failed) = (State::Terminated(0), State::Terminated(2));
    let rows = [
        ("Always", ok, vec![Restart(App(0))]),
        ("Always", failed, vec![Restart(App(0))]),
        ("OnFailure", ok, vec![Finish(Phase::Succeeded)]),
        ("OnFailure", failed, vec![Restart(App(0))]),
        ("Never", ok, vec![Finish(Phase::Succeeded)]),
        ("Never", failed, vec![Finish(Phase::Failed)]),
    ];
    for (policy, state, want) in rows {
        let p = started(pod(policy, vec![], vec![seen(state)]));
        assert_eq!(next(&p, now), want, "{policy} after {state:?}");
    }
}

#[test]
fn a_pod_ends_only_when_every_app_container_has() {
    let now = Instant::now();
    let p = started(pod(
        "Never",
        vec![],
        vec![seen(State::Terminated(0)), seen(State::Running)],
    ));
    assert_eq!(next(&p, now), []);
    let p = started(pod(
        "Never",
        vec![],
        vec![seen(State::Terminated(0)), seen(State::Terminated(1))],
    ));
    assert_eq!(next(&p, now), [Finish(Phase::Failed)]);
}

#[test]
fn a_crashed_container_waits_out_its_back_off_then_counts_a_restart() {
    let now = Instant::now();
    let crashed = started(pod(
        "Always",
        vec![],
        vec![backing_off(State::Terminated(1), now, 10)],
    ));
    assert_eq!(
        next(&crashed, now),
        [CrashLoopBackOff {
            slot: App(0),
            wait: Duration::from_secs(10)
        }]
    );
    // Shown as CrashLoopBackOff meanwhile; nothing more until it is due.
    let waiting = backing_off(State::Waiting("CrashLoopBackOff"), now, 10);
    let p = started(pod("Always", vec![], vec![waiting]));
    assert_eq!(next(&p, now), []);
    let later = now + Duration::from_secs(10);
    assert_eq!(
        next(&p, later),
        [Start {
            slot: App(0),
            restart: true
        }]
    );
    assert_eq!(next(&crashed, later), [Restart(App(0))]);
}

#[test]
fn a_failed_pull_shows_image_pull_back_off_until_it_is_retried() {
    let now = Instant::now();
    let p = started(pod(
        "Always",
        vec![],
        vec![backing_off(State::Waiting("ErrImagePull"), now, 10)],
    ));
    assert_eq!(next(&p, now), [ImagePullBackOff(App(0))]);
    let p = started(pod(
        "Always",
        vec![],
        vec![backing_off(State::Waiting("ImagePullBackOff"), now, 10)],
    ));
    assert_eq!(next(&p, now), []);
    let later = now + Duration::from_secs(11);
    assert_eq!(
        next(&p, later),
        [Start {
            slot: App(0),
            restart: false
        }]
    );
}

#[test]
fn volumes_are_refreshed_when_due_before_anything_else() {
    let now = Instant::now();
    let mut p = started(pod("Always", vec![], vec![seen(State::Running)]));
    p.refresh_at = Some(now + Duration::from_secs(60));
    assert_eq!(next(&p, now), []);
    p.refresh_at = Some(now);
    assert_eq!(next(&p, now), [RefreshVolumes]);
}

#[test]
fn back_off_doubles_from_ten_seconds_to_five_minutes_and_resets_after_ten_minutes() {
    let s = Duration::from_secs;
    let mut backoff = Duration::ZERO;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let (wait, next) = back_off(backoff, Some(s(1)));
        waits.push(wait.as_secs());
        backoff = next;
    }
    assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(back_off(s(300), Some(s(600))), (s(0), s(10)));
    // A start that failed (it never ran) backs off the same way.
    assert_eq!(back_off(s(40), None), (s(40), s(80)));
}

#[test]
fn the_worker_wakes_for_the_first_thing_due() {
    let now = Instant::now();
    let s = Duration::from_secs;
    let mut p = started(pod(
        "Always",
        vec![],
        vec![
            backing_off(State::Terminated(1), now, 40),
            backing_off(State::Running, now, 5),
        ],
    ));
    assert_eq!(
        wake(&p, now),
        s(40),
        "a running container's old back-off does not count"
    );
    p.refresh_at = Some(now + s(30));
    assert_eq!(wake(&p, now), s(30));
    p.retry_at = Some(now + s(2));
    assert_eq!(wake(&p, now), s(2));
    p.retry_at = Some(now);
    assert_eq!(
        wake(&p, now),
        Duration::from_millis(10),
        "due now: soon, not in a busy loop"
    );
    let idle = started(pod("Always", vec![], vec![seen(State::Running)]));
    assert_eq!(wake(&idle, now), s(60));
}

#[test]
fn the_phase_follows_the_containers() {
    let (ok, failed) = (seen(State::Terminated(0)), seen(State::Terminated(1)));
    let run = seen(State::Running);
    let new = seen(WAITING);
    // Policy, init containers, app containers, init done, phase.
    type Row = (
        &'static str,
        Vec<Seen<'static>>,
        Vec<Seen<'static>>,
        bool,
        Phase,
    );
    let rows: Vec<Row> = vec![
        ("Always", vec![], vec![new], false, Phase::Pending),
        ("Always", vec![run], vec![new], false, Phase::Pending),
        ("Never", vec![failed], vec![new], false, Phase::Failed),
        ("OnFailure", vec![failed], vec![new], false, Phase::Pending),
        ("Always", vec![ok], vec![new], true, Phase::Pending),
        ("Always", vec![], vec![run], true, Phase::Running),
        ("Always", vec![], vec![ok], true, Phase::Running),
        ("OnFailure", vec![], vec![ok, ok], true, Phase::Succeeded),
        ("OnFailure", vec![], vec![ok, failed], true, Phase::Running),
        ("Never", vec![], vec![ok, run], true, Phase::Running),
        ("Never", vec![], vec![ok, failed], true, Phase::Failed),
    ];
    for (policy, init, app, init_done, want) in rows {
        assert_eq!(
            phase(policy, &init, &app, init_done),
            want,
            "{policy}: init {init:?}, app {app:?}"
        );
    }
}

#[test]
fn probes_gate_readiness_and_failed_liveness_or_startup_kills() {
    use ProbeKind::*;
    let rows = [
        // kind, healthy, startup passed, has readiness probe
        (Readiness, true, true, true, Probed::Ready(true)),
        (Readiness, true, false, true, Probed::Ready(false)),
        (Readiness, false, true, true, Probed::Ready(false)),
        (Startup, true, false, true, Probed::Started { ready: false }),
        (Startup, true, false, false, Probed::Started { ready: true }),
        (Startup, false, false, false, Probed::Kill),
        (Liveness, false, true, false, Probed::Kill),
        (Liveness, true, true, false, Probed::Nothing),
    ];
    for (kind, healthy, started, readiness, want) in rows {
        assert_eq!(
            probed(kind, healthy, started, readiness),
            want,
            "{kind:?} healthy={healthy} started={started} readiness={readiness}"
        );
    }
}

#[test]
fn deletion_gives_the_grace_asked_for_and_a_forced_delete_none() {
    let s = Duration::from_secs;
    let deleted = |deletion: Option<i64>, spec: Option<i64>| {
        let mut p = Pod::default();
        p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        p.metadata.deletion_grace_period_seconds = deletion;
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: spec,
            ..Default::default()
        });
        p
    };
    let graceful = |secs| {
        Some(Termination {
            grace: s(secs),
            graceful: true,
        })
    };
    assert_eq!(termination(&Pod::default(), false), None);
    assert_eq!(termination(&deleted(Some(5), Some(45)), false), graceful(5));
    assert_eq!(termination(&deleted(Some(0), Some(45)), false), graceful(0));
    assert_eq!(termination(&deleted(None, Some(45)), false), graceful(45));
    assert_eq!(termination(&deleted(None, None), false), graceful(30));
    assert_eq!(termination(&deleted(Some(-3), None), false), graceful(0));
    let gone = Some(Termination {
        grace: s(0),
        graceful: false,
    });
    assert_eq!(termination(&deleted(Some(30), None), true), gone);
    assert_eq!(termination(&Pod::default(), true), gone);
}
