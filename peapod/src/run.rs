//! Wiring the crates together for each subcommand.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use peapod_control::server::{ControlPlane, ServerConfig};
use peapod_node::agent::{self, config::AgentConfig};
use peapod_runtimes::oci;

use crate::cli::{AgentArgs, Cli, Command, ImageCommand, NodeArgs, ServerArgs};

impl Cli {
    /// Runs a single-threaded helper subcommand, if that is what was asked
    /// for, and returns its exit code.
    pub fn run_helper(&self) -> Option<i32> {
        match &self.command {
            Command::OciShim(a) => Some(oci::shim::run(oci::shim::ShimArgs {
                id: a.id.clone(),
                state: a.state.clone(),
                root: a.root.clone(),
                log: a.log.clone(),
                log_rotation: peapod_runtimes::logs::Rotation {
                    max_size: a.log_max_size,
                    max_files: a.log_max_files,
                },
                cgroup: a.cgroup.clone(),
                sockets: a.sockets.clone(),
                streams: oci::Streams {
                    stdin: a.stdin,
                    stdin_once: a.stdin_once,
                    tty: a.tty,
                },
            })),
            Command::OciExec(a) => Some(oci::exec::run(oci::exec::ExecArgs {
                root: a.root.clone(),
                id: a.id.clone(),
                args: a.args.clone(),
            })),
            _ => None,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server(args) => serve(server_config(&args)?).await,
            Command::Node(args) => node(args).await,
            Command::Up(args) => {
                let mut config = server_config(&args.server)?;
                if let Some(port) = args.api_port {
                    config.listen.set_port(port);
                }
                up(config, &args.server, &args.agent).await
            }
            Command::Image(ImageCommand::Push {
                file,
                reference,
                insecure_registries,
                creds,
            }) => {
                let wasm =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let creds = creds.map(|c| match c.split_once(':') {
                    Some((u, p)) => (u.to_string(), p.to_string()),
                    None => (c, String::new()),
                });
                let url =
                    peapod_runtimes::image::push_wasm(wasm, &reference, insecure_registries, creds)
                        .await?;
                println!("pushed {reference} ({url})");
                Ok(())
            }
            Command::Kubeconfig(a) => {
                let config = peapod_control::users::kubeconfig(
                    &a.data_dir,
                    &a.user,
                    &a.groups,
                    a.server.as_deref(),
                )?;
                print!("{config}");
                Ok(())
            }
            Command::OciShim(_) | Command::OciExec(_) => unreachable!("run by run_helper"),
        }
    }
}

fn server_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let (first, last) = args
        .service_node_port_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| {
            anyhow::anyhow!("--service-node-port-range must be first-last, e.g. 30000-32767")
        })?;
    Ok(ServerConfig {
        service_network: peapod_control::objects::services::ServiceNetwork {
            cidr: args.service_cluster_ip_range,
            node_ports: first..=last,
        },
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: args.store.clone(),
        tls_sans: args.tls_sans.clone(),
        max_watches_per_client: args.max_watches_per_client,
        controllers: peapod_control::controllers::Settings {
            node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
            pod_eviction_timeout: Duration::from_secs(args.pod_eviction_timeout),
            disabled: args.disable_controllers.clone(),
            cluster_cidr: args.cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
            domain: args.domain.clone(),
            scale_to_zero_grace_period: Duration::from_secs(args.scale_to_zero_grace_period),
            // Filled in by the server from its CA.
            root_ca_pem: String::new(),
        },
    })
}

fn labels(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--node-label {l:?} is not key=value"))
        })
        .collect()
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_else(|_| "peapod".into())
}

fn agent_config(
    args: &AgentArgs,
    data_dir: &Path,
    cluster_cidr: ipnet::Ipv4Net,
    token: &str,
) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig {
        name: args.name.clone().unwrap_or_else(host_name),
        node_ip: args
            .node_ip
            .or_else(peapod_node::network::default_ipv4)
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        data_dir: data_dir.to_path_buf(),
        run_dir: args.run_dir.clone(),
        exe: std::env::current_exe().context("finding the peapod binary")?,
        network_name: args.network_name.clone(),
        cluster_cidr,
        kubelet_port: args.kubelet_port,
        token: token.to_string(),
        insecure_registries: args.insecure_registries.clone(),
        labels: labels(&args.labels)?,
        max_pods: args.max_pods,
        pod_pids_limit: u64::try_from(args.pod_max_pids).ok(),
        container_log: peapod_runtimes::logs::Rotation {
            max_size: args.container_log_max_size,
            max_files: args.container_log_max_files,
        },
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        manifests_dir: data_dir.join("manifests"),
        ingress_port: args.ingress_port,
        ingress_tls_port: args.ingress_tls_port,
        ingress_threads: args.ingress_threads,
        wasm_instance_pool: args.wasm_instance_pool,
        sync_frequency: std::time::Duration::from_secs(args.sync_frequency.max(1)),
        eviction_interval: std::time::Duration::from_secs(args.eviction_monitoring_interval.max(1)),
        wasm: true,
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let token = peapod_node::join::read_token(&args.token_file)?;
    let config = agent_config(&args.agent, &args.data_dir, args.cluster_cidr, &token)?;
    if args.agent.cleanup {
        agent::cleanup(&config).await?;
        println!(
            "removed every container, network and file of node {}",
            config.name
        );
        return Ok(());
    }
    let client = peapod_node::join::client(&args.server, &token).await?;
    if !args.hollow {
        agent::run(client, config, stop_signal()).await?;
        return Ok(());
    }
    let hollow = peapod_node::hollow::HollowConfig {
        prefix: args.agent.name.unwrap_or_else(|| "hollow".into()),
        count: args.count,
        cpu: args.hollow_cpu,
        memory: args.hollow_memory,
        pods: args.hollow_pods,
        wasm: true,
        labels: labels(&args.agent.labels)?,
    };
    peapod_node::hollow::run(client, hollow).await?;
    Ok(())
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let plane = ControlPlane::start(config).await?;
    println!(
        "Peapod API server at {}\nexport KUBECONFIG={}",
        plane.url,
        plane.kubeconfig.display()
    );
    plane.wait().await?;
    Ok(())
}

/// The control plane and a node in one process.
async fn up(
    config: ServerConfig,
    server: &ServerArgs,
    agent_args: &AgentArgs,
) -> anyhow::Result<()> {
    if agent_args.cleanup {
        let config = agent_config(agent_args, &server.data_dir, server.cluster_cidr, "")?;
        agent::cleanup(&config).await?;
        println!(
            "removed every container, network and file of node {}",
            config.name
        );
        return Ok(());
    }
    let plane = ControlPlane::start(config).await?;
    let token = plane.credentials.node_token.clone();
    let node_config = agent_config(agent_args, &server.data_dir, server.cluster_cidr, &token)?;
    let client = plane.client(&token);
    println!(
        "Peapod is up: API server at {}, node {}\nexport KUBECONFIG={}",
        plane.url,
        node_config.name,
        plane.kubeconfig.display()
    );
    tokio::select! {
        r = plane.wait() => r?,
        r = agent::run(client, node_config, stop_signal()) => r?,
    }
    Ok(())
}
