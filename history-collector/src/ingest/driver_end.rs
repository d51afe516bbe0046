//! Why a driver pod ended, as the pod watch sees it: OOM-killed, evicted, its node lost or
//! shut down, preempted, deleted while running, or its container's exit code. An event log
//! cannot say this (the driver was killed before it could write it), so the UI shows it on
//! the page of an application whose log is incomplete. Kept in the store at
//! `pods/<appId>/driver.json`, so it outlives the pod and the collector; the REST API does
//! not show it (it stays what Spark's History Server answers).
//!
//! Labels are anyone's to set, so a pod that merely calls itself an application's driver
//! does not get to explain that application's end: when an agent of a Kubernetes pod owns
//! the application's log ([`super::owners`]), only that pod's end is recorded and shown.

use bytes::Bytes;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use sidecars_common::objstore::{self, StoreError};
use tokio::io::AsyncReadExt;

use super::auth::Identity;
use super::layout::{check_component, LayoutError, LogStore};
use super::owners::Owners;

/// Container name Spark gives the driver.
const DRIVER_CONTAINER: &str = "spark-kubernetes-driver";

/// How a driver pod ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriverEnd {
    /// `OOMKilled`, `Evicted`, `NodeLost`, `NodeShutdown`, `Preempted`, `Deleted`,
    /// `Failed` (exited non-zero) or `Completed` (exited 0).
    pub reason: String,
    /// What Kubernetes said about it, for people.
    pub message: String,
    /// `<namespace>/<name>`.
    pub pod: String,
    /// The pod's uid (absent in records written before it was kept).
    #[serde(default)]
    pub pod_uid: Option<String>,
    pub exit_code: Option<i32>,
    /// When the container finished, if known (RFC 3339).
    pub finished_at: Option<String>,
}

/// Key of the record of `app`'s driver.
pub fn key(app: &str) -> String {
    format!("pods/{app}/driver.json")
}

fn driver_terminated(pod: &Pod) -> Option<ContainerStateTerminated> {
    let status = pod.status.as_ref()?;
    let statuses = status.container_statuses.as_ref()?;
    let first = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.as_str());
    let c = statuses
        .iter()
        .find(|c| c.name == DRIVER_CONTAINER)
        .or_else(|| statuses.iter().find(|c| Some(c.name.as_str()) == first))?;
    c.state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.clone()))
}

