//! history-collector as a library: the event-log reader, the application model built from
//! it, the REST API and web UI that serve the model, ingest, and the server that puts them
//! together. Layers, bottom up: `clock` and `logdir` (Spark's directories), `access` (read
//! ACLs), `ingest`, `eventlog`, `model`, `catalog` (what is listed, replayed on demand,
//! kept), `api`, `ui`, `logs`, `server`.

pub mod access;
pub mod api;
pub mod catalog;
pub mod clock;
pub mod eventlog;
pub mod ingest;
pub mod logdir;
pub mod logs;
pub mod malloc;
pub mod model;
pub mod server;
pub mod ui;
