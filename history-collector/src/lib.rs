//! history-collector as a library: the event-log reader, the application model built from
//! it, and the REST API and web UI that serve the model (the binary wires them to ingest).

pub mod api;
pub mod eventlog;
pub mod ingest;
pub mod logs;
pub mod model;
pub mod ui;
