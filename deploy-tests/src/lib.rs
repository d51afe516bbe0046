//! Test support for the deploy checks: reading the manifests, the kustomization, the Dockerfiles,
//! the workspace metadata and the daemons' own `--help`, so that the tests in `tests/` can hold
//! them against each other. Nothing here is shipped; the crate exists for its tests.

pub mod daemon;
pub mod dockerfile;
pub mod kustomize;
pub mod manifest;
pub mod workspace;

use std::path::PathBuf;

/// The repository root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

pub mod deploy;
