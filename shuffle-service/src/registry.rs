//! Registered executors: who they are, where their files live, and when their application was
//! last heard from. Every registration is written to an embedded redb database before it is
//! acknowledged, and the whole map is restored from it before the port opens, so a restart
//! (kill -9 included) loses nothing that an executor was told was registered.
//!
//! Isolation between applications lives here: a local dir must be an executor's block-manager
//! dir (`blockmgr-<uuid>`) strictly below an allowed root, belongs to the one application that
//! registered it first, and an executor's registration can only be changed by its own
//! authenticated application. Removal deletes exactly the registered dirs, checked again.
//!
//! The state dir is locked (a second instance fails at start naming the holder), learned
//! secrets are kept in the same database (the file is mode 0600), and a failed write (a full
//! disk) marks the database unhealthy until [`Registry::recover`] reopens it and writes the
//! in-memory state back.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::protocol::ExecutorShuffleInfo;
use crate::resolver::ExecutorLayout;

const EXECUTORS: TableDefinition<&str, &str> = TableDefinition::new("executors");
const SECRETS: TableDefinition<&str, &str> = TableDefinition::new("secrets");
const KEY_PREFIX: &str = "AppExecShuffleInfo;";
const DB_FILE: &str = "registered-executors.redb";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("java.lang.IllegalArgumentException: {0}")]
    Refused(String),
    #[error(
        "java.lang.RuntimeException: Executor is not registered (appId={app_id}, execId={exec_id})"
    )]
    NotRegistered { app_id: String, exec_id: String },
    #[error("java.lang.SecurityException: {0}")]
    Forbidden(String),
    #[error("java.io.IOException: cannot write the registration database {path}: {detail}")]
    Db { path: PathBuf, detail: String },
    #[error(
        "--state-dir {dir} is in use by another shuffle-service ({holder}); refusing to start"
    )]
    Locked { dir: PathBuf, holder: String },
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
    /// Registered over an authenticated connection.
    #[serde(default)]
    authenticated: bool,
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

struct Executor {
    layout: Arc<ExecutorLayout>,
    authenticated: bool,
}

struct App {
    executors: HashMap<String, Executor>,
    /// Last registration, heartbeat or request naming the app (ms since the epoch).
    last_seen_ms: AtomicU64,
}

/// The database and the lock that makes it ours.
struct Db {
    path: PathBuf,
    /// `None` between a failed reopen and the next try.
    db: Mutex<Option<redb::Database>>,
    healthy: AtomicBool,
    /// Held (flock) for the life of the process.
    _lock: std::fs::File,
}

pub struct Registry {
    apps: RwLock<HashMap<String, App>>,
    /// Canonical local dir -> the application that registered it.
    owners: RwLock<HashMap<PathBuf, String>>,
    db: Option<Db>,
    allowed_roots: Vec<PathBuf>,
    executors_gauge: prometheus_client::metrics::gauge::Gauge,
}

