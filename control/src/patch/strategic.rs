//! Strategic merge patch, as kube-apiserver applies it: maps merge, lists
//! named in `strategies` merge by key (or as sets), other lists are
//! replaced, and the directives `$patch`, `$retainKeys`,
//! `$setElementOrder/…` and `$deleteFromPrimitiveList/…` are honoured —
//! including the ordering rules kubectl's three-way patches rely on.

use serde_json::{Map, Value};

use super::PatchError;
use super::strategies;
use crate::openapi::Schemas;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";

/// The schema of the value being merged: which of its fields merge, and how.
#[derive(Clone, Copy)]
pub struct Schema<'a> {
    schemas: Option<&'a Schemas>,
    def: Option<&'a Value>,
    name: Option<&'a str>,
}

#[derive(Clone, Copy)]
struct FieldMeta<'a> {
    merge: bool,
    merge_key: Option<&'a str>,
    /// The field's schema; for a list, its elements' schema.
    sub: Schema<'a>,
}

impl<'a> Schema<'a> {
    /// The schema of the definition named `name` (e.g. `io.k8s.api.core.v1.Pod`).
    pub fn named(schemas: &'a Schemas, name: &str) -> Schema<'a> {
        match schemas.definition_entry(name) {
            Some((key, def)) => Schema {
                schemas: Some(schemas),
                def: Some(def),
                name: Some(key),
            },
            None => Schema::unknown(),
        }
    }

    /// No schema: maps merge, lists are replaced.
    pub fn unknown() -> Schema<'static> {
        Schema {
            schemas: None,
            def: None,
            name: None,
        }
    }

    fn field(&self, key: &str) -> FieldMeta<'a> {
        let strategy = self.name.and_then(|n| strategies::lookup(n, key));
        let sub = match (self.schemas, self.def) {
            (Some(schemas), Some(def)) => {
                let prop = def
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| def.get("additionalProperties").filter(|a| a.is_object()));
                match prop {
                    Some(prop) => {
                        let (fdef, fname) = schemas.resolve(prop);
                        let (sdef, sname) = match fdef.get("items") {
                            Some(items) if fdef.get("type") == Some(&Value::from("array")) => {
                                schemas.resolve(items)
                            }
                            _ => (fdef, fname),
                        };
                        Schema {
                            schemas: Some(schemas),
                            def: Some(sdef),
                            name: sname,
                        }
                    }
                    None => Schema::unknown(),
                }
            }
            _ => Schema::unknown(),
        };
        FieldMeta {
            merge: strategy.is_some_and(|s| s.strategy.split(',').any(|p| p == "merge")),
            merge_key: strategy.and_then(|s| s.merge_key),
            sub,
        }
    }
}

/// Applies a strategic merge patch to `original`.
pub fn apply(original: &Value, patch: &Value, schema: Schema<'_>) -> Result<Value, PatchError> {
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::bad_request(
            "invalid JSON document: a strategic merge patch must be an object",
        ));
    };
    let original = original.as_object().cloned().unwrap_or_default();
    merge_map(original, patch.clone(), schema).map(Value::Object)
}

fn merge_map(
    mut orig: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE) {
        return match d.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::invalid(format!(
                "unknown patch type: {d} in map"
            ))),
        };
    }
    apply_retain_keys(&mut orig, &mut patch)?;
    merge_set_element_order(&mut orig, &mut patch, schema)?;
    for (k, pv) in patch {
        let (key, is_delete_list) = match k.strip_prefix(DELETE_PRIMITIVE) {
            Some(rest) => (extract_key(rest, DELETE_PRIMITIVE)?, true),
            None => (k, false),
        };
        if pv.is_null() {
            orig.remove(&key);
            continue;
        }
        let Some(ov) = orig.get_mut(&key) else {
            if !is_delete_list && let Some(v) = clean(pv) {
                orig.insert(key, v);
            }
            continue;
        };
        if kind(ov) != kind(&pv) {
            if !is_delete_list {
                match clean(pv) {
                    Some(v) => *ov = v,
                    None => {
                        orig.remove(&key);
                    }
                }
            }
            continue;
        }
        match pv {
            Value::Object(pm) => {
                let meta = schema.field(&key);
                let om = std::mem::take(ov.as_object_mut().expect("kinds match"));
                *ov = Value::Object(merge_map(om, pm, meta.sub)?);
            }
            Value::Array(pl) => {
                let meta = schema.field(&key);
                if meta.merge || is_delete_list {
                    let ol = std::mem::take(ov.as_array_mut().expect("kinds match"));
                    let (merged, _) =
                        merge_slice(ol, pl, meta.sub, meta.merge_key, is_delete_list)?;
                    *ov = Value::Array(merged);
                } else {
                    *ov = Value::Array(pl);
                }
            }
            scalar => *ov = scalar,
        }
    }
    Ok(orig)
}

