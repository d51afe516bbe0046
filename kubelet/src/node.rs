//! The node itself: what every pod worker shares ([`NodeCtx`]), the Node object (registered at
//! start with its address, kubelet port, capacity and Ready condition), its heartbeat (a Lease
//! in `kube-node-lease` every 10 s and the status every 30 s, so the node lifecycle controller
//! keeps it Ready), and core/v1 Events about pods (what `kubectl describe` shows; nodes may not
//! write events.k8s.io).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::hosts::Hosts;
use crate::images::ImageTable;
use crate::logs::LogHub;
use crate::network::PodIps;

/// Port of the kubelet's HTTPS endpoint, in the node's namespace.
pub const KUBELET_PORT: u16 = 10250;

pub struct NodeCtx {
    pub name: String,
    pub index: u8,
    pub ip: Ipv4Addr,
    /// Client with the node's identity (system:node:<name>).
    pub client: Client,
    pub netns: PathBuf,
    pub bridge: String,
    pub pods_dir: PathBuf,
    pub host_root: PathBuf,
    pub images: ImageTable,
    pub hosts: Hosts,
    pub logs: LogHub,
    pub ips: PodIps,
    pub api_ip: String,
    pub api_port: u16,
    /// This program, for `container-init`.
    pub exe: PathBuf,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl NodeCtx {
    /// Records a core/v1 Event about `pod` (in the background; failures are only logged).
    pub fn event(&self, pod: &Pod, type_: &str, reason: &str, message: &str) {
        let now = Timestamp::now();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.name.clone()),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.name.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, "recording an event");
            }
        });
    }

    fn node_status(&self) -> serde_json::Value {
        let now = Timestamp::now().to_string();
        let cond = |t: &str, status: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": status, "reason": reason, "message": msg,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let cpu = format!("{}m", self.cpu_millis);
        let memory = self.memory_bytes.to_string();
        json!({
            "addresses": [
                {"type": "InternalIP", "address": self.ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "sidecars-kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "sidecars-kubelet (pods as processes)",
                "containerRuntimeVersion": "sidecars://0.1.0",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        })
    }

    /// Creates (or takes over) the Node object and sends its status.
    pub async fn register(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
            },
        }))?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("registering the Node"),
        }
        self.send_status().await
    }

    async fn send_status(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({ "status": self.node_status() });
        api.patch_status(
            &self.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .context("updating the Node's status")?;
        Ok(())
    }

    async fn renew_lease(&self) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(Timestamp::now());
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40},
        }))?;
        let mut lease = lease;
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(now);
        }
        match api.get_opt(&self.name).await? {
            None => {
                api.create(&PostParams::default(), &lease).await?;
            }
            Some(existing) => {
                let mut l = existing;
                l.spec = lease.spec;
                api.replace(&self.name, &PostParams::default(), &l).await?;
            }
        }
        Ok(())
    }

    /// Keeps the node Ready for as long as it runs.
    pub async fn heartbeat(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut n = 0u64;
        loop {
            tick.tick().await;
            if let Err(e) = self.renew_lease().await {
                tracing::warn!(error = %format!("{e:#}"), "renewing the node lease");
            }
            n += 1;
            if n.is_multiple_of(3) {
                if let Err(e) = self.send_status().await {
                    tracing::warn!(error = %format!("{e:#}"), "node status");
                }
            }
        }
    }
}
