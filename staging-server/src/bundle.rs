//! Bundles: the tar.gz archives clients upload. One set of rules decides which entries are
//! acceptable, and the server (checking an upload as it streams in) and `spark-stage fetch`
//! (re-checking before it writes anything to disk) both apply it, so a hostile archive is
//! refused the same way at both ends.
//!
//! An acceptable entry is a regular file (or a directory, which is only implied structure and
//! is never created as such) whose name is relative, valid UTF-8, with no `..`, no empty
//! components and no NUL, and which no other entry names too. Links, devices, FIFOs and
//! anything else are refused, naming the entry.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tar_reader::{Kind, TarError, TarReader};

/// Limits on what a bundle may contain.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most entries (files and directories) a bundle may hold.
    pub max_entries: u64,
    /// Most bytes the files may add up to once decompressed (guards against gzip bombs).
    pub max_extracted: u64,
    /// Largest single file.
    pub max_entry_size: u64,
    /// Most bytes the archive may expand to per compressed byte, beyond the first
    /// [`EXPANSION_ALLOWANCE`] (0: no limit). Jars and wheels barely compress; text a few
    /// times; a bomb a thousand times.
    pub max_ratio: u64,
}

impl Limits {
    /// Limits with only the entry count and total size bounded (for archives already checked
    /// at upload).
    pub fn unbounded_shape(max_entries: u64, max_extracted: u64) -> Self {
        Self {
            max_entries,
            max_extracted,
            max_entry_size: u64::MAX,
            max_ratio: 0,
        }
    }
}

/// Decompressed bytes every archive may reach whatever its compression ratio, so small
/// archives of text (which compress well) always pass.
pub const EXPANSION_ALLOWANCE: u64 = 32 << 20;

/// Why a bundle was refused. Each variant names the entry at fault or the limit it broke;
/// names are shown escaped and cut to [`SHOWN_NAME`] characters, never echoed whole.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle entry `{name}`: {reason}")]
    BadEntry { name: String, reason: String },
    #[error("bundle has more than {limit} entries (--max-entries)")]
    TooManyEntries { limit: u64 },
    #[error("bundle expands to more than {limit} bytes (--max-extracted-size; at entry `{name}`)")]
    TooLarge { limit: u64, name: String },
    #[error("bundle entry `{name}` is {size} bytes, more than --max-entry-size ({limit} bytes)")]
    EntryTooLarge { name: String, size: u64, limit: u64 },
    #[error("bundle expands more than {ratio} times its compressed size (--max-expansion-ratio; {out} bytes from {consumed} compressed)")]
    Expansion { ratio: u64, out: u64, consumed: u64 },
    #[error("bundle is not a valid tar.gz: {0}")]
    Corrupt(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BundleError {
    /// Whether the bundle is at fault (a 4xx), rather than the server (a write failed).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, BundleError::Write { .. })
    }

    /// Whether a limit (rather than a malformed or hostile entry) refused the bundle.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            BundleError::TooManyEntries { .. }
                | BundleError::TooLarge { .. }
                | BundleError::EntryTooLarge { .. }
                | BundleError::Expansion { .. }
        )
    }
}

/// How many characters of an entry name an error shows.
pub const SHOWN_NAME: usize = 120;

