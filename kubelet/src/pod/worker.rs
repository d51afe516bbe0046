//! One pod's life on this node, from its binding to the deletion of its object:
//!
//! 1. its network namespace and address (or the node's, for `hostNetwork`), `/etc/hosts` and
//!    volumes; a failure here (a hostPath type check, a missing ConfigMap) is a `FailedMount`
//!    event and a retry, the containers waiting in `ContainerCreating`;
//! 2. init containers one at a time, each to a successful exit; a restartable init container
//!    (`restartPolicy: Always`, a sidecar) only has to start (and pass its startup probe) before
//!    the next one, keeps running beside the regular containers and is restarted whenever it
//!    exits;
//! 3. the regular containers, restarted as `restartPolicy` says, with the kubelet's back-off
//!    (10 s doubling to 5 min; the first restart is immediate);
//! 4. probes: readiness decides `ready` and the pod's Ready condition, a failed liveness or
//!    startup probe restarts the container;
//! 5. when every regular container of a `Never`/`OnFailure` pod is done, the pod is `Succeeded`
//!    (all exited 0) or `Failed`, its sidecars are stopped and its network is released; its logs
//!    stay until the pod is deleted;
//! 6. graceful deletion: SIGTERM to the regular containers, then to the sidecars, SIGKILL at the
//!    end of the grace period, then the pod object is deleted with grace period 0.
//!
//! The status (phase, conditions, container states with exit codes, restart counts, ready and
//! started flags) is sent to the API server after every change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::process::{self, Exit, PodEnv, Proc, StartFailure};
use crate::hosts::PodHosts;
use crate::network::PodNetwork;
use crate::node::NodeCtx;
use crate::probe::{self, Outcome, Timing};

/// Which container: (is an init container, index).
type CtrRef = (bool, usize);

