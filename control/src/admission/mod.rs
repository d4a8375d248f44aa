//! Admission: what the API server changes or refuses in an object on
//! create after its defaults and before its validation, from what else the
//! store holds (as kube-apiserver's admission plugins). Each plugin is a
//! module; `admit_create` runs those that apply to a kind.

mod service_account;

use serde_json::Value;

use crate::error::ApiResult;
use crate::objects::Objects;
use crate::resources::ResourceType;

/// Runs the admission plugins for a create of `object` (of `rt`).
pub async fn admit_create(
    objects: &Objects,
    rt: &ResourceType,
    object: &mut Value,
) -> ApiResult<()> {
    if rt.group.is_empty() && rt.plural == "pods" {
        service_account::admit(objects, object).await?;
    }
    Ok(())
}