/// A new subtree loses its nulls and directive maps; `None` if the whole
/// value was a directive.
fn clean(mut v: Value) -> Option<Value> {
    discard_nulls(&mut v);
    remove_directives(v)
}

fn extract_key(rest: &str, prefix: &str) -> Result<String, PatchError> {
    rest.strip_prefix('/')
        .map(String::from)
        .ok_or_else(|| PatchError::bad_request(format!("invalid patch format of {prefix}")))
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Map,
    List,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Int,
        Value::String(_) => Kind::Str,
        Value::Object(_) => Kind::Map,
        Value::Array(_) => Kind::List,
    }
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

fn apply_retain_keys(
    orig: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(keys) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::bad_request("invalid patch format of retainKeys");
    let keys = keys.as_array().ok_or_else(bad)?;
    let retained = |k: &str| keys.iter().any(|x| x.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !retained(k) {
            return Err(bad());
        }
    }
    orig.retain(|k, _| retained(k));
    Ok(())
}

/// The value an element is identified by: its merge key, or itself.
fn item<'v>(v: &'v Value, mk: Option<&str>) -> Option<&'v Value> {
    match mk {
        Some(mk) => v.get(mk),
        None => Some(v),
    }
}

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => kind(a) == kind(b) && a == b,
        (None, None) => true,
        _ => false,
    }
}

fn index_of(list: &[Value], v: &Value, mk: Option<&str>) -> Option<usize> {
    list.iter().position(|x| same(item(v, mk), item(x, mk)))
}

fn missing_key(v: &Value, mk: &str) -> PatchError {
    PatchError::invalid(format!(
        "map: {v} does not contain declared merge key: {mk}"
    ))
}

/// Stable-sorts `to_sort` by position in `order` (unknown items stay put
/// relative to the comparator's rules), moving `$patch: delete` elements last.
fn sort_by_order(
    to_sort: Vec<Value>,
    order: &[Value],
    mk: Option<&str>,
    maps: bool,
) -> Result<Vec<Value>, PatchError> {
    let mut keep = Vec::with_capacity(to_sort.len());
    let mut deletes = Vec::new();
    if maps {
        let mk = mk.unwrap_or_default();
        for v in to_sort.iter().chain(order) {
            if v.get(mk).is_none() {
                return Err(missing_key(v, mk));
            }
        }
        for v in to_sort {
            if v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                deletes.push(v);
            } else {
                keep.push(v);
            }
        }
    } else {
        keep = to_sort;
    }
    let less = |x: &Value, y: &Value| match (index_of(order, x, mk), index_of(order, y, mk)) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    };
    for i in 1..keep.len() {
        let mut j = i;
        while j > 0 && less(&keep[j], &keep[j - 1]) {
            keep.swap(j, j - 1);
            j -= 1;
        }
    }
    keep.extend(deletes);
    Ok(keep)
}

/// Interleaves server-only items (in server order) with patch items.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server: &[Value],
    mk: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.push(left.next().expect("peeked")),
            (None, Some(_)) => out.push(right.next().expect("peeked")),
            (Some(l), Some(r)) => {
                let li = index_of(server, l, mk);
                let ri = index_of(server, r, mk);
                if matches!((li, ri), (Some(li), Some(ri)) if li < ri) {
                    out.push(left.next().expect("peeked"));
                } else {
                    out.push(right.next().expect("peeked"));
                }
            }
        }
    }
    out
}

fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    mk: Option<&str>,
    maps: bool,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, mk, maps)?;
    let server_only = sort_by_order(server_only, server_order, mk, maps)?;
    Ok(merge_sorted(server_only, patch_items, server_order, mk))
}

/// The common element kind of the lists; errors on mixed kinds and lists of lists.
fn element_kind(lists: &[&[Value]]) -> Result<Kind, PatchError> {
    let mut prev = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = kind(v);
        match prev {
            None if k == Kind::List => {
                return Err(PatchError::unprocessable(
                    "lists of lists are not supported",
                ));
            }
            None => prev = Some(k),
            Some(p) if p != k => {
                return Err(PatchError::invalid("list element types are not identical"));
            }
            _ => {}
        }
    }
    prev.ok_or_else(|| PatchError::invalid("no elements in any of the given slices"))
}

/// Splits `list` into the items named in `by` and the rest.
fn partition(
    list: Vec<Value>,
    by: &[Value],
    mk: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for v in list {
        if let Some(k) = mk
            && v.get(k).is_none()
        {
            return Err(missing_key(&v, k));
        }
        if by
            .iter()
            .any(|b| same(item(b, mk), item(&v, mk)) && item(b, mk).is_some())
        {
            named.push(v);
        } else {
            rest.push(v);
        }
    }
    Ok((named, rest))
}

