//! Requests to Services as this node's data path sees them (the Ingress
//! proxy and the activator): per Service, how many are in flight and how
//! many there have been. The control plane's autoscaler reads these
//! through the node's API to size scale-to-zero functions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use peapod_common::wire::ServiceTraffic;

#[derive(Default)]
struct Counters {
    inflight: AtomicU64,
    requests: AtomicU64,
}

/// Per-Service counters by namespace, then name, shared by the node's
/// proxies (two levels, so a request's lookup borrows its names).
type ByService = BTreeMap<String, BTreeMap<String, Arc<Counters>>>;

#[derive(Clone, Default)]
pub struct Traffic {
    services: Arc<Mutex<ByService>>,
}

/// A request in flight; it stops counting as in flight when dropped.
pub struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Traffic {
    /// Counts a request to `namespace/service` until the guard is dropped.
    pub fn begin(&self, namespace: &str, service: &str) -> InFlight {
        let counters = {
            let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
            match services.get(namespace).and_then(|n| n.get(service)) {
                Some(counters) => counters.clone(),
                None => services
                    .entry(namespace.to_string())
                    .or_default()
                    .entry(service.to_string())
                    .or_default()
                    .clone(),
            }
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(counters)
    }

    pub fn snapshot(&self) -> Vec<ServiceTraffic> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|(namespace, services)| {
                services.iter().map(|(service, c)| ServiceTraffic {
                    namespace: namespace.clone(),
                    service: service.clone(),
                    inflight: c.inflight.load(Ordering::Relaxed),
                    requests: c.requests.load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_while_in_flight_and_in_total() {
        let t = Traffic::default();
        let a = t.begin("ns", "fn");
        let b = t.begin("ns", "fn");
        assert_eq!(t.snapshot()[0].inflight, 2);
        drop(a);
        drop(b);
        let s = &t.snapshot()[0];
        assert_eq!((s.inflight, s.requests), (0, 2));
    }
}
