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

/// The directory of the crate under test: `CARGO_MANIFEST_DIR` as cargo sets it when it runs
/// the test, else as it was when the test was compiled. Cargo's hash of a path package leaves
/// out where the checkout is, so a test binary built in one clone is reused by another clone
/// that shares the target directory, and its compile-time path can name a checkout that no
/// longer exists.
#[macro_export]
macro_rules! crate_dir {
    () => {
        ::std::env::var_os("CARGO_MANIFEST_DIR")
            .map(::std::path::PathBuf::from)
            .unwrap_or_else(|| ::std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    };
}
