//! The Resource Staging Server and its client, `spark-stage`.
//!
//! Server side: [`api`] (the v0 HTTP routes), [`webhdfs`] (the WebHDFS REST subset Spark's
//! own upload path uses), [`auth`] (upload credentials, the OAuth2 token endpoint), [`store`]
//! (bundle layout in the object store), [`spool`] (receiving uploads), [`bundle`] and
//! [`tar_reader`] (tar.gz rules shared with the client), [`limits`] (rates and quotas),
//! [`secrets`], [`cleaner`], [`owners`] (the pod watch), [`metrics`], [`errors`] (bounded error
//! texts), [`server`] (settings and wiring), [`tls`] (optional HTTPS). Client side: [`client`]
//! (upload, fetch, token) and [`submit`] (spark-submit argument rewriting and pod templates).

pub mod api;
pub mod auth;
pub mod bundle;
pub mod cleaner;
pub mod client;
pub mod errors;
pub mod limits;
pub mod metrics;
pub mod owners;
pub mod secrets;
pub mod server;
pub mod spool;
pub mod store;
pub mod submit;
pub mod tar_reader;
pub mod tls;
pub mod webhdfs;
