//! Standby instances of scale-to-zero Wasm functions. While a function has
//! no pod, the activator answers its held requests from a standby: the
//! Revision's own component, compiled ahead, served on an address in the
//! node's standby sandbox (a network namespace of its own, like a pod's)
//! with the container's env and limits and a fresh instance per request.
//! The pod is asked for at the same moment and takes the traffic once it
//! is ready, so a cold request costs an instantiation, not a pod start.
//!
//! Only what a standby can serve exactly as the pod would gets one: a
//! single Wasm HTTP container with no init containers, no volume mounts
//! and env from literal values, whose image this node already holds.
//! Anything else is held until its pod is ready, as before.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::Api;
use peapod_runtimes::wasm::{HttpConfig, HttpStats, Usage};
use tokio::sync::OnceCell;

use super::NodeCtx;
use super::env::{self, Addresses, Sources};
use super::wasm::PodRuntime;
use crate::network::Sandbox;

/// The IPAM owner and name of the node's standby sandbox.
pub const SANDBOX_ID: &str = "peapod-standby";

type Key = (String, String);

/// Why a function has no standby: for good (its template needs what a
/// standby cannot give), or not yet (its image is not here, ...).
enum NoStandby {
    Never(String),
    NotYet(String),
}

impl<E: ToString> From<E> for NoStandby {
    fn from(e: E) -> NoStandby {
        NoStandby::NotYet(e.to_string())
    }
}

/// One standby: where it listens, and the task serving there.
struct Standby {
    deployment: String,
    address: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Standbys {
    node: Arc<NodeCtx>,
    /// The sandbox and the runtime whose threads live in it, made on first use.
    sandbox: OnceCell<(Sandbox, PodRuntime)>,
    serving: Mutex<HashMap<Key, Arc<Standby>>>,
    /// Functions whose standby is being prepared.
    preparing: Mutex<HashMap<Key, String>>,
    /// Functions whose Deployment can have no standby.
    never: Mutex<HashMap<Key, String>>,
}

impl Standbys {
    pub fn new(node: Arc<NodeCtx>) -> Arc<Standbys> {
        Arc::new(Standbys {
            node,
            sandbox: OnceCell::new(),
            serving: Mutex::default(),
            preparing: Mutex::default(),
            never: Mutex::default(),
        })
    }

    /// The address of the function's standby for `deployment`, if it has one.
    pub fn address(&self, key: &Key, deployment: &str) -> Option<SocketAddr> {
        self.serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|s| s.deployment == deployment)
            .map(|s| s.address)
    }

