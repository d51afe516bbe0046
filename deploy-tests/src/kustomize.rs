//! The kustomization files, read strictly (an unknown key is an error), and the rendering of
//! `deploy/` with the kustomize that kubectl embeds, which is what `kubectl apply -k` runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The subset of kustomize's Kustomization (and Component) that deploy/ uses. Any other key
/// fails the parse, so a misspelt key cannot be silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Vec<LabelSet>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub patches: Vec<Patch>,
    #[serde(default)]
    pub config_map_generator: Vec<Generator>,
    #[serde(default)]
    pub images: Vec<Image>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSet {
    pub pairs: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub include_selectors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    pub name: String,
    pub files: Vec<String>,
}

impl Generator {
    /// (key in the ConfigMap, file path relative to the kustomization).
    pub fn entries(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|f| match f.split_once('=') {
                Some((k, p)) => (k.to_string(), p.to_string()),
                None => {
                    let key = Path::new(f)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| f.clone());
                    (key, f.clone())
                }
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    pub name: String,
    #[serde(default)]
    pub new_name: Option<String>,
    #[serde(default)]
    pub new_tag: Option<String>,
}

/// Reads `dir/kustomization.yaml` strictly.
pub fn read(dir: &Path) -> anyhow::Result<Kustomization> {
    let path = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: not a valid kustomization", path.display()))
}

/// Every file a kustomization (and its components, recursively) refers to, with what it is.
#[derive(Debug, Default)]
pub struct Files {
    pub resources: Vec<PathBuf>,
    pub patches: Vec<PathBuf>,
    pub generated_from: Vec<PathBuf>,
    pub kustomizations: Vec<PathBuf>,
}

pub fn files(dir: &Path) -> anyhow::Result<Files> {
    let mut out = Files::default();
    collect(dir, &mut out)?;
    Ok(out)
}

fn collect(dir: &Path, out: &mut Files) -> anyhow::Result<()> {
    let k = read(dir)?;
    out.kustomizations.push(dir.join("kustomization.yaml"));
    for r in &k.resources {
        let p = dir.join(r);
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.resources.push(p);
        }
    }
    for c in &k.components {
        let p = dir.join(c);
        let ck = read(&p)?;
        if ck.kind != "Component" {
            bail!(
                "{}: listed as a component but its kind is {}",
                p.display(),
                ck.kind
            );
        }
        collect(&p, out)?;
    }
    for p in &k.patches {
        out.patches.push(dir.join(&p.path));
    }
    for g in &k.config_map_generator {
        for (_, f) in g.entries() {
            out.generated_from.push(dir.join(f));
        }
    }
    Ok(())
}

/// `kubectl kustomize dir`: the objects `kubectl apply -k dir` would send, as YAML.
pub fn render(dir: &Path) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .context(
            "cannot run `kubectl kustomize`: these tests need kubectl (its embedded kustomize renders deploy/); \
             install it (Debian/Ubuntu: the kubectl package) and retry",
        )?;
    if !out.status.success() {
        bail!(
            "`kubectl kustomize {}` failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("kubectl kustomize printed non-UTF-8")
}
