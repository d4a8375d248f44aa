//! Field selectors: `?fieldSelector=metadata.name=x,status.phase!=Running`.
//!
//! Which fields a kind supports is the kind's business
//! (`resources::fields`); this module only parses and combines.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A conjunction of `field=value` / `field!=value` terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                value: unescape(value.trim()),
                negate,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The value a requirement on `field` demands with `=`, if any.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }

    /// Checks every requirement with `lookup`, which returns a field's value
    /// (`""` when absent on the object).
    pub fn matches(&self, mut lookup: impl FnMut(&str) -> String) -> bool {
        self.requirements
            .iter()
            .all(|r| (lookup(&r.field) == r.value) != r.negate)
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.last_mut().expect("non-empty").push('\\');
            out.last_mut().expect("non-empty").push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("non-empty").push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_equality_and_inequality_terms() {
        let s = FieldSelector::parse("metadata.name=x, status.phase!=Running,spec.nodeName==n1")
            .unwrap();
        assert_eq!(s.requirements.len(), 3);
        assert!(s.requirements[1].negate);
        assert_eq!(s.exact("spec.nodeName"), Some("n1"));
        assert!(s.matches(|f| match f {
            "metadata.name" => "x".into(),
            "status.phase" => "Pending".into(),
            _ => "n1".into(),
        }));
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn escaped_commas_stay_in_values() {
        let s = FieldSelector::parse(r"involvedObject.name=a\,b").unwrap();
        assert_eq!(s.requirements[0].value, "a,b");
    }
}
