//! Prometheus metrics of the process (the API server and, in `peapod up`,
//! the node in the same process), exposed at `/metrics` on the API server
//! and on the node's API in the text format: API request latency,
//! scheduling latency, pod start latency, cold-start latency per function
//! and the activator's queue depth.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// 1 ms to about 65 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Telemetry {
    registry: Registry,
    requests: Histograms,
    scheduling: Histogram,
    pod_start: Histograms,
    cold_start: Histograms,
    queue: Family<Labels, Gauge>,
}

impl Telemetry {
    fn new() -> Telemetry {
        let mut registry = Registry::default();
        let requests: Histograms = Family::new_with_constructor(latency_buckets);
        registry.register(
            "apiserver_request_duration_seconds",
            "API request latency by verb and response code",
            requests.clone(),
        );
        let scheduling = latency_buckets();
        registry.register(
            "scheduler_pod_scheduling_duration_seconds",
            "From a pod's creation to its binding to a node",
            scheduling.clone(),
        );
        let pod_start: Histograms = Family::new_with_constructor(latency_buckets);
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "From a pod's creation to its report as Running, by runtime",
            pod_start.clone(),
        );
        let cold_start: Histograms = Family::new_with_constructor(latency_buckets);
        registry.register(
            "activator_cold_start_duration_seconds",
            "A request held by the activator while its function had no pod: arrival to answer",
            cold_start.clone(),
        );
        let queue = Family::<Labels, Gauge>::default();
        registry.register(
            "activator_queue_depth",
            "Requests the activator holds for a function",
            queue.clone(),
        );
        Telemetry {
            registry,
            requests,
            scheduling,
            pod_start,
            cold_start,
            queue,
        }
    }

    /// The process's metrics.
    pub fn global() -> &'static Telemetry {
        static GLOBAL: OnceLock<Telemetry> = OnceLock::new();
        GLOBAL.get_or_init(Telemetry::new)
    }

    pub fn api_request(&self, verb: &str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("verb", verb.to_string()),
                ("code", code.to_string()),
            ])
            .observe(took.as_secs_f64());
    }

    pub fn pod_scheduled(&self, since_creation: Duration) {
        self.scheduling.observe(since_creation.as_secs_f64());
    }

    pub fn pod_started(&self, runtime: &str, since_creation: Duration) {
        self.pod_start
            .get_or_create(&vec![("runtime", runtime.to_string())])
            .observe(since_creation.as_secs_f64());
    }

    pub fn cold_start(&self, namespace: &str, function: &str, took: Duration) {
        self.cold_start
            .get_or_create(&function_labels(namespace, function))
            .observe(took.as_secs_f64());
    }

    /// Counts a held request until the guard is dropped.
    pub fn hold(&self, namespace: &str, function: &str) -> Held {
        let gauge = self
            .queue
            .get_or_create(&function_labels(namespace, function))
            .clone();
        gauge.inc();
        Held(gauge)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn function_labels(namespace: &str, function: &str) -> Labels {
    vec![
        ("namespace", namespace.to_string()),
        ("function", function.to_string()),
    ]
}

/// A request in the activator's queue.
pub struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The seconds from an RFC 3339 timestamp until now (zero if unparsable).
pub fn since(timestamp: Option<&str>) -> Duration {
    timestamp
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .and_then(|t| {
            let span = jiff::Timestamp::now().duration_since(t);
            Duration::try_from(span).ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_show_in_the_text_format() {
        let t = Telemetry::new();
        t.api_request("GET", 200, Duration::from_millis(3));
        t.cold_start("default", "hello", Duration::from_millis(7));
        let held = t.hold("default", "hello");
        let text = t.render();
        assert!(
            text.contains("apiserver_request_duration_seconds_count{verb=\"GET\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("activator_queue_depth{namespace=\"default\",function=\"hello\"} 1"),
            "{text}"
        );
        drop(held);
        assert!(
            t.render()
                .contains("activator_queue_depth{namespace=\"default\",function=\"hello\"} 0")
        );
    }
}
