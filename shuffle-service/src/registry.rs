//! Registered executors: who they are, where their files live, and when their application was
//! last heard from. Every registration is written to an embedded redb database before it is
//! acknowledged, and the whole map is restored from it before the port opens, so a restart
//! (kill -9 included) loses nothing that an executor was told was registered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::protocol::ExecutorShuffleInfo;
use crate::resolver::ExecutorLayout;

const EXECUTORS: TableDefinition<&str, &str> = TableDefinition::new("executors");
const KEY_PREFIX: &str = "AppExecShuffleInfo;";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("java.lang.IllegalArgumentException: {0}")]
    Refused(String),
    #[error(
        "java.lang.RuntimeException: Executor is not registered (appId={app_id}, execId={exec_id})"
    )]
    NotRegistered { app_id: String, exec_id: String },
    #[error("cannot use the registration database {path}: {detail}")]
    Db { path: PathBuf, detail: String },
}

/// What is persisted per executor (Spark's JSON field names, plus what we need to restore).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    local_dirs: Vec<String>,
    sub_dirs_per_local_dir: i32,
    shuffle_manager: String,
    canonical_dirs: Vec<PathBuf>,
    registered_at_ms: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey<'a> {
    app_id: &'a str,
    exec_id: &'a str,
}

fn db_key(app_id: &str, exec_id: &str) -> String {
    let json = serde_json::to_string(&StoredKey { app_id, exec_id }).unwrap_or_default();
    format!("{KEY_PREFIX}{json}")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParsedKey {
    app_id: String,
    exec_id: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct App {
    executors: HashMap<String, Arc<ExecutorLayout>>,
    /// Last registration, heartbeat or request naming the app (ms since the epoch).
    last_seen_ms: AtomicU64,
}

pub struct Registry {
    apps: RwLock<HashMap<String, App>>,
    db: Option<(redb::Database, PathBuf)>,
    allowed_roots: Vec<PathBuf>,
    executors_gauge: prometheus_client::metrics::gauge::Gauge,
}

/// Largest `spark.diskStore.subDirectories` accepted: it only sizes a hex directory name.
const MAX_SUB_DIRS: i32 = 1 << 16;

impl Registry {
    /// Opens (or creates) the database under `state_dir` and restores every registration.
    /// `allowed_roots` are canonicalised here; a root that does not exist is an error.
    pub fn open(
        state_dir: Option<&Path>,
        allowed_roots: &[PathBuf],
        executors_gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Registry, RegistryError> {
        let mut roots = Vec::new();
        for r in allowed_roots {
            let c = r.canonicalize().map_err(|e| {
                RegistryError::Refused(format!("--allowed-root {}: {e}", r.display()))
            })?;
            roots.push(c);
        }
        let db = match state_dir {
            Some(dir) => Some(Self::open_db(dir)?),
            None => None,
        };
        let reg = Registry {
            apps: RwLock::new(HashMap::new()),
            db,
            allowed_roots: roots,
            executors_gauge,
        };
        reg.restore()?;
        Ok(reg)
    }

    fn open_db(dir: &Path) -> Result<(redb::Database, PathBuf), RegistryError> {
        let path = dir.join("registered-executors.redb");
        let err = |detail: String| RegistryError::Db {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create --state-dir: {e}")))?;
        let db = match redb::Database::create(&path) {
            Ok(db) => db,
            Err(e) => {
                // Like Spark: an unreadable database is replaced (registrations are lost,
                // which is better than a service that cannot start).
                tracing::error!(path = %path.display(), error = %e, "registration database is unusable; starting a new one");
                let _ = std::fs::rename(&path, path.with_extension("redb.corrupt"));
                redb::Database::create(&path).map_err(|e| err(e.to_string()))?
            }
        };
        let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
        txn.open_table(EXECUTORS).map_err(|e| err(e.to_string()))?;
        txn.commit().map_err(|e| err(e.to_string()))?;
        Ok((db, path))
    }

    fn restore(&self) -> Result<(), RegistryError> {
        let Some((db, path)) = &self.db else {
            return Ok(());
        };
        let err = |detail: String| RegistryError::Db {
            path: path.clone(),
            detail,
        };
        let txn = db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = txn.open_table(EXECUTORS).map_err(|e| err(e.to_string()))?;
        let mut apps = self.apps.write().map_err(|_| err("lock poisoned".into()))?;
        let mut n = 0;
        for row in table.iter().map_err(|e| err(e.to_string()))? {
            let (k, v) = row.map_err(|e| err(e.to_string()))?;
            let key = k.value();
            let Some(parsed) = key
                .strip_prefix(KEY_PREFIX)
                .and_then(|j| serde_json::from_str::<ParsedKey>(j).ok())
            else {
                tracing::warn!(key, "skipping unreadable registration key");
                continue;
            };
            let stored: Stored = match serde_json::from_str(v.value()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(key, error = %e, "skipping unreadable registration");
                    continue;
                }
            };
            let app = apps.entry(parsed.app_id).or_insert_with(|| App {
                executors: HashMap::new(),
                last_seen_ms: AtomicU64::new(0),
            });
            app.last_seen_ms
                .fetch_max(stored.registered_at_ms, Ordering::Relaxed);
            app.executors.insert(
                parsed.exec_id,
                Arc::new(ExecutorLayout {
                    local_dirs: stored.local_dirs,
                    canonical_dirs: stored.canonical_dirs,
                    sub_dirs: stored.sub_dirs_per_local_dir,
                }),
            );
            n += 1;
        }
        self.executors_gauge.set(n);
        if n > 0 {
            tracing::info!(executors = n, apps = apps.len(), db = %path.display(), "restored registrations");
        }
        Ok(())
    }

    /// Validates and stores a registration (database first, then memory).
    pub fn register(
        &self,
        app_id: &str,
        exec_id: &str,
        info: &ExecutorShuffleInfo,
    ) -> Result<(), RegistryError> {
        let bad = |s: &str| s.is_empty() || s.contains('\0');
        if bad(app_id) || bad(exec_id) {
            return Err(RegistryError::Refused(format!(
                "invalid appId {app_id:?} or execId {exec_id:?}"
            )));
        }
        if info.local_dirs.is_empty() {
            return Err(RegistryError::Refused(format!(
                "executor {exec_id} of {app_id} registered no localDirs"
            )));
        }
        if info.sub_dirs_per_local_dir <= 0 || info.sub_dirs_per_local_dir > MAX_SUB_DIRS {
            return Err(RegistryError::Refused(format!(
                "subDirsPerLocalDir {} is outside 1..={MAX_SUB_DIRS}",
                info.sub_dirs_per_local_dir
            )));
        }
        let mut canonical = Vec::with_capacity(info.local_dirs.len());
        for d in &info.local_dirs {
            let not_under = || {
                RegistryError::Refused(format!(
                    "localDirs entry is not under any of the service's local directories (--allowed-root): {d}"
                ))
            };
            if d.is_empty() || !Path::new(d).is_absolute() {
                return Err(not_under());
            }
            let c = Path::new(d).canonicalize().map_err(|e| {
                RegistryError::Refused(format!("localDirs entry {d} cannot be resolved: {e}"))
            })?;
            if !self.allowed_roots.iter().any(|r| c.starts_with(r)) {
                return Err(not_under());
            }
            canonical.push(c);
        }
        let now = now_ms();
        let stored = Stored {
            local_dirs: info.local_dirs.clone(),
            sub_dirs_per_local_dir: info.sub_dirs_per_local_dir,
            shuffle_manager: info.shuffle_manager.clone(),
            canonical_dirs: canonical.clone(),
            registered_at_ms: now,
        };
        if let Some((db, path)) = &self.db {
            let err = |detail: String| RegistryError::Db {
                path: path.clone(),
                detail,
            };
            let value = serde_json::to_string(&stored).map_err(|e| err(e.to_string()))?;
            let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
            {
                let mut t = txn.open_table(EXECUTORS).map_err(|e| err(e.to_string()))?;
                t.insert(db_key(app_id, exec_id).as_str(), value.as_str())
                    .map_err(|e| err(e.to_string()))?;
            }
            txn.commit().map_err(|e| err(e.to_string()))?;
        }
        let layout = Arc::new(ExecutorLayout {
            local_dirs: info.local_dirs.clone(),
            canonical_dirs: canonical,
            sub_dirs: info.sub_dirs_per_local_dir,
        });
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let app = apps.entry(app_id.to_owned()).or_insert_with(|| App {
            executors: HashMap::new(),
            last_seen_ms: AtomicU64::new(now),
        });
        app.last_seen_ms.fetch_max(now, Ordering::Relaxed);
        if app.executors.insert(exec_id.to_owned(), layout).is_none() {
            self.executors_gauge.inc();
        }
        Ok(())
    }

    pub fn get(&self, app_id: &str, exec_id: &str) -> Result<Arc<ExecutorLayout>, RegistryError> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.get(app_id)
            .and_then(|a| a.executors.get(exec_id).cloned())
            .ok_or_else(|| RegistryError::NotRegistered {
                app_id: app_id.to_owned(),
                exec_id: exec_id.to_owned(),
            })
    }

    /// Records activity for an app (heartbeat, fetch); unknown apps are ignored.
    pub fn touch(&self, app_id: &str) -> bool {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        match apps.get(app_id) {
            Some(a) => {
                a.last_seen_ms.fetch_max(now_ms(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn executor_count(&self) -> usize {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.values().map(|a| a.executors.len()).sum()
    }

    pub fn app_ids(&self) -> Vec<String> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.keys().cloned().collect()
    }

    /// Apps not heard from for `ttl`.
    pub fn idle_apps(&self, ttl: Duration) -> Vec<String> {
        let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.iter()
            .filter(|(_, a)| a.last_seen_ms.load(Ordering::Relaxed) < cutoff)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets an application (memory and database) and returns its executors' canonical
    /// dirs, which the caller deletes.
    pub fn remove_app(&self, app_id: &str) -> Vec<PathBuf> {
        let removed = {
            let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
            apps.remove(app_id)
        };
        let Some(app) = removed else {
            return Vec::new();
        };
        self.executors_gauge.dec_by(app.executors.len() as i64);
        if let Some((db, path)) = &self.db {
            let res = (|| -> Result<(), redb::Error> {
                let txn = db.begin_write()?;
                {
                    let mut t = txn.open_table(EXECUTORS)?;
                    for exec in app.executors.keys() {
                        t.remove(db_key(app_id, exec).as_str())?;
                    }
                }
                txn.commit()?;
                Ok(())
            })();
            if let Err(e) = res {
                tracing::error!(db = %path.display(), app_id, error = %e, "cannot delete registrations");
            }
        }
        app.executors
            .values()
            .flat_map(|l| l.canonical_dirs.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dirs: Vec<String>) -> ExecutorShuffleInfo {
        ExecutorShuffleInfo {
            local_dirs: dirs,
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        }
    }

    #[test]
    fn registrations_survive_reopen_and_are_fenced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        let d = root.join("blockmgr-1");
        std::fs::create_dir_all(&d).expect("mkdir");
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let state = tmp.path().join("state");
        let g = prometheus_client::metrics::gauge::Gauge::default();
        {
            let r =
                Registry::open(Some(&state), std::slice::from_ref(&root), g.clone()).expect("open");
            r.register("app-1", "1", &info(vec![d.display().to_string()]))
                .expect("register");
            r.register("app-1", "2", &info(vec![d.display().to_string()]))
                .expect("register");
            r.register("app-2", "1", &info(vec![d.display().to_string()]))
                .expect("register");
            for bad in [
                vec![outside.display().to_string()],
                vec![format!("{}/../elsewhere", root.display())],
                vec!["relative".into()],
                vec![],
            ] {
                assert!(
                    r.register("app-1", "3", &info(bad.clone())).is_err(),
                    "{bad:?}"
                );
            }
            std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
            assert!(r
                .register(
                    "app-1",
                    "3",
                    &info(vec![root.join("link").display().to_string()])
                )
                .is_err());
            assert_eq!(g.get(), 3);
            assert_eq!(r.remove_app("app-2").len(), 1);
        }
        let g2 = prometheus_client::metrics::gauge::Gauge::default();
        let r = Registry::open(Some(&state), &[root], g2.clone()).expect("reopen");
        assert_eq!(r.executor_count(), 2);
        assert_eq!(g2.get(), 2);
        let l = r.get("app-1", "2").expect("restored");
        assert_eq!(l.local_dirs, vec![d.display().to_string()]);
        assert!(r.get("app-2", "1").is_err());
        assert!(r.idle_apps(Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn no_allowed_root_refuses_everything() {
        let tmp = tempfile::tempdir().expect("tmp");
        let r = Registry::open(None, &[], Default::default()).expect("open");
        let e = r.register("a", "1", &info(vec![tmp.path().display().to_string()]));
        assert!(matches!(e, Err(RegistryError::Refused(_))));
    }
}
