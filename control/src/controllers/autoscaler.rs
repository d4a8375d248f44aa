//! The Knative-style autoscaler (KPA): every second it reads, through
//! each node's API, the requests in flight to each Knative Service on that
//! node's Ingress proxy and activator and the requests they have passed,
//! and sizes the serving Revision's Deployment: the average load over the
//! stable window (60 s, or `autoscaling.knative.dev/window`) divided by the
//! per-pod target (70 % of `autoscaling.knative.dev/target`, else
//! `containerConcurrency`, else 100 requests in flight; for
//! `autoscaling.knative.dev/metric: rps`, requests per second with a target
//! of 200 by default, as Knative's), or over the panic window (a tenth of
//! it) when a burst doubles the load;
//! zero once no request has been seen for the grace period; always within
//! `min-scale` and `max-scale`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use peapod_common::wire::ServiceTraffic;
use serde_json::json;

use super::Context;
use super::knative::{MAX_SCALE, MIN_SCALE};
use super::node_stats::from_nodes;
use crate::resources::knative::KnativeService;

const TICK: Duration = Duration::from_secs(1);
const TARGET_UTILIZATION: f64 = 0.7;
const DEFAULT_TARGET: f64 = 100.0;
const DEFAULT_RPS_TARGET: f64 = 200.0;
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const TARGET: &str = "autoscaling.knative.dev/target";
const WINDOW: &str = "autoscaling.knative.dev/window";
const RETENTION: &str = "autoscaling.knative.dev/scale-to-zero-pod-retention-period";
const METRIC: &str = "autoscaling.knative.dev/metric";

/// What a function's pods are sized by.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// Requests in flight.
    Concurrency,
    /// Requests per second.
    Rps,
}

impl Metric {
    /// The load of one sample: requests in flight, or the requests passed
    /// since the last sample per second (a counter that went back, as
    /// after a node restart, counts as none).
    fn load(self, inflight: u64, requests: u64, before: u64, elapsed: Duration) -> f64 {
        match self {
            Metric::Concurrency => inflight as f64,
            Metric::Rps => {
                requests.saturating_sub(before) as f64 / elapsed.as_secs_f64().max(0.001)
            }
        }
    }
}

type Key = (String, String);

/// What the autoscaler remembers of one function.
struct Function {
    samples: VecDeque<(Instant, f64)>,
    requests: u64,
    sampled: Instant,
    last_active: Instant,
}

/// The figures the decision rests on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    pub current: i32,
    pub stable: f64,
    pub panic: f64,
    /// Requests one pod should carry.
    pub target: f64,
    pub idle_for: Duration,
    pub grace: Duration,
    pub min: i32,
    pub max: i32,
}

/// The replicas a function should have (pure, for tests).
pub fn desired(i: Inputs) -> i32 {
    let per_pod = (i.target * TARGET_UTILIZATION).max(0.01);
    let stable = (i.stable / per_pod).ceil() as i32;
    let panic = (i.panic / per_pod).ceil() as i32;
    // A burst that doubles what the pods can carry scales at once.
    let panicking = i.panic >= 2.0 * per_pod * f64::from(i.current.max(1));
    let mut want = if panicking {
        stable.max(panic).max(i.current)
    } else {
        stable
    };
    if i.idle_for >= i.grace {
        want = 0;
    } else {
        want = want.max(1);
    }
    want = want.max(i.min);
    if i.max > 0 {
        want = want.min(i.max);
    }
    want
}

fn annotation<T: std::str::FromStr>(a: &BTreeMap<String, String>, key: &str) -> Option<T> {
    a.get(key)
        .and_then(|v| v.trim_end_matches('s').parse().ok())
}

pub async fn run(ctx: Arc<Context>) {
    let mut functions: HashMap<Key, Function> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        if let Err(e) = step(&ctx, &mut functions).await {
            tracing::debug!("autoscaler: {e}");
        }
    }
}

/// Traffic per (namespace, Service) summed over the nodes.
async fn traffic(ctx: &Context) -> Result<HashMap<Key, (u64, u64)>, kube::Error> {
    let mut out: HashMap<Key, (u64, u64)> = HashMap::new();
    let per_node: Vec<Vec<ServiceTraffic>> = from_nodes(&ctx.client, "/stats/functions").await?;
    for t in per_node.into_iter().flatten() {
        let e = out.entry((t.namespace, t.service)).or_default();
        e.0 += t.inflight;
        e.1 += t.requests;
    }
    Ok(out)
}