    /// Starts preparing a standby of `deployment` for the function unless
    /// it has one or one is being prepared; returns at once.
    pub fn prepare(self: &Arc<Self>, key: &Key, deployment: &str) {
        let never = self
            .never
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|d| d == deployment);
        if deployment.is_empty() || never || self.address(key, deployment).is_some() {
            return;
        }
        {
            let mut preparing = self
                .preparing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if preparing.get(key).is_some_and(|d| d == deployment) {
                return;
            }
            preparing.insert(key.clone(), deployment.to_string());
        }
        let me = self.clone();
        let (key, deployment) = (key.clone(), deployment.to_string());
        tokio::spawn(async move {
            let made = me.make(&key, &deployment).await;
            // Not wanted any more if the function was forgotten or moved
            // to another Deployment meanwhile.
            let wanted = {
                let mut preparing = me.preparing.lock().unwrap_or_else(PoisonError::into_inner);
                let ours = preparing.get(&key) == Some(&deployment);
                if ours {
                    preparing.remove(&key);
                }
                ours
            };
            match made {
                Ok(_) if !wanted => {}
                Ok(standby) => {
                    tracing::info!(
                        "standby of {}/{deployment} serves on {}",
                        key.0,
                        standby.address
                    );
                    me.serving
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, Arc::new(standby));
                }
                Err(NoStandby::NotYet(why)) => {
                    tracing::debug!("no standby for {}/{deployment} yet: {why}", key.0);
                }
                Err(NoStandby::Never(why)) => {
                    tracing::debug!("no standby for {}/{deployment}: {why}", key.0);
                    me.never
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, deployment);
                }
            }
        });
    }

    /// Stops the function's standby (and any being prepared).
    pub fn forget(&self, key: &Key) {
        self.serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.preparing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.never
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    async fn make(&self, key: &Key, deployment: &str) -> Result<Standby, NoStandby> {
        let wasm = self
            .node
            .wasm
            .clone()
            .ok_or("this node has no Wasm runtime")?;
        let deployments: Api<Deployment> = Api::namespaced(self.node.client.clone(), &key.0);
        let found = deployments
            .get_opt(deployment)
            .await?
            .ok_or("the Deployment is gone")?;
        let template = found.spec.map(|s| s.template).unwrap_or_default();
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                namespace: Some(key.0.clone()),
                name: Some(format!("{deployment}-standby")),
                ..template.metadata.unwrap_or_default()
            },
            spec: template.spec,
            status: None,
        };
        let c = servable(&pod).map_err(NoStandby::Never)?;
        let reference = c.image.clone().unwrap_or_default();
        let image = self
            .node
            .images
            .local(&reference)
            .ok_or_else(|| format!("image {reference} is not on this node yet"))?;
        let module = image
            .wasm
            .clone()
            .ok_or_else(|| NoStandby::Never("not a Wasm image".into()))?;
        let (digest, loader) = (image.digest.clone(), wasm.clone());
        let loaded = tokio::task::spawn_blocking(move || loader.load(&digest, &module)).await??;
        if !loaded.is_http() {
            return Err(NoStandby::Never("not an HTTP function".into()));
        }
        let (sandbox, runtime) = self
            .sandbox
            .get_or_try_init(|| async {
                let sb = self
                    .node
                    .network
                    .create(SANDBOX_ID, "standby")
                    .await
                    .map_err(|e| format!("the standby sandbox: {e}"))?;
                let rt = PodRuntime::new(&sb.net, "standby").map_err(|e| e.to_string())?;
                Ok::<_, String>((sb, rt))
            })
            .await?;
        let addrs = Addresses {
            pod_ip: sandbox.ip.to_string(),
            host_ip: self.node.config.node_ip.to_string(),
            node_name: self.node.config.name.clone(),
        };
        let service_env: BTreeMap<String, String> = self.node.service_env(&pod).await;
        let env = env::resolve(&pod, c, &[], &Sources::default(), &addrs, &service_env)?
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let (memory_limit, cpu_millis) = super::wasm::limits(c);
        let logs = self.node.config.data_dir.join("standby");
        std::fs::create_dir_all(&logs)?;
        let (max_concurrent_requests, timeout) = super::wasm::request_bounds(&pod);
        let config = HttpConfig {
            env,
            log: logs.join(format!("{}_{deployment}.log", key.0)),
            log_rotation: self.node.config.container_log,
            memory_limit,
            cpu_millis,
            request_timeout: Some(timeout),
            max_concurrent_requests,
            usage: Arc::new(Usage::default()),
            stats: Arc::new(HttpStats::default()),
            ..Default::default()
        };
        let (bound, address) = tokio::sync::oneshot::channel();
        let ip = sandbox.ip;
        let task = runtime.handle().spawn(async move {
            // Bound here, on a thread in the standby sandbox.
            let listener = match tokio::net::TcpListener::bind((ip, 0)).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound.send(Err(e.to_string()));
                    return;
                }
            };
            let local = listener.local_addr().map_err(|e| e.to_string());
            let _ = bound.send(local);
            if let Err(e) = wasm.serve_http(&loaded, listener, config).await {
                tracing::warn!("a standby stopped: {e}");
            }
        });
        let address = address.await??;
        Ok(Standby {
            deployment: deployment.to_string(),
            address,
            task: task.abort_handle(),
        })
    }
}

/// The pod's one container when a standby can serve it as its pod would.
fn servable(pod: &Pod) -> Result<&Container, String> {
    let spec = pod.spec.as_ref().ok_or("no pod template")?;
    if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err("it has init containers".into());
    }
    let [c] = spec.containers.as_slice() else {
        return Err("it has more than one container".into());
    };
    if c.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err("it mounts volumes".into());
    }
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty())
        || c.env.iter().flatten().any(|e| e.value_from.is_some())
    {
        return Err("its env refers to other objects".into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, PodSpec, VolumeMount};

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container() -> Container {
        Container {
            name: "user-container".into(),
            image: Some("registry/fn:v1".into()),
            env: Some(vec![EnvVar {
                name: "GREETING".into(),
                value: Some("hi".into()),
                value_from: None,
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_what_a_standby_serves_as_the_pod_would_gets_one() {
        assert!(servable(&pod(vec![container()])).is_ok());
        assert!(servable(&pod(vec![container(), container()])).is_err());
        let mut mounts = container();
        mounts.volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
        assert!(servable(&pod(vec![mounts])).is_err());
        let mut secret_env = container();
        secret_env.env = Some(vec![EnvVar {
            name: "TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource::default()),
        }]);
        assert!(servable(&pod(vec![secret_env])).is_err());
    }
}
