//! sidecars-kubelet: a kubelet that runs Kubernetes pods as processes on this machine, one
//! process per node, against a real API server (scripts/kube-local.sh starts the control plane
//! and the nodes). docs/local-kubernetes.md says what it supports and how it differs from a
//! container runtime.

pub mod entrypoint;
pub mod env;
pub mod hosts;
pub mod images;
pub mod init;
pub mod logs;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod provisioner;
pub mod server;
pub mod volumes;
