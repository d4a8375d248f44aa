//! Service environment variables, as the kubelet injects them into
//! containers started after a Service exists: `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT>` for named ports, and
//! the Docker-link style `<NAME>_PORT...` ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

/// The variables for `services` (those of the pod's namespace, plus the
/// `kubernetes` Service of `default`).
pub fn variables(services: &[Service]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for svc in services {
        let spec = svc.spec.clone().unwrap_or_default();
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(&svc.name_any());
        out.insert(format!("{name}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{name}_SERVICE_PORT"), first.port.to_string());
        for p in &ports {
            if let Some(port_name) = p.name.as_ref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{name}_SERVICE_PORT_{}", env_name(port_name)),
                    p.port.to_string(),
                );
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.insert(
            format!("{name}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(first).to_ascii_lowercase(),
                first.port
            ),
        );
        for p in &ports {
            let proto = proto(p);
            let base = format!("{name}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.insert(
                base.clone(),
                format!("{}://{ip}:{}", proto.to_ascii_lowercase(), p.port),
            );
            out.insert(format!("{base}_PROTO"), proto.to_ascii_lowercase());
            out.insert(format!("{base}_PORT"), p.port.to_string());
            out.insert(format!("{base}_ADDR"), ip.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_become_kubernetes_style_variables() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "redis-primary"},
            "spec": {"clusterIP": "10.96.0.11", "ports": [
                {"name": "redis", "port": 6379, "protocol": "TCP"},
                {"name": "metrics", "port": 9121, "protocol": "TCP"}]},
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
        }))
        .unwrap();
        let env = variables(&[svc, headless]);
        assert_eq!(env["REDIS_PRIMARY_SERVICE_HOST"], "10.96.0.11");
        assert_eq!(env["REDIS_PRIMARY_SERVICE_PORT"], "6379");
        assert_eq!(env["REDIS_PRIMARY_SERVICE_PORT_METRICS"], "9121");
        assert_eq!(env["REDIS_PRIMARY_PORT"], "tcp://10.96.0.11:6379");
        assert_eq!(env["REDIS_PRIMARY_PORT_6379_TCP_ADDR"], "10.96.0.11");
        assert_eq!(env["REDIS_PRIMARY_PORT_9121_TCP_PROTO"], "tcp");
        assert!(!env.keys().any(|k| k.starts_with("DB_")));
    }
}