/// Is `name` `blockmgr-` followed by a UUID, as Spark's `DiskBlockManager` names its dirs?
pub fn is_block_manager_dir_name(name: &str) -> bool {
    let Some(uuid) = name.strip_prefix("blockmgr-") else {
        return false;
    };
    let b = uuid.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Takes the state dir's lock, or says who holds it.
fn lock_state_dir(dir: &Path) -> Result<std::fs::File, RegistryError> {
    let path = dir.join(LOCK_FILE);
    let err = |detail: String| RegistryError::Db {
        path: path.clone(),
        detail,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| err(e.to_string()))?;
    // SAFETY: flock(2) on an fd we own.
    let r = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(RegistryError::Locked {
                dir: dir.to_owned(),
                holder: if holder.is_empty() {
                    "holder unknown".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        return Err(err(format!("cannot lock: {e}")));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let info = format!("pid {} on {}", std::process::id(), host.trim());
    f.set_len(0).map_err(|e| err(e.to_string()))?;
    f.write_all(info.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    Ok(f)
}

/// Largest `spark.diskStore.subDirectories` accepted: it only sizes a hex directory name.
const MAX_SUB_DIRS: i32 = 1 << 16;
/// Most local dirs per executor (`spark.local.dir` entries; one per disk).
const MAX_LOCAL_DIRS: usize = 64;

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
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| RegistryError::Db {
                    path: dir.to_owned(),
                    detail: format!("cannot create --state-dir: {e}"),
                })?;
                let lock = lock_state_dir(dir)?;
                let path = dir.join(DB_FILE);
                let db = Self::open_db(&path)?;
                Some(Db {
                    path,
                    db: Mutex::new(Some(db)),
                    healthy: AtomicBool::new(true),
                    _lock: lock,
                })
            }
            None => None,
        };
        let reg = Registry {
            apps: RwLock::new(HashMap::new()),
            owners: RwLock::new(HashMap::new()),
            db,
            allowed_roots: roots,
            executors_gauge,
        };
        reg.restore()?;
        Ok(reg)
    }

    /// Opens the database (we hold the state dir's lock, so nothing else has it open).
    fn open_db(path: &Path) -> Result<redb::Database, RegistryError> {
        let err = |detail: String| RegistryError::Db {
            path: path.to_owned(),
            detail,
        };
        let db = match redb::Database::create(path) {
            Ok(db) => db,
            Err(e @ redb::DatabaseError::Storage(redb::StorageError::Io(_))) => {
                // An I/O error (a full disk, say) is not corruption: keep the file.
                return Err(err(e.to_string()));
            }
            Err(e) => {
                // Like Spark: an unreadable database is replaced (registrations are lost,
                // which is better than a service that cannot start).
                tracing::error!(path = %path.display(), error = %e, "registration database is unusable; starting a new one");
                let _ = std::fs::rename(path, path.with_extension("redb.corrupt"));
                redb::Database::create(path).map_err(|e| err(e.to_string()))?
            }
        };
        // Learned secrets live here too: owner-only.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
        txn.open_table(EXECUTORS).map_err(|e| err(e.to_string()))?;
        txn.open_table(SECRETS).map_err(|e| err(e.to_string()))?;
        txn.commit().map_err(|e| err(e.to_string()))?;
        Ok(db)
    }

    /// Runs one write transaction; an error marks the database unhealthy.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), RegistryError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let guard = db.db.lock().unwrap_or_else(|p| p.into_inner());
        let res = match guard.as_ref() {
            None => Err("the database is closed after an earlier error; retrying".to_owned()),
            Some(d) => (|| -> Result<(), redb::Error> {
                let txn = d.begin_write()?;
                f(&txn)?;
                txn.commit()?;
                Ok(())
            })()
            .map_err(|e| e.to_string()),
        };
        res.map_err(|detail| {
            if db.healthy.swap(false, Ordering::SeqCst) {
                tracing::error!(db = %db.path.display(), error = %detail, "registration database write failed; not ready until it recovers");
            }
            RegistryError::Db {
                path: db.path.clone(),
                detail,
            }
        })
    }

    /// False after a failed write, until [`Registry::recover`] succeeds.
    pub fn healthy(&self) -> bool {
        self.db
            .as_ref()
            .is_none_or(|d| d.healthy.load(Ordering::SeqCst))
    }

    /// After a failed write: reopens the database and writes the in-memory registrations and
    /// secrets back (the memory is what executors were told). True once healthy again.
    pub fn recover(&self, secrets: &HashMap<String, String>) -> bool {
        let Some(db) = &self.db else {
            return true;
        };
        if db.healthy.load(Ordering::SeqCst) {
            return true;
        }
        let mut guard = db.db.lock().unwrap_or_else(|p| p.into_inner());
        // redb refuses further use after an I/O error: drop it and open the file again.
        drop(guard.take());
        let d = match Self::open_db(&db.path) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "registration database still unusable");
                return false;
            }
        };
        let rows: Vec<(String, String)> = {
            let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
            apps.iter()
                .flat_map(|(app, a)| {
                    a.executors.iter().filter_map(move |(exec, e)| {
                        let stored = Stored {
                            local_dirs: e.layout.local_dirs.clone(),
                            sub_dirs_per_local_dir: e.layout.sub_dirs,
                            shuffle_manager: e.layout.shuffle_manager.clone(),
                            canonical_dirs: e.layout.canonical_dirs.clone(),
                            registered_at_ms: a.last_seen_ms.load(Ordering::Relaxed),
                            authenticated: e.authenticated,
                        };
                        serde_json::to_string(&stored)
                            .ok()
                            .map(|v| (db_key(app, exec), v))
                    })
                })
                .collect()
        };
        let res = (|| -> Result<(), redb::Error> {
            let txn = d.begin_write()?;
            {
                let mut t = txn.open_table(EXECUTORS)?;
                t.retain(|_, _| false)?;
                for (k, v) in &rows {
                    t.insert(k.as_str(), v.as_str())?;
                }
                let mut s = txn.open_table(SECRETS)?;
                s.retain(|_, _| false)?;
                for (app, secret) in secrets {
                    s.insert(app.as_str(), secret.as_str())?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        match res {
            Ok(()) => {
                *guard = Some(d);
                db.healthy.store(true, Ordering::SeqCst);
                tracing::info!(db = %db.path.display(), executors = rows.len(), "registration database recovered");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "registration database still unusable");
                false
            }
        }
    }

    /// Learned secrets stored with the registrations.
    pub fn stored_secrets(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let Some(db) = &self.db else {
            return out;
        };
        let guard = db.db.lock().unwrap_or_else(|p| p.into_inner());
        let Some(d) = guard.as_ref() else {
            return out;
        };
        let res = (|| -> Result<(), redb::Error> {
            let txn = d.begin_read()?;
            let t = txn.open_table(SECRETS)?;
            for row in t.iter()? {
                let (k, v) = row?;
                out.insert(k.value().to_owned(), v.value().to_owned());
            }
            Ok(())
        })();
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot read stored secrets");
        }
        out
    }

    pub fn store_secret(&self, app_id: &str, secret: &str) -> Result<(), RegistryError> {
        self.write(|txn| {
            txn.open_table(SECRETS)?.insert(app_id, secret)?;
            Ok(())
        })
    }

    pub fn forget_secret(&self, app_id: &str) -> Result<(), RegistryError> {
        self.write(|txn| {
            txn.open_table(SECRETS)?.remove(app_id)?;
            Ok(())
        })
    }

    fn restore(&self) -> Result<(), RegistryError> {
        let Some(dbs) = &self.db else {
            return Ok(());
        };
        let path = &dbs.path;
        let err = |detail: String| RegistryError::Db {
            path: path.clone(),
            detail,
        };
        let guard = dbs.db.lock().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| err("not open".into()))?;
        let txn = db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = txn.open_table(EXECUTORS).map_err(|e| err(e.to_string()))?;
        let mut apps = self.apps.write().map_err(|_| err("lock poisoned".into()))?;
        let mut owners = self
            .owners
            .write()
            .map_err(|_| err("lock poisoned".into()))?;
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
            // Registrations written by an older version were not held to today's rules; one
            // that names an allowed root itself would have its removal delete the whole root.
            if let Some(bad) = stored
                .canonical_dirs
                .iter()
                .find_map(|d| self.check_dir(d).err())
            {
                tracing::warn!(key, reason = %bad, "not restoring a registration that breaks the local-dir rules");
                continue;
            }
            if let Some(d) = stored
                .canonical_dirs
                .iter()
                .find(|d| owners.get(*d).is_some_and(|o| *o != parsed.app_id))
            {
                tracing::warn!(key, dir = %d.display(), "not restoring a registration of a dir another application owns");
                continue;
            }
            for d in &stored.canonical_dirs {
                owners.insert(d.clone(), parsed.app_id.clone());
            }
            let app = apps.entry(parsed.app_id).or_insert_with(|| App {
                executors: HashMap::new(),
                last_seen_ms: AtomicU64::new(0),
            });
            app.last_seen_ms
                .fetch_max(stored.registered_at_ms, Ordering::Relaxed);
            app.executors.insert(
                parsed.exec_id,
                Executor {
                    layout: Arc::new(ExecutorLayout {
                        local_dirs: stored.local_dirs,
                        canonical_dirs: stored.canonical_dirs,
                        sub_dirs: stored.sub_dirs_per_local_dir,
                        shuffle_manager: stored.shuffle_manager,
                    }),
                    authenticated: stored.authenticated,
                },
            );
            n += 1;
        }
        self.executors_gauge.set(n);
        if n > 0 {
            tracing::info!(executors = n, apps = apps.len(), db = %path.display(), "restored registrations");
        }
        Ok(())
    }

    /// Why a canonical dir may not be registered or deleted, if it may not: it must be a
    /// `blockmgr-<uuid>` dir strictly below an allowed root.
    fn check_dir(&self, c: &Path) -> Result<(), String> {
        if !self
            .allowed_roots
            .iter()
            .any(|r| c.starts_with(r) && c != r.as_path())
        {
            return Err(format!(
                "{} is not under any of the service's local directories (--allowed-root; it must be strictly below one)",
                c.display()
            ));
        }
        let name = c.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_block_manager_dir_name(name) {
            return Err(format!(
                "{} is not an executor's block manager dir (blockmgr-<uuid>)",
                c.display()
            ));
        }
        Ok(())
    }

    /// Validates and stores a registration (database first, then memory). `authenticated`
    /// says the connection authenticated as `app_id`: only such a connection may change an
    /// existing executor's dirs.
    pub fn register(
        &self,
        app_id: &str,
        exec_id: &str,
        info: &ExecutorShuffleInfo,
        authenticated: bool,
    ) -> Result<(), RegistryError> {
        let bad = |s: &str| s.is_empty() || s.len() > 1024 || s.contains('\0');
        if bad(app_id) || bad(exec_id) {
            return Err(RegistryError::Refused(format!(
                "invalid appId {app_id:?} or execId {exec_id:?}"
            )));
        }
        if info.local_dirs.is_empty() || info.local_dirs.len() > MAX_LOCAL_DIRS {
            return Err(RegistryError::Refused(format!(
                "executor {exec_id} of {app_id} registered {} localDirs (1 to {MAX_LOCAL_DIRS} allowed)",
                info.local_dirs.len()
            )));
        }
        if info.sub_dirs_per_local_dir <= 0 || info.sub_dirs_per_local_dir > MAX_SUB_DIRS {
            return Err(RegistryError::Refused(format!(
                "subDirsPerLocalDir {} is outside 1..={MAX_SUB_DIRS}",
                info.sub_dirs_per_local_dir
            )));
        }
        if info.shuffle_manager.len() > 1024 {
            return Err(RegistryError::Refused(
                "shuffleManager name too long".into(),
            ));
        }
        let mut canonical = Vec::with_capacity(info.local_dirs.len());
        for d in &info.local_dirs {
            if d.is_empty() || !Path::new(d).is_absolute() {
                return Err(RegistryError::Refused(format!(
                    "localDirs entry is not under any of the service's local directories (--allowed-root): {d}"
                )));
            }
            let c = Path::new(d).canonicalize().map_err(|e| {
                RegistryError::Refused(format!("localDirs entry {d} cannot be resolved: {e}"))
            })?;
            self.check_dir(&c).map_err(|why| {
                RegistryError::Refused(format!("localDirs entry {d} refused: {why}"))
            })?;
            if !canonical.contains(&c) {
                canonical.push(c);
            }
        }
        // Ownership: a dir belongs to the application that registered it first, and an
        // executor's registration changes only by its own authenticated application.
        {
            let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
            if let Some((d, owner)) = canonical
                .iter()
                .find_map(|d| owners.get(d).filter(|o| *o != app_id).map(|o| (d, o)))
            {
                return Err(RegistryError::Forbidden(format!(
                    "localDirs entry {} belongs to another application ({owner}); refusing to register it for {app_id}",
                    d.display()
                )));
            }
            let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = apps.get(app_id).and_then(|a| a.executors.get(exec_id)) {
                if old.layout.canonical_dirs != canonical && !authenticated {
                    return Err(RegistryError::Forbidden(format!(
                        "executor {exec_id} of {app_id} is already registered with other localDirs; only its own authenticated application may change them"
                    )));
                }
            }
        }
        let now = now_ms();
        let stored = Stored {
            local_dirs: info.local_dirs.clone(),
            sub_dirs_per_local_dir: info.sub_dirs_per_local_dir,
            shuffle_manager: info.shuffle_manager.clone(),
            canonical_dirs: canonical.clone(),
            registered_at_ms: now,
            authenticated,
        };
        let value =
            serde_json::to_string(&stored).map_err(|e| RegistryError::Refused(e.to_string()))?;
        let key = db_key(app_id, exec_id);
        self.write(|txn| {
            txn.open_table(EXECUTORS)?
                .insert(key.as_str(), value.as_str())?;
            Ok(())
        })?;
        let layout = Arc::new(ExecutorLayout {
            local_dirs: info.local_dirs.clone(),
            canonical_dirs: canonical.clone(),
            sub_dirs: info.sub_dirs_per_local_dir,
            shuffle_manager: info.shuffle_manager.clone(),
        });
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        for d in &canonical {
            owners.insert(d.clone(), app_id.to_owned());
        }
        let app = apps.entry(app_id.to_owned()).or_insert_with(|| App {
            executors: HashMap::new(),
            last_seen_ms: AtomicU64::new(now),
        });
        app.last_seen_ms.fetch_max(now, Ordering::Relaxed);
        let old = app.executors.insert(
            exec_id.to_owned(),
            Executor {
                layout,
                authenticated,
            },
        );
        match old {
            None => {
                self.executors_gauge.inc();
            }
            Some(old) => {
                // dirs the executor no longer has are released
                for d in old
                    .layout
                    .canonical_dirs
                    .iter()
                    .filter(|d| !canonical.contains(d))
                {
                    owners.remove(d);
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, app_id: &str, exec_id: &str) -> Result<Arc<ExecutorLayout>, RegistryError> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.get(app_id)
            .and_then(|a| a.executors.get(exec_id).map(|e| e.layout.clone()))
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

    /// Forgets the executors of `app_id` that registered without authenticating (once its
    /// secret is known, those can only have come from someone else). Their files stay.
    pub fn forget_unauthenticated(&self, app_id: &str) -> Vec<String> {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let Some(app) = apps.get_mut(app_id) else {
            return Vec::new();
        };
        let gone: Vec<String> = app
            .executors
            .iter()
            .filter(|(_, e)| !e.authenticated)
            .map(|(k, _)| k.clone())
            .collect();
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        for exec in &gone {
            if let Some(e) = app.executors.remove(exec) {
                for d in &e.layout.canonical_dirs {
                    owners.remove(d);
                }
            }
        }
        if app.executors.is_empty() {
            apps.remove(app_id);
        }
        drop(owners);
        drop(apps);
        self.executors_gauge.dec_by(gone.len() as i64);
        if !gone.is_empty() {
            let keys: Vec<String> = gone.iter().map(|e| db_key(app_id, e)).collect();
            let _ = self.write(|txn| {
                let mut t = txn.open_table(EXECUTORS)?;
                for k in &keys {
                    t.remove(k.as_str())?;
                }
                Ok(())
            });
        }
        gone
    }

    /// Forgets an application (memory, database, its secret) and returns its executors'
    /// canonical dirs that may be deleted (checked again against the rules; the caller deletes
    /// them).
    pub fn remove_app(&self, app_id: &str) -> Vec<PathBuf> {
        let removed = {
            let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
            apps.remove(app_id)
        };
        let execs: Vec<String> = removed
            .as_ref()
            .map(|a| a.executors.keys().cloned().collect())
            .unwrap_or_default();
        let res = self.write(|txn| {
            let mut t = txn.open_table(EXECUTORS)?;
            for exec in &execs {
                t.remove(db_key(app_id, exec).as_str())?;
            }
            txn.open_table(SECRETS)?.remove(app_id)?;
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(app_id, error = %e, "cannot delete registrations (written back or dropped when the database recovers)");
        }
        let Some(app) = removed else {
            return Vec::new();
        };
        self.executors_gauge.dec_by(app.executors.len() as i64);
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        let mut dirs = Vec::new();
        for e in app.executors.values() {
            for d in &e.layout.canonical_dirs {
                if owners.get(d).is_some_and(|o| o == app_id) {
                    owners.remove(d);
                }
                match self.check_dir(d) {
                    Ok(()) if !dirs.contains(d) => dirs.push(d.clone()),
                    Ok(()) => {}
                    Err(why) => {
                        tracing::warn!(app_id, reason = %why, "not deleting a registered dir")
                    }
                }
            }
        }
        dirs
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

    const U1: &str = "blockmgr-00000000-0000-0000-0000-000000000001";
    const U2: &str = "blockmgr-00000000-0000-0000-0000-000000000002";
    const U3: &str = "blockmgr-00000000-0000-0000-0000-000000000003";

    #[test]
    fn registrations_survive_reopen_and_are_fenced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        let d = root.join(U1);
        let d2 = root.join(U2);
        let d3 = root.join(U3);
        for x in [&d, &d2, &d3] {
            std::fs::create_dir_all(x).expect("mkdir");
        }
        let outside = tmp.path().join(U3);
        std::fs::create_dir_all(&outside).expect("mkdir");
        let state = tmp.path().join("state");
        let g = prometheus_client::metrics::gauge::Gauge::default();
        let s = |p: &Path| p.display().to_string();
        {
            let r =
                Registry::open(Some(&state), std::slice::from_ref(&root), g.clone()).expect("open");
            r.register("app-1", "1", &info(vec![s(&d)]), false)
                .expect("register");
            r.register("app-1", "2", &info(vec![s(&d)]), false)
                .expect("same app may share");
            r.register("app-2", "1", &info(vec![s(&d2)]), false)
                .expect("register");
            for bad in [
                vec![s(&outside)],
                vec![format!("{}/../{U3}", root.display())],
                vec![s(&root)],
                vec![s(&root.join("x").join(".."))],
                vec!["relative".into()],
                vec![],
            ] {
                assert!(
                    r.register("app-1", "3", &info(bad.clone()), false).is_err(),
                    "{bad:?}"
                );
            }
            std::os::unix::fs::symlink(
                &outside,
                root.join("blockmgr-00000000-0000-0000-0000-00000000000a"),
            )
            .expect("symlink");
            assert!(r
                .register(
                    "app-1",
                    "3",
                    &info(vec![s(
                        &root.join("blockmgr-00000000-0000-0000-0000-00000000000a")
                    )]),
                    false
                )
                .is_err());
            // another app's dir, and another app's executor with other dirs
            assert!(matches!(
                r.register("app-3", "1", &info(vec![s(&d)]), false),
                Err(RegistryError::Forbidden(_))
            ));
            assert!(matches!(
                r.register("app-2", "1", &info(vec![s(&d3)]), false),
                Err(RegistryError::Forbidden(_))
            ));
            r.register("app-2", "1", &info(vec![s(&d2)]), false)
                .expect("same dirs again is fine");
            r.register("app-2", "1", &info(vec![s(&d3)]), true)
                .expect("its own authenticated app may move it");
            assert_eq!(g.get(), 3);
            assert_eq!(r.remove_app("app-2"), vec![d3.canonicalize().expect("c")]);
        }
        let g2 = prometheus_client::metrics::gauge::Gauge::default();
        let r = Registry::open(Some(&state), &[root], g2.clone()).expect("reopen");
        assert_eq!(r.executor_count(), 2);
        assert_eq!(g2.get(), 2);
        let l = r.get("app-1", "2").expect("restored");
        assert_eq!(l.local_dirs, vec![s(&d)]);
        assert!(r.get("app-2", "1").is_err());
        assert!(r.idle_apps(Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn old_registrations_that_name_a_root_are_not_restored() {
        // What an earlier version accepted: the allowed root itself as a local dir. Removing
        // that application would have deleted the whole root.
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join(U1)).expect("mkdir");
        let state = tmp.path().join("state");
        {
            let r = Registry::open(
                Some(&state),
                std::slice::from_ref(&root),
                Default::default(),
            )
            .expect("open");
            let stored = Stored {
                local_dirs: vec![root.display().to_string()],
                sub_dirs_per_local_dir: 64,
                shuffle_manager: "sort".into(),
                canonical_dirs: vec![root.canonicalize().expect("c")],
                registered_at_ms: 1,
                authenticated: false,
            };
            let v = serde_json::to_string(&stored).expect("json");
            r.write(|txn| {
                txn.open_table(EXECUTORS)?
                    .insert(db_key("app-old", "1").as_str(), v.as_str())?;
                Ok(())
            })
            .expect("write");
        }
        let r = Registry::open(
            Some(&state),
            std::slice::from_ref(&root),
            Default::default(),
        )
        .expect("reopen");
        assert_eq!(r.executor_count(), 0);
        assert!(r.remove_app("app-old").is_empty());
        assert!(root.join(U1).exists());
    }

    #[test]
    fn block_manager_dir_names() {
        assert!(is_block_manager_dir_name(U1));
        assert!(is_block_manager_dir_name(
            "blockmgr-0e7bd4a6-3d3b-4f0e-8e4d-2f1a9f0c7b11"
        ));
        for bad in [
            "blockmgr-1",
            "blockmgr-",
            "spark-local",
            "blockmgr-0e7bd4a6-3d3b-4f0e-8e4d-2f1a9f0c7b1",
            "blockmgr-0e7bd4a6x3d3b-4f0e-8e4d-2f1a9f0c7b11",
        ] {
            assert!(!is_block_manager_dir_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_state_dir_is_locked() {
        let tmp = tempfile::tempdir().expect("tmp");
        let _first = Registry::open(Some(tmp.path()), &[], Default::default()).expect("open");
        match Registry::open(Some(tmp.path()), &[], Default::default()) {
            Err(RegistryError::Locked { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("second open succeeded"),
        }
        assert!(tmp.path().join(DB_FILE).exists(), "nothing renamed");
        assert!(!tmp
            .path()
            .join("registered-executors.redb.corrupt")
            .exists());
    }

    #[test]
    fn no_allowed_root_refuses_everything() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path().join(U1);
        std::fs::create_dir_all(&d).expect("mkdir");
        let r = Registry::open(None, &[], Default::default()).expect("open");
        let e = r.register("a", "1", &info(vec![d.display().to_string()]), false);
        assert!(matches!(e, Err(RegistryError::Refused(_))));
    }
}
