//! staging-server: the Resource Staging Server for Spark on Kubernetes.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: staging_server::server::Args = sidecars_common::config::parse("STAGING");
    staging_server::server::run(args).await
}
