//! Which secret each application authenticates with: one shared secret for every application
//! (`--auth-secret-file`, Spark standalone's model), and per-application secrets learned from
//! the application's executor pods on Kubernetes (see `secret_watch`). A learned secret wins
//! over the shared one; learned secrets are persisted with the registrations and forgotten with
//! the application.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

/// Where Spark puts the secret in executor pods (`SecurityManager.ENV_AUTH_SECRET`).
pub const ENV_AUTH_SECRET: &str = "_SPARK_AUTH_SECRET";
/// The label Spark gives every pod of an application, holding its app id.
pub const APP_LABEL: &str = "spark-app-selector";

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("--auth-secret-file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--auth-secret-file {path} can be read by other users (mode {mode:o}); chmod 600 it (or 640 with a group only this service is in)")]
    TooOpen { path: String, mode: u32 },
    #[error("--auth-secret-file {path} is empty")]
    Empty { path: String },
    #[error("--auth-secret-file {path} is not UTF-8")]
    NotUtf8 { path: String },
}

/// Reads the shared secret: the string users give as `spark.authenticate.secret`, one
/// trailing newline ignored. Refused if other users may read the file.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Io {
        path: p.clone(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(SecretFileError::TooOpen { path: p, mode });
    }
    let bytes = std::fs::read(path).map_err(|source| SecretFileError::Io {
        path: p.clone(),
        source,
    })?;
    let mut s =
        String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8 { path: p.clone() })?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    if s.is_empty() {
        return Err(SecretFileError::Empty { path: p });
    }
    Ok(s)
}

/// The secrets the service authenticates applications with.
pub struct Secrets {
    shared: Option<String>,
    learned: RwLock<HashMap<String, String>>,
    changed: Notify,
}

impl Secrets {
    pub fn new(shared: Option<String>) -> Self {
        Self {
            shared,
            learned: RwLock::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    pub fn has_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The secret `app_id` must authenticate with, if any is known.
    pub fn get(&self, app_id: &str) -> Option<String> {
        let learned = self.learned.read().unwrap_or_else(|p| p.into_inner());
        learned.get(app_id).cloned().or_else(|| self.shared.clone())
    }

    pub fn known(&self, app_id: &str) -> bool {
        self.shared.is_some() || {
            let learned = self.learned.read().unwrap_or_else(|p| p.into_inner());
            learned.contains_key(app_id)
        }
    }

    /// Records a learned secret; true if it is new or changed.
    pub fn learn(&self, app_id: &str, secret: &str) -> bool {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        let changed = learned.get(app_id).map(String::as_str) != Some(secret);
        if changed {
            learned.insert(app_id.to_owned(), secret.to_owned());
            drop(learned);
            self.changed.notify_waiters();
        }
        changed
    }

    pub fn forget(&self, app_id: &str) -> bool {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        learned.remove(app_id).is_some()
    }

    pub fn learned_snapshot(&self) -> HashMap<String, String> {
        self.learned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn learned_count(&self) -> usize {
        self.learned.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The secret of `app_id`, waiting up to `timeout` for it to be learned.
    pub async fn wait_for(&self, app_id: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(s) = self.get(app_id) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(app_id);
            }
        }
    }
}

/// Where an executor pod keeps its application's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSecret {
    /// The `_SPARK_AUTH_SECRET` value in the pod spec (Spark's default on Kubernetes).
    Value(String),
    /// `_SPARK_AUTH_SECRET` from a Secret key (`valueFrom.secretKeyRef`).
    SecretKey { name: String, key: String },
}

/// The application id and secret reference of an executor pod, if it has both.
pub fn pod_secret(pod: &Pod) -> Option<(String, PodSecret)> {
    let app = pod.metadata.labels.as_ref()?.get(APP_LABEL)?.clone();
    let spec = pod.spec.as_ref()?;
    for c in &spec.containers {
        for e in c.env.iter().flatten() {
            if e.name != ENV_AUTH_SECRET {
                continue;
            }
            if let Some(v) = e.value.as_ref().filter(|v| !v.is_empty()) {
                return Some((app, PodSecret::Value(v.clone())));
            }
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            {
                return Some((
                    app,
                    PodSecret::SecretKey {
                        name: r.name.clone(),
                        key: r.key.clone(),
                    },
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_file_rules() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("s");
        std::fs::write(&f, "s3cret\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            read_secret_file(&f),
            Err(SecretFileError::TooOpen { .. })
        ));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_secret_file(&f).expect("read"), "s3cret");
        std::fs::write(&f, "two\nlines\n").expect("write");
        assert_eq!(read_secret_file(&f).expect("read"), "two\nlines");
        std::fs::write(&f, "\n").expect("write");
        assert!(matches!(
            read_secret_file(&f),
            Err(SecretFileError::Empty { .. })
        ));
    }

    #[tokio::test]
    async fn learned_beats_shared_and_waiters_wake() {
        let s = std::sync::Arc::new(Secrets::new(Some("shared".into())));
        assert_eq!(s.get("a").as_deref(), Some("shared"));
        let none = Secrets::new(None);
        assert!(none
            .wait_for("a", Duration::from_millis(20))
            .await
            .is_none());
        let s2 = std::sync::Arc::new(none);
        let w = {
            let s2 = s2.clone();
            tokio::spawn(async move { s2.wait_for("a", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(s2.learn("a", "mine"));
        assert_eq!(w.await.expect("join").as_deref(), Some("mine"));
        s.learn("a", "mine");
        assert_eq!(s.get("a").as_deref(), Some("mine"));
        assert!(s.forget("a"));
        assert_eq!(s.get("a").as_deref(), Some("shared"));
    }

    #[test]
    fn secrets_from_executor_pods() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "labels": {"spark-app-selector": "spark-1", "spark-role": "executor"}},
            "spec": {"containers": [{"name": "spark-kubernetes-executor", "env": [
                {"name": "SPARK_EXECUTOR_ID", "value": "1"},
                {"name": "_SPARK_AUTH_SECRET", "value": "abc"}
            ]}]}
        }))
        .expect("pod");
        assert_eq!(
            pod_secret(&pod),
            Some(("spark-1".into(), PodSecret::Value("abc".into())))
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "labels": {"spark-app-selector": "spark-1"}},
            "spec": {"containers": [{"name": "c", "env": [
                {"name": "_SPARK_AUTH_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ]}]}
        }))
        .expect("pod");
        assert_eq!(
            pod_secret(&pod),
            Some((
                "spark-1".into(),
                PodSecret::SecretKey {
                    name: "s".into(),
                    key: "k".into()
                }
            ))
        );
        let unlabelled: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1"},
            "spec": {"containers": [{"name": "c", "env": [{"name": "_SPARK_AUTH_SECRET", "value": "abc"}]}]}
        }))
        .expect("pod");
        assert_eq!(pod_secret(&unlabelled), None);
    }
}
