//! history-collector: keeps Spark history when pods die.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

/// Collects Spark event logs and pod logs and serves a History-Server-compatible API and UI.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port for the HTTP API (and metrics, health, gRPC health).
    #[arg(long, env = "HISTORY_PORT", default_value_t = 18080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "HISTORY_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = sidecars_common::config::parse("HISTORY");
    sidecars_common::telemetry::init(&args.common)?;
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();
    let admin = Admin::new(prometheus_client::registry::Registry::default());
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "the history API and UI").await?;
    tracing::info!(%addr, "history-collector listening");
    admin.set_ready(true).await;
    admin::serve(listener, admin.router(axum::Router::new()), shutdown.clone()).await?;
    shutdown.drain().await;
    Ok(())
}