#[derive(Debug)]
enum CtrEvent {
    Exited(CtrRef, u32, Exit),
    Probe(CtrRef, u32, ProbeKind, bool, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

#[derive(Debug, Clone)]
struct Term {
    code: i32,
    reason: String,
    message: Option<String>,
    started_at: Option<Timestamp>,
    finished_at: Timestamp,
    container_id: String,
}

enum State {
    Waiting(String, Option<String>),
    Running(Proc),
    Terminated(Term),
}

struct Ctr {
    spec: Container,
    sidecar: bool,
    state: State,
    last: Option<Term>,
    restarts: i32,
    attempts: u32,
    ready: bool,
    started: bool,
    /// No (re)start before this.
    not_before: Option<Instant>,
    probes: Option<tokio::task::JoinHandle<()>>,
    image_id: String,
}

impl Ctr {
    fn new(spec: Container, sidecar: bool, waiting: &str) -> Self {
        Ctr {
            spec,
            sidecar,
            state: State::Waiting(waiting.into(), None),
            last: None,
            restarts: 0,
            attempts: 0,
            ready: false,
            started: false,
            not_before: None,
            probes: None,
            image_id: String::new(),
        }
    }

    fn running(&self) -> Option<&Proc> {
        match &self.state {
            State::Running(p) => Some(p),
            _ => None,
        }
    }

    fn exit_code(&self) -> Option<i32> {
        match &self.state {
            State::Terminated(t) => Some(t.code),
            _ => None,
        }
    }
}

pub struct Worker {
    node: Arc<NodeCtx>,
    rx: watch::Receiver<Option<Pod>>,
    pod: Pod,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    host_network: bool,
    net: Option<PodNetwork>,
    ip: Option<String>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    /// Retry of a failed set-up.
    setup_retry: Option<Instant>,
    /// When `step` last judged which containers were due: a `not_before` at or before it was
    /// acted on then (or waits for another container's event), so it is no reason to wake.
    stepped_at: Instant,
    init: Vec<Ctr>,
    main: Vec<Ctr>,
    events_tx: mpsc::UnboundedSender<CtrEvent>,
    events: mpsc::UnboundedReceiver<CtrEvent>,
    start_time: Option<Timestamp>,
    initialized: bool,
    /// Succeeded or Failed, once decided.
    terminal: Option<&'static str>,
    conditions: BTreeMap<&'static str, (bool, Timestamp)>,
    last_status: Option<Value>,
}

impl Worker {
    pub fn new(node: Arc<NodeCtx>, pod: Pod, rx: watch::Receiver<Option<Pod>>) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
        let init = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                Ctr::new(c, sidecar, "PodInitializing")
            })
            .collect();
        let waiting = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let main = spec
            .containers
            .clone()
            .into_iter()
            .map(|c| Ctr::new(c, false, waiting))
            .collect();
        let (events_tx, events) = mpsc::unbounded_channel();
        let dir = node.pods_dir.join(&uid);
        // a pod that already ended (before a kubelet restart) is not run again
        let terminal = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => Some("Succeeded"),
            Some("Failed") => Some("Failed"),
            _ => None,
        };
        Worker {
            host_network: spec.host_network.unwrap_or(false),
            node,
            rx,
            pod,
            uid,
            ns,
            name,
            dir,
            net: None,
            ip: None,
            volumes: None,
            setup_retry: None,
            stepped_at: Instant::now(),
            init,
            main,
            events_tx,
            events,
            start_time: None,
            initialized: false,
            terminal,
            conditions: BTreeMap::new(),
            last_status: None,
        }
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    pub async fn run(mut self) {
        let already_done = self.terminal.is_some();
        loop {
            if self.deleting() {
                let grace = self
                    .pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or(self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30)
                    .max(0) as u64;
                self.stop_all(Duration::from_secs(grace)).await;
                if !already_done || self.last_status.is_some() {
                    self.push_status().await;
                }
                self.cleanup().await;
                self.delete_object().await;
                return;
            }
            if self.terminal.is_none() {
                self.step().await;
            }
            if !already_done {
                self.push_status().await;
            }
            let wake = self.next_wake();
            tokio::select! {
                ev = self.events.recv() => {
                    if let Some(ev) = ev {
                        self.handle(ev).await;
                    }
                }
                changed = self.rx.changed() => {
                    let gone = changed.is_err() || self.rx.borrow().is_none();
                    if gone {
                        // deleted without us (grace period 0): stop at once
                        self.stop_all(Duration::from_secs(2)).await;
                        self.cleanup().await;
                        return;
                    }
                    if let Some(p) = self.rx.borrow_and_update().clone() {
                        self.pod = p;
                    }
                }
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// The next time something becomes due. Only times after the last `step` count: a
    /// container's back-off that has passed without a restart (restartPolicy Never, OnFailure
    /// after exit 0, a finished init container) would otherwise wake the loop at once, forever;
    /// a pod that has ended starts nothing.
    fn next_wake(&self) -> Option<Instant> {
        if self.terminal.is_some() {
            return None;
        }
        let judged = self.stepped_at;
        self.init
            .iter()
            .chain(self.main.iter())
            .filter_map(|c| c.not_before)
            .filter(|t| *t > judged)
            .chain(self.setup_retry)
            .min()
    }

    /// Sets up the pod if needed and starts whatever containers are due.
    async fn step(&mut self) {
        if self.start_time.is_none() {
            self.start_time = Some(Timestamp::now());
        }
        if self.volumes.is_none() {
            if self.setup_retry.is_some_and(|t| t > Instant::now()) {
                return;
            }
            if let Err(e) = self.setup().await {
                self.node
                    .event(&self.pod, "Warning", "FailedMount", &format!("{e:#}"));
                tracing::warn!(pod = %self.name, error = %format!("{e:#}"), "pod set-up failed");
                self.setup_retry = Some(Instant::now() + Duration::from_secs(5));
                return;
            }
            self.setup_retry = None;
        }
        let now = Instant::now();
        self.stepped_at = now;
        // init containers, in order
        if !self.initialized {
            for i in 0..self.init.len() {
                let c = &self.init[i];
                let due = c.not_before.is_none_or(|t| t <= now);
                match (&c.state, c.sidecar) {
                    (State::Running(_), true) => {
                        if !c.started {
                            return;
                        }
                    }
                    (State::Running(_), false) => return,
                    (State::Terminated(t), false) if t.code == 0 => {}
                    (State::Terminated(_), false) if self.restart_policy() == "Never" => {
                        self.finish("Failed").await;
                        return;
                    }
                    (State::Waiting(..), _) | (State::Terminated(_), _) => {
                        if due {
                            self.start((true, i)).await;
                        }
                        // the next one waits for this one (to finish, or to start)
                        let c = &self.init[i];
                        if !(c.sidecar && c.started) {
                            return;
                        }
                    }
                }
            }
            self.initialized = true;
        }
        // sidecars are restarted whenever they exit
        for i in 0..self.init.len() {
            let c = &self.init[i];
            if c.sidecar && c.running().is_none() && c.not_before.is_none_or(|t| t <= now) {
                self.start((true, i)).await;
            }
        }
        let policy = self.restart_policy().to_string();
        for i in 0..self.main.len() {
            let c = &self.main[i];
            let due = c.not_before.is_none_or(|t| t <= now);
            let should = match &c.state {
                State::Running(_) => false,
                State::Waiting(..) => true,
                State::Terminated(t) => {
                    policy == "Always" || (policy == "OnFailure" && t.code != 0)
                }
            };
            if should && due {
                self.start((false, i)).await;
            }
        }
        // done?
        if policy != "Always" {
            let all_done = self.main.iter().all(|c| match &c.state {
                State::Terminated(t) => policy == "Never" || t.code == 0,
                _ => false,
            });
            if all_done {
                let ok = self.main.iter().all(|c| c.exit_code() == Some(0));
                self.finish(if ok { "Succeeded" } else { "Failed" }).await;
            }
        }
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if self.ip.is_none() {
            if self.host_network {
                self.ip = Some(self.node.ip.to_string());
            } else {
                let ip = self.node.ips.allocate()?;
                match PodNetwork::create(&self.uid, ip, &self.node.bridge).await {
                    Ok(net) => {
                        self.ip = Some(ip.to_string());
                        self.net = Some(net);
                    }
                    Err(e) => {
                        self.node.ips.release(ip);
                        return Err(e);
                    }
                }
            }
            let hosts = PodHosts {
                namespace: self.ns.clone(),
                hostname: self.hostname(),
                ip: self.ip.clone().unwrap_or_default(),
                aliases: self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_aliases.clone())
                    .unwrap_or_default(),
                path: self.dir.join("hosts"),
            };
            self.node
                .hosts
                .add_pod(&self.uid, hosts)
                .context("writing /etc/hosts")?;
            // the address goes out before the containers start
            self.push_status().await;
        }
        let facts = crate::env::PodFacts {
            pod: &self.pod,
            pod_ip: self.ip.clone().unwrap_or_default(),
            host_ip: self.node.ip.to_string(),
            node_cpu_millis: self.node.cpu_millis,
            node_memory_bytes: self.node.memory_bytes,
        };
        let volumes = crate::volumes::prepare(
            &self.node.client,
            &self.pod,
            &facts,
            &self.dir,
            &self.node.host_root,
        )
        .await?;
        self.volumes = Some(volumes);
        Ok(())
    }

    fn hostname(&self) -> String {
        if self.host_network {
            return self.node.name.clone();
        }
        let h = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    }

    fn ctr(&mut self, r: CtrRef) -> &mut Ctr {
        if r.0 {
            &mut self.init[r.1]
        } else {
            &mut self.main[r.1]
        }
    }

    async fn start(&mut self, r: CtrRef) {
        let netns = match &self.net {
            Some(n) => n.path(),
            None => self.node.netns.clone(),
        };
        let spec = self.ctr(r).spec.clone();
        let attempt = self.ctr(r).attempts;
        let volumes = self.volumes.clone().unwrap_or_default();
        let env = PodEnv {
            pod: &self.pod,
            dir: &self.dir,
            netns,
            ip: self.ip.clone().unwrap_or_default(),
            hostname: self.hostname(),
            volumes: &volumes,
            hosts_file: self.dir.join("hosts"),
        };
        let result = process::start(&self.node, &env, &spec, attempt).await;
        let image_id = self
            .node
            .images
            .resolve(spec.image.as_deref().unwrap_or_default())
            .map(|i| i.id)
            .unwrap_or_default();
        let container_id = format!("sidecars://{}/{}/{attempt}", self.uid, spec.name);
        let pod = self.pod.clone();
        let node = self.node.clone();
        let ip = self.ip.clone().unwrap_or_default();
        let tx = self.events_tx.clone();
        let c = self.ctr(r);
        c.image_id = image_id;
        match result {
            Ok((proc_, wait)) => {
                if c.attempts > 0 {
                    c.restarts += 1;
                }
                c.attempts += 1;
                if let State::Terminated(t) = std::mem::replace(&mut c.state, State::Running(proc_))
                {
                    c.last = Some(t);
                }
                c.ready = false;
                c.started = c.spec.startup_probe.is_none();
                c.not_before = None;
                let attempt = c.attempts;
                let tx2 = tx.clone();
                tokio::spawn(async move {
                    if let Ok(exit) = wait.await {
                        let _ = tx2.send(CtrEvent::Exited(r, attempt, exit));
                    }
                });
                c.probes = Some(tokio::spawn(run_probes(c.spec.clone(), ip, r, attempt, tx)));
                node.event(
                    &pod,
                    "Normal",
                    "Started",
                    &format!("Started container {}", spec.name),
                );
            }
            Err(f) => {
                let (reason, message) = process::describe(&f);
                node.event(
                    &pod,
                    "Warning",
                    "Failed",
                    &format!("Error: {reason}: container {}: {message}", spec.name),
                );
                match f {
                    StartFailure::Image(_) | StartFailure::Config(_) => {
                        let retry = if matches!(f, StartFailure::Image(_)) {
                            60
                        } else {
                            10
                        };
                        c.state = State::Waiting(reason.into(), Some(message));
                        c.not_before = Some(Instant::now() + Duration::from_secs(retry));
                    }
                    StartFailure::Start(_) => {
                        let now = Timestamp::now();
                        let term = Term {
                            code: 128,
                            reason: reason.into(),
                            message: Some(message),
                            started_at: None,
                            finished_at: now,
                            container_id,
                        };
                        c.attempts += 1;
                        if let State::Terminated(t) =
                            std::mem::replace(&mut c.state, State::Terminated(term))
                        {
                            c.last = Some(t);
                        }
                        c.not_before = Some(Instant::now() + backoff(c.restarts));
                    }
                }
            }
        }
    }

    async fn handle(&mut self, ev: CtrEvent) {
        match ev {
            CtrEvent::Exited(r, attempt, exit) => self.exited(r, attempt, exit),
            CtrEvent::Probe(r, attempt, kind, ok, msg) => {
                let (pod, node) = (self.pod.clone(), self.node.clone());
                let c = self.ctr(r);
                if c.attempts != attempt || c.running().is_none() {
                    return;
                }
                match kind {
                    ProbeKind::Startup if ok => c.started = true,
                    ProbeKind::Readiness => {
                        c.ready = ok;
                        if !ok {
                            node.event(
                                &pod,
                                "Warning",
                                "Unhealthy",
                                &format!("Readiness probe failed: {msg}"),
                            );
                        }
                    }
                    ProbeKind::Startup | ProbeKind::Liveness => {
                        let what = if kind == ProbeKind::Startup {
                            "Startup"
                        } else {
                            "Liveness"
                        };
                        node.event(
                            &pod,
                            "Warning",
                            "Unhealthy",
                            &format!("{what} probe failed: {msg}"),
                        );
                        node.event(
                            &pod,
                            "Normal",
                            "Killing",
                            &format!(
                                "Container {} failed {} probe, will be restarted",
                                c.spec.name,
                                what.to_lowercase()
                            ),
                        );
                        let grace = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                            .unwrap_or(30)
                            .max(0) as u64;
                        if let Some(p) = c.running() {
                            kill_later(p, Duration::from_secs(grace));
                        }
                    }
                }
            }
        }
    }

    fn exited(&mut self, r: CtrRef, attempt: u32, exit: Exit) {
        let uid = self.uid.clone();
        let c = self.ctr(r);
        if c.attempts != attempt {
            return;
        }
        let State::Running(p) =
            std::mem::replace(&mut c.state, State::Waiting(String::new(), None))
        else {
            return;
        };
        if let Some(h) = c.probes.take() {
            h.abort();
        }
        let term = Term {
            code: exit.code,
            reason: if exit.code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: process::termination_message(&c.spec, &p, exit.code),
            started_at: Some(p.started_at),
            finished_at: exit.finished_at,
            container_id: format!("sidecars://{uid}/{}/{}", c.spec.name, attempt - 1),
        };
        // a container that ran for 10 minutes starts its back-off over
        let ran = exit.finished_at.duration_since(p.started_at).as_secs_f64();
        if ran > 600.0 {
            c.restarts = 0;
        }
        c.not_before = Some(Instant::now() + backoff(c.restarts));
        c.state = State::Terminated(term);
        c.ready = false;
        c.started = false;
    }

    /// Ends the pod as Succeeded or Failed: stops its sidecars and releases its network.
    async fn finish(&mut self, phase: &'static str) {
        if self.terminal.is_some() {
            return;
        }
        self.terminal = Some(phase);
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        self.stop_all(Duration::from_secs(grace)).await;
        self.release_network().await;
    }

    /// SIGTERM to the regular containers, then to the sidecars (last first), SIGKILL to whatever
    /// still runs when `grace` is over.
    async fn stop_all(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let killing = self.main.iter().any(|c| c.running().is_some())
            || self.init.iter().any(|c| c.running().is_some());
        if killing {
            self.node
                .event(&self.pod, "Normal", "Killing", "Stopping containers");
        }
        for c in &self.main {
            if let Some(p) = c.running() {
                p.signal(Signal::SIGTERM);
            }
        }
        // init containers that are not sidecars are stopped with the regular ones
        for c in self.init.iter().filter(|c| !c.sidecar) {
            if let Some(p) = c.running() {
                p.signal(Signal::SIGTERM);
            }
        }
        self.wait_exits(|c| !c.sidecar, deadline).await;
        for c in self.init.iter().rev().filter(|c| c.sidecar) {
            if let Some(p) = c.running() {
                p.signal(Signal::SIGTERM);
            }
        }
        self.wait_exits(|_| true, deadline).await;
        for c in self.init.iter().chain(self.main.iter()) {
            if let Some(p) = c.running() {
                p.signal(Signal::SIGKILL);
            }
        }
        self.wait_exits(|_| true, Instant::now() + Duration::from_secs(10))
            .await;
        // nothing restarts from here on
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.not_before = None;
            if let Some(h) = c.probes.take() {
                h.abort();
            }
            if let State::Waiting(..) = c.state {
                // never ran: stays waiting
            }
        }
    }

    /// Handles exit events until no container matching `which` runs, or `deadline`.
    async fn wait_exits(&mut self, which: impl Fn(&Ctr) -> bool, deadline: Instant) {
        loop {
            let running = self
                .init
                .iter()
                .chain(self.main.iter())
                .any(|c| which(c) && c.running().is_some());
            if !running {
                return;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(CtrEvent::Exited(r, a, e))) => self.exited(r, a, e),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    async fn release_network(&mut self) {
        if let Some(net) = self.net.take() {
            net.remove().await;
            self.node.ips.release(net.ip);
        }
    }

    async fn cleanup(&mut self) {
        self.release_network().await;
        self.node.hosts.remove_pod(&self.uid);
        self.node.logs.forget_pod(&self.ns, &self.name);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(pod = %self.name, error = %e, "removing the pod's directory");
            }
        }
    }

    async fn delete_object(&self) {
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "deleting the pod object"),
        }
    }

    fn phase(&self) -> &'static str {
        if let Some(t) = self.terminal {
            return t;
        }
        if self.initialized && self.main.iter().any(|c| c.attempts > 0) {
            return "Running";
        }
        "Pending"
    }

    fn condition(&mut self, kind: &'static str, value: bool) -> Value {
        let now = Timestamp::now();
        let entry = self.conditions.entry(kind).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        let status = if value { "True" } else { "False" };
        let mut c = json!({
            "type": kind,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": entry.1.to_string(),
        });
        if !value {
            let reason = match kind {
                "Initialized" => "ContainersNotInitialized",
                _ => "ContainersNotReady",
            };
            c["reason"] = json!(reason);
            if self.terminal.is_some() && kind != "Initialized" {
                c["reason"] = json!("PodCompleted");
            }
        }
        c
    }

    fn status(&mut self) -> Value {
        let all_ready = self.main.iter().all(|c| c.ready)
            && self
                .init
                .iter()
                .filter(|c| c.sidecar)
                .all(|c| c.ready || self.terminal.is_some());
        let ready = self.terminal.is_none() && self.initialized && all_ready;
        let initialized = self.initialized || self.terminal == Some("Succeeded");
        let conditions = vec![
            self.condition("Initialized", initialized),
            self.condition("Ready", ready),
            self.condition("ContainersReady", ready),
        ];
        let uid = self.uid.clone();
        let statuses = |list: &[Ctr]| -> Vec<Value> {
            list.iter().map(|c| container_status(&uid, c)).collect()
        };
        let mut s = json!({
            "phase": self.phase(),
            "conditions": conditions,
            "hostIP": self.node.ip.to_string(),
            "initContainerStatuses": statuses(&self.init),
            "containerStatuses": statuses(&self.main),
        });
        if let Some(t) = &self.start_time {
            s["startTime"] = json!(t.to_string());
        }
        if let Some(ip) = &self.ip {
            s["podIP"] = json!(ip);
            s["podIPs"] = json!([{ "ip": ip }]);
        }
        s
    }

    async fn push_status(&mut self) {
        let status = self.status();
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.ns);
        let patch = json!({ "metadata": { "uid": self.uid }, "status": status });
        match api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => self.last_status = Some(status),
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "updating the pod's status"),
        }
    }
}

