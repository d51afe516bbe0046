//! Node and pod networking on one machine, with `ip(8)`.
//!
//! All addresses are in 198.18.0.0/15, the range RFC 2544 sets aside for benchmark tests (no
//! real host uses it), on one Linux bridge that `scripts/kube-local.sh` creates with the
//! machine's address 198.18.0.1 (where the API server listens):
//!
//! - node *i* has its own network namespace `sidecars-<node>` with address 198.18.0.(10+*i*):
//!   `hostNetwork` pods run there, so every node has its own ports (each shuffle service binds
//!   its own `<nodeIP>:7337`) and the kubelet's HTTPS endpoint listens there;
//! - each other pod gets a namespace `sidecars-pod-<uid>` and an address 198.18.*i*.*n*
//!   (*n* = 2…254) from its node's /24;
//! - every interface is a /15 on the bridge, so the machine, nodes and pods all reach each other
//!   directly, and there is no default route: nothing leaves the machine.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// Prefix length of every address (the whole test range is one segment).
pub const PREFIX_LEN: u8 = 15;

/// The machine's address on the bridge, where the API server listens.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// Node `index`'s address (index from 1).
pub fn node_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + index)
}

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Name of node `node`'s namespace.
pub fn node_netns(node: &str) -> String {
    format!("sidecars-{node}")
}

/// Name of a pod's namespace and of its veth on the bridge (interface names are at most 15
/// bytes).
pub fn pod_names(uid: &str) -> (String, String) {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    (format!("sidecars-pod-{short}"), format!("sk{short}"))
}

async fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip(8) (Debian package iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// Puts a fresh namespace `netns` on the bridge with `addr`, through a veth whose bridge end is
/// `veth` and whose namespace end is `eth0`.
async fn attach(netns: &str, veth: &str, bridge: &str, addr: Ipv4Addr) -> Result<()> {
    // leftovers of a kubelet that died are replaced
    let _ = ip(&["netns", "del", netns]).await;
    if link_exists(veth).await {
        let _ = ip(&["link", "del", veth]).await;
    }
    ip(&["netns", "add", netns]).await?;
    let peer = format!("{veth}p");
    let result = async {
        ip(&["link", "add", veth, "type", "veth", "peer", "name", &peer]).await?;
        ip(&["link", "set", veth, "master", bridge, "up"]).await?;
        ip(&["link", "set", &peer, "netns", netns]).await?;
        let cidr = format!("{addr}/{PREFIX_LEN}");
        for args in [
            vec!["link", "set", &peer, "name", "eth0"],
            vec!["addr", "add", &cidr, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", netns];
            full.extend(args);
            ip(&full).await?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        detach(netns, veth).await;
    }
    result
}

/// Removes a namespace and its veth (either may already be gone).
async fn detach(netns: &str, veth: &str) {
    if link_exists(veth).await {
        let _ = ip(&["link", "del", veth]).await;
    }
    let _ = ip(&["netns", "del", netns]).await;
}

/// The node's own namespace, created at start and removed at exit.
pub async fn setup_node(node: &str, index: u8, bridge: &str) -> Result<PathBuf> {
    if !link_exists(bridge).await {
        bail!("bridge {bridge} does not exist (scripts/kube-local.sh up creates it)");
    }
    let ns = node_netns(node);
    attach(&ns, &format!("skn{index}"), bridge, node_ip(index))
        .await
        .with_context(|| format!("setting up node {node}'s network namespace"))?;
    Ok(netns_path(&ns))
}

pub async fn teardown_node(node: &str, index: u8) {
    detach(&node_netns(node), &format!("skn{index}")).await;
}

/// Pod addresses of one node.
pub struct PodIps {
    index: u8,
    used: Mutex<BTreeSet<u8>>,
}

impl PodIps {
    pub fn new(index: u8) -> Self {
        PodIps {
            index,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn allocate(&self) -> Result<Ipv4Addr> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let n = (2..=254u8)
            .find(|n| !used.contains(n))
            .context("this node has no free pod address (252 pods)")?;
        used.insert(n);
        Ok(Ipv4Addr::new(198, 18, self.index, n))
    }

    pub fn release(&self, ip: Ipv4Addr) {
        let o = ip.octets();
        if o[2] == self.index {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&o[3]);
        }
    }
}

/// A pod's network: its namespace and address.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl PodNetwork {
    pub async fn create(uid: &str, ip: Ipv4Addr, bridge: &str) -> Result<Self> {
        let (netns, veth) = pod_names(uid);
        attach(&netns, &veth, bridge, ip)
            .await
            .context("setting up the pod's network namespace")?;
        Ok(PodNetwork { netns, veth, ip })
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.netns)
    }

    pub async fn remove(&self) {
        detach(&self.netns, &self.veth).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(node_ip(1), Ipv4Addr::new(198, 18, 0, 11));
        let (ns, veth) = pod_names("0b7e5c2a-1f3d-4c8e-9a6b-123456789abc");
        assert_eq!(ns, "sidecars-pod-0b7e5c2a1f3d");
        assert_eq!(veth, "sk0b7e5c2a1f3d");
        assert!(veth.len() <= 15 && format!("{veth}p").len() <= 15);
        let ips = PodIps::new(2);
        let a = ips.allocate().unwrap();
        let b = ips.allocate().unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(198, 18, 2, 2), Ipv4Addr::new(198, 18, 2, 3))
        );
        ips.release(a);
        assert_eq!(ips.allocate().unwrap(), a);
    }
}
