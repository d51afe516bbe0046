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

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, PodSpec, VolumeMount};
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

/// What [`Secrets::learn`] made of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    /// The application already has this secret.
    Known,
    /// The application already has another secret, which stays.
    Conflict,
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

    /// Records a learned secret. The first secret of an application stays until the
    /// application is forgotten: Spark never changes an application's secret, so another one
    /// for the same app id comes from someone else (a pod claiming that app id).
    pub fn learn(&self, app_id: &str, secret: &str) -> Learned {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        match learned.get(app_id) {
            Some(s) if s == secret => Learned::Known,
            Some(_) => Learned::Conflict,
            None => {
                learned.insert(app_id.to_owned(), secret.to_owned());
                drop(learned);
                self.changed.notify_waiters();
                Learned::New
            }
        }
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
    /// `_SPARK_AUTH_SECRET` from a Secret key (`valueFrom.secretKeyRef`): the key's value is
    /// the secret as it is.
    SecretKey { name: String, key: String },
    /// `spark.authenticate.secret.executor.file` (or `spark.authenticate.secret.file`) names a
    /// file the executor reads its secret from, here mounted from a Secret key. Spark's
    /// `SecurityManager` uses the base64 of the file's bytes as the secret.
    File {
        /// The Secret keys that may be the file, in the order the volume lays them out (one,
        /// unless a projected volume has several Secrets that do not list their keys): the
        /// first Secret holding its key is the one.
        keys: Vec<(String, String)>,
        path: String,
    },
    /// The pod reads its secret from a file this service cannot map to a Secret key (a
    /// volume that is not a Secret, or no volume at all); the reason says which.
    Unmapped(String),
}

/// Spark's settings naming the file executors read the secret from, strongest first:
/// `spark.authenticate.secret.executor.file` falls back to `spark.authenticate.secret.file`.
const SECRET_FILE_CONFS: [&str; 2] = [
    "spark.authenticate.secret.executor.file",
    "spark.authenticate.secret.file",
];
/// Spark passes an executor's startup settings (every `spark.auth*` among them) as JVM options
/// in numbered variables (`SPARK_JAVA_OPT_<n>`, `-Dkey=value` each).
const JAVA_OPT_PREFIX: &str = "SPARK_JAVA_OPT_";

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
    // No variable: Spark leaves it out exactly when the secret comes from a file.
    for c in &spec.containers {
        if let Some(path) = secret_file_option(c) {
            return Some((app, file_secret(spec, c, &path)));
        }
    }
    None
}

/// The secret file a container's JVM options name (the last `-D` of the strongest setting
/// wins, as in the JVM).
fn secret_file_option(c: &Container) -> Option<String> {
    let mut opts: Vec<(u64, &str)> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let n = e.name.strip_prefix(JAVA_OPT_PREFIX)?.parse::<u64>().ok()?;
            Some((n, e.value.as_deref()?))
        })
        .collect();
    opts.sort_by_key(|(n, _)| *n);
    SECRET_FILE_CONFS.iter().find_map(|conf| {
        let prefix = format!("-D{conf}=");
        opts.iter()
            .rev()
            .find_map(|(_, o)| o.strip_prefix(prefix.as_str()))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    })
}

/// Lexical components of an absolute path; `None` for a relative path or one with `..`.
fn components(path: &str) -> Option<Vec<&str>> {
    if !path.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.contains(&"..")).then_some(parts)
}

