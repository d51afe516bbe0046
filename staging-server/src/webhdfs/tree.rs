//! The WebHDFS namespace of each grant, kept in the object store as one small JSON object per
//! file or directory:
//!
//! ```text
//! webhdfs/tree/<grant>/<c1>/<c2>/.../<cn>/.entry   the entry of /c1/c2/.../cn
//! blobs/<sha256>                                   a file's bytes, shared by identical files
//! ```
//!
//! Path components are percent-encoded into keys (everything but `A-Z a-z 0-9 - _ .`, and a
//! leading `.`), so no component can collide with `.entry`, and every key is a valid object
//! key on both backends. Each entry is its own object, so concurrent uploads never rewrite a
//! shared index; a file's entry is written last, after its bytes are stored, so a file is
//! visible exactly when it is complete. The root of a grant's tree always exists (it has no
//! object).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sidecars_common::objstore::{self, ObjectMeta, ObjectStore, StoreError};

/// Longest path component, in bytes (HDFS's default `dfs.namenode.fs-limits.max-component-length`).
pub const MAX_COMPONENT: usize = 255;
/// Deepest path.
pub const MAX_DEPTH: usize = 32;

const ENTRY: &str = ".entry";

/// A path inside a grant's tree: its decoded components (none empty, `.` or `..`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HdfsPath(Vec<String>);

/// Why a path is refused. Names the rule, never the path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("the path has a `.` or `..` component")]
    Dots,
    #[error("the path has a component longer than {MAX_COMPONENT} bytes")]
    LongComponent,
    #[error("the path is deeper than {MAX_DEPTH} components")]
    TooDeep,
    #[error("the path contains a NUL or a control character")]
    Control,
}

impl HdfsPath {
    pub fn root() -> Self {
        HdfsPath(Vec::new())
    }

    /// Parses a decoded absolute path (`/a/b`); repeated and trailing slashes are ignored, as
    /// Hadoop's `Path` does.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let mut parts = Vec::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." {
                return Err(PathError::Dots);
            }
            if c.len() > MAX_COMPONENT {
                return Err(PathError::LongComponent);
            }
            if c.chars().any(char::is_control) {
                return Err(PathError::Control);
            }
            parts.push(c.to_string());
            if parts.len() > MAX_DEPTH {
                return Err(PathError::TooDeep);
            }
        }
        Ok(HdfsPath(parts))
    }

    pub fn from_parts(parts: Vec<String>) -> Self {
        HdfsPath(parts)
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn name(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }

    pub fn parent(&self) -> Option<HdfsPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(HdfsPath(self.0[..self.0.len() - 1].to_vec()))
    }

    pub fn child(&self, name: &str) -> HdfsPath {
        let mut v = self.0.clone();
        v.push(name.to_string());
        HdfsPath(v)
    }

    /// Whether `self` is `other` or below it.
    pub fn starts_with(&self, other: &HdfsPath) -> bool {
        self.0.len() >= other.0.len() && self.0[..other.0.len()] == other.0[..]
    }

    /// The ancestors from the top down, excluding the root and `self`.
    pub fn ancestors(&self) -> Vec<HdfsPath> {
        (1..self.0.len())
            .map(|n| HdfsPath(self.0[..n].to_vec()))
            .collect()
    }

    /// The path as shown in messages: absolute, cut to 200 characters.
    pub fn shown(&self) -> String {
        let s = format!("/{}", self.0.join("/"));
        crate::bundle::shown_name(s.as_bytes())
    }
}

impl std::fmt::Display for HdfsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0.join("/"))
    }
}

const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

fn encode(c: &str) -> String {
    let e = percent_encoding::utf8_percent_encode(c, KEEP).to_string();
    match e.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => e,
    }
}