/// How the driver pod `pod` ended, if it did; `deleted`: the watch saw it deleted.
pub fn classify(pod: &Pod, deleted: bool) -> Option<DriverEnd> {
    let md = &pod.metadata;
    let name = format!(
        "{}/{}",
        md.namespace.as_deref().unwrap_or(""),
        md.name.as_deref().unwrap_or("")
    );
    let status = pod.status.as_ref();
    let term = driver_terminated(pod);
    let exit_code = term.as_ref().map(|t| t.exit_code);
    let finished_at = term
        .as_ref()
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0.to_string());
    let end = |reason: &str, message: String| {
        Some(DriverEnd {
            reason: reason.into(),
            message,
            pod: name.clone(),
            pod_uid: md.uid.clone(),
            exit_code,
            finished_at: finished_at.clone(),
        })
    };
    if let Some(t) = &term {
        if t.reason.as_deref() == Some("OOMKilled") {
            return end(
                "OOMKilled",
                format!(
                    "the driver container ran out of memory and was killed (exit code {})",
                    t.exit_code
                ),
            );
        }
    }
    let pod_reason = status.and_then(|s| s.reason.as_deref()).unwrap_or("");
    let pod_message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    match pod_reason {
        "Evicted" => return end("Evicted", pod_message),
        "NodeLost" => return end("NodeLost", pod_message),
        "Shutdown" | "NodeShutdown" | "Terminated" => return end("NodeShutdown", pod_message),
        _ => {}
    }
    // Kubernetes 1.26+ says why it is taking a pod away in a DisruptionTarget condition
    let disruption = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    });
    if let Some(c) = disruption {
        let msg = c.message.clone().unwrap_or_default();
        let reason = match c.reason.as_deref().unwrap_or("") {
            "PreemptionByScheduler" => "Preempted",
            "DeletionByTaintManager" | "DeletionByPodGC" => "NodeLost",
            "TerminationByKubelet" => "NodeShutdown",
            _ => "Evicted",
        };
        return end(reason, msg);
    }
    let being_deleted = deleted || md.deletion_timestamp.is_some();
    // a container stopped by the deletion itself ends on SIGTERM (143) or SIGKILL (137)
    let stopped_by_deletion = term
        .as_ref()
        .is_none_or(|t| t.exit_code == 143 || t.exit_code == 137);
    if being_deleted && stopped_by_deletion {
        return end(
            "Deleted",
            "the driver pod was deleted while the driver was running".into(),
        );
    }
    match &term {
        Some(t) if t.exit_code != 0 => end(
            "Failed",
            format!(
                "the driver container exited with code {}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
        Some(_) => end(
            "Completed",
            "the driver container exited with code 0".into(),
        ),
        None if status.and_then(|s| s.phase.as_deref()) == Some("Failed") => {
            end("Failed", pod_message)
        }
        None => None,
    }
}

/// Whether `end` may explain the end of an application whose log `owner` owns: the pod an
/// owning agent's token was bound to (by uid), a pod in an owning service account's
/// namespace; for logs of the directory watcher or a shared token, any driver pod.
pub fn belongs(end: &DriverEnd, owner: Option<&Identity>) -> bool {
    match owner {
        Some(Identity::Kubernetes {
            pod: Some((_, uid)),
            ..
        }) => end.pod_uid.as_deref() == Some(uid.as_str()),
        Some(Identity::Kubernetes { namespace, .. }) => end
            .pod
            .split_once('/')
            .is_some_and(|(ns, _)| ns == namespace),
        _ => true,
    }
}

/// The owner of `app`'s log, if it has one that could be read.
async fn owner(store: &LogStore, app: &str) -> Option<Identity> {
    match Owners::new(store.clone()).owner(app).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(app = %app, error = %e, "cannot read the owner of the event log");
            None
        }
    }
}

/// Records how `app`'s driver ended, unless the pod is not the one that owns `app`'s log
/// (then false, and nothing is written).
pub async fn save(store: &LogStore, app: &str, end: &DriverEnd) -> Result<bool, LayoutError> {
    check_component(app)?;
    if !belongs(end, owner(store, app).await.as_ref()) {
        return Ok(false);
    }
    let json = serde_json::to_vec(end).map_err(|_| LayoutError::BadName {
        name: app.to_string(),
        reason: "driver end cannot be recorded",
    })?;
    objstore::put_bytes(store.store().as_ref(), &key(app), Bytes::from(json)).await?;
    Ok(true)
}

