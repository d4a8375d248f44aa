//! The pod row: READY, STATUS (the reason kubectl shows) and RESTARTS.

use serde_json::{Value, json};

use crate::resources::table::{AGE, Column, NAME, Row, condition_true, or, since};

fn later<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t["reason"].as_str().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None if t["signal"].as_i64().unwrap_or(0) != 0 => {
            format!("{prefix}Signal:{}", t["signal"])
        }
        None => format!("{prefix}ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
    }
}

pub fn columns() -> Vec<Column> {
    vec![
        NAME,
        Column::text("Ready"),
        Column::text("Status"),
        Column::text("Restarts"),
        AGE,
        Column::text("IP").wide(),
        Column::text("Node").wide(),
        Column::text("Nominated Node").wide(),
        Column::text("Readiness Gates").wide(),
    ]
}

/// A pod's cells and its row conditions.
pub fn row(pod: &Value, now: jiff::Timestamp) -> Row {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
    };
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let total = spec["containers"].as_array().map_or(0, Vec::len)
        + init_specs
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .count();
    let mut ready = 0;
    let mut last_restart: Option<&str> = None;
    let mut last_sidecar_restart: Option<&str> = None;
    let phase = status["phase"].as_str().unwrap_or_default();
    let mut reason = or(&status["reason"], phase);
    if status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };

    let mut initializing = false;
    let empty = Vec::new();
    let init_statuses = status["initContainerStatuses"].as_array().unwrap_or(&empty);
    for (i, cs) in init_statuses.iter().enumerate() {
        restarts += cs["restartCount"].as_i64().unwrap_or(0);
        let finished = cs["lastState"]["terminated"]["finishedAt"].as_str();
        last_restart = later(last_restart, finished);
        let is_sidecar = sidecar(cs["name"].as_str().unwrap_or_default());
        if is_sidecar {
            sidecar_restarts += cs["restartCount"].as_i64().unwrap_or(0);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = &cs["state"]["terminated"];
        let waiting_reason = cs["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default();
        if terminated.is_object() && terminated["exitCode"].as_i64().unwrap_or(0) == 0 {
            continue;
        } else if is_sidecar && cs["started"] == true {
            if cs["ready"] == true {
                ready += 1;
            }
            continue;
        } else if terminated.is_object() {
            reason = terminated_reason(terminated, "Init:");
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        let mut error_reason = String::new();
        let statuses = status["containerStatuses"].as_array().unwrap_or(&empty);
        for cs in statuses.iter().rev() {
            restarts += cs["restartCount"].as_i64().unwrap_or(0);
            last_restart = later(
                last_restart,
                cs["lastState"]["terminated"]["finishedAt"].as_str(),
            );
            let waiting = cs["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or_default();
            let terminated = &cs["state"]["terminated"];
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_object() {
                reason = terminated_reason(terminated, "");
                if terminated["exitCode"].as_i64().unwrap_or(0) != 0 {
                    error_reason = reason.clone();
                }
            } else if cs["ready"] == true && cs["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" {
            if has_running && condition_true(pod, "Ready") {
                reason = "Running".into();
            } else if !error_reason.is_empty() {
                reason = error_reason;
            } else if has_running {
                reason = "NotReady".into();
            }
        }
    }

    let deleting = pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null());
    if deleting && status["reason"] == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(&json!(t), now)),
        _ => restarts.to_string(),
    };
    let ip = status["podIPs"][0]["ip"]
        .as_str()
        .unwrap_or("<none>")
        .to_string();
    let gates = spec["readinessGates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition_true(pod, g["conditionType"].as_str().unwrap_or_default()))
            .count();
        format!("{passing}/{}", gates.len())
    };
    let row = Row::new()
        .cell("Ready", format!("{ready}/{total}"))
        .cell("Status", reason)
        .cell("Restarts", restarts_cell)
        .cell("IP", ip)
        .cell("Node", or(&spec["nodeName"], "<none>"))
        .cell("Nominated Node", or(&status["nominatedNodeName"], "<none>"))
        .cell("Readiness Gates", gates_cell);
    match conditions {
        Some(c) => row.conditions(c),
        None => row,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(pod: Value) -> String {
        row(&pod, jiff::Timestamp::now())
            .get("Status")
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    #[test]
    fn pod_status_reasons_match_kubectl() {
        assert_eq!(
            status_of(json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}})),
            "Pending"
        );
        assert_eq!(
            status_of(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})
            ),
            "CrashLoopBackOff"
        );
        assert_eq!(
            status_of(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}})
            ),
            "Init:0/1"
        );
        assert_eq!(
            status_of(
                json!({"metadata": {"name": "p", "deletionTimestamp": "2020-01-01T00:00:00Z"},
                "status": {"phase": "Running"}})
            ),
            "Terminating"
        );
        assert_eq!(
            status_of(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})
            ),
            "Completed"
        );
    }
}
