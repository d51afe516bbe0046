//! A pod's volumes, made ready on the machine before its containers start; each container then
//! bind-mounts them at its `mountPath`s (see [`crate::init`]).
//!
//! - `emptyDir`: a directory of the pod (mode 0777, as the kubelet makes it); `medium: Memory`
//!   is a directory too.
//! - `hostPath`: under the node's own root, `<node root>/host/<path>`, so two nodes on one
//!   machine do not share host directories (docs/local-kubernetes.md); `type` is checked as
//!   the kubelet does, and a failed check keeps the pod from starting with a `FailedMount` event.
//! - `configMap`, `secret`, `downwardAPI`, `projected` (including `serviceAccountToken`, from the
//!   TokenRequest API bound to the pod): files written once when the pod starts.
//! - `persistentVolumeClaim`: the bound PersistentVolume's `hostPath` or `local` path, as a
//!   path of the machine (volumes are shared by all nodes, like network storage).
//!
//! With `securityContext.fsGroup`, writable volumes belong to that group (setgid directories),
//! as with `fsGroupChangePolicy: Always`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::env::{self, PodFacts};

/// Error that keeps the pod waiting (the kubelet retries), reported as a `FailedMount` event.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct MountError(pub anyhow::Error);

/// The machine path of `path` on a node whose host directories live under `host_root`.
pub fn host_path(host_root: &Path, path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        bail!("hostPath {path:?} is not absolute");
    }
    let mut out = host_root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            // a path that climbs out of the node's root would reach the machine's own files
            _ => bail!("hostPath {path:?} must not contain '..' or '.'"),
        }
    }
    Ok(out)
}

/// Makes every volume of `pod` ready under `pod_dir/volumes`, returning name -> machine path.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    facts: &PodFacts<'_>,
    pod_dir: &Path,
    host_root: &Path,
) -> Result<BTreeMap<String, PathBuf>, MountError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| MountError(anyhow!("pod has no spec")))?;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    let mut out = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let dir = pod_dir.join("volumes").join(&v.name);
        let path = prepare_one(client, pod, facts, &ns, v, &dir, host_root)
            .await
            .with_context(|| format!("volume {:?}", v.name))
            .map_err(MountError)?;
        if let (Some(gid), true) = (fs_group, path.1) {
            apply_fs_group(&path.0, gid as u32)
                .with_context(|| format!("volume {:?}: fsGroup", v.name))
                .map_err(MountError)?;
        }
        out.insert(v.name.clone(), path.0);
    }
    Ok(out)
}

