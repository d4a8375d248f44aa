//! Query parameters of resource requests.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};
use crate::objects::{ListOptions, Propagation};
use crate::selector::{FieldSelector, LabelSelector};

/// How unknown fields in a body are treated (`?fieldValidation=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

#[derive(Default, Debug)]
pub struct Params {
    raw: HashMap<String, String>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params {
            raw: form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }

    pub fn watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.get("resourceVersion").filter(|v| !v.is_empty())
    }

    pub fn timeout_seconds(&self) -> ApiResult<Option<u64>> {
        self.number("timeoutSeconds")
    }

    pub fn grace_period_seconds(&self) -> ApiResult<Option<i64>> {
        self.number("gracePeriodSeconds")
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }

    pub fn propagation(&self) -> ApiResult<Option<Propagation>> {
        if let Some(p) = self.get("propagationPolicy") {
            return Propagation::parse(p)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid propagationPolicy {p:?}")));
        }
        Ok(match self.get("orphanDependents") {
            Some("true") => Some(Propagation::Orphan),
            Some("false") => Some(Propagation::Background),
            _ => None,
        })
    }

    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }

    pub fn list_options(&self) -> ApiResult<ListOptions> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        Ok(ListOptions {
            labels,
            fields,
            limit: self.number("limit")?,
            continue_token: self.get("continue").map(String::from),
        })
    }
}
