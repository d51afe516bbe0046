//! gRPC definitions shared by the Spark Sidecars daemons, generated at build time.

/// The event-log stream from a history-collector agent to the collector.
pub mod history {
    tonic::include_proto!("sidecars.history.v1");
}
