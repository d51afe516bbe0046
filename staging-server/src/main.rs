//! staging-server: the Resource Staging Server for Spark on Kubernetes.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

/// Stores the local jars, files and configs that spark-submit users ship, and serves them to
/// drivers and executors.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port for the HTTP API (and metrics, health, gRPC health).
    #[arg(long, env = "STAGING_PORT", default_value_t = 10000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "STAGING_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = sidecars_common::config::parse("STAGING");
    sidecars_common::telemetry::init(&args.common)?;
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();
    let admin = Admin::new(prometheus_client::registry::Registry::default());
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "the staging API").await?;
    tracing::info!(%addr, "staging-server listening");
    admin.set_ready(true).await;
    admin::serve(listener, admin.router(axum::Router::new()), shutdown.clone()).await?;
    shutdown.drain().await;
    Ok(())
}
