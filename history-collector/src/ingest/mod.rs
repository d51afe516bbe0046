//! Ingest: copies Spark event logs (from watched directories and from agents) and pod logs
//! into the object store, incrementally, never publishing a torn file.
//!
//! # Storage layout (the contract with the REST API / UI, which read through [`layout`])
//!
//! ```text
//! eventlogs/<logName>/<relative path as Spark wrote it>      complete copies
//! podlogs/<appId>/<executorId>/<container>.log                complete pod logs
//! parts/<one of the keys above>/<20-digit start offset>       in-progress copies
//! owners/<logName>                                            who may write the log (JSON)
//! pods/<appId>/driver.json                                    how the driver pod ended
//! ```
//!
//! - `<logName>` is the application id plus the attempt suffix (`<appId>[_<attemptId>]`):
//!   the single-file name without `.inprogress` and codec suffix, or the rolling directory
//!   name without `eventlog_v2_`. The relative path keeps Spark's own names byte for byte:
//!   `spark-1.inprogress`, `local-17_1.lz4`, `eventlog_v2_spark-1/events_2_spark-1.zstd`,
//!   `eventlog_v2_spark-1/appstatus_spark-1.inprogress`.
//! - A *logical file* is either one complete object at its key, or, while the source is still
//!   growing, a run of *parts* under `parts/<key>/`: each part holds the source bytes from its
//!   start offset (the zero-padded name) for its object size. Parts may overlap (a merge
//!   replaces a part by a longer one before deleting the parts it covers); a reader takes the
//!   contiguous run from offset 0 and skips bytes it already has. If both a complete object
//!   and parts exist (a crash between the two steps of completion), the complete object wins.
//! - Every stored logical file is a consistent prefix of its source: uncompressed in-progress
//!   files are cut after the last newline, compressed ones after the last whole codec unit
//!   (zstd frame, lz4 block, snappy chunk, lzf chunk). A complete file (renamed away from
//!   `.inprogress`, or a rolled file once a later one or the final `appstatus_` exists) is
//!   stored byte-identical to its source.
//! - When `X` becomes complete, the stored `X.inprogress` (single file or `appstatus_`
//!   marker) is removed, so a finished application has exactly the files Spark left.
//!
//! Use [`layout::LogStore`] to list applications and open a logical file as one stream.
//!
//! # Who may write
//!
//! Agents are let in by [`guard`]: a bearer token ([`auth`]: a Kubernetes service-account
//! token checked with a TokenReview, or a shared token), the driver pod of the log's
//! application running under that identity ([`driver`]), and the log's owner ([`owners`]:
//! the first source to write a log name owns it). The directory watcher writes as its own
//! owner. Nothing else writes or removes a stored event log.

pub mod agent;
pub mod auth;
pub mod cut;
pub mod driver;
pub mod driver_end;
pub mod guard;
pub mod layout;
pub mod owners;
pub mod podlogs;
pub mod service;
pub mod tail;
pub mod verdicts;
pub mod watcher;
