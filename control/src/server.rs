//! `peapod server`: opens the store, bootstraps the cluster's built-in
//! objects and credentials, writes the kubeconfig, and serves the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::api::auth::{Auth, User};
use crate::objects::Objects;
use crate::pki::{Credentials, PkiError};
use crate::store::{RedbStore, Store, StoreError};
use peapod_common::tls;

/// Namespaces that exist from the first start.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `redb` (embedded, the default) or `etcd://host:port,...`.
    pub store: String,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    pub controllers: crate::controllers::Settings,
    /// Where Services' cluster IPs and node ports come from.
    pub service_network: crate::objects::services::ServiceNetwork,
    /// Watches one client address may hold open.
    pub max_watches_per_client: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("credentials: {0}")]
    Pki(#[from] PkiError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// A started control plane.
pub struct ControlPlane {
    pub objects: Objects,
    pub credentials: Credentials,
    pub address: SocketAddr,
    /// `https://...` URL clients use.
    pub url: String,
    pub kubeconfig: PathBuf,
    api: Arc<Api>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ControlPlane {
    /// Opens the store, bootstraps, and starts serving in the background.
    pub async fn start(config: ServerConfig) -> Result<ControlPlane, ServerError> {
        peapod_common::private::dir(&config.data_dir).map_err(|source| ServerError::Io {
            context: format!("creating {}", config.data_dir.display()),
            source,
        })?;
        let store: Arc<dyn Store> = match config.store.as_str() {
            "redb" | "" => Arc::new(RedbStore::open(&config.data_dir.join("store.redb"))?),
            other => {
                return Err(ServerError::Config(format!(
                    "unsupported store {other:?}: this build has the embedded redb store only"
                )));
            }
        };
        let objects = Objects::with_service_network(store.clone(), config.service_network.clone());
        bootstrap(&objects).await?;
        crate::authz::bootstrap::ensure(&objects)
            .await
            .map_err(|e| ServerError::Config(format!("creating the bootstrap RBAC roles: {e}")))?;
        let authorizer = crate::authz::Authorizer::new(crate::authz::Cache::start(store).await?);

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Io {
                    context: format!("listening on {}", config.listen),
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| ServerError::Io {
            context: "reading the listen address".into(),
            source,
        })?;
        let host = if address.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            address.ip().to_string()
        };
        let url = format!(
            "https://{}",
            SocketAddr::new(host.parse().expect("an IP"), address.port())
        );
        // In-cluster clients reach the API at the `kubernetes` Service's IP
        // and check the certificate names it.
        let mut names = vec![
            host,
            address.ip().to_string(),
            config.service_network.api_service_ip().to_string(),
        ];
        names.extend(config.tls_sans.iter().cloned());
        let credentials = Credentials::load_or_create(&config.data_dir, &names)?;
        let kubeconfig = config.data_dir.join("kubeconfig");
        credentials.write_kubeconfig(&kubeconfig, &url)?;

        // The control plane's own loops authenticate with tokens that live
        // only in this process, each as its own identity with its own
        // least-privilege role (`authz/bootstrap/controllers.rs`). The
        // nodes still act as `system:masters`.
        use crate::controllers::accounts;
        let random_token = || -> String {
            use rand::Rng;
            let bytes: [u8; 24] = rand::rng().random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        let mut loop_tokens = std::collections::HashMap::new();
        let mut auth = Auth::new();
        for account in accounts::ACCOUNTS {
            let token = random_token();
            auth = auth.with_token(
                &token,
                User {
                    name: accounts::user_name(account),
                    groups: accounts::groups(),
                },
            );
            loop_tokens.insert(account.to_string(), token);
        }
        let scheduler_token = random_token();
        auth = auth.with_token(
            &scheduler_token,
            User {
                name: accounts::SCHEDULER.into(),
                groups: vec!["system:authenticated".into()],
            },
        );
        loop_tokens.insert(accounts::SCHEDULER.to_string(), scheduler_token);
        let auth = auth
            .with_token(
                &credentials.admin_token,
                User {
                    name: "admin".into(),
                    groups: vec!["system:masters".into(), "system:authenticated".into()],
                },
            )
            .with_token(
                &credentials.node_token,
                User {
                    name: "system:node-bootstrap".into(),
                    groups: vec![
                        "system:nodes".into(),
                        "system:masters".into(),
                        "system:authenticated".into(),
                    ],
                },
            );
        let api = Arc::new(
            Api::new(
                objects.clone(),
                auth,
                address.to_string(),
                credentials.ca_cert_pem.clone(),
                credentials.node_token.clone(),
            )
            .with_watch_limit(config.max_watches_per_client)
            .with_authorizer(authorizer)
            .with_tokens(
                crate::tokens::Signer::from_pem(&credentials.sa_key_pem)
                    .map_err(|e| ServerError::Config(e.to_string()))?,
            )
            .with_node_issuer(crate::api::node_cert::Issuer {
                ca_cert_pem: credentials.ca_cert_pem.clone(),
                ca_key_pem: credentials.ca_key_pem.clone(),
            }),
        );
        let tls = tls::server_config_with_client_ca(
            &credentials.server_cert_pem,
            &credentials.server_key_pem,
            &credentials.ca_cert_pem,
        )
        .map_err(ServerError::Config)?;
        let serving = tokio::spawn(tls::serve(listener, tls, api.clone().router()));
        tokio::spawn(crate::controllers::namespace::run(objects.clone()));
        let mut settings = config.controllers.clone();
        settings.root_ca_pem = credentials.ca_cert_pem.clone();
        let client_for = |identity: &str| {
            let token = loop_tokens.get(identity).expect("every loop has a token");
            crate::controllers::client::in_process(api.clone(), token)
        };
        crate::controllers::start(&client_for, settings);
        api_service(&objects, address).await?;
        tracing::info!("API server listening on {url}");
        Ok(ControlPlane {
            objects,
            credentials,
            address,
            url,
            kubeconfig,
            api,
            serving,
        })
    }

    /// An API client in this process, authenticated with `token` (for a
    /// node agent running beside the control plane in `peapod up`).
    pub fn client(&self, token: &str) -> kube::Client {
        crate::controllers::client::in_process(self.api.clone(), token)
    }

    /// Serves until the listener fails.
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.serving.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ServerError::Io {
                context: "serving".into(),
                source,
            }),
            Err(e) => Err(ServerError::Config(format!("server task failed: {e}"))),
        }
    }
}

