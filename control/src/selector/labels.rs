//! Label selectors: the `-l` string grammar and `metav1.LabelSelector`.
//!
//! Grammar (as Kubernetes' `labels.Parse`): requirements separated by
//! commas; each is `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
//! `key notin (a,b)`, `key>n` or `key<n`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

/// A conjunction of requirements; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    /// A selector that matches nothing (a `null` selector in some contexts).
    pub nothing: bool,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            Op::In(vals) => v.is_some_and(|v| vals.contains(v)),
            Op::NotIn(vals) => v.is_none_or(|v| !vals.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Op::Lt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.is_everything() {
            return true;
        }
        self.matches(&labels_of(object))
    }

    /// Parses the string form used by `?labelSelector=` and `kubectl -l`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut p = Parser {
            s: input.as_bytes(),
            i: 0,
        };
        let mut requirements = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Ok(LabelSelector::everything());
        }
        loop {
            requirements.push(p.requirement()?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.expect(b',')?;
        }
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` + `matchExpressions`).
    /// An absent selector (`None`) matches nothing, as Kubernetes treats it.
    pub fn from_k8s(selector: Option<&Value>) -> Result<Self, String> {
        let Some(sel) = selector.filter(|s| !s.is_null()) else {
            return Ok(LabelSelector::nothing());
        };
        let mut requirements = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().unwrap_or_default().to_string();
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::In(vec![v]),
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or_default().to_string();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e["operator"].as_str().unwrap_or_default() {
                    "In" => Op::In(values),
                    "NotIn" => Op::NotIn(values),
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                requirements.push(Requirement { key, op });
            }
        }
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }
}

/// The labels of a JSON object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (as `metav1.FormatLabelSelector` prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match &r.op {
                Op::In(v) if v.len() == 1 => format!("{}={}", r.key, v[0]),
                Op::In(v) => format!("{} in ({})", r.key, v.join(",")),
                Op::NotIn(v) => format!("{} notin ({})", r.key, v.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::Gt(n) => format!("{}>{n}", r.key),
                Op::Lt(n) => format!("{}<{n}", r.key),
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/')
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!(
                "unable to parse requirement: expected '{}' at position {}",
                c as char, self.i
            ))
        }
    }

    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self.peek().is_some_and(is_key_char) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        self.skip_ws();
        if self.peek() == Some(b'!') {
            self.i += 1;
            let key = self.word();
            if key.is_empty() {
                return Err("unable to parse requirement: missing key after '!'".into());
            }
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let key = self.word();
        if key.is_empty() {
            return Err(format!(
                "unable to parse requirement: found '{}', expected: identifier",
                self.peek().map(|c| c as char).unwrap_or(' ')
            ));
        }
        self.skip_ws();
        let op = match self.peek() {
            None | Some(b',') => Op::Exists,
            Some(b'=') => {
                self.i += 1;
                if self.peek() == Some(b'=') {
                    self.i += 1;
                }
                Op::In(vec![self.word()])
            }
            Some(b'!') => {
                self.i += 1;
                if self.peek() != Some(b'=') {
                    return Err("unable to parse requirement: expected '=' after '!'".into());
                }
                self.i += 1;
                Op::NotIn(vec![self.word()])
            }
            Some(c @ (b'>' | b'<')) => {
                self.i += 1;
                let w = self.word();
                let n: i64 = w.parse().map_err(|_| {
                    format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer, got {w:?}")
                })?;
                if c == b'>' { Op::Gt(n) } else { Op::Lt(n) }
            }
            _ => {
                let word = self.word();
                let values = self.set()?;
                match word.as_str() {
                    "in" => Op::In(values),
                    "notin" => Op::NotIn(values),
                    other => {
                        return Err(format!(
                            "unable to parse requirement: found {other:?}, expected: in, notin, =, ==, !=, gt, lt"
                        ));
                    }
                }
            }
        };
        Ok(Requirement { key, op })
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        self.expect(b'(')?;
        let mut values = Vec::new();
        loop {
            values.push(self.word());
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(values);
                }
                _ => return Err("unable to parse requirement: expected ',' or ')'".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_requirements_match_like_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier,app", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (back)", false),
            ("n>4", true),
            ("n<4", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn bad_selectors_are_errors() {
        for sel in ["app in web", "=x", "app=web,", "a>b"] {
            assert!(LabelSelector::parse(sel).is_err(), "{sel}");
        }
    }

    #[test]
    fn structured_selector_formats_canonically() {
        let v = serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        });
        let s = LabelSelector::from_k8s(Some(&v)).unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        assert!(LabelSelector::from_k8s(None).unwrap().nothing);
    }
}
