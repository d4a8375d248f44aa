//! What the pod worker asks of a container runtime and of the pod
//! network, as two traits: OCI and Wasm implement the first, `Network`
//! the second. The worker's executor speaks only these, so how a run is
//! started, waited for and stopped stays with its runtime.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Container;
use peapod_runtimes::image::Image;
use peapod_runtimes::oci::PidFd;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::NodeCtx;
use super::launch::{self, LaunchError, PodContext};
use super::run::Run;
use super::worker::Msg;
use crate::network::{Network, NetworkError, Sandbox};

/// A container runtime, as the pod worker drives it.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Starts run `id` of `c` from `image`; its output goes to `log`.
    async fn start(
        &self,
        ctx: &PodContext<'_>,
        c: &Container,
        image: &Image,
        id: &str,
        log: PathBuf,
    ) -> Result<Run, LaunchError>;

    /// Tells `tx` when `run` ends, unless the run reports its end itself.
    fn wait(
        &self,
        container: &str,
        run: &Run,
        tx: mpsc::UnboundedSender<Msg>,
    ) -> Option<AbortHandle>;

    /// Asks the run to stop, and ends it after `grace` if it has not.
    fn stop(&self, run: Run, grace: Duration);

    /// Forgets what is left of a run that ended.
    fn remove(&self, id: &str);
}

/// OCI containers, each owned by its shim process.
pub struct OciRuntime(pub Arc<NodeCtx>);

#[async_trait]
impl ContainerRuntime for OciRuntime {
    async fn start(
        &self,
        ctx: &PodContext<'_>,
        c: &Container,
        image: &Image,
        id: &str,
        log: PathBuf,
    ) -> Result<Run, LaunchError> {
        launch::start(&self.0, ctx, c, image, id, log)
            .await
            .map(Run::Oci)
    }

    fn wait(
        &self,
        container: &str,
        run: &Run,
        tx: mpsc::UnboundedSender<Msg>,
    ) -> Option<AbortHandle> {
        let Run::Oci(r) = run else { return None };
        let (oci, r, container) = (self.0.oci.clone(), r.clone(), container.to_string());
        let task = tokio::spawn(async move {
            let exit = oci.wait(&r).await;
            let _ = tx.send(Msg::Exited {
                container,
                run: r.id.clone(),
                exit,
            });
        });
        Some(task.abort_handle())
    }

    fn stop(&self, run: Run, grace: Duration) {
        let Run::Oci(run) = run else { return };
        let oci = self.0.oci.clone();
        tokio::spawn(async move {
            oci.signal(&run, nix::sys::signal::Signal::SIGTERM);
            let exited = async {
                if let Ok(fd) = PidFd::open(run.shim_pid) {
                    let _ = fd.exited().await;
                }
            };
            if tokio::time::timeout(grace, exited).await.is_err() {
                oci.signal(&run, nix::sys::signal::Signal::SIGKILL);
            }
        });
    }

    fn remove(&self, id: &str) {
        self.0.oci.remove(id);
    }
}

/// A pod's Wasm containers: instances on the pod's own async runtime in
/// the agent's process (made with the first of them, gone with the pod).
pub struct WasmPod {
    node: Arc<NodeCtx>,
    pod_name: String,
    runtime: OnceLock<super::wasm::PodRuntime>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl WasmPod {
    pub fn new(node: Arc<NodeCtx>, pod_name: String, tx: mpsc::UnboundedSender<Msg>) -> WasmPod {
        WasmPod {
            node,
            pod_name,
            runtime: OnceLock::new(),
            tx,
        }
    }

    /// Ends every instance of the pod.
    pub fn shut_down(&mut self) {
        self.runtime.take();
    }
}

#[async_trait]
impl ContainerRuntime for WasmPod {
    async fn start(
        &self,
        ctx: &PodContext<'_>,
        c: &Container,
        image: &Image,
        id: &str,
        log: PathBuf,
    ) -> Result<Run, LaunchError> {
        let Some(wasm) = self.node.wasm.clone() else {
            return Err(LaunchError::new(
                "CreateContainerError",
                "this node has no Wasm runtime",
            ));
        };
        if self.runtime.get().is_none() {
            let runtime = super::wasm::PodRuntime::new(&ctx.namespaces.net, &self.pod_name)
                .map_err(|e| {
                    LaunchError::new(
                        "CreateContainerError",
                        format!("the pod's Wasm runtime: {e}"),
                    )
                })?;
            let _ = self.runtime.set(runtime);
        }
        let handle = self.runtime.get().expect("just made").handle().clone();
        super::wasm::start(&wasm, ctx, c, image, id, log, &handle, self.tx.clone())
            .await
            .map(Run::Wasm)
    }

    /// A Wasm run reports its own end.
    fn wait(&self, _: &str, _: &Run, _: mpsc::UnboundedSender<Msg>) -> Option<AbortHandle> {
        None
    }

    /// Wasm guests get no signals: the instance ends at once.
    fn stop(&self, run: Run, _grace: Duration) {
        if let Run::Wasm(w) = run {
            w.stop.notify_one();
        }
    }

    fn remove(&self, _id: &str) {}
}

/// The pod network, as the pod worker uses it.
#[async_trait]
pub trait PodNetwork: Send + Sync {
    /// The pod's sandbox if it exists already (after an agent restart).
    fn existing(&self, uid: &str, host_network: Option<Ipv4Addr>) -> Option<Sandbox>;

    /// Makes the pod's namespaces and plumbs its network; a `hostNetwork`
    /// pod (`host_network` is the node's address) shares the host's.
    async fn create(
        &self,
        uid: &str,
        hostname: &str,
        host_network: Option<Ipv4Addr>,
    ) -> Result<Sandbox, NetworkError>;

    /// Removes everything of the pod's sandbox; safe to call repeatedly.
    async fn remove(&self, uid: &str);
}

#[async_trait]
impl PodNetwork for Network {
    fn existing(&self, uid: &str, host_network: Option<Ipv4Addr>) -> Option<Sandbox> {
        match host_network {
            Some(node_ip) => self.existing_host(uid, node_ip),
            None => Network::existing(self, uid),
        }
    }

    async fn create(
        &self,
        uid: &str,
        hostname: &str,
        host_network: Option<Ipv4Addr>,
    ) -> Result<Sandbox, NetworkError> {
        match host_network {
            Some(node_ip) => self.create_host(uid, node_ip).await,
            None => Network::create(self, uid, hostname).await,
        }
    }

    async fn remove(&self, uid: &str) {
        Network::remove(self, uid).await
    }
}
