//! Resource usage of the node and of each running container, as the
//! kubelet's summary API gives it to metrics-server: CPU as a rate over the
//! last sampling window and memory as the working set. OCI containers are
//! read from their cgroups (v1, else v2); Wasm containers from wasmtime's
//! meters ([`peapod_runtimes::wasm::Usage`]). The API server turns these
//! into `metrics.k8s.io` for `kubectl top`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use peapod_common::wire::{ContainerUsage, NodeUsage, PodUsage};

use super::NodeCtx;
use super::sandbox::cgroup_parent;

/// How often usage is sampled; CPU is the rate between two samples.
const SAMPLE: Duration = Duration::from_secs(5);
/// Linux reports `/proc/stat` in ticks of 1/100 s (`USER_HZ`).
const NANOS_PER_TICK: u64 = 10_000_000;

/// Cumulative counters at one instant.
#[derive(Default)]
struct Sample {
    at: Option<Instant>,
    node_cpu: u64,
    /// (namespace, pod, container, run id) → counters.
    containers: HashMap<(String, String, String, String), Counters>,
}

/// One container's counters at one instant.
#[derive(Clone, Copy, Default)]
struct Counters {
    cpu_nanos: u64,
    memory_bytes: u64,
    /// Requests served, for Wasm HTTP functions.
    requests: Option<u64>,
}

/// The latest figures, refreshed every [`SAMPLE`].
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<NodeUsage>>);

impl Metrics {
    pub fn current(&self) -> NodeUsage {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Samples until the agent stops.
    pub async fn run(self, node: Arc<NodeCtx>) {
        let mut previous = Sample::default();
        let mut tick = tokio::time::interval(SAMPLE);
        loop {
            tick.tick().await;
            let now = sample(&node);
            if let Some(usage) = rates(&previous, &now) {
                *self.0.lock().unwrap_or_else(PoisonError::into_inner) = usage;
            }
            previous = now;
        }
    }
}

fn sample(node: &NodeCtx) -> Sample {
    let mut out = Sample {
        at: Some(Instant::now()),
        node_cpu: node_cpu_nanos().unwrap_or(0),
        containers: HashMap::new(),
    };
    let cgroups = peapod_runtimes::cgroups::Hierarchies::host();
    let table = node.table.lock().unwrap_or_else(PoisonError::into_inner);
    for ((ns, pod), entry) in table.iter() {
        for (name, run) in &entry.runs {
            let (Some(id), true) = (&run.id, run.running) else {
                continue;
            };
            let figures = match &run.usage {
                Some(wasm) => Some(Counters {
                    cpu_nanos: u64::try_from(wasm.cpu().as_nanos()).unwrap_or(u64::MAX),
                    memory_bytes: wasm.memory_bytes(),
                    requests: run
                        .http
                        .as_ref()
                        .map(|h| h.requests.load(std::sync::atomic::Ordering::Relaxed)),
                }),
                None => cgroups
                    .usage(&format!("{}/{id}", cgroup_parent(&entry.uid)))
                    .map(|(cpu_nanos, memory_bytes)| Counters {
                        cpu_nanos,
                        memory_bytes,
                        requests: None,
                    }),
            };
            if let Some(f) = figures {
                out.containers
                    .insert((ns.clone(), pod.clone(), name.clone(), id.clone()), f);
            }
        }
    }
    out
}

/// Rates between two samples; `None` before there are two.
fn rates(before: &Sample, now: &Sample) -> Option<NodeUsage> {
    let window = now.at?.checked_duration_since(before.at?)?;
    let secs = window.as_secs_f64().max(0.001);
    let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let rate = |a: u64, b: u64| per_second(a, b) as u64;
    let mut pods: HashMap<(String, String), (Vec<ContainerUsage>, Option<f64>)> = HashMap::new();
    for (key, now) in &now.containers {
        // A container that restarted in the window starts from zero.
        let then = before.containers.get(key).copied().unwrap_or_default();
        let (ns, pod, name, _) = key;
        let entry = pods.entry((ns.clone(), pod.clone())).or_default();
        entry.0.push(ContainerUsage {
            name: name.clone(),
            cpu_nano_cores: rate(then.cpu_nanos, now.cpu_nanos),
            memory_bytes: now.memory_bytes,
        });
        if let Some(requests) = now.requests {
            let rps = per_second(then.requests.unwrap_or(0), requests);
            entry.1 = Some(entry.1.unwrap_or(0.0) + rps);
        }
    }
    Some(NodeUsage {
        timestamp: peapod_runtimes::logs::timestamp(),
        window_seconds: secs,
        cpu_nano_cores: rate(before.node_cpu, now.node_cpu),
        memory_bytes: node_memory_bytes().unwrap_or(0),
        pods: pods
            .into_iter()
            .map(
                |((namespace, name), (mut containers, requests_per_second))| {
                    containers.sort_by(|a, b| a.name.cmp(&b.name));
                    PodUsage {
                        namespace,
                        name,
                        containers,
                        requests_per_second,
                    }
                },
            )
            .collect(),
    })
}

/// Busy CPU time of the whole node (all but idle and iowait).
fn node_cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some(total.saturating_sub(idle) * NANOS_PER_TICK)
}

/// Memory in use on the node: total less what is available.
fn node_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(cpu_nanos: u64, memory_bytes: u64, requests: Option<u64>) -> Counters {
        Counters {
            cpu_nanos,
            memory_bytes,
            requests,
        }
    }

    #[test]
    fn cpu_is_a_rate_over_the_window_and_memory_is_the_latest() {
        let start = Instant::now();
        let key = |run: &str| ("ns".into(), "p".into(), "c".into(), run.to_string());
        let before = Sample {
            at: Some(start),
            node_cpu: 1_000_000_000,
            containers: [(key("r1"), counters(1_000_000_000, 10, Some(10)))].into(),
        };
        let now = Sample {
            at: Some(start + Duration::from_secs(2)),
            node_cpu: 2_000_000_000,
            containers: [(key("r1"), counters(1_500_000_000, 20, Some(30)))].into(),
        };
        let usage = rates(&before, &now).unwrap();
        assert_eq!(usage.cpu_nano_cores, 500_000_000);
        let c = &usage.pods[0].containers[0];
        assert_eq!((c.cpu_nano_cores, c.memory_bytes), (250_000_000, 20));
        assert_eq!(usage.pods[0].requests_per_second, Some(10.0));
        assert!(rates(&Sample::default(), &now).is_none());
    }

    #[test]
    fn the_node_reads_its_own_figures() {
        assert!(node_cpu_nanos().unwrap() > 0);
        assert!(node_memory_bytes().unwrap() > 0);
    }
}