/// Returns the path and whether fsGroup applies to it.
async fn prepare_one(
    client: &Client,
    pod: &Pod,
    facts: &PodFacts<'_>,
    ns: &str,
    v: &Volume,
    dir: &Path,
    host_root: &Path,
) -> Result<(PathBuf, bool)> {
    if v.empty_dir.is_some() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
        return Ok((dir.to_path_buf(), true));
    }
    if let Some(h) = &v.host_path {
        let path = host_path(host_root, &h.path)?;
        check_host_path(&path, &h.path, h.type_.as_deref().unwrap_or(""))?;
        return Ok((path, false));
    }
    if let Some(c) = &v.config_map {
        let cm = get::<ConfigMap>(client, ns, &c.name).await?;
        fresh_dir(dir)?;
        match cm {
            Some(cm) => write_keys(
                dir,
                &config_map_data(&cm),
                c.items.as_deref(),
                c.default_mode,
            )?,
            None if c.optional.unwrap_or(false) => {}
            None => bail!("configmap {:?} not found", c.name),
        }
        return Ok((dir.to_path_buf(), true));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let secret = get::<Secret>(client, ns, &name).await?;
        fresh_dir(dir)?;
        match secret {
            Some(secret) => write_keys(
                dir,
                &secret_data(&secret),
                s.items.as_deref(),
                s.default_mode,
            )?,
            None if s.optional.unwrap_or(false) => {}
            None => bail!("secret {name:?} not found"),
        }
        return Ok((dir.to_path_buf(), true));
    }
    if let Some(d) = &v.downward_api {
        fresh_dir(dir)?;
        write_downward(
            dir,
            pod,
            facts,
            &d.items.clone().unwrap_or_default(),
            d.default_mode,
        )?;
        return Ok((dir.to_path_buf(), true));
    }
    if let Some(p) = &v.projected {
        fresh_dir(dir)?;
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                match get::<ConfigMap>(client, ns, &c.name).await? {
                    Some(cm) => write_keys(
                        dir,
                        &config_map_data(&cm),
                        c.items.as_deref(),
                        p.default_mode,
                    )?,
                    None if c.optional.unwrap_or(false) => {}
                    None => bail!("configmap {:?} not found", c.name),
                }
            }
            if let Some(s) = &src.secret {
                match get::<Secret>(client, ns, &s.name).await? {
                    Some(sec) => {
                        write_keys(dir, &secret_data(&sec), s.items.as_deref(), p.default_mode)?
                    }
                    None if s.optional.unwrap_or(false) => {}
                    None => bail!("secret {:?} not found", s.name),
                }
            }
            if let Some(d) = &src.downward_api {
                write_downward(
                    dir,
                    pod,
                    facts,
                    &d.items.clone().unwrap_or_default(),
                    p.default_mode,
                )?;
            }
            if let Some(t) = &src.service_account_token {
                let token =
                    request_token(client, pod, t.audience.clone(), t.expiration_seconds).await?;
                write_file(
                    dir,
                    &t.path,
                    token.as_bytes(),
                    p.default_mode.unwrap_or(0o644) as u32,
                )?;
            }
        }
        return Ok((dir.to_path_buf(), true));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let pvc = get::<PersistentVolumeClaim>(client, ns, &c.claim_name)
            .await?
            .ok_or_else(|| anyhow!("persistentvolumeclaim {:?} not found", c.claim_name))?;
        let pv_name = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("persistentvolumeclaim {:?} is not bound yet", c.claim_name))?;
        let pv: Api<PersistentVolume> = Api::all(client.clone());
        let pv = pv
            .get(&pv_name)
            .await
            .with_context(|| format!("reading PersistentVolume {pv_name}"))?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| anyhow!("PersistentVolume {pv_name} is neither hostPath nor local"))?;
        let path = PathBuf::from(path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        return Ok((path, true));
    }
    bail!("unsupported volume type (this kubelet supports emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim)")
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.with_context(|| {
        format!(
            "reading {} {ns}/{name}",
            K::kind(&K::DynamicType::default())
        )
    })
}

fn check_host_path(path: &Path, shown: &str, type_: &str) -> Result<()> {
    let meta = fs::metadata(path).ok();
    let fail = |what: &str| Err(anyhow!("hostPath type check failed: {shown} is not {what}"));
    match type_ {
        "" | "DirectoryOrCreate" => {
            if meta.is_none() {
                fs::create_dir_all(path).with_context(|| format!("creating {shown}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
            } else if type_ == "DirectoryOrCreate" && !meta.is_some_and(|m| m.is_dir()) {
                return fail("a directory");
            }
        }
        "Directory" => {
            if !meta.is_some_and(|m| m.is_dir()) {
                return fail("a directory");
            }
        }
        "FileOrCreate" => {
            if meta.is_none() {
                if let Some(p) = path.parent() {
                    fs::create_dir_all(p)?;
                }
                fs::write(path, b"")?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
            } else if !meta.is_some_and(|m| m.is_file()) {
                return fail("a file");
            }
        }
        "File" => {
            if !meta.is_some_and(|m| m.is_file()) {
                return fail("a file");
            }
        }
        "Socket" | "CharDevice" | "BlockDevice" => {
            use std::os::unix::fs::FileTypeExt;
            let ok = meta.is_some_and(|m| {
                let t = m.file_type();
                match type_ {
                    "Socket" => t.is_socket(),
                    "CharDevice" => t.is_char_device(),
                    _ => t.is_block_device(),
                }
            });
            if !ok {
                return fail(&format!("a {type_}"));
            }
        }
        other => bail!("unknown hostPath type {other:?}"),
    }
    Ok(())
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    out.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    out
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<()> {
    let default_mode = default_mode.unwrap_or(0o644) as u32;
    match items {
        Some(items) => {
            for item in items {
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| anyhow!("key {:?} not found", item.key))?;
                write_file(
                    dir,
                    &item.path,
                    value,
                    item.mode.map_or(default_mode, |m| m as u32),
                )?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, default_mode)?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    dir: &Path,
    pod: &Pod,
    facts: &PodFacts<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<()> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field(&f.field_path, facts)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let c = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .ok_or_else(|| anyhow!("downwardAPI {}: no container {name:?}", item.path))?;
            env::resource(c, &r.resource, r.divisor.as_ref(), facts)?
        } else {
            bail!(
                "downwardAPI {}: neither fieldRef nor resourceFieldRef",
                item.path
            );
        };
        let mode = item.mode.or(default_mode).unwrap_or(0o644) as u32;
        write_file(dir, &item.path, value.as_bytes(), mode)?;
    }
    Ok(())
}

/// Writes `rel` (a relative path without `..`) under `dir`.
fn write_file(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("volume file path {rel:?} must be relative and must not contain '..'");
    }
    let path = dir.join(p);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let req = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audience.into_iter().collect::<Vec<_>>(),
            "expirationSeconds": expiration.unwrap_or(3600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
            },
        },
    });
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for service account {ns}/{sa}"))?;
    resp.status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow!("the TokenRequest for {ns}/{sa} came back without a token"))
}

