//! Service names without DNS or kube-proxy: every pod gets its own `/etc/hosts` (bind-mounted
//! over the machine's inside each container), listing its own hostname and, for every Service,
//! `<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`, `<svc>.<ns>` (and `<svc>` in the pod's own
//! namespace) with the addresses of the Service's ready endpoints. Files are rewritten in place
//! (never replaced, which would detach the bind mounts) whenever Endpoints change.
//!
//! A name resolves to the endpoints, not to a cluster IP, so a client must use the port the
//! pods listen on: a Service whose `port` differs from its `targetPort` cannot be reached on
//! `port` here (docs/local-kubernetes.md). Endpoints are watched with the kube-proxy's identity
//! (`system:kube-proxy`), which may list them; a node may not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Endpoints, HostAlias};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

/// One pod's entry.
#[derive(Debug, Clone)]
pub struct PodHosts {
    pub namespace: String,
    pub hostname: String,
    pub ip: String,
    pub aliases: Vec<HostAlias>,
    pub path: PathBuf,
}

#[derive(Default)]
struct State {
    /// (namespace, service) -> ready addresses
    endpoints: BTreeMap<(String, String), Vec<String>>,
    /// pod uid -> entry and the content last written
    pods: BTreeMap<String, (PodHosts, String)>,
    synced: bool,
}

#[derive(Clone, Default)]
pub struct Hosts {
    state: Arc<Mutex<State>>,
    synced: Arc<tokio::sync::Notify>,
}

impl Hosts {
    /// Watches Endpoints in all namespaces for as long as the returned future runs.
    pub async fn run(self, client: Client) {
        let api: Api<Endpoints> = Api::all(client);
        let mut stream =
            std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        let mut pending: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        loop {
            let ev = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "watching Endpoints");
                    continue;
                }
            };
            match ev {
                Event::Init => pending.clear(),
                Event::InitApply(ep) => {
                    pending.insert(key(&ep), ready(&ep));
                }
                Event::InitDone => {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    s.endpoints = std::mem::take(&mut pending);
                    s.synced = true;
                    rewrite_all(&mut s);
                    drop(s);
                    self.synced.notify_waiters();
                }
                Event::Apply(ep) => {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    s.endpoints.insert(key(&ep), ready(&ep));
                    rewrite_all(&mut s);
                }
                Event::Delete(ep) => {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    s.endpoints.remove(&key(&ep));
                    rewrite_all(&mut s);
                }
            }
        }
    }

    /// Waits until the first list of Endpoints is in.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            if self.state.lock().unwrap_or_else(|e| e.into_inner()).synced {
                return;
            }
            notified.await;
        }
    }

    /// Creates (and from now on maintains) a pod's hosts file.
    pub fn add_pod(&self, uid: &str, pod: PodHosts) -> std::io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let text = render(&pod, &s.endpoints);
        write_in_place(&pod.path, &text)?;
        s.pods.insert(uid.to_string(), (pod, text));
        Ok(())
    }

    pub fn remove_pod(&self, uid: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pods
            .remove(uid);
    }
}

fn key(ep: &Endpoints) -> (String, String) {
    (
        ep.metadata.namespace.clone().unwrap_or_default(),
        ep.metadata.name.clone().unwrap_or_default(),
    )
}

fn ready(ep: &Endpoints) -> Vec<String> {
    let mut ips: Vec<String> = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn rewrite_all(s: &mut State) {
    let State {
        endpoints, pods, ..
    } = s;
    for (pod, last) in pods.values_mut() {
        let text = render(pod, endpoints);
        if text != *last {
            match write_in_place(&pod.path, &text) {
                Ok(()) => *last = text,
                Err(e) => {
                    tracing::warn!(error = %e, path = %pod.path.display(), "rewriting a hosts file")
                }
            }
        }
    }
}

/// The hosts file of `pod` given the Services' ready addresses.
pub fn render(pod: &PodHosts, endpoints: &BTreeMap<(String, String), Vec<String>>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (sidecars-kubelet): this pod and the Services' ready endpoints.\n\
         127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let _ = writeln!(out, "{}\t{}", pod.ip, pod.hostname);
    for ((ns, svc), ips) in endpoints {
        let mut names = format!("{svc}.{ns}.svc.cluster.local {svc}.{ns}.svc {svc}.{ns}");
        if *ns == pod.namespace {
            let _ = write!(names, " {svc}");
        }
        for ip in ips {
            let _ = writeln!(out, "{ip}\t{names}");
        }
    }
    for alias in &pod.aliases {
        if let Some(names) = alias.hostnames.as_ref().filter(|h| !h.is_empty()) {
            let ip = alias.ip.clone();
            let _ = writeln!(out, "{ip}\t{}", names.join(" "));
        }
    }
    out
}

/// Overwrites `path` without replacing its inode (it is bind-mounted into containers).
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.rewind()?;
    f.write_all(text.as_bytes())?;
    f.set_len(text.len() as u64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_for_own_and_other_namespaces() {
        let pod = PodHosts {
            namespace: "apps".into(),
            hostname: "pi-driver".into(),
            ip: "198.18.1.2".into(),
            aliases: vec![],
            path: PathBuf::new(),
        };
        let mut eps = BTreeMap::new();
        eps.insert(
            ("apps".to_string(), "pi-svc".to_string()),
            vec!["198.18.1.2".to_string()],
        );
        eps.insert(
            (
                "spark-sidecars".to_string(),
                "history-collector".to_string(),
            ),
            vec!["198.18.2.3".to_string()],
        );
        eps.insert(("other".to_string(), "empty".to_string()), vec![]);
        let text = render(&pod, &eps);
        assert!(text.contains("198.18.1.2\tpi-driver\n"));
        assert!(text.contains(
            "198.18.1.2\tpi-svc.apps.svc.cluster.local pi-svc.apps.svc pi-svc.apps pi-svc\n"
        ));
        assert!(text.contains(
            "198.18.2.3\thistory-collector.spark-sidecars.svc.cluster.local history-collector.spark-sidecars.svc history-collector.spark-sidecars\n"
        ));
        assert!(!text.contains("empty"));
    }

    #[test]
    fn rewrites_keep_the_inode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        write_in_place(&p, "a long first version\n").unwrap();
        let ino = fs::metadata(&p).unwrap().ino();
        write_in_place(&p, "short\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "short\n");
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
    }
}