fn container_status(pod_uid: &str, c: &Ctr) -> Value {
    let term = |t: &Term| {
        let mut v = json!({
            "exitCode": t.code,
            "reason": t.reason,
            "finishedAt": t.finished_at.to_string(),
            "containerID": t.container_id,
        });
        if let Some(s) = &t.started_at {
            v["startedAt"] = json!(s.to_string());
        }
        if let Some(m) = &t.message {
            v["message"] = json!(m);
        }
        json!({ "terminated": v })
    };
    let state = match &c.state {
        State::Waiting(reason, message) => {
            let mut w = json!({ "reason": reason });
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({ "waiting": w })
        }
        State::Running(p) => json!({ "running": { "startedAt": p.started_at.to_string() } }),
        State::Terminated(t) => term(t),
    };
    let mut v = json!({
        "name": c.spec.name,
        "image": c.spec.image.clone().unwrap_or_default(),
        "imageID": c.image_id,
        "ready": c.ready,
        "restartCount": c.restarts,
        "state": state,
        "lastState": c.last.as_ref().map(term).unwrap_or_else(|| json!({})),
        "started": c.running().is_some() && c.started,
    });
    if c.attempts > 0 {
        v["containerID"] = json!(format!(
            "sidecars://{pod_uid}/{}/{}",
            c.spec.name,
            c.attempts - 1
        ));
    }
    v
}

