//! Keeps the records snapshot current: watches Services and Endpoints and
//! rebuilds the snapshot after each batch of changes, once both have been
//! listed.

use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;

use peapod_common::pace::Pacer;
use peapod_common::watch::{self, Change, Config, snapshot};

use super::SharedRecords;
use super::records::Records;

/// The least time between two rebuilds (see `Pacer`).
const BATCH: Duration = Duration::from_millis(30);

/// Keeps `records` current until the watches end (they retry with
/// back-off, so in practice never). The domain is the one `records` was
/// made for.
pub async fn watch(client: kube::Client, records: SharedRecords) {
    let domain = records
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .domain()
        .to_string();
    let services = watch::watch(
        Api::<Service>::all(client.clone()),
        Config::default(),
        "services",
    );
    let endpoints = watch::watch(
        Api::<Endpoints>::all(client),
        Config::default(),
        "endpoints",
    );
    // (0 for Services, 1 for Endpoints; whether the change completed a list)
    let mut changes = futures::stream::select(
        services.changes.map(|c| (0, matches!(c, Change::Synced))),
        endpoints.changes.map(|c| (1, matches!(c, Change::Synced))),
    )
    .boxed();
    let mut synced = [false; 2];
    let mut pacer = Pacer::new(BATCH);
    while let Some((kind, done)) = changes.next().await {
        synced[kind] |= done;
        pacer
            .gather(&mut changes, |(kind, done)| synced[kind] |= done)
            .await;
        if !synced.iter().all(|s| *s) {
            continue;
        }
        let (services, endpoints) = (snapshot(&services.store), snapshot(&endpoints.store));
        let snapshot = Records::from_objects(
            services.values().map(|s| &**s),
            endpoints.values().map(|e| &**e),
            &domain,
        )
        .with_serial(serial());
        *records.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        tracing::debug!(
            "cluster DNS: {} services, {} endpoints",
            services.len(),
            endpoints.len()
        );
    }
}

/// The SOA serial: the time of the snapshot, in Unix seconds.
fn serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
