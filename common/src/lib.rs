//! Shared runtime for the Spark Sidecars daemons: layered configuration, telemetry, the
//! admin endpoints (metrics, health, readiness, gRPC health), graceful shutdown, and the
//! object store that the staging server and the history collector keep their data in.

pub mod admin;
pub mod config;
#[cfg(feature = "fake-kube")]
pub mod fake_kube;
pub mod kube;
mod metrics;
pub mod objstore;
pub mod shutdown;
pub mod telemetry;

pub use admin::Admin;
pub use shutdown::Shutdown;
pub use telemetry::CommonArgs;