/// How `app`'s driver ended, if it was recorded (by the pod that owns its log, if any).
pub async fn load(store: &LogStore, app: &str) -> Result<Option<DriverEnd>, LayoutError> {
    check_component(app)?;
    let k = key(app);
    let got = match store.store().get(&k, None).await {
        Ok(g) => g,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::new();
    got.body
        .take(64 << 10)
        .read_to_end(&mut buf)
        .await
        .map_err(|source| StoreError::Io {
            url: store.store().object_url(&k),
            source,
        })?;
    let Some(end) = serde_json::from_slice::<DriverEnd>(&buf).ok() else {
        return Ok(None);
    };
    Ok(belongs(&end, owner(store, app).await.as_ref()).then_some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value, deleting: bool) -> Pod {
        let mut md = serde_json::json!({"name": "drv", "namespace": "apps", "uid": "uid-drv"});
        if deleting {
            md["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(serde_json::json!({
            "metadata": md,
            "spec": {"containers": [{"name": "spark-kubernetes-driver"}, {"name": "sidecar"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn terminated(reason: &str, code: i32) -> serde_json::Value {
        serde_json::json!({"phase": "Failed", "containerStatuses": [
            {"name": "sidecar", "ready": true, "restartCount": 0, "image": "", "imageID": "",
             "state": {"running": {}}},
            {"name": "spark-kubernetes-driver", "ready": false, "restartCount": 0, "image": "", "imageID": "",
             "state": {"terminated": {"reason": reason, "exitCode": code,
                                      "finishedAt": "2026-01-01T00:00:05Z"}}}
        ]})
    }

    #[test]
    fn why_drivers_end() {
        let running = serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "spark-kubernetes-driver", "ready": true, "restartCount": 0, "image": "", "imageID": "",
             "state": {"running": {}}}]});
        assert_eq!(classify(&pod(running.clone(), false), false), None);
        let r = |p: &Pod, deleted| classify(p, deleted).map(|e| e.reason);
        assert_eq!(
            r(&pod(running.clone(), true), false).as_deref(),
            Some("Deleted")
        );
        assert_eq!(r(&pod(running, false), true).as_deref(), Some("Deleted"));
        let oom = classify(&pod(terminated("OOMKilled", 137), false), false).unwrap();
        assert_eq!(
            (oom.reason.as_str(), oom.exit_code),
            ("OOMKilled", Some(137))
        );
        assert_eq!(oom.pod, "apps/drv");
        assert!(oom.finished_at.is_some());
        assert_eq!(
            r(&pod(terminated("Error", 1), false), false).as_deref(),
            Some("Failed")
        );
        assert_eq!(
            r(&pod(terminated("Completed", 0), true), true).as_deref(),
            Some("Completed")
        );
        // failed first, deleted afterwards: it failed
        assert_eq!(
            r(&pod(terminated("Error", 1), true), true).as_deref(),
            Some("Failed")
        );
        assert_eq!(
            r(&pod(terminated("Error", 143), true), true).as_deref(),
            Some("Deleted")
        );
        let evicted = serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."});
        let e = classify(&pod(evicted, false), false).unwrap();
        assert_eq!(e.reason, "Evicted");
        assert!(e.message.contains("low on resource"));
        let lost = serde_json::json!({"phase": "Running", "reason": "NodeLost",
            "message": "Node n1 which was running pod drv is unresponsive"});
        assert_eq!(r(&pod(lost, false), false).as_deref(), Some("NodeLost"));
        let taint = serde_json::json!({"phase": "Running", "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
             "message": "Taint manager: deleting due to NoExecute taint"}]});
        assert_eq!(r(&pod(taint, true), false).as_deref(), Some("NodeLost"));
    }

    #[tokio::test]
    async fn recorded_in_the_store() {
        let (_dir, ls) = crate::ingest::layout::tests::temp_store().await;
        assert_eq!(load(&ls, "spark-1").await.unwrap(), None);
        let e = classify(&pod(terminated("OOMKilled", 137), false), false).unwrap();
        assert!(save(&ls, "spark-1", &e).await.unwrap());
        assert_eq!(load(&ls, "spark-1").await.unwrap(), Some(e.clone()));
        assert!(load(&ls, "../x").await.is_err());
        // once an agent of another pod owns the log, this pod's end is not its driver's
        let owner = Identity::Kubernetes {
            namespace: "apps".into(),
            service_account: "spark".into(),
            pod: Some(("real-driver".into(), "uid-real".into())),
        };
        Owners::new(ls.clone())
            .claim("spark-2", &owner)
            .await
            .unwrap();
        assert!(!save(&ls, "spark-2", &e).await.unwrap());
        assert_eq!(load(&ls, "spark-2").await.unwrap(), None);
        let real = DriverEnd {
            pod_uid: Some("uid-real".into()),
            ..e.clone()
        };
        assert!(save(&ls, "spark-2", &real).await.unwrap());
        assert_eq!(load(&ls, "spark-2").await.unwrap(), Some(real));
        // a legacy token's owner: pods of its namespace
        let legacy = Identity::Kubernetes {
            namespace: "other".into(),
            service_account: "spark".into(),
            pod: None,
        };
        assert!(!belongs(&e, Some(&legacy)));
        assert!(belongs(&e, Some(&Identity::Directory)));
    }
}
