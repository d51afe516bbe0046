//! Label and field selectors as the API server understands them, applied to objects held as
//! JSON. Pure parsing and matching, so the rules are tested without a server.
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-separated
//! (all must hold). As in Kubernetes, `!=` and `notin` also match objects without the label.
//! Fields: `path=v`, `path==v`, `path!=v` where path is a dotted JSON path such as
//! `metadata.name`, `status.phase` or `spec.nodeName`; a missing field reads as "".

use serde_json::Value;

/// A parse failure, worded like the API server's 400 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

/// A parsed `fieldSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Splits on commas that are not inside parentheses (the values of `in (a,b)`).
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn checked_key(k: &str, whole: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    if valid_key(k) {
        Ok(k.to_string())
    } else {
        Err(SelectorError(format!(
            "invalid label key {k:?} in {whole:?}"
        )))
    }
}

fn checked_value(v: &str, whole: &str) -> Result<String, SelectorError> {
    let v = v.trim();
    if valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(SelectorError(format!(
            "invalid label value {v:?} in {whole:?}"
        )))
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query value.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(SelectorError(format!("empty requirement in {s:?}")));
            }
            reqs.push(Self::parse_one(p)?);
        }
        Ok(Self(reqs))
    }

    fn parse_one(p: &str) -> Result<LabelReq, SelectorError> {
        if let Some(open) = p.find('(') {
            let close = p
                .rfind(')')
                .filter(|c| *c > open && p[*c + 1..].trim().is_empty())
                .ok_or_else(|| SelectorError(format!("unbalanced parentheses in {p:?}")))?;
            let head: Vec<&str> = p[..open].split_whitespace().collect();
            let values = p[open + 1..close]
                .split(',')
                .map(|v| checked_value(v, p))
                .collect::<Result<Vec<_>, _>>()?;
            return match head.as_slice() {
                [k, "in"] => Ok(LabelReq::In(checked_key(k, p)?, values)),
                [k, "notin"] => Ok(LabelReq::NotIn(checked_key(k, p)?, values)),
                _ => Err(SelectorError(format!(
                    "expected `KEY in (..)` or `KEY notin (..)`, got {p:?}"
                ))),
            };
        }
        if let Some(k) = p.strip_prefix('!') {
            return Ok(LabelReq::DoesNotExist(checked_key(k, p)?));
        }
        if let Some((k, v)) = p.split_once("!=") {
            return Ok(LabelReq::NotEquals(
                checked_key(k, p)?,
                checked_value(v, p)?,
            ));
        }
        if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            return Ok(LabelReq::Equals(checked_key(k, p)?, checked_value(v, p)?));
        }
        Ok(LabelReq::Exists(checked_key(p, p)?))
    }

    /// True when the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

impl FieldSelector {
    /// Parses the `fieldSelector` query value.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in s.split(',') {
            let p = part.trim();
            let (path, equal, value) = if let Some((k, v)) = p.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k, true, v)
            } else {
                return Err(SelectorError(format!(
                    "field selector {p:?} needs `=`, `==` or `!=`"
                )));
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(SelectorError(format!("invalid field path in {p:?}")));
            }
            reqs.push((path.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    /// True when every named field has (or, for `!=`, has not) the given value.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let pointer: String = path.split('.').map(|seg| format!("/{seg}")).collect();
            let got = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p1", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_requirements() {
        let p = pod(json!({"spark-role": "driver", "app": "a1"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&p);
        assert!(m(""));
        assert!(m("spark-role=driver"));
        assert!(m("spark-role==driver,app=a1"));
        assert!(!m("spark-role=executor"));
        assert!(m("spark-role!=executor"));
        assert!(m("missing!=x"));
        assert!(m("spark-role in (driver, executor)"));
        assert!(!m("spark-role notin (driver,executor)"));
        assert!(m("missing notin (a)"));
        assert!(!m("missing in (a)"));
        assert!(m("spark-role"));
        assert!(!m("!spark-role"));
        assert!(m("!missing,app in (a1),spark-role"));
        assert!(m("example.com/role!=x"));
    }

    #[test]
    fn bad_label_selectors_are_refused() {
        for bad in [
            "a in (b",
            "a in b)",
            "a foo (b)",
            "=x",
            "a=b c",
            ",",
            "a,,b",
            "a=(b)",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_requirements() {
        let p = pod(json!({}));
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&p);
        assert!(m("metadata.name=p1"));
        assert!(m("metadata.namespace==ns,status.phase=Running"));
        assert!(!m("status.phase!=Running"));
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.missing="));
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("metadata..name=x").is_err());
    }
}
