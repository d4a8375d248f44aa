//! Running a reconcile function as a controller: kube-runtime's
//! `Controller` owns the watching, caching, queueing and retries; every
//! Peapod controller is a `reconcile(object, ctx) -> Action` on top.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Back off and retry after a failed reconcile. Conflicts are routine
/// (another writer got there first); anything else is worth a warning.
fn error_policy<K: Resource<DynamicType = ()>>(o: Arc<K>, e: &Error, _: Arc<Context>) -> Action {
    let what = format!(
        "{} {}",
        K::kind(&()),
        o.meta().name.as_deref().unwrap_or("")
    );
    match e {
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!("reconciling {what}: {e}")
        }
        _ => tracing::warn!("reconciling {what}: {e}"),
    }
    Action::requeue(Duration::from_secs(2))
}

/// Runs `reconcile` for every `K`, triggered by changes to `K` and to the
/// `Child` objects it controls.
pub async fn run_owning<K, Child, F, Fut>(ctx: Arc<Context>, name: &str, reconcile: F)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Child: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    run_owning_and_on::<K, Child, F, Fut>(ctx, name, reconcile, stream::pending()).await
}

/// `run_owning`, and every `K` reconciled again each time `all` yields.
pub async fn run_owning_and_on<K, Child, F, Fut>(
    ctx: Arc<Context>,
    name: &str,
    reconcile: F,
    all: impl Stream<Item = ()> + Send + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Child: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let primary: Api<K> = Api::all(ctx.client.clone());
    let children: Api<Child> = Api::all(ctx.client.clone());
    tracing::debug!("{name} controller started");
    // Failed reconciles are logged by `error_policy`; what else the
    // stream yields (the objects reconciled, watch errors the watchers
    // retry) needs no action.
    Controller::new(primary, watcher::Config::default())
        .owns(children, watcher::Config::default())
        .reconcile_all_on(all)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
