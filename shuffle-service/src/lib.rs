//! The shuffle service as a library: the wire protocol, block lookup, registrations and the
//! server, so integration tests and benchmarks can drive the same code as the binary.

pub mod auth;
pub mod blockid;
pub mod cleanup;
pub mod connection;
pub mod metrics;
pub mod protocol;
pub mod registry;
pub mod resolver;
pub mod secret_watch;
pub mod server;
pub mod service;
