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
    // as cargo sets it when it runs the test: a binary reused from another clone that shares the
    // target directory would name that clone
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

pub mod deploy;