/// The wait before restart number `restarts + 1`.
fn backoff(restarts: i32) -> Duration {
    if restarts <= 0 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (restarts - 1).min(5));
    Duration::from_secs(secs.min(300))
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM now, SIGKILL after `grace` if the process is still there.
fn kill_later(p: &Proc, grace: Duration) {
    p.signal(Signal::SIGTERM);
    let (pid, alive) = (p.pid, p.alive.clone());
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        if alive.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    });
}

/// Startup probe first; then readiness and liveness side by side. Sends an event on each
/// change of a probe's result (liveness and startup only on failure).
async fn run_probes(
    c: Container,
    ip: String,
    r: CtrRef,
    attempt: u32,
    tx: mpsc::UnboundedSender<CtrEvent>,
) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return;
    };
    if let Some(p) = c.startup_probe.clone() {
        let t = Timing::of(&p);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe::run(&p, &c, addr).await {
                Outcome::Success => {
                    let _ = tx.send(CtrEvent::Probe(
                        r,
                        attempt,
                        ProbeKind::Startup,
                        true,
                        String::new(),
                    ));
                    break;
                }
                Outcome::Failure(m) => {
                    failures += 1;
                    if failures >= t.failure_threshold {
                        let _ = tx.send(CtrEvent::Probe(r, attempt, ProbeKind::Startup, false, m));
                        return;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
    let readiness = async {
        let Some(p) = c.readiness_probe.clone() else {
            // without a readiness probe a started container is ready
            let _ = tx.send(CtrEvent::Probe(
                r,
                attempt,
                ProbeKind::Readiness,
                true,
                String::new(),
            ));
            return;
        };
        let t = Timing::of(&p);
        tokio::time::sleep(t.initial_delay).await;
        let (mut ok_run, mut fail_run, mut current) = (0u32, 0u32, None::<bool>);
        loop {
            match probe::run(&p, &c, addr).await {
                Outcome::Success => {
                    ok_run += 1;
                    fail_run = 0;
                    if ok_run >= t.success_threshold && current != Some(true) {
                        current = Some(true);
                        let _ = tx.send(CtrEvent::Probe(
                            r,
                            attempt,
                            ProbeKind::Readiness,
                            true,
                            String::new(),
                        ));
                    }
                }
                Outcome::Failure(m) => {
                    fail_run += 1;
                    ok_run = 0;
                    if fail_run >= t.failure_threshold && current != Some(false) {
                        current = Some(false);
                        let _ =
                            tx.send(CtrEvent::Probe(r, attempt, ProbeKind::Readiness, false, m));
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(p) = c.liveness_probe.clone() else {
            return;
        };
        let t = Timing::of(&p);
        tokio::time::sleep(t.initial_delay).await;
        let mut fail_run = 0u32;
        loop {
            match probe::run(&p, &c, addr).await {
                Outcome::Success => fail_run = 0,
                Outcome::Failure(m) => {
                    fail_run += 1;
                    if fail_run >= t.failure_threshold {
                        let _ = tx.send(CtrEvent::Probe(r, attempt, ProbeKind::Liveness, false, m));
                        return;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::join!(readiness, liveness);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let secs: Vec<u64> = (0..9).map(|r| backoff(r).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
