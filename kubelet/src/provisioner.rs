//! A dynamic provisioner for the local cluster's default StorageClass (`sidecars-local`,
//! provisioner `sidecars.local/hostpath`): each pending claim of that class gets a
//! PersistentVolume backed by a new directory of the machine, pre-bound to the claim (the
//! controller manager's PV controller completes the binding); a released volume is deleted
//! with its directory (reclaim policy Delete). Paths of these volumes are machine paths, not
//! per-node ones, so a pod sees its data on any node, as with network storage.

use std::path::PathBuf;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;

/// Annotation on the volumes this provisioner made.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

#[derive(clap::Args)]
pub struct Args {
    /// Kubeconfig with rights on PersistentVolumes and claims.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Directory under which each volume gets a directory.
    #[arg(long)]
    root: PathBuf,
    /// The StorageClass provisioner name served.
    #[arg(long, default_value = "sidecars.local/hostpath")]
    provisioner: String,
}

pub async fn run(args: Args) -> Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    std::fs::create_dir_all(&args.root)?;
    let claims = claims(client.clone(), &args);
    let released = released(client.clone(), &args);
    tokio::try_join!(claims, released)?;
    Ok(())
}

async fn our_classes(client: &Client, provisioner: &str) -> Result<Vec<String>> {
    let api: Api<StorageClass> = Api::all(client.clone());
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.provisioner == provisioner)
        .filter_map(|c| c.metadata.name)
        .collect())
}

async fn claims(client: Client, args: &Args) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects());
    while let Some(pvc) = stream.try_next().await? {
        let spec = pvc.spec.clone().unwrap_or_default();
        if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let Some(class) = spec.storage_class_name.clone() else {
            continue;
        };
        if !our_classes(&client, &args.provisioner)
            .await?
            .contains(&class)
        {
            continue;
        }
        if let Err(e) = provision(&client, args, &pvc, &class).await {
            tracing::warn!(error = %format!("{e:#}"), claim = ?pvc.metadata.name, "provisioning");
        }
    }
    Ok(())
}

async fn provision(
    client: &Client,
    args: &Args,
    pvc: &PersistentVolumeClaim,
    class: &str,
) -> Result<()> {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let dir = args.root.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map(|q| q.0)
        .unwrap_or_else(|| "1Gi".into());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: args.provisioner}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": class,
            "hostPath": {"path": dir.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": pvc.metadata.namespace, "name": pvc.metadata.name, "uid": uid,
            },
        },
    }))?;
    let api: Api<PersistentVolume> = Api::all(client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => tracing::info!(volume = %name, claim = ?pvc.metadata.name, "provisioned"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn released(client: Client, args: &Args) -> Result<()> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects());
    while let Some(pv) = stream.try_next().await? {
        let ours = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .is_some_and(|p| *p == args.provisioner);
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if !ours || phase != Some("Released") {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        if let Some(path) = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| PathBuf::from(&h.path))
        {
            // only directories this provisioner made
            if path.starts_with(&args.root) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => tracing::info!(volume = %name, "deleted"),
            Err(e) => tracing::warn!(error = %e, volume = %name, "deleting"),
        }
    }
    Ok(())
}
