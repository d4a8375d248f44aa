//! What creating or updating a Service allocates, as kube-apiserver's
//! service REST storage does: a cluster IP from the Service CIDR (kept for
//! the Service's life; `None` for headless Services) and node ports from
//! the NodePort range for NodePort and LoadBalancer Services. Explicit
//! values are honoured when free and rejected with a 422 when taken.
//! Allocations are serialized by a lock held through the store write.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::Objects;
use crate::error::{ApiResult, FieldError};
use crate::resources::ResourceType;

/// The Service network of the cluster.
#[derive(Clone, Debug)]
pub struct ServiceNetwork {
    pub cidr: Ipv4Net,
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork {
            cidr: "10.96.0.0/12".parse().expect("a valid CIDR"),
            node_ports: 30000..=32767,
        }
    }
}

impl ServiceNetwork {
    /// The address of the `kubernetes` Service (the first in the range).
    pub fn api_service_ip(&self) -> Ipv4Addr {
        self.cidr.hosts().next().expect("a range with hosts")
    }
}

/// What the other Services hold.
struct Taken {
    ips: HashSet<Ipv4Addr>,
    ports: HashSet<u16>,
}

pub fn is_service(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "services"
}

fn wants_node_ports(spec: &Value) -> bool {
    matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

impl Objects {
    /// What the Services other than `namespace/name` hold (a create of an
    /// existing name fails as AlreadyExists, not on its addresses).
    async fn taken(&self, rt: &ResourceType, namespace: &Value, name: &Value) -> ApiResult<Taken> {
        let (all, _) = self
            .store
            .list(&rt.key_prefix())
            .await
            .map_err(|e| super::store_error(rt, "", e))?;
        let mut taken = Taken {
            ips: HashSet::new(),
            ports: HashSet::new(),
        };
        for s in all
            .iter()
            .filter(|s| s["metadata"]["namespace"] != *namespace || s["metadata"]["name"] != *name)
        {
            if let Some(ip) = s["spec"]["clusterIP"].as_str().and_then(|i| i.parse().ok()) {
                taken.ips.insert(ip);
            }
            for p in s["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["nodePort"].as_u64() {
                    taken.ports.insert(n as u16);
                }
            }
        }
        taken.ips.insert(self.services.network.api_service_ip());
        Ok(taken)
    }

    /// Fills in the Service's cluster IP and node ports (keeping those of
    /// `old` on update); returns field errors for taken or invalid values.
    pub(super) async fn allocate_service(
        &self,
        rt: &ResourceType,
        object: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<Vec<FieldError>> {
        let net = self.services.network.clone();
        let taken = self
            .taken(
                rt,
                &object["metadata"]["namespace"],
                &object["metadata"]["name"],
            )
            .await?;
        let is_api_service = object["metadata"]["name"] == "kubernetes"
            && object["metadata"]["namespace"] == "default";
        let spec = &mut object["spec"];
        let mut errors = Vec::new();
        if let Some(old_ip) = old.and_then(|o| o["spec"]["clusterIP"].as_str())
            && spec["clusterIP"].as_str().is_none_or(str::is_empty)
        {
            spec["clusterIP"] = json!(old_ip);
        }
        let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        let requested = spec["clusterIP"].as_str().unwrap_or_default().to_string();
        let unchanged = old.is_some_and(|o| o["spec"]["clusterIP"] == spec["clusterIP"]);
        if kind != "ExternalName" && requested != "None" && !unchanged {
            if requested.is_empty() {
                match net.cidr.hosts().skip(1).find(|ip| !taken.ips.contains(ip)) {
                    Some(ip) => spec["clusterIP"] = json!(ip.to_string()),
                    None => errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        &json!(requested),
                        format!("failed to allocate IP: range {} is full", net.cidr),
                    )),
                }
            } else {
                match requested.parse::<Ipv4Addr>() {
                    Err(_) => errors.push(FieldError::invalid("spec.clusterIPs", &json!(requested), "must be a valid IP address")),
                    Ok(ip) if !net.cidr.contains(&ip) => errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        &json!(requested),
                        format!("failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}", net.cidr),
                    )),
                    Ok(ip) if taken.ips.contains(&ip) && !is_api_service => errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        &json!(requested),
                        format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    )),
                    Ok(_) => {}
                }
            }
        }
        if let Some(ip) = spec["clusterIP"].as_str().map(String::from) {
            spec["clusterIPs"] = json!([ip]);
        }
        if !wants_node_ports(spec) {
            return Ok(errors);
        }
        let old_ports: Vec<Value> = old
            .and_then(|o| o["spec"]["ports"].as_array().cloned())
            .unwrap_or_default();
        let mut used = taken.ports.clone();
        let Some(ports) = spec["ports"].as_array_mut() else {
            return Ok(errors);
        };
        for (i, p) in ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            let explicit = p["nodePort"].as_u64().filter(|n| *n != 0);
            let previous = old_ports
                .iter()
                .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                .and_then(|o| o["nodePort"].as_u64());
            match explicit.or(previous) {
                Some(n) if previous == Some(n) => {
                    used.insert(n as u16);
                }
                Some(n) => {
                    let n16 = u16::try_from(n).unwrap_or(0);
                    if !net.node_ports.contains(&n16) {
                        errors.push(FieldError::invalid(
                            &field,
                            &json!(n),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                net.node_ports.start(),
                                net.node_ports.end()
                            ),
                        ));
                    } else if !used.insert(n16) {
                        errors.push(FieldError::invalid(
                            &field,
                            &json!(n),
                            "provided port is already allocated",
                        ));
                    }
                    p["nodePort"] = json!(n);
                }
                None => match net.node_ports.clone().find(|n| !used.contains(n)) {
                    Some(n) => {
                        used.insert(n);
                        p["nodePort"] = json!(n);
                    }
                    None => errors.push(FieldError::invalid(
                        &field,
                        &json!(0),
                        "failed to allocate a node port: range is full",
                    )),
                },
            }
        }
        Ok(errors)
    }
}

/// Allocation state shared by the server's requests.
pub struct ServiceAllocator {
    pub network: ServiceNetwork,
    /// Held from allocation through the store write.
    pub lock: tokio::sync::Mutex<()>,
}

impl ServiceAllocator {
    pub fn new(network: ServiceNetwork) -> ServiceAllocator {
        ServiceAllocator {
            network,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}
