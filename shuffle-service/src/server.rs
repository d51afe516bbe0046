//! The accept loop: one task per connection, a cap on concurrent connections, and a clean stop
//! on shutdown (no new connections; open ones finish their current request and close).

use std::sync::Arc;

use sidecars_common::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::connection;
use crate::service::Service;

pub async fn run(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: Shutdown,
    max_connections: usize,
) {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let token = shutdown.token();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = token.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        tracing::debug!(%peer, "connection");
        let service = service.clone();
        let token = token.clone();
        shutdown.tracker().spawn(async move {
            connection::serve(stream, service, token).await;
            drop(permit);
        });
    }
    tracing::info!("stopped accepting shuffle connections");
}
