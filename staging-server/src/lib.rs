//! The Resource Staging Server and its client, `spark-stage`.
//!
//! Server side: [`api`] (HTTP routes), [`store`] (bundle layout in the object store),
//! [`bundle`] (tar.gz rules shared with the client), [`secrets`], [`cleaner`], [`owners`] (the pod watch), [`metrics`],
//! [`server`] (settings and wiring), [`tls`] (optional HTTPS). Client side: [`client`] (upload, fetch) and [`submit`]
//! (spark-submit argument rewriting and pod templates).

pub mod api;
pub mod bundle;
pub mod cleaner;
pub mod client;
pub mod metrics;
pub mod owners;
pub mod secrets;
pub mod server;
pub mod store;
pub mod submit;
pub mod tls;