/// Group ownership and setgid directories for `gid`, as the kubelet does for fsGroup.
fn apply_fs_group(path: &Path, gid: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    if meta.is_dir() {
        let mode = meta.permissions().mode() | 0o2070;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        for entry in fs::read_dir(path)? {
            apply_fs_group(&entry?.path(), gid)?;
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode() | 0o040;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Where a container's volume mount comes from on the machine (with its subPath).
pub fn mount_source(volume: &Path, sub_path: Option<&str>) -> Result<PathBuf> {
    let Some(sub) = sub_path.filter(|s| !s.is_empty()) else {
        return Ok(volume.to_path_buf());
    };
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("subPath {sub:?} must be relative and must not contain '..'");
    }
    let path = volume.join(p);
    // symlinks could lead out of the volume
    let real = fs::canonicalize(volume)?;
    if path.exists() {
        if !fs::canonicalize(&path)?.starts_with(&real) {
            bail!("subPath {sub:?} leads out of its volume");
        }
    } else {
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_stay_under_the_node_root() {
        let root = Path::new("/state/node-1/host");
        assert_eq!(
            host_path(root, "/var/spark/local").unwrap(),
            Path::new("/state/node-1/host/var/spark/local")
        );
        assert!(host_path(root, "/var/../../etc").is_err());
        assert!(host_path(root, "relative").is_err());
    }

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        let e = check_host_path(&p, "/a/b", "Directory")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "hostPath type check failed: /a/b is not a directory");
        check_host_path(&p, "/a/b", "DirectoryOrCreate").unwrap();
        assert!(p.is_dir());
        check_host_path(&p, "/a/b", "Directory").unwrap();
        assert!(check_host_path(&p, "/a/b", "File").is_err());
    }

    #[test]
    fn keys_and_sub_paths() {
        let d = tempfile::tempdir().unwrap();
        let data: BTreeMap<String, Vec<u8>> =
            [("spark.properties".to_string(), b"a=b".to_vec())].into();
        write_keys(d.path(), &data, None, None).unwrap();
        assert_eq!(fs::read(d.path().join("spark.properties")).unwrap(), b"a=b");
        let items = [KeyToPath {
            key: "spark.properties".into(),
            path: "../x".into(),
            ..Default::default()
        }];
        assert!(write_keys(d.path(), &data, Some(&items), None).is_err());
        assert!(mount_source(d.path(), Some("../up")).is_err());
        assert_eq!(
            mount_source(d.path(), Some("sub")).unwrap(),
            d.path().join("sub")
        );
        std::os::unix::fs::symlink("/etc", d.path().join("esc")).unwrap();
        assert!(mount_source(d.path(), Some("esc")).is_err());
    }
}
