//! What an identity may write: a Kubernetes identity only the event log of an application
//! whose driver pod runs under it. Spark labels the driver pod `spark-role=driver` and
//! `spark-app-selector=<appId>`, and names the log `<appId>[_<attemptId>]`; so the log
//! `spark-1a2b` may come from the pod the token was bound to if that pod is the driver of
//! `spark-1a2b` and runs as the token's service account (for a legacy token without a pod,
//! from any such driver pod in the token's namespace).
//!
//! Labels are anyone's to set, so a driver pod alone proves little: before a log gets its
//! first owner (see [`super::owners`]), every driver pod that claims the application id, in
//! every namespace the collector watches, must be the requester's. An id two pods claim is
//! refused to both (the log is lost rather than given to an impostor); one already owned
//! stays with its owner.
//!
//! Shared tokens and the directory watcher are trusted with any log name (ownership still
//! applies). Verdicts are cached briefly, so an agent's steady stream of appends costs the
//! API server a request every half minute at most.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use super::auth::{AuthError, Identity};
use super::verdicts::Verdicts;
use crate::logdir::names;

const GOOD_FOR: Duration = Duration::from_secs(30);
const BAD_FOR: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 4096;

/// Checks identities against driver pods.
pub struct DriverCheck {
    client: Option<Client>,
    /// The namespaces the collector serves (empty: all).
    namespaces: Vec<String>,
    cache: Verdicts<(Identity, String, bool), Result<(), AuthError>>,
}

fn label<'a>(p: &'a Pod, k: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref()?.get(k).map(String::as_str)
}

fn service_account(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default")
}

fn pod_name(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn api_error(e: kube::Error) -> AuthError {
    AuthError::Unavailable(format!("reading driver pods: {e}"))
}

impl DriverCheck {
    /// `client`: `None` outside Kubernetes, where Kubernetes identities cannot occur.
    pub fn new(client: Option<Client>, namespaces: Vec<String>) -> Self {
        DriverCheck {
            client,
            namespaces,
            cache: Verdicts::new(CACHE_MAX),
        }
    }

    /// Whether `who` may write the log `log`; `owned`: `who` already owns it (so the
    /// check for other pods claiming the id is skipped).
    pub async fn may_write(&self, who: &Identity, log: &str, owned: bool) -> Result<(), AuthError> {
        if !matches!(who, Identity::Kubernetes { .. }) {
            return Ok(());
        }
        let key = (who.clone(), log.to_string(), owned);
        if let Some(v) = self.cache.get(&key) {
            return v;
        }
        let verdict = self.check(who, log, owned).await;
        let ttl = match &verdict {
            Ok(()) => GOOD_FOR,
            Err(AuthError::Unavailable(_)) => return verdict,
            Err(_) => BAD_FOR,
        };
        self.cache.put(key, verdict.clone(), ttl);
        verdict
    }

    async fn check(&self, who: &Identity, log: &str, owned: bool) -> Result<(), AuthError> {
        let Identity::Kubernetes {
            namespace,
            service_account: sa,
            pod,
        } = who
        else {
            return Ok(());
        };
        let client = self.client.clone().ok_or_else(|| {
            AuthError::Forbidden(
                "a Kubernetes token, but the collector runs without Kubernetes".into(),
            )
        })?;
        if !self.namespaces.is_empty() && !self.namespaces.contains(namespace) {
            return Err(AuthError::Forbidden(format!(
                "namespace {namespace} is not one the collector serves"
            )));
        }
        let ids = names::app_ids_of(log);
        let is_driver_of = |p: &Pod| -> Option<String> {
            let app = label(p, "spark-app-selector")?;
            (label(p, "spark-role") == Some("driver")
                && ids.contains(&app)
                && service_account(p) == sa)
                .then(|| app.to_string())
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let (app, mine): (String, Vec<String>) = match pod {
            Some((name, uid)) => {
                let p = pods
                    .get_opt(name)
                    .await
                    .map_err(api_error)?
                    .ok_or_else(|| {
                        AuthError::Forbidden(format!("pod {namespace}/{name} is gone"))
                    })?;
                if p.metadata.uid.as_deref() != Some(uid.as_str()) {
                    return Err(AuthError::Forbidden(format!(
                        "pod {namespace}/{name} is not the one the token was issued for"
                    )));
                }
                let app = is_driver_of(&p).ok_or_else(|| {
                    AuthError::Forbidden(format!(
                        "pod {namespace}/{name} is not the driver of {log} running as {sa}"
                    ))
                })?;
                (app, vec![uid.clone()])
            }
            None => {
                let mut found = None;
                for id in &ids {
                    let lp = ListParams::default()
                        .labels(&format!("spark-role=driver,spark-app-selector={id}"));
                    let list = pods.list(&lp).await.map_err(api_error)?;
                    let uids: Vec<String> = list
                        .items
                        .iter()
                        .filter(|p| is_driver_of(p).is_some())
                        .filter_map(|p| p.metadata.uid.clone())
                        .collect();
                    if !uids.is_empty() {
                        found = Some((id.to_string(), uids));
                        break;
                    }
                }
                found.ok_or_else(|| {
                    AuthError::Forbidden(format!("no driver pod of {log} runs as {namespace}/{sa}"))
                })?
            }
        };
        if owned {
            return Ok(());
        }
        // every pod claiming the id must be one of the requester's
        let lp =
            ListParams::default().labels(&format!("spark-role=driver,spark-app-selector={app}"));
        for api in sidecars_common::kube::pod_apis(&client, &self.namespaces) {
            let list = api.list(&lp).await.map_err(api_error)?;
            let others: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.namespace.as_deref() != Some(namespace.as_str())
                        || !p.metadata.uid.as_ref().is_some_and(|u| mine.contains(u))
                })
                .map(pod_name)
                .collect();
            if !others.is_empty() {
                tracing::warn!(app = %app, requester = %who, others = ?others, "more than one driver pod claims this application id; refusing its event log to all of them");
                return Err(AuthError::Forbidden(format!(
                    "application id {app} is claimed by more than one driver pod"
                )));
            }
        }
        Ok(())
    }
}