/// Removes duplicates the way Kubernetes does (the last element fills the
/// hole), which the ordering step then sorts out.
fn dedup(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if same(Some(&s[i]), Some(&s[j])) {
                s.swap_remove(j);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

/// Merges two lists. Also returns, for `$setElementOrder` processing, how
/// the live list looks after deletes and the first appended elements.
fn merge_slice(
    mut orig: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema<'_>,
    mk: Option<&str>,
    is_delete_list: bool,
) -> Result<(Vec<Value>, Option<Vec<Value>>), PatchError> {
    if orig.is_empty() && patch.is_empty() {
        return Ok((orig, None));
    }
    let k = element_kind(&[&orig, &patch])?;
    if k != Kind::Map {
        if is_delete_list {
            orig.retain(|v| !patch.iter().any(|d| same(Some(v), Some(d))));
            return Ok((orig, None));
        }
        let mut all = orig.clone();
        all.extend(patch.iter().cloned());
        let merged = dedup(all);
        let (named, rest) = partition(merged, &patch, None)?;
        return Ok((
            normalize_order(named, rest, &patch, &orig, None, false)?,
            None,
        ));
    }
    let Some(key) = mk else {
        return Err(PatchError::invalid("cannot merge lists without merge key"));
    };
    let live = orig.len();
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        match v.get(DIRECTIVE) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let target = v.get(key).ok_or_else(|| missing_key(&v, key))?;
                    orig.retain(|o| !same(o.get(key), Some(target)));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::invalid(
                        "merging lists cannot yet be specified in the patch",
                    ));
                }
                _ => return Err(PatchError::invalid(format!("unknown patch type: {d}"))),
            },
        }
    }
    let patch = if replace {
        orig = plain;
        Vec::new()
    } else {
        plain
    };
    let deleted = live.saturating_sub(orig.len());
    let mut merged = orig.clone();
    let mut appended = Vec::new();
    for v in &patch {
        let target = v.get(key).ok_or_else(|| missing_key(v, key))?;
        match merged.iter().position(|o| same(o.get(key), Some(target))) {
            Some(i) => {
                let om = std::mem::take(&mut merged[i]);
                let om = om.as_object().cloned().unwrap_or_default();
                let pm = v.as_object().cloned().unwrap_or_default();
                merged[i] = Value::Object(merge_map(om, pm, schema)?);
            }
            None => {
                merged.push(v.clone());
                appended.push(v.clone());
            }
        }
    }
    let view = (!replace).then(|| {
        let mut view = orig.clone();
        view.extend(appended.into_iter().take(deleted));
        view
    });
    let (named, rest) = partition(merged, &patch, mk)?;
    Ok((normalize_order(named, rest, &patch, &orig, mk, true)?, view))
}

fn validate_set_order(
    patch_list: &[Value],
    order: &[Value],
    mk: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| mk.is_none() || v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
        .collect();
    let (mut pi, mut si) = (0, 0);
    while pi < items.len() && si < order.len() {
        if items[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        let equal = match mk {
            None => same(Some(items[pi]), Some(&order[si])),
            Some(k) => {
                let a = items[pi].get(k).ok_or_else(|| missing_key(items[pi], k))?;
                same(Some(a), order[si].get(k))
            }
        };
        if equal {
            pi += 1;
        }
        si += 1;
    }
    if pi < items.len() && si >= order.len() {
        return Err(PatchError::invalid(
            "The order in patch list doesn't match $setElementOrder list",
        ));
    }
    Ok(())
}

fn merge_set_element_order(
    orig: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema<'_>,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    let bad = || PatchError::bad_request("invalid patch format of setElementOrder list");
    for k in keys {
        let order = patch.remove(&k).expect("listed key");
        let order = order.as_array().ok_or_else(bad)?;
        let field = extract_key(&k[SET_ORDER.len()..], SET_ORDER)?;
        let live = match orig.get(&field) {
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad()),
            None => None,
        };
        let patched = match patch.get(&field) {
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad()),
            None => None,
        };
        let meta = schema.field(&field);
        let mk = meta.merge_key;
        validate_set_order(patched.as_deref().unwrap_or_default(), order, mk)?;
        let mut server_order = live.clone().unwrap_or_default();
        let merged = match (&live, &patched) {
            (Some(l), None) => l.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(p)) => p,
                _ => Vec::new(),
            },
            (Some(l), Some(p)) => {
                if meta.merge {
                    let (merged, view) = merge_slice(l.clone(), p.clone(), meta.sub, mk, false)?;
                    if let (Some(_), Some(view)) = (mk, view) {
                        server_order = view;
                    }
                    merged
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let maps = element_kind(&[
            live.as_deref().unwrap_or_default(),
            patched.as_deref().unwrap_or_default(),
        ])? == Kind::Map;
        let (named, rest) = partition(merged, order, mk)?;
        let result = normalize_order(named, rest, order, &server_order, mk, maps)?;
        orig.insert(field.clone(), Value::Array(result));
        patch.remove(&field);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
