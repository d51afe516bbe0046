//! Learns each application's `spark.authenticate` secret from its executor pods on this node.
//!
//! Spark on Kubernetes hands executors the secret in the pod spec: the `_SPARK_AUTH_SECRET`
//! environment variable (a plain value, or with `valueFrom.secretKeyRef` a Kubernetes Secret),
//! or with `spark.authenticate.secret.executor.file` a file the user mounts from a Secret
//! (Spark then uses the base64 of its bytes). Reading a Secret needs a `get secrets` grant and
//! `--auth-secrets-from-k8s-secrets`.
//!
//! The service watches executor pods (`spark-role=executor`), only those scheduled on its own
//! node (`spec.nodeName`, from `--node-name`), and records the secret under the pod's app id
//! (`spark-app-selector`). The first secret learned for an application is kept: a later pod
//! that claims the same app id with another secret is refused and reported, so nobody who can
//! start a pod can swap in a secret of their own for another application's. Secrets are
//! forgotten when the application is removed (its driver pod ends, or `--app-ttl`), not when an
//! executor goes: the application's shuffle files outlive its executors, and so must its right
//! to read them.

use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio_util::sync::CancellationToken;

use crate::auth::secrets::{pod_secret, PodSecret};
use crate::service::Service;

pub const EXECUTOR_SELECTOR: &str = "spark-role=executor";

/// What the watch may do.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Only pods on this node (`spec.nodeName`); `None` watches every executor pod.
    pub node_name: Option<String>,
    pub namespaces: Vec<String>,
    /// Read Secrets that `_SPARK_AUTH_SECRET` refers to.
    pub read_secrets: bool,
}

/// The field selector that keeps the watch to this node's pods.
pub fn field_selector(node: Option<&str>) -> Option<String> {
    node.map(|n| format!("spec.nodeName={n}"))
}

/// The bytes of `key` in Secret `namespace/name`; `None` if the Secret lacks that key.
async fn secret_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("cannot read Secret {namespace}/{name}: {e}"))?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Some(v.0.clone()));
    }
    Ok(secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.clone().into_bytes()))
}

fn needs_opt_in(namespace: &str, name: &str) -> String {
    format!(
        "the secret is in Secret {namespace}/{name}; reading it needs --auth-secrets-from-k8s-secrets (and a get-secrets grant)"
    )
}

async fn resolve(
    client: &kube::Client,
    namespace: &str,
    s: PodSecret,
    read_secrets: bool,
) -> Result<Option<String>, String> {
    match s {
        PodSecret::Value(v) => Ok(Some(v)),
        PodSecret::SecretKey { name, key } => {
            if !read_secrets {
                return Err(needs_opt_in(namespace, &name));
            }
            match secret_key(client, namespace, &name, &key).await? {
                Some(v) => String::from_utf8(v)
                    .map(Some)
                    .map_err(|_| format!("Secret {namespace}/{name} key {key} is not UTF-8")),
                None => Err(format!("Secret {namespace}/{name} has no key {key}")),
            }
        }
        PodSecret::File { keys, path } => {
            if !read_secrets {
                let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
                return Err(needs_opt_in(namespace, &names.join(", ")));
            }
            for (name, key) in &keys {
                if let Some(bytes) = secret_key(client, namespace, name, key).await? {
                    if bytes.is_empty() {
                        return Err(format!(
                            "secret file {path} (Secret {namespace}/{name} key {key}) is empty"
                        ));
                    }
                    // What Spark's SecurityManager makes of a secret file.
                    return Ok(Some(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    ));
                }
            }
            Err(format!(
                "secret file {path}: no key found in Secret(s) {}",
                keys.iter()
                    .map(|(n, k)| format!("{namespace}/{n} key {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        PodSecret::Unmapped(why) => Err(why),
    }
}

/// Watches executor pods and records their applications' secrets until `token` is cancelled.
pub async fn run(
    service: Arc<Service>,
    client: kube::Client,
    cfg: WatchConfig,
    token: CancellationToken,
) {
    let mut config = watcher::Config::default().labels(EXECUTOR_SELECTOR);
    if let Some(f) = field_selector(cfg.node_name.as_deref()) {
        config = config.fields(&f);
    }
    let mut events = sidecars_common::kube::watch_pods(&client, &cfg.namespaces, config)
        .default_backoff()
        .boxed();
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = token.cancelled() => return,
        };
        let Some(ev) = ev else { return };
        let pod = match ev {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => pod,
            Ok(_) => continue,
            Err(e) => {
                service.metrics.error("kube_watch");
                tracing::warn!(error = %e, "executor pod watch failed; retrying");
                continue;
            }
        };
        let Some((app, s)) = pod_secret(&pod) else {
            continue;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        match resolve(&client, ns, s, cfg.read_secrets).await {
            Ok(Some(secret)) => service.learn_secret(&app, &secret),
            Ok(None) => {}
            Err(e) => {
                service.metrics.error("secret_lookup");
                tracing::warn!(app_id = app, pod = pod.metadata.name.as_deref().unwrap_or(""), error = %e, "cannot learn the application's secret");
            }
        }
    }
}
