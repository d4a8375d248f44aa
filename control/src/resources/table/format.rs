//! Cell formatting shared by the kinds' rows: ages, label maps, selectors,
//! container lists, conditions, load balancer addresses.

use serde_json::Value;

use crate::selector::LabelSelector;

/// Kubernetes' `duration.HumanDuration`: `59s`, `5m10s`, `3h`, `2d5h`, `2y70d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Seconds since `now` of an RFC 3339 timestamp.
fn seconds_since(ts: &str, now: jiff::Timestamp) -> Option<i64> {
    let t: jiff::Timestamp = ts.parse().ok()?;
    Some(now.duration_since(t).as_secs())
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
pub fn since(ts: &Value, now: jiff::Timestamp) -> String {
    match ts.as_str().and_then(|t| seconds_since(t, now)) {
        Some(s) => human_duration(s),
        None => "<unknown>".into(),
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
pub fn labels(map: &Value) -> String {
    let mut pairs: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs.join(",")
}

/// `metav1.FormatLabelSelector`: `<none>` when empty or absent.
pub fn selector(sel: &Value) -> String {
    let s = selector_string(sel);
    if s.is_empty() { "<none>".into() } else { s }
}

/// The selector's string form with requirements sorted by key.
pub fn selector_string(sel: &Value) -> String {
    match LabelSelector::from_k8s(Some(sel)) {
        Ok(mut s) if !s.nothing => {
            s.requirements.sort_by(|a, b| a.key.cmp(&b.key));
            for r in &mut s.requirements {
                if let crate::selector::labels::Op::In(v) | crate::selector::labels::Op::NotIn(v) =
                    &mut r.op
                {
                    v.sort();
                }
            }
            s.to_string()
        }
        Ok(_) => String::new(),
        Err(_) => "<error>".into(),
    }
}

/// Names and images of a container list, comma-joined.
pub fn containers(list: &Value) -> (String, String) {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let names: Vec<&str> = items
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    let images: Vec<&str> = items
        .iter()
        .map(|c| c["image"].as_str().unwrap_or_default())
        .collect();
    (names.join(","), images.join(","))
}

/// A string field, or `default` when absent or empty.
pub fn or(v: &Value, default: &str) -> String {
    match v.as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => default.to_string(),
    }
}

pub fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The first element of a list of conditions or addresses with this `type`.
pub fn first_of_type<'a>(list: &'a Value, ty: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|a| a["type"] == ty)
}

/// Whether the object's condition of this `type` is `True`.
pub fn condition_true(o: &Value, ty: &str) -> bool {
    first_of_type(&o["status"]["conditions"], ty).is_some_and(|c| c["status"] == "True")
}

/// The sorted, distinct IPs (else hostnames) of a load balancer's ingress points.
pub fn lb_addresses(ingress: &Value) -> Vec<String> {
    let mut out: Vec<String> = ingress
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or_else(|| i["hostname"].as_str())
                .map(String::from)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (310, "5m10s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 1800, "5h30m"),
            (8 * 3600, "8h"),
            (48 * 3600, "2d"),
            (53 * 3600, "2d5h"),
            (191 * 3600, "7d23h"),
            (8 * 86400, "8d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (2920 * 86400, "8y"),
            (-3, "<invalid>"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn labels_and_selectors_print_sorted() {
        let l = serde_json::json!({"b": "2", "a": "1"});
        assert_eq!(labels(&l), "a=1,b=2");
        assert_eq!(labels(&Value::Null), "<none>");
        let s = serde_json::json!({"matchLabels": {"z": "1", "a": "2"}});
        assert_eq!(selector(&s), "a=2,z=1");
        assert_eq!(selector(&serde_json::json!({})), "<none>");
    }
}
