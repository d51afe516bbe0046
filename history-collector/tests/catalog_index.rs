//! Serving many applications: the listing read without replaying, the persisted listing
//! index, whole replays on demand within a bound, and retention, over real Spark 3.5 and
//! 4.x event logs (every codec, single files and rolling directories, logs still in
//! progress; see `parity_logs`).
//!
//! - `the_listing_scan_lists_what_a_full_replay_does`: the listing fields read from the four
//!   listed events equal those of a whole replay, for every log.
//! - `a_restart_lists_from_the_index_without_reading_a_log`: a second collector over the
//!   same store lists every application from the index (no log read, the same
//!   `/api/v1/applications` bytes); a log edited in place with its size and time kept is
//!   still listed from the index (proof that it was not read), and read again once its
//!   time changes; a damaged index is an empty one: every log is read again, nothing lost.
//! - `replays_are_made_once_and_kept_within_the_bound`: concurrent requests for one
//!   application replay it once; the kept replays stay within the count and byte bounds,
//!   least recently used out; every answer equals an unbounded server's.
//! - `retention_deletes_every_copy_of_the_logs_past_the_limits`: by age, then by count
//!   (oldest finished first, running logs kept), from the directory and the store, with
//!   the container logs of an application left with no attempt.

mod parity_logs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use history_collector::api;
use history_collector::catalog::index::INDEX_KEY;
use history_collector::catalog::loaded::ReplayBound;
use history_collector::catalog::retention::Retention;
use history_collector::catalog::{Catalog, CatalogMetrics, Settings};
use history_collector::eventlog::Origin;
use history_collector::ingest::layout::{self, LogStore};
use history_collector::model::listing::Listing;
use parity_logs::{copy_tree, logs_dir};
use sidecars_common::objstore::{self, ObjectStore};

async fn file_store(dir: &Path) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir).unwrap();
    objstore::open(&format!("file://{}", dir.display()), &Default::default())
        .await
        .unwrap()
}

fn catalog(
    dirs: Vec<PathBuf>,
    store: Option<Arc<dyn ObjectStore>>,
    settings: Settings,
) -> (Arc<Catalog>, CatalogMetrics) {
    let metrics = CatalogMetrics::default();
    let c = Catalog::build(dirs, store.map(LogStore::new), settings, metrics.clone());
    (Arc::new(c), metrics)
}

async fn refresh(c: &Arc<Catalog>) {
    let c = c.clone();
    tokio::task::spawn_blocking(move || c.refresh())
        .await
        .unwrap();
}