fn decode(c: &str) -> Option<String> {
    percent_encoding::percent_decode_str(c)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The key prefix of everything in a grant's tree.
pub fn grant_prefix(grant: &str) -> String {
    format!("webhdfs/tree/{grant}/")
}

/// The key prefix below a directory (`webhdfs/tree/<grant>/<enc path>/`).
pub fn dir_prefix(grant: &str, path: &HdfsPath) -> String {
    let mut k = grant_prefix(grant);
    for c in path.parts() {
        k.push_str(&encode(c));
        k.push('/');
    }
    k
}

pub fn entry_key(grant: &str, path: &HdfsPath) -> String {
    format!("{}{ENTRY}", dir_prefix(grant, path))
}

pub fn blob_key(sha256: &str) -> String {
    format!("blobs/{sha256}")
}

/// The grant and path of an entry key, if `key` is one.
pub fn parse_entry_key(key: &str) -> Option<(String, HdfsPath)> {
    let rest = key.strip_prefix("webhdfs/tree/")?;
    let rest = rest.strip_suffix(ENTRY)?;
    let (grant, path) = rest.split_once('/')?;
    let parts = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(decode)
        .collect::<Option<Vec<_>>>()?;
    if parts.is_empty() {
        return None;
    }
    Some((grant.to_string(), HdfsPath(parts)))
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    File,
    Directory,
}

/// One file or directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: Kind,
    /// Unique per creation (claims refer to it, so a file created again starts unclaimed).
    pub id: String,
    #[serde(default)]
    pub size: u64,
    /// Of a file's bytes; its blob is `blobs/<sha256>`.
    #[serde(default)]
    pub sha256: String,
    /// Octal, as WebHDFS shows it (`644`).
    pub permission: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

impl Entry {
    pub fn dir(now: DateTime<Utc>, permission: &str) -> Self {
        Entry {
            kind: Kind::Directory,
            id: uuid::Uuid::new_v4().simple().to_string(),
            size: 0,
            sha256: String::new(),
            permission: permission.to_string(),
            created: now,
            modified: now,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Directory
    }
}

/// The trees of all grants.
#[derive(Clone, Debug)]
pub struct Tree {
    objects: Arc<dyn ObjectStore>,
}

impl Tree {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// The entry at `path` (the root is always a directory), or `None`.
    pub async fn get(&self, grant: &str, path: &HdfsPath) -> Result<Option<Entry>, StoreError> {
        if path.is_root() {
            return Ok(Some(Entry::dir(DateTime::<Utc>::UNIX_EPOCH, "755")));
        }
        let key = entry_key(grant, path);
        match objstore::get_bytes(&*self.objects, &key).await {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Other {
                    url: self.objects.object_url(&key),
                    message: format!("unreadable entry: {e}"),
                }),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads an entry object by key (the cleaner's listings).
    pub async fn read_key(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        match objstore::get_bytes(&*self.objects, key).await {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put(&self, grant: &str, path: &HdfsPath, entry: &Entry) -> Result<(), StoreError> {
        let key = entry_key(grant, path);
        let body = serde_json::to_vec(entry).map_err(|e| StoreError::Other {
            url: self.objects.object_url(&key),
            message: e.to_string(),
        })?;
        objstore::put_bytes(&*self.objects, &key, body.into()).await?;
        Ok(())
    }

    pub async fn remove(&self, grant: &str, path: &HdfsPath) -> Result<(), StoreError> {
        self.objects.delete(&entry_key(grant, path)).await
    }

    /// The entry keys below `dir` (all depths), as listed.
    pub async fn descendants(
        &self,
        grant: &str,
        dir: &HdfsPath,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = dir_prefix(grant, dir);
        Ok(self
            .objects
            .list_shallow(&prefix)
            .await?
            .into_iter()
            .filter(|o| o.key.ends_with(ENTRY) && o.key != entry_key(grant, dir))
            .collect())
    }

    /// The children of `dir` with their entries, sorted by name; at most `limit` of them
    /// (`Err(None)` beyond it).
    pub async fn children(
        &self,
        grant: &str,
        dir: &HdfsPath,
        limit: usize,
    ) -> Result<Result<Vec<(String, Entry)>, usize>, StoreError> {
        let depth = dir.parts().len() + 1;
        let keys: Vec<(String, String)> = self
            .descendants(grant, dir)
            .await?
            .into_iter()
            .filter_map(|o| {
                let (_, p) = parse_entry_key(&o.key)?;
                (p.parts().len() == depth).then(|| (p.name().to_string(), o.key))
            })
            .collect();
        if keys.len() > limit {
            return Ok(Err(keys.len()));
        }
        let mut out: Vec<(String, Entry)> = futures::stream::iter(keys)
            .map(|(name, key)| async move {
                Ok::<_, StoreError>(self.read_key(&key).await?.map(|e| (name, e)))
            })
            .buffer_unordered(16)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_keys() {
        let p = HdfsPath::parse("//up/spark-upload-1//a b#?%.jar/").unwrap();
        assert_eq!(p.parts(), ["up", "spark-upload-1", "a b#?%.jar"]);
        let k = entry_key("g", &p);
        assert_eq!(
            k,
            "webhdfs/tree/g/up/spark-upload-1/a%20b%23%3F%25.jar/.entry"
        );
        assert!(objstore::validate_key(&k).is_ok());
        assert_eq!(parse_entry_key(&k), Some(("g".into(), p.clone())));
        // a component that looks like the marker, or dots, cannot collide with it
        let q = HdfsPath::parse("/.entry/.x").unwrap();
        let k = entry_key("g", &q);
        assert_eq!(k, "webhdfs/tree/g/%2Eentry/%2Ex/.entry");
        assert_eq!(parse_entry_key(&k), Some(("g".into(), q)));
        for bad in ["/a/../b", "/./a", "/a\0b", "/a\nb"] {
            assert!(HdfsPath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HdfsPath::parse(&format!("/{}", "x".repeat(256))),
            Err(PathError::LongComponent)
        );
        assert_eq!(
            HdfsPath::parse(&"/a".repeat(MAX_DEPTH + 1)),
            Err(PathError::TooDeep)
        );
        assert!(HdfsPath::parse("/").unwrap().is_root());
        assert_eq!(p.ancestors().len(), 2);
        assert!(p.starts_with(&p.parent().unwrap()));
    }
}
