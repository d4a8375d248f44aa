//! Reading a node's own API (`nodes/<name>/proxy/...`) through the API
//! server, as the autoscalers do for the figures nodes keep.

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

/// A GET of `path` through the API server, decoded from JSON.
pub async fn get_json<T: DeserializeOwned>(client: &kube::Client, path: &str) -> kube::Result<T> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("a GET of a path is a valid request");
    client.request(request).await
}

/// `path` of every real node's API (hollow nodes have none); nodes that
/// do not answer are left out.
pub async fn from_nodes<T: DeserializeOwned>(
    client: &kube::Client,
    path: &str,
) -> kube::Result<Vec<T>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut out = Vec::new();
    for node in nodes
        .list(&ListParams::default().labels("!node.peapod.dev/hollow"))
        .await?
        .items
    {
        let proxied = format!("/api/v1/nodes/{}/proxy{path}", node.name_any());
        if let Ok(answer) = get_json(client, &proxied).await {
            out.push(answer);
        }
    }
    Ok(out)
}
