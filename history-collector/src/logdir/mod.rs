//! Spark's event-log directories, the one way both ingest (copying) and serving (replaying,
//! zipping) see them:
//! - [`names`]: the file names Spark writes, and the application each belongs to;
//! - [`codec`]: the codecs those names carry, and their decoders;
//! - [`scan`]: one listing of a directory that returns regular files only, found without
//!   following a symbolic link;
//! - [`open`]: opening such a file relative to its directory, never through a link, so
//!   nothing outside a watched directory is ever read;
//! - [`admit`]: the limits (largest file, longest line) and the early refusal of sparse and
//!   non-Spark files, so one hostile file cannot cost unbounded memory, time or disk.

pub mod admit;
pub mod codec;
pub mod names;
pub mod open;
pub mod scan;
