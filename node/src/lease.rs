//! Node heartbeats: a `coordination.k8s.io/v1` Lease per node in
//! `kube-node-lease`, renewed every few seconds, as the kubelet does. The
//! control plane's node lifecycle loop watches them.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How often leases are renewed (the kubelet's default).
pub const RENEWAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const DURATION_SECONDS: i32 = 40;

/// Renews node `name`'s lease, creating it the first time.
pub async fn renew(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now}});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.to_string()),
                    lease_duration_seconds: Some(DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}