/// Maps the file `path` in container `c` to the Secret key mounted there: the deepest volume
/// mount holding the path, a `secret` volume (or a `projected` one with secret sources), and
/// the key the file name stands for (`items` map keys to other file names).
fn file_secret(spec: &PodSpec, c: &Container, path: &str) -> PodSecret {
    let unmapped = |why: String| PodSecret::Unmapped(format!("secret file {path}: {why}"));
    let Some(file) = components(path) else {
        return unmapped("not an absolute path without '..'".into());
    };
    let mut best: Option<(&VolumeMount, Vec<&str>)> = None;
    for m in c.volume_mounts.iter().flatten() {
        let Some(at) = components(&m.mount_path) else {
            continue;
        };
        if file.len() >= at.len()
            && file[..at.len()] == at[..]
            && best.as_ref().is_none_or(|(_, b)| at.len() > b.len())
        {
            best = Some((m, at));
        }
    }
    let Some((mount, at)) = best else {
        return unmapped(format!(
            "no volume of container {} is mounted there",
            c.name
        ));
    };
    // Where in the volume the file is: a subPath mount puts one path of the volume at the mount.
    let mut rel: Vec<&str> = mount
        .sub_path
        .as_deref()
        .map(|s| s.split('/').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    rel.extend_from_slice(&file[at.len()..]);
    let rel = rel.join("/");
    let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
        return unmapped(format!("the pod has no volume {}", mount.name));
    };
    let key_in = |items: Option<&Vec<KeyToPath>>| -> Option<String> {
        match items {
            Some(items) => items
                .iter()
                .find(|i| i.path.trim_matches('/') == rel)
                .map(|i| i.key.clone()),
            None => (!rel.is_empty() && !rel.contains('/')).then(|| rel.clone()),
        }
    };
    let found = |keys: Vec<(String, String)>| PodSecret::File {
        keys,
        path: path.to_owned(),
    };
    if let Some(s) = &volume.secret {
        let Some(name) = s.secret_name.as_deref() else {
            return unmapped(format!("volume {} names no Secret", volume.name));
        };
        return match key_in(s.items.as_ref()) {
            Some(key) => found(vec![(name.to_owned(), key)]),
            None => unmapped(format!(
                "no key of Secret {name} (volume {}) is mounted as {rel}",
                volume.name
            )),
        };
    }
    if let Some(p) = &volume.projected {
        // Every projected source puts its keys in the same directory: each Secret that lists
        // the file in its `items`, or lists nothing and so may hold a key of that name.
        let keys: Vec<(String, String)> = p
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.secret.as_ref())
            .filter_map(|s| Some((s.name.clone(), key_in(s.items.as_ref())?)))
            .collect();
        return if keys.is_empty() {
            unmapped(format!(
                "no Secret of projected volume {} is mounted as {rel}",
                volume.name
            ))
        } else {
            found(keys)
        };
    }
    unmapped(format!(
        "volume {} is not a Secret volume (this service reads only Secrets)",
        volume.name
    ))
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
        assert_eq!(s2.learn("a", "mine"), Learned::New);
        assert_eq!(w.await.expect("join").as_deref(), Some("mine"));
        assert_eq!(s.learn("a", "mine"), Learned::New);
        assert_eq!(s.get("a").as_deref(), Some("mine"));
        assert_eq!(s.learn("a", "mine"), Learned::Known);
        // someone else's pod claiming app a: the first secret stays
        assert_eq!(s.learn("a", "theirs"), Learned::Conflict);
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

    fn file_pod(opts: &[&str], mounts: serde_json::Value, volumes: serde_json::Value) -> Pod {
        let env: Vec<serde_json::Value> = opts
            .iter()
            .enumerate()
            .map(|(i, o)| serde_json::json!({"name": format!("SPARK_JAVA_OPT_{i}"), "value": o}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "labels": {"spark-app-selector": "spark-1"}},
            "spec": {
                "containers": [{"name": "spark-kubernetes-executor", "env": env, "volumeMounts": mounts}],
                "volumes": volumes
            }
        }))
        .expect("pod")
    }

    fn file(keys: &[(&str, &str)], path: &str) -> Option<(String, PodSecret)> {
        Some((
            "spark-1".into(),
            PodSecret::File {
                keys: keys
                    .iter()
                    .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
                    .collect(),
                path: path.into(),
            },
        ))
    }

    #[test]
    fn secret_files_map_to_the_secret_keys_mounted_there() {
        use serde_json::json;
        let opt = "-Dspark.authenticate.secret.executor.file=/mnt/secrets/auth";
        // what spark.kubernetes.executor.secrets.<name>=/mnt/secrets makes
        let secret_vol = json!([{"name": "s-volume", "secret": {"secretName": "app-auth"}}]);
        let at_mnt = json!([{"name": "s-volume", "mountPath": "/mnt/secrets"}]);
        assert_eq!(
            pod_secret(&file_pod(
                &["-Xmx1g", opt],
                at_mnt.clone(),
                secret_vol.clone()
            )),
            file(&[("app-auth", "auth")], "/mnt/secrets/auth")
        );
        // the executor setting beats the general one, whatever the order; the last -D wins
        assert_eq!(
            pod_secret(&file_pod(
                &[
                    opt,
                    "-Dspark.authenticate.secret.file=/mnt/secrets/other",
                    "-Dspark.authenticate.secret.executor.file=/mnt/secrets/last"
                ],
                at_mnt.clone(),
                secret_vol.clone()
            )),
            file(&[("app-auth", "last")], "/mnt/secrets/last")
        );
        // the general setting alone, which executors fall back to
        assert_eq!(
            pod_secret(&file_pod(
                &["-Dspark.authenticate.secret.file=/mnt/secrets/k"],
                at_mnt.clone(),
                secret_vol.clone()
            )),
            file(&[("app-auth", "k")], "/mnt/secrets/k")
        );
        // items rename keys; the deepest mount holding the path wins
        assert_eq!(
            pod_secret(&file_pod(
                &["-Dspark.authenticate.secret.executor.file=/mnt/secrets/deep/the-file"],
                json!([{"name": "other", "mountPath": "/mnt"},
                       {"name": "s-volume", "mountPath": "/mnt/secrets/deep/"}]),
                json!([{"name": "other", "emptyDir": {}},
                       {"name": "s-volume", "secret": {"secretName": "app-auth",
                        "items": [{"key": "k1", "path": "x"}, {"key": "k2", "path": "the-file"}]}}])
            )),
            file(&[("app-auth", "k2")], "/mnt/secrets/deep/the-file")
        );
        // a subPath mount of one key
        assert_eq!(
            pod_secret(&file_pod(
                &["-Dspark.authenticate.secret.executor.file=/opt/spark/auth"],
                json!([{"name": "s-volume", "mountPath": "/opt/spark/auth", "subPath": "token"}]),
                secret_vol.clone()
            )),
            file(&[("app-auth", "token")], "/opt/spark/auth")
        );
        // projected: every Secret source that may hold the file, in order
        assert_eq!(
            pod_secret(&file_pod(
                &[opt],
                at_mnt.clone(),
                json!([{"name": "s-volume", "projected": {"sources": [
                    {"configMap": {"name": "cm"}},
                    {"secret": {"name": "a", "items": [{"key": "x", "path": "y"}]}},
                    {"secret": {"name": "b"}},
                    {"secret": {"name": "c", "items": [{"key": "real", "path": "auth"}]}}
                ]}}])
            )),
            file(&[("b", "auth"), ("c", "real")], "/mnt/secrets/auth")
        );
        // what cannot be mapped is reported, not guessed
        for (path, mounts, volumes, why) in [
            (
                "/elsewhere/auth",
                at_mnt.clone(),
                secret_vol.clone(),
                "no volume",
            ),
            (
                "/mnt/secrets/../etc/auth",
                at_mnt.clone(),
                secret_vol.clone(),
                "'..'",
            ),
            (
                "/mnt/secrets/a/b",
                at_mnt.clone(),
                secret_vol.clone(),
                "no key",
            ),
            (
                "/mnt/secrets/auth",
                at_mnt.clone(),
                json!([{"name": "s-volume", "emptyDir": {}}]),
                "not a Secret volume",
            ),
            (
                "/mnt/secrets/auth",
                at_mnt.clone(),
                json!([]),
                "no volume s-volume",
            ),
        ] {
            let o = format!("-Dspark.authenticate.secret.executor.file={path}");
            match pod_secret(&file_pod(&[&o], mounts, volumes)) {
                Some((_, PodSecret::Unmapped(m))) => assert!(m.contains(why), "{path}: {m}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        // the variable, when present, is what the executor uses
        let mut both = file_pod(&[opt], at_mnt, secret_vol);
        both.spec.as_mut().expect("spec").containers[0]
            .env
            .get_or_insert_with(Vec::new)
            .push(
                serde_json::from_value(json!({"name": "_SPARK_AUTH_SECRET", "value": "v"}))
                    .expect("env"),
            );
        assert_eq!(
            pod_secret(&both),
            Some(("spark-1".into(), PodSecret::Value("v".into())))
        );
    }
}
