//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-*` (`kubectl --as`, `--as-group`): the request runs
//! as the named user, when the caller may `impersonate` each of them.

use axum::http::HeaderMap;

use super::auth::{ANONYMOUS, User};
use crate::authz::{Attributes, Authorizer};
use crate::error::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The user the request acts as: `caller` itself unless it asks to
/// impersonate.
pub fn user(authz: &Authorizer, caller: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let name = values(headers, USER).first().map(|s| s.to_string());
    let groups: Vec<String> = values(headers, GROUP)
        .into_iter()
        .map(String::from)
        .collect();
    let uid = values(headers, UID).first().map(|s| s.to_string());
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix(EXTRA)?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    let Some(name) = name else {
        if !groups.is_empty() || uid.is_some() || !extras.is_empty() {
            return Err(ApiError::bad_request(
                "impersonating groups, a uid or extra fields requires impersonating a user",
            ));
        }
        return Ok(caller);
    };
    let mut wanted = vec![match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => Attributes::resource("impersonate", "", "serviceaccounts", "", ns, sa),
        None => Attributes::resource("impersonate", "", "users", "", "", &name),
    }];
    for g in &groups {
        wanted.push(Attributes::resource("impersonate", "", "groups", "", "", g));
    }
    if let Some(uid) = &uid {
        wanted.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            "",
            uid,
        ));
    }
    for (key, value) in &extras {
        wanted.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "userextras",
            key,
            "",
            value,
        ));
    }
    for a in &wanted {
        authz.check(&caller, a)?;
    }
    let mut user = if name == ANONYMOUS {
        User {
            name,
            groups: groups.clone(),
        }
    } else {
        User::authenticated(&name, &groups)
    };
    if let Some((ns, _)) = user
        .name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        let ns = ns.to_string();
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !user.groups.contains(&g) {
                user.groups.push(g);
            }
        }
    }
    Ok(user)
}