/// Our API over `catalog`, in this process.
async fn serve(catalog: Arc<Catalog>) -> String {
    let router = api::router(catalog);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

async fn get(url: &str) -> Vec<u8> {
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn copy_logs(tmp: &Path) -> PathBuf {
    let dir = tmp.join("logs");
    copy_tree(&logs_dir(), &dir);
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_scan_lists_what_a_full_replay_does() {
    let (c, m) = catalog(vec![logs_dir()], None, Settings::default());
    refresh(&c).await;
    let entries = c.entries();
    assert!(entries.len() >= 10, "only {} logs listed", entries.len());
    assert_eq!(m.listing_reads.get(), entries.len() as u64);
    assert_eq!(m.replay.replays.get(), 0, "listing replayed a log");
    for e in &entries {
        let app = c.app(e).await;
        assert_eq!(e.listing, Listing::of(&app), "{}", e.key);
    }
    assert!(entries.iter().any(|e| !e.listing.completed));
    // (these logs set no ACLs, listed as none; access_acls and access_parity list logs that
    // do, and check what each user is shown)
}

/// A JSON body with the per-scan times of running applications blanked (each server
/// reports its own scan time for them).
fn without_scan_times(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    for app in v.as_array_mut().unwrap() {
        for a in app["attempts"].as_array_mut().unwrap() {
            if a["completed"] == false {
                for k in ["lastUpdated", "lastUpdatedEpoch", "endTime", "duration"] {
                    a[k] = serde_json::Value::Null;
                }
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_lists_from_the_index_without_reading_a_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_logs(tmp.path());
    let store = file_store(&tmp.path().join("store")).await;

    // the first collector reads every log and writes the index
    let (first, m1) = catalog(vec![dir.clone()], Some(store.clone()), Settings::default());
    refresh(&first).await;
    let n = first.entries().len() as u64;
    assert!(n >= 10);
    assert_eq!(m1.listing_reads.get(), n);
    assert_eq!(m1.index_rows_used.get(), 0);
    assert!(
        store.head(INDEX_KEY).await.is_ok(),
        "no index was written to the store"
    );
    let before = get(&format!("{}/api/v1/applications", serve(first).await)).await;

    // a log edited in place, its size and modification time kept: only a read would see it
    let edited = dir.join(
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("app-") && !n.contains('.'))
            .expect("an uncompressed finished log"),
    );
    let mtime = std::fs::metadata(&edited).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&edited).unwrap();
    let at = text.find("\"App Name\":\"").unwrap() + "\"App Name\":\"".len();
    let len = text[at..].find('"').unwrap();
    let new_name: String = "Q".repeat(len);
    let changed = format!("{}{new_name}{}", &text[..at], &text[at + len..]);
    assert_eq!(changed.len(), text.len());
    std::fs::write(&edited, changed).unwrap();
    set_mtime(&edited, mtime);

    let (second, m2) = catalog(vec![dir.clone()], Some(store.clone()), Settings::default());
    refresh(&second).await;
    assert_eq!(m2.listing_reads.get(), 0, "a restart read logs");
    assert_eq!(m2.index_rows_used.get(), n);
    assert_eq!(m2.replay.replays.get(), 0);
    let base = serve(second.clone()).await;
    let after = get(&format!("{base}/api/v1/applications")).await;
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&before),
        "the restarted collector lists differently"
    );
    assert!(!String::from_utf8_lossy(&after).contains(&new_name));

    // the edited log's time changes: it is read again, and only it
    set_mtime(&edited, SystemTime::now());
    refresh(&second).await;
    assert_eq!(m2.listing_reads.get(), 1);
    let now = get(&format!("{base}/api/v1/applications")).await;
    assert!(String::from_utf8_lossy(&now).contains(&new_name));

    // a damaged index: everything is read again, the same applications listed
    tokio::time::sleep(Duration::from_millis(50)).await;
    objstore::put_bytes(store.as_ref(), INDEX_KEY, b"not zstd at all"[..].into())
        .await
        .unwrap();
    let (third, m3) = catalog(vec![dir.clone()], Some(store.clone()), Settings::default());
    refresh(&third).await;
    assert_eq!(m3.listing_reads.get(), n);
    assert_eq!(m3.index_rows_used.get(), 0);
    let relisted = get(&format!("{}/api/v1/applications", serve(third).await)).await;
    assert_eq!(without_scan_times(&relisted), without_scan_times(&now));
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_are_made_once_and_kept_within_the_bound() {
    let dir = logs_dir();
    let (reference, _) = catalog(vec![dir.clone()], None, Settings::default());
    refresh(&reference).await;
    let reference = serve(reference).await;
    let bounded = |max_apps, max_bytes| Settings {
        replay: ReplayBound {
            max_apps,
            max_bytes,
        },
        ..Settings::default()
    };
    let (c, m) = catalog(vec![dir.clone()], None, bounded(2, 1 << 30));
    refresh(&c).await;
    let base = serve(c.clone()).await;
    let mut ids: Vec<String> = c
        .entries()
        .iter()
        .filter(|e| e.listing.completed && e.listing.attempt_id.is_none())
        .filter_map(|e| e.listing.id.as_deref().map(str::to_string))
        .collect();
    ids.sort();
    assert!(ids.len() >= 4);
    let jobs = |base: &str, id: &str| format!("{base}/api/v1/applications/{id}/jobs");

    // eight at once for one application: one replay
    let same: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get_owned(jobs(&base, &ids[0]))))
        .collect();
    let want = get(&jobs(&reference, &ids[0])).await;
    for r in same {
        assert_eq!(r.await.unwrap(), want);
    }
    assert_eq!(m.replay.replays.get(), 1);
    assert_eq!(m.replay.hits.get(), 7);

    // three more applications: two kept, the least recently used out
    for id in &ids[1..4] {
        assert_eq!(
            get(&jobs(&base, id)).await,
            get(&jobs(&reference, id)).await
        );
    }
    assert_eq!(m.replay.replays.get(), 4);
    assert_eq!(m.replay.evictions.get(), 2);
    assert_eq!(m.replay.kept_apps.get(), 2);
    // the last one is kept, the first was dropped
    get(&jobs(&base, &ids[3])).await;
    assert_eq!(m.replay.replays.get(), 4);
    get(&jobs(&base, &ids[0])).await;
    assert_eq!(m.replay.replays.get(), 5);

    // a byte bound smaller than any application: every request replays, answers unchanged
    let (tiny, mt) = catalog(vec![dir], None, bounded(64, 1));
    refresh(&tiny).await;
    let tiny_base = serve(tiny).await;
    for _ in 0..2 {
        assert_eq!(
            get(&jobs(&tiny_base, &ids[1])).await,
            get(&jobs(&reference, &ids[1])).await
        );
    }
    assert_eq!(mt.replay.replays.get(), 2);
    assert_eq!(mt.replay.kept_apps.get(), 0);
    assert_eq!(mt.replay.kept_bytes.get(), 0);
}

async fn get_owned(url: String) -> Vec<u8> {
    get(&url).await
}

/// Every file of the directory, by path relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_every_copy_of_the_logs_past_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_logs(tmp.path());
    let store = file_store(&tmp.path().join("store")).await;
    let ls = LogStore::new(store.clone());

    // learn the logs, then give the finished ones distinct ages
    let (probe, _) = catalog(vec![dir.clone()], None, Settings::default());
    refresh(&probe).await;
    let mut finished: Vec<(String, String, Vec<String>)> = Vec::new(); // key, app, files
    let mut running = Vec::new();
    for e in probe.entries() {
        assert!(matches!(e.source.origin, Origin::Dir(_)));
        // every file of the log, a rolling directory's status marker too
        let rels: Vec<String> = match e.source.files[0].rel.split_once('/') {
            Some((rolling, _)) => files(&dir.join(rolling))
                .into_iter()
                .map(|f| format!("{rolling}/{f}"))
                .collect(),
            None => e.source.files.iter().map(|f| f.rel.to_string()).collect(),
        };
        if e.listing.completed {
            finished.push((
                e.key.to_string(),
                e.listing.id.as_deref().unwrap().to_string(),
                rels,
            ));
        } else {
            running.push(e.key.to_string());
        }
    }
    finished.sort();
    assert!(finished.len() >= 6 && !running.is_empty());
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    // the first two are 31 and 30 days old, the others younger in order, hours apart
    let age = |i: usize| match i {
        0 => day * 31,
        1 => day * 30,
        _ => Duration::from_secs(3600) * (finished.len() - i) as u32,
    };
    for (i, (key, app, rels)) in finished.iter().enumerate() {
        for rel in rels {
            set_mtime(&dir.join(rel), now - age(i));
            // a stored copy too, as ingest keeps it
            let data = std::fs::read(dir.join(rel)).unwrap();
            objstore::put_bytes(store.as_ref(), &layout::eventlog_key(key, rel), data.into())
                .await
                .unwrap();
        }
        let pod = layout::podlog_key(app, "driver", "spark-kubernetes-driver");
        objstore::put_bytes(store.as_ref(), &pod, b"log line\n"[..].into())
            .await
            .unwrap();
    }
    drop(probe);
    let listed = |c: &Catalog| -> BTreeMap<String, bool> {
        c.entries()
            .iter()
            .map(|e| (e.key.to_string(), e.listing.completed))
            .collect()
    };
    let stored_logs = || async { ls.list_logs().await.unwrap() };

    // by age: the two older than a week go, from the directory, the store and their pods' logs
    let week = Retention {
        max_age: Some(day * 7),
        ..Retention::default()
    };
    let settings = Settings {
        retention: week,
        ..Settings::default()
    };
    let (c, m) = catalog(vec![dir.clone()], Some(store.clone()), settings);
    refresh(&c).await;
    assert_eq!(m.retention_deleted.get(), 2);
    let gone: Vec<&String> = finished[..2].iter().map(|f| &f.0).collect();
    let kept = listed(&c);
    for g in &gone {
        assert!(!kept.contains_key(*g), "{g} still listed");
    }
    assert_eq!(kept.len(), finished.len() + running.len() - 2);
    let left = files(&dir);
    for (_, _, rels) in &finished[..2] {
        for rel in rels {
            assert!(!left.contains(rel), "{rel} left in the directory");
        }
    }
    for (key, _, rels) in &finished[2..] {
        for rel in rels {
            assert!(left.contains(rel), "{key}: {rel} deleted");
        }
    }
    let stored = stored_logs().await;
    for (key, app, _) in &finished[..2] {
        assert!(!stored.contains(key), "{key} left in the store");
        assert!(
            ls.list_podlogs(app).await.unwrap().is_empty(),
            "{app}'s pod logs left"
        );
    }
    for (key, app, _) in &finished[2..] {
        assert!(stored.contains(key), "{key} deleted from the store");
        assert_eq!(ls.list_podlogs(app).await.unwrap().len(), 1);
    }
    drop(c);

    // by count: the oldest finished go until that many are left; running logs always stay
    let keep = running.len() + 2;
    let settings = Settings {
        retention: Retention {
            max_apps: Some(keep),
            ..Retention::default()
        },
        ..Settings::default()
    };
    let (c, m) = catalog(vec![dir.clone()], Some(store.clone()), settings);
    refresh(&c).await;
    let kept = listed(&c);
    let mut want: BTreeMap<String, bool> = running.iter().map(|k| (k.clone(), false)).collect();
    // the two youngest finished: the last two of `finished`
    for (key, _, _) in &finished[finished.len() - 2..] {
        want.insert(key.clone(), true);
    }
    assert_eq!(kept, want);
    assert_eq!(m.retention_deleted.get() as usize, finished.len() - 4);
    let mut stored = stored_logs().await;
    stored.sort();
    let mut want_stored: Vec<String> = finished[finished.len() - 2..]
        .iter()
        .map(|f| f.0.clone())
        .collect();
    want_stored.sort();
    assert_eq!(stored, want_stored);
    // nothing else left behind in the directory: only the kept logs' files
    let mut want_files: Vec<String> = c
        .entries()
        .iter()
        .flat_map(|e| {
            e.source
                .files
                .iter()
                .map(|f| f.rel.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // a rolling directory's status marker stays with its log
    let left: Vec<String> = files(&dir)
        .into_iter()
        .filter(|f| !f.contains("/appstatus_"))
        .collect();
    want_files.sort();
    assert_eq!(left, want_files);
}