async fn step(ctx: &Context, functions: &mut HashMap<Key, Function>) -> Result<(), kube::Error> {
    let services: Api<KnativeService> = Api::all(ctx.client.clone());
    let list = services.list(&ListParams::default()).await?.items;
    if list.is_empty() {
        functions.clear();
        return Ok(());
    }
    let traffic = traffic(ctx).await?;
    let now = Instant::now();
    let mut seen = Vec::new();
    for svc in list {
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        let status = svc.status.clone().unwrap_or_default();
        let Some(revision) = status["latestReadyRevisionName"]
            .as_str()
            .or(status["latestCreatedRevisionName"].as_str())
            .map(String::from)
        else {
            continue;
        };
        let template = svc
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let concurrency = template
            .spec
            .as_ref()
            .and_then(|s| s.container_concurrency)
            .filter(|c| *c > 0);
        let metric = match annotations.get(METRIC).map(String::as_str) {
            Some("rps") => Metric::Rps,
            _ => Metric::Concurrency,
        };
        let target = annotation::<f64>(&annotations, TARGET).unwrap_or(match metric {
            Metric::Rps => DEFAULT_RPS_TARGET,
            Metric::Concurrency => concurrency.map_or(DEFAULT_TARGET, |c| c as f64),
        });
        let window =
            annotation::<u64>(&annotations, WINDOW).map_or(DEFAULT_WINDOW, Duration::from_secs);
        let retention =
            annotation::<u64>(&annotations, RETENTION).map_or(Duration::ZERO, Duration::from_secs);
        let grace = ctx.settings.scale_to_zero_grace_period.max(retention);
        let key = (ns.clone(), name.clone());
        seen.push(key.clone());
        let (inflight, requests) = traffic.get(&key).copied().unwrap_or((0, 0));
        let f = functions.entry(key).or_insert_with(|| Function {
            samples: VecDeque::new(),
            requests,
            sampled: now,
            last_active: now,
        });
        if inflight > 0 || requests != f.requests {
            f.last_active = now;
        }
        let load = metric.load(
            inflight,
            requests,
            f.requests,
            now.duration_since(f.sampled),
        );
        f.requests = requests;
        f.sampled = now;
        f.samples.push_back((now, load));
        while f
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            f.samples.pop_front();
        }
        let average = |span: Duration| {
            let recent: Vec<f64> = f
                .samples
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= span)
                .map(|(_, c)| *c)
                .collect();
            recent.iter().sum::<f64>() / recent.len().max(1) as f64
        };
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        let deployment = format!("{revision}-deployment");
        let Some(d) = deployments.get_opt(&deployment).await? else {
            continue;
        };
        let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let want = desired(Inputs {
            current,
            stable: average(window),
            panic: average(window / 10),
            target,
            idle_for: now.duration_since(f.last_active),
            grace,
            min: annotation(&annotations, MIN_SCALE).unwrap_or(0),
            max: annotation(&annotations, MAX_SCALE).unwrap_or(0),
        });
        // Scaling up from zero is the activator's; the autoscaler only
        // takes over once a pod is asked for.
        if want != current && !(current == 0 && want > 0 && inflight == 0) {
            let patch = json!({"spec": {"replicas": want}});
            deployments
                .patch_scale(&deployment, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!("autoscaler: {ns}/{name} from {current} to {want} pods");
        }
    }
    functions.retain(|k, _| seen.contains(k));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            current: 1,
            stable: 0.0,
            panic: 0.0,
            target: 10.0,
            idle_for: Duration::ZERO,
            grace: Duration::from_secs(30),
            min: 0,
            max: 0,
        }
    }

    #[test]
    fn a_sample_is_requests_in_flight_or_per_second() {
        let second = Duration::from_secs(1);
        assert_eq!(Metric::Concurrency.load(7, 500, 100, second), 7.0);
        assert_eq!(Metric::Rps.load(7, 500, 100, 2 * second), 200.0);
        assert_eq!(Metric::Rps.load(0, 10, 100, second), 0.0, "a counter reset");
    }

    #[test]
    fn load_sizes_the_function_and_idleness_scales_it_to_zero() {
        assert_eq!(desired(inputs()), 1, "active but quiet: one pod");
        assert_eq!(
            desired(Inputs {
                stable: 21.0,
                panic: 21.0,
                ..inputs()
            }),
            3,
            "21 in flight at 7 per pod"
        );
        assert_eq!(
            desired(Inputs {
                stable: 2.0,
                panic: 40.0,
                ..inputs()
            }),
            6,
            "a burst panics"
        );
        assert_eq!(
            desired(Inputs {
                idle_for: Duration::from_secs(31),
                ..inputs()
            }),
            0
        );
        assert_eq!(
            desired(Inputs {
                idle_for: Duration::from_secs(31),
                min: 2,
                ..inputs()
            }),
            2
        );
        assert_eq!(
            desired(Inputs {
                stable: 700.0,
                panic: 700.0,
                max: 5,
                ..inputs()
            }),
            5
        );
    }
}