/// An entry name as errors and logs show it: lossy UTF-8, control characters escaped, cut to
/// [`SHOWN_NAME`] characters (with the full length said), so a hostile name can neither flood
/// a response or a log line nor forge one.
pub fn shown_name(raw: &[u8]) -> String {
    // a character is at most 4 bytes: what is shown lies in the first 4 × SHOWN_NAME, and
    // converting only those keeps a gigabyte name from costing a gigabyte here
    let lossy = String::from_utf8_lossy(&raw[..raw.len().min(4 * SHOWN_NAME + 4)]);
    let mut out = String::new();
    for (i, c) in lossy.chars().enumerate() {
        if i == SHOWN_NAME {
            out.push_str(&format!("… ({} bytes in all)", raw.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One extracted file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    /// Normalised relative name, `/`-separated.
    pub name: String,
    pub size: u64,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
}

/// Checks an entry name and returns its normalised form (leading `./` removed).
pub fn normalise_name(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_string())?;
    if s.is_empty() {
        return Err("empty name".into());
    }
    if s.starts_with('/') {
        return Err("absolute path".into());
    }
    if s.contains('\0') {
        return Err("name contains NUL".into());
    }
    if s.contains('\\') {
        return Err("name contains a backslash".into());
    }
    let trimmed = s.trim_end_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "." if parts.is_empty() => continue,
            ".." => return Err("`..` component (path escapes the bundle)".into()),
            "" | "." => return Err("empty or `.` path component".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    let name = parts.join("/");
    if name.len() > 900 {
        return Err("name longer than 900 bytes".into());
    }
    Ok(name)
}

/// Tracks the names seen so far so duplicates and file/directory clashes are refused.
#[derive(Default)]
struct Seen {
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl Seen {
    fn add_file(&mut self, name: &str) -> Result<(), String> {
        if self.files.contains(name) {
            return Err("duplicate entry".into());
        }
        if self.dirs.contains(name) {
            return Err("a file has the same name as a directory".into());
        }
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.files.contains(&prefix) {
                return Err(format!("parent `{prefix}` is a file"));
            }
            self.dirs.insert(prefix.clone());
        }
        self.files.insert(name.to_string());
        Ok(())
    }
}

/// Reads a tar.gz from `input`, checking every entry against the rules and `limits`, and
/// writes each file where `route` says: it maps a normalised name to a root directory and a
/// relative path under it (parents are created as needed; existing files and links are never
/// followed or overwritten), or `None` to skip the entry. Returns the files written, in
/// archive order.
///
/// `input` is read to its end even after the archive's end marker, so a caller feeding it
/// from a channel never sees the reader hang up early on a valid bundle.
pub fn extract<R: std::io::BufRead>(
    input: R,
    limits: Limits,
    route: &dyn Fn(&str) -> Option<(PathBuf, PathBuf)>,
) -> Result<Vec<FileEntry>, BundleError> {
    walk(input, limits, &mut |name, _size, entry| {
        let Some((root, rel)) = route(name) else {
            return Ok(None);
        };
        let path = root.join(&rel);
        write_new_file(&path, &root, entry)
            .map(Some)
            .map_err(|e| match e {
                WriteError::Read(e) => BundleError::Corrupt(e.to_string()),
                WriteError::Write(source) => BundleError::Write {
                    path: path.clone(),
                    source,
                },
            })
    })
}

/// Checks a tar.gz read from `input` like [`extract`] and returns the size and sha256 of every
/// file, without writing anything: what the server records at upload.
pub fn validate<R: std::io::BufRead>(
    input: R,
    limits: Limits,
) -> Result<Vec<FileEntry>, BundleError> {
    let mut buf = vec![0u8; COPY_BUF];
    walk(input, limits, &mut |_, _, entry| {
        hash_copy(entry, &mut buf, &mut |_| Ok(()))
            .map(Some)
            .map_err(|e| match e {
                WriteError::Read(e) | WriteError::Write(e) => BundleError::Corrupt(e.to_string()),
            })
    })
}

/// What a visitor of [`walk`] does with one file: `Ok(None)` skips it (the tar reader skips
/// its bytes), `Ok(Some((size, sha256)))` reports what it read.
pub type Visit<'a> =
    dyn FnMut(&str, u64, &mut dyn Read) -> Result<Option<(u64, String)>, BundleError> + 'a;

/// The rules shared by [`extract`], [`validate`] and the server's materialisation: walks the
/// tar.gz, refuses bad entries (naming them) and broken limits (naming the limit), and hands
/// each acceptable file, with its normalised name and declared size, to `visit`. Returns the
/// files `visit` read, in archive order; a file whose read size differs from its header is
/// refused as truncated. Memory stays bounded whatever the archive declares (see
/// [`crate::tar_reader`]), and so does the work per compressed byte (`max_ratio`).
pub fn walk<R: std::io::BufRead>(
    input: R,
    limits: Limits,
    visit: &mut Visit<'_>,
) -> Result<Vec<FileEntry>, BundleError> {
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let tripped = std::rc::Rc::new(std::cell::Cell::new(None));
    let counted = Counted {
        inner: input,
        consumed: consumed.clone(),
    };
    // `input` is buffered by the caller (with big buffers: the decoder then inflates straight
    // into the visitor's buffer in large slices, with no copy in between).
    let gz = flate2::bufread::GzDecoder::new(counted);
    let metered = Metered {
        inner: gz,
        consumed,
        out: 0,
        ratio: limits.max_ratio,
        tripped: tripped.clone(),
    };
    let mut reader = TarReader::new(metered);
    let result = walk_entries(&mut reader, limits, visit);
    // a tripped ratio surfaces as a read error wherever it happened; it is the answer
    if let Some(e) = tripped.take() {
        return Err(e);
    }
    let out = result?;
    let mut rest = reader.into_inner().inner().into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    Ok(out)
}

fn walk_entries<R: Read>(
    reader: &mut TarReader<R>,
    limits: Limits,
    visit: &mut Visit<'_>,
) -> Result<Vec<FileEntry>, BundleError> {
    let mut seen = Seen::default();
    let mut out = Vec::new();
    let mut count = 0u64;
    let mut total = 0u64;
    let corrupt = |e: TarError| BundleError::Corrupt(e.to_string());
    while let Some(entry) = reader.next_entry().map_err(corrupt)? {
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let shown = shown_name(&entry.name);
        let bad = |reason: String| BundleError::BadEntry {
            name: shown.clone(),
            reason,
        };
        let name = normalise_name(&entry.name).map_err(bad)?;
        match entry.kind {
            Kind::Dir => continue,
            Kind::File => {}
            Kind::Symlink => {
                return Err(bad("symbolic link (only plain files are allowed)".into()))
            }
            Kind::HardLink => return Err(bad("hard link (only plain files are allowed)".into())),
            Kind::CharDevice | Kind::BlockDevice => {
                return Err(bad("device file (only plain files are allowed)".into()))
            }
            Kind::Fifo => return Err(bad("FIFO (only plain files are allowed)".into())),
            Kind::Other(flag) => {
                return Err(bad(format!(
                    "entry type {} (only plain files are allowed)",
                    std::ascii::escape_default(flag)
                )))
            }
        }
        if name.is_empty() {
            return Err(bad("a file with an empty name".into()));
        }
        seen.add_file(&name).map_err(bad)?;
        let size = entry.size;
        if size > limits.max_entry_size {
            return Err(BundleError::EntryTooLarge {
                name: shown,
                size,
                limit: limits.max_entry_size,
            });
        }
        total = total.saturating_add(size);
        if total > limits.max_extracted {
            return Err(BundleError::TooLarge {
                limit: limits.max_extracted,
                name: shown,
            });
        }
        let Some((written, sha256)) = visit(&name, size, reader)? else {
            continue;
        };
        if written != size {
            return Err(BundleError::Corrupt(format!(
                "entry `{shown}` is truncated"
            )));
        }
        out.push(FileEntry {
            name,
            size: written,
            sha256,
        });
    }
    Ok(out)
}

/// The compressed input, counting what the decoder consumed.
struct Counted<R> {
    inner: R,
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: std::io::BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.consumed.set(self.consumed.get() + amt as u64);
        self.inner.consume(amt)
    }
}

impl<R> Counted<R> {
    fn into_inner(self) -> R {
        self.inner
    }
}

/// The decompressed stream, stopping it once it has grown more than `ratio` times the
/// compressed bytes consumed (past [`EXPANSION_ALLOWANCE`]).
struct Metered<R> {
    inner: R,
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
    out: u64,
    ratio: u64,
    tripped: std::rc::Rc<std::cell::Cell<Option<BundleError>>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let consumed = self.consumed.get();
        if self.ratio > 0
            && self.out > EXPANSION_ALLOWANCE
            && self.out > self.ratio.saturating_mul(consumed)
        {
            self.tripped.set(Some(BundleError::Expansion {
                ratio: self.ratio,
                out: self.out,
                consumed,
            }));
            return Err(std::io::Error::other("expansion ratio exceeded"));
        }
        Ok(n)
    }
}

impl<R> Metered<flate2::bufread::GzDecoder<R>> {
    fn inner(self) -> R {
        self.inner.into_inner()
    }
}

/// The buffer size of every copy through a bundle.
pub const COPY_BUF: usize = 1 << 20;

pub enum WriteError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Reads `src` to its end through `buf`, hashing it and handing each slice to `sink`.
pub fn hash_copy(
    src: &mut dyn Read,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(u64, String), WriteError> {
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    loop {
        let got = match src.read(buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WriteError::Read(e)),
        };
        hasher.update(&buf[..got]);
        sink(&buf[..got]).map_err(WriteError::Write)?;
        n += got as u64;
    }
    Ok((n, hex::encode(hasher.finalize())))
}

/// Creates `path` (which must not exist) and its parents below `root`, refusing to pass
/// through anything that is not a real directory, and copies `src` into it.
fn write_new_file(
    path: &Path,
    root: &Path,
    src: &mut dyn Read,
) -> Result<(u64, String), WriteError> {
    if let Some(parent) = path.parent() {
        let rel = parent.strip_prefix(root).unwrap_or(Path::new(""));
        let mut cur = root.to_path_buf();
        for comp in rel.components() {
            cur.push(comp);
            match std::fs::symlink_metadata(&cur) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(WriteError::Write(std::io::Error::other(format!(
                        "{} exists and is not a directory",
                        cur.display()
                    ))))
                }
                Err(_) => std::fs::create_dir(&cur).map_err(WriteError::Write)?,
            }
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(WriteError::Write)?;
    let mut buf = vec![0u8; 256 * 1024];
    let r = hash_copy(src, &mut buf, &mut |b| f.write_all(b))?;
    f.flush().map_err(WriteError::Write)?;
    Ok(r)
}

/// Writes a flat-or-nested tar.gz of `files` (archive name, local path) to `out`.
/// Only name, size and mode are recorded, like the original client.
pub fn create<W: Write>(out: W, files: &[(String, PathBuf)], level: u32) -> std::io::Result<W> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    let mut builder = tar::Builder::new(gz);
    for (name, path) in files {
        let mut f = std::fs::File::open(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        let len = f.metadata()?.len();
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, &mut f)?;
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalise_name(b"a.jar").unwrap(), "a.jar");
        assert_eq!(normalise_name(b"./jars/a.jar").unwrap(), "jars/a.jar");
        assert_eq!(normalise_name(b"dir/").unwrap(), "dir");
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"a/../../x",
            b"a//b",
            b"a/./b",
            b"\xff",
            b"a\\b",
        ] {
            assert!(normalise_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clashes() {
        let mut s = Seen::default();
        s.add_file("a/b").unwrap();
        assert!(s.add_file("a/b").is_err());
        assert!(s.add_file("a").is_err());
        assert!(s.add_file("a/b/c").is_err());
        s.add_file("a/c").unwrap();
    }
}
