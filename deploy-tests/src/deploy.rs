//! deploy/ as `kubectl apply -k deploy/` would send it, with lookups the tests share.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::manifest::{self, Object};

/// The rendered objects of deploy/.
pub fn rendered() -> anyhow::Result<Vec<Object>> {
    let dir = crate::repo_root().join("deploy");
    let yaml = crate::kustomize::render(&dir)?;
    let mut out = Vec::new();
    for doc in manifest::documents(&yaml, "kubectl kustomize deploy/")? {
        out.push(manifest::parse_strict(&doc, "kubectl kustomize deploy/")?);
    }
    Ok(out)
}

/// A Deployment's or DaemonSet's pod template, with the workload's kind and name.
pub struct Workload<'a> {
    pub kind: &'static str,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: &'a PodSpec,
}

impl Workload<'_> {
    pub fn what(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// The daemon container (named like the workload).
    pub fn main_container(&self) -> anyhow::Result<&Container> {
        self.spec
            .containers
            .iter()
            .find(|c| c.name == self.name)
            .with_context(|| format!("{}: no container named {}", self.what(), self.name))
    }

    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.spec
            .init_containers
            .iter()
            .flatten()
            .chain(self.spec.containers.iter())
    }
}

pub fn workloads(objects: &[Object]) -> Vec<Workload<'_>> {
    let mut out = Vec::new();
    for o in objects {
        let (kind, template) = match o {
            Object::Deployment(d) => ("Deployment", Some(&d.spec.template)),
            Object::DaemonSet(d) => ("DaemonSet", Some(&d.spec.template)),
            _ => continue,
        };
        let Some(template) = template else { continue };
        let Some(spec) = template.spec.as_ref() else {
            continue;
        };
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        out.push(Workload {
            kind,
            name: o.name(),
            labels,
            spec,
        });
    }
    out
}

/// The ConfigMap data of `name`.
pub fn config_map<'a>(objects: &'a [Object], name: &str) -> Option<&'a BTreeMap<String, String>> {
    objects.iter().find_map(|o| match o {
        Object::ConfigMap(c) if c.metadata.name.as_deref() == Some(name) => c.data.as_ref(),
        _ => None,
    })
}

/// Splits `repo/name:tag` into (`repo/name`, tag).
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (image, None),
    }
}

/// The config file a daemon container is started with (`--config PATH`), and its text taken
/// from the ConfigMap volume mounted there.
pub fn container_config(
    objects: &[Object],
    w: &Workload<'_>,
    c: &Container,
) -> anyhow::Result<(String, String)> {
    let args = c.args.clone().unwrap_or_default();
    let pos = args
        .iter()
        .position(|a| a == "--config")
        .with_context(|| format!("{} container {}: no --config argument", w.what(), c.name))?;
    let path = args.get(pos + 1).with_context(|| {
        format!(
            "{} container {}: --config without a value",
            w.what(),
            c.name
        )
    })?;
    let (dir, file) = path
        .rsplit_once('/')
        .with_context(|| format!("{}: --config {path} is not an absolute path", w.what()))?;
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .with_context(|| {
            format!(
                "{}: nothing is mounted at {dir} for --config {path}",
                w.what()
            )
        })?;
    let volume = w
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .with_context(|| format!("{}: no volume {}", w.what(), mount.name))?;
    let cm = volume
        .config_map
        .as_ref()
        .with_context(|| format!("{}: volume {} is not a ConfigMap", w.what(), volume.name))?;
    let data = config_map(objects, &cm.name)
        .with_context(|| format!("{}: ConfigMap {} is not in deploy/", w.what(), cm.name))?;
    let text = data
        .get(file)
        .with_context(|| format!("{}: ConfigMap {} has no key {file}", w.what(), cm.name))?;
    Ok((path.clone(), text.clone()))
}
