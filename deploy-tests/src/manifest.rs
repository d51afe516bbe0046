//! Kubernetes manifests as typed k8s-openapi objects, with no field left behind.
//!
//! serde ignores fields a type does not know, so a typo (`readinesProbe`) would parse fine and
//! then be silently dropped by the API server's defaulting. To catch that, each document is
//! deserialised into its typed object, serialised back, and compared with the original: any
//! field of the original missing from the round trip is one the type does not know.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One parsed object of a kind these manifests use.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Service(Service),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Pod(Pod),
    Deployment(Deployment),
    DaemonSet(DaemonSet),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    PodDisruptionBudget(PodDisruptionBudget),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Service(_) => "Service",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Pod(_) => "Pod",
            Object::Deployment(_) => "Deployment",
            Object::DaemonSet(_) => "DaemonSet",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
        }
    }

    pub fn name(&self) -> String {
        let meta = match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::ClusterRole(o) => &o.metadata,
            Object::ClusterRoleBinding(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
        };
        meta.name.clone().unwrap_or_default()
    }
}

/// A field that the typed object did not keep, or a value it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: String,
    pub what: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Splits a YAML stream into its documents, as JSON values (empty documents dropped).
pub fn documents(text: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc)
            .with_context(|| format!("{origin}: document {} is not valid YAML", i + 1))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Reads a YAML file's documents.
pub fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    documents(&text, &path.display().to_string())
}

/// Parses one document into its typed object, failing on any field the type does not know.
pub fn parse_strict(doc: &Value, origin: &str) -> anyhow::Result<Object> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let what = format!("{origin}: {kind} {name}");
    let obj = match (api_version, kind) {
        ("v1", "Namespace") => Object::Namespace(typed(doc, &what)?),
        ("v1", "ServiceAccount") => Object::ServiceAccount(typed(doc, &what)?),
        ("v1", "ConfigMap") => Object::ConfigMap(typed(doc, &what)?),
        ("v1", "Service") => Object::Service(typed(doc, &what)?),
        ("v1", "PersistentVolumeClaim") => Object::PersistentVolumeClaim(typed(doc, &what)?),
        ("v1", "Pod") => Object::Pod(typed(doc, &what)?),
        ("apps/v1", "Deployment") => Object::Deployment(typed(doc, &what)?),
        ("apps/v1", "DaemonSet") => Object::DaemonSet(typed(doc, &what)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => Object::ClusterRole(typed(doc, &what)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            Object::ClusterRoleBinding(typed(doc, &what)?)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => Object::Role(typed(doc, &what)?),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => Object::RoleBinding(typed(doc, &what)?),
        ("policy/v1", "PodDisruptionBudget") => Object::PodDisruptionBudget(typed(doc, &what)?),
        _ => bail!("{what}: apiVersion `{api_version}` kind `{kind}` is not one these tests know"),
    };
    Ok(obj)
}

/// Deserialises `doc` as `T` (naming the path of a type error), then checks the round trip.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> anyhow::Result<T> {
    let obj: T = serde_path_to_error::deserialize(doc.clone())
        .map_err(|e| anyhow!("{what}: at `{}`: {}", e.path(), e.inner()))?;
    let back = serde_json::to_value(&obj).with_context(|| format!("{what}: cannot serialise"))?;
    let mismatches = compare(doc, &back);
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
        bail!(
            "{what}: fields the typed object does not keep (unknown or misplaced):\n{}",
            list.join("\n")
        );
    }
    Ok(obj)
}

/// Every field of `original` that `round_trip` lacks or changed, by JSON path.
pub fn compare(original: &Value, round_trip: &Value) -> Vec<Mismatch> {
    let mut out = Vec::new();
    walk(original, round_trip, "", &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: &str, out: &mut Vec<Mismatch>) {
    match (a, b) {
        (Value::Object(am), Value::Object(bm)) => {
            for (k, av) in am {
                let p = format!("{path}.{k}");
                match bm.get(k) {
                    Some(bv) => walk(av, bv, &p, out),
                    // an explicit null (a patch deleting a field) carries nothing to lose
                    None if av.is_null() => {}
                    None => out.push(Mismatch {
                        path: p,
                        what: "unknown field".into(),
                    }),
                }
            }
        }
        (Value::Array(aa), Value::Array(ba)) => {
            if aa.len() != ba.len() {
                out.push(Mismatch {
                    path: path.to_string(),
                    what: format!("list of {} became {}", aa.len(), ba.len()),
                });
                return;
            }
            for (i, (av, bv)) in aa.iter().zip(ba).enumerate() {
                walk(av, bv, &format!("{path}[{i}]"), out);
            }
        }
        _ if scalar_text(a) == scalar_text(b) => {}
        _ => out.push(Mismatch {
            path: path.to_string(),
            what: format!("value {a} became {b}"),
        }),
    }
}

/// Quantities and int-or-string fields may come back as strings (`2` -> `"2"`): compare text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_field_is_reported_with_its_path() {
        let docs = documents(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    readinesProbe: {}\n",
            "t",
        )
        .unwrap();
        let err = parse_strict(&docs[0], "t").unwrap_err().to_string();
        assert!(
            err.contains(".spec.containers[0].readinesProbe: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn quantities_and_int_or_string_round_trip() {
        let docs = documents(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    resources: {limits: {cpu: 2, memory: 1Gi}}\n",
            "t",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        for d in &docs {
            parse_strict(d, "t").unwrap();
        }
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let docs = documents(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: many\n  selector: {}\n  template: {}\n",
            "t",
        )
        .unwrap();
        let err = parse_strict(&docs[0], "t").unwrap_err().to_string();
        assert!(err.contains("spec.replicas"), "{err}");
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let docs = documents("apiVersion: v1\nkind: Secrett\nmetadata: {name: x}\n", "t").unwrap();
        assert!(parse_strict(&docs[0], "t").is_err());
    }
}
