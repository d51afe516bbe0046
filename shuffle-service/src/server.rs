//! The accept loop: one task per connection, caps on connections per peer address and in
//! total, and a clean stop on shutdown (no new connections; open ones finish their current
//! request and close).
//!
//! The caps keep one client from starving the others: a peer at `--max-connections-per-peer`
//! has its new connections closed at once; at `--max-connections` the connection idle the
//! longest (nothing being written) is closed to make room, and only when every connection is
//! busy is the new one refused. Either way the accept loop never stops accepting, so a
//! legitimate client is answered rather than left in the kernel's backlog.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sidecars_common::Shutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Activity};
use crate::service::Service;

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
}

struct Entry {
    peer: IpAddr,
    activity: Arc<Activity>,
    token: CancellationToken,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Table {
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.conns.remove(&id) {
            if let Some(n) = self.per_peer.get_mut(&e.peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&e.peer);
                }
            }
        }
    }

    /// The connection idle the longest, if it is not in the middle of a write and has been
    /// quiet for at least `min_idle`.
    fn idlest(&self, min_idle: Duration) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| !e.activity.busy() && e.activity.last().elapsed() >= min_idle)
            .min_by_key(|(_, e)| e.activity.last())
            .map(|(id, _)| *id)
    }
}

pub async fn run(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: Shutdown,
    limits: ConnectionLimits,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let token = shutdown.token();
    let max = limits.max_connections.max(1);
    let per_peer = limits.max_connections_per_peer.max(1);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let ip = peer.ip();
        let activity = Arc::new(Activity::new());
        let conn_token = token.child_token();
        let id = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            if t.per_peer.get(&ip).copied().unwrap_or(0) >= per_peer {
                service.metrics.refused("connections_per_peer");
                tracing::info!(%peer, limit = per_peer, "refusing connection: too many from this address (--max-connections-per-peer)");
                drop(stream);
                continue;
            }
            if t.conns.len() >= max {
                match t.idlest(Duration::from_secs(1)) {
                    Some(victim) => {
                        if let Some(e) = t.conns.get(&victim) {
                            tracing::info!(peer = %e.peer, "closing the longest-idle connection to make room (--max-connections)");
                            e.token.cancel();
                        }
                        service.metrics.refused("connections_evicted");
                        t.remove(victim);
                    }
                    None => {
                        service.metrics.refused("connections");
                        tracing::warn!(%peer, limit = max, "refusing connection: every connection is busy (--max-connections)");
                        drop(stream);
                        continue;
                    }
                }
            }
            let id = t.next_id;
            t.next_id += 1;
            *t.per_peer.entry(ip).or_insert(0) += 1;
            t.conns.insert(
                id,
                Entry {
                    peer: ip,
                    activity: activity.clone(),
                    token: conn_token.clone(),
                },
            );
            id
        };
        tracing::debug!(%peer, "connection");
        let service = service.clone();
        let table = table.clone();
        shutdown.tracker().spawn(async move {
            connection::serve(stream, service, conn_token, activity).await;
            table.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        });
    }
    tracing::info!("stopped accepting shuffle connections");
}