/// The `kubernetes` Service in `default`, at the first address of the
/// Service range, pointing at this server (reachable from pods only when
/// the server listens on an address they can reach), and the `kube-dns`
/// Service at the tenth.
async fn api_service(objects: &Objects, address: SocketAddr) -> Result<(), ServerError> {
    let catalog = objects.catalog();
    let services = catalog
        .lookup("", "v1", "services")
        .expect("services are served");
    let endpoints = catalog
        .lookup("", "v1", "endpoints")
        .expect("endpoints are served");
    let ip = objects.service_network().api_service_ip().to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ip, "type": "ClusterIP",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": address.port()}]},
    });
    let exists = |e: &crate::error::ApiError| e.code == 409;
    if let Err(e) = objects
        .create(services, Some("default"), service, Default::default())
        .await
        && !exists(&e)
    {
        return Err(ServerError::Config(format!(
            "creating the kubernetes Service: {e}"
        )));
    }
    let host = if address.ip().is_unspecified() {
        None
    } else {
        Some(address.ip().to_string())
    };
    // Cluster DNS: every node answers for it (see the node's proxy).
    let dns_ip = objects
        .service_network()
        .cidr
        .hosts()
        .nth(9)
        .expect("a Service range with room for DNS");
    let dns = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": dns_ip.to_string(), "type": "ClusterIP", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    });
    if let Err(e) = objects
        .create(services, Some("kube-system"), dns, Default::default())
        .await
        && !exists(&e)
    {
        return Err(ServerError::Config(format!(
            "creating the kube-dns Service: {e}"
        )));
    }
    if let Some(host) = host.filter(|h| h != "127.0.0.1") {
        let eps = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": address.port(), "protocol": "TCP"}]}],
        });
        if let Err(e) = objects
            .create(endpoints, Some("default"), eps, Default::default())
            .await
            && !exists(&e)
        {
            return Err(ServerError::Config(format!(
                "creating the kubernetes Endpoints: {e}"
            )));
        }
    }
    Ok(())
}

/// Cluster-scoped objects every Peapod cluster has: the `peapod`
/// IngressClass (the default) and the `wasm` and `oci` RuntimeClasses.
fn builtin_classes() -> Vec<(&'static str, &'static str, &'static str, serde_json::Value)> {
    vec![
        (
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": "peapod", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                "spec": {"controller": "peapod.dev/ingress"},
            }),
        ),
        (
            "node.k8s.io",
            "v1",
            "runtimeclasses",
            json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "wasm"}, "handler": "wasmtime",
                "scheduling": {"nodeSelector": {"runtime.peapod.dev/wasm": "true"}},
            }),
        ),
        (
            "node.k8s.io",
            "v1",
            "runtimeclasses",
            json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "oci"}, "handler": "libcontainer",
            }),
        ),
    ]
}

/// Creates the built-in objects a cluster starts with.
pub(crate) async fn bootstrap(objects: &Objects) -> Result<(), ServerError> {
    for (group, version, plural, body) in builtin_classes() {
        let rt = objects
            .catalog()
            .lookup(group, version, plural)
            .expect("built-in kinds are served");
        match objects.create(rt, None, body, Default::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                return Err(ServerError::Config(format!(
                    "creating a built-in {plural}: {e}"
                )));
            }
        }
    }
    let ns = objects
        .catalog()
        .lookup("", "v1", "namespaces")
        .expect("namespaces are served");
    for name in SYSTEM_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match objects.create(ns, None, body, Default::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                return Err(ServerError::Config(format!(
                    "creating namespace {name}: {e}"
                )));
            }
        }
        // Pods may be created here before the namespace controller runs.
        crate::controllers::namespace::ensure_default_service_account(objects, name)
            .await
            .map_err(|e| ServerError::Config(format!("creating {name}/default: {e}")))?;
    }
    Ok(())
}
