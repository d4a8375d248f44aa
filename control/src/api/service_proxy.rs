//! `services/proxy`: the Service port a request names and a ready pod
//! behind it (from the Service's Endpoints), which that pod's node then
//! serves as it serves `pods/proxy`.

use std::sync::Arc;

use serde_json::Value;

use super::Api;
use crate::error::{ApiError, ApiResult};
use crate::objects::Target;

/// Where a `services/proxy` request goes.
#[derive(Debug, PartialEq)]
pub struct To {
    pub node: String,
    pub pod: String,
    pub port: u16,
}

/// The pod, its node and port for `services/[scheme:]name[:port]/proxy`.
pub async fn target(api: &Arc<Api>, ns: &str, requested: &str) -> ApiResult<To> {
    let (name, port) = super::node_proxy::proxy_target(requested);
    let get = |plural: &'static str| {
        let rt = api
            .catalog
            .lookup("", "v1", plural)
            .expect("core resources are served");
        let name = name.clone();
        async move {
            api.objects
                .get(Target {
                    rt,
                    namespace: Some(ns),
                    name: &name,
                })
                .await
        }
    };
    let service = get("services").await?;
    let port_name = service_port(&service, &port)?;
    let unavailable =
        || ApiError::service_unavailable(format!("no endpoints available for service \"{name}\""));
    let endpoints = get("endpoints").await.map_err(|_| unavailable())?;
    pick(&endpoints, &port_name).ok_or_else(unavailable)
}

/// The name of the Service port `port` names (by name or number; none
/// names the only port).
fn service_port(service: &Value, port: &str) -> ApiResult<String> {
    let ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let found = if port.is_empty() {
        (ports.len() == 1).then(|| ports[0])
    } else {
        ports.iter().copied().find(|p| {
            p["name"].as_str() == Some(port)
                || p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)
        })
    };
    let name = service["metadata"]["name"].as_str().unwrap_or_default();
    found
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no service port {port:?} found for service \"{name}\""
            ))
        })
}

/// The first ready pod address of the Endpoints with port `port_name`.
fn pick(endpoints: &Value, port_name: &str) -> Option<To> {
    let subsets = endpoints["subsets"].as_array()?;
    subsets.iter().find_map(|subset| {
        let port = subset["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)?["port"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())?;
        subset["addresses"].as_array()?.iter().find_map(|a| {
            (a["targetRef"]["kind"] == "Pod").then_some(())?;
            Some(To {
                node: a["nodeName"].as_str()?.to_string(),
                pod: a["targetRef"]["name"].as_str()?.to_string(),
                port,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_named_or_numbered_port_leads_to_a_ready_pod() {
        let service = json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "admin", "port": 9000},
        ]}});
        assert_eq!(service_port(&service, "80").unwrap(), "http");
        assert_eq!(service_port(&service, "admin").unwrap(), "admin");
        assert!(service_port(&service, "").is_err());
        assert!(service_port(&service, "81").is_err());
        let endpoints = json!({"subsets": [{
            "addresses": [{"ip": "10.244.0.5", "nodeName": "n1",
                "targetRef": {"kind": "Pod", "name": "web-1"}}],
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
        }]});
        assert_eq!(
            pick(&endpoints, "http"),
            Some(To {
                node: "n1".into(),
                pod: "web-1".into(),
                port: 8080
            })
        );
        assert_eq!(pick(&json!({"subsets": []}), "http"), None);
    }
}
