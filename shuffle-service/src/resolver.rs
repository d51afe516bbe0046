//! From block id to file segment, exactly as Spark lays files out: Java `String.hashCode`
//! placement into local dirs and sub-dirs, sort-shuffle index files of cumulative offsets, and
//! checksum files. Every file is canonicalised and must stay under the executor's registered
//! directories, so neither `..` nor a symlink can lead a reader outside them.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::blockid::BlockRef;
use crate::protocol::Cause;

/// Where one executor's block files live: its registered dirs, their canonical forms (the
/// fence every file must stay behind), and `spark.diskStore.subDirectories`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorLayout {
    pub local_dirs: Vec<String>,
    pub canonical_dirs: Vec<PathBuf>,
    pub sub_dirs: i32,
    pub shuffle_manager: String,
}

/// Bytes `[offset, offset + len)` of an open file: a chunk body to send with sendfile.
#[derive(Debug)]
pub struct FileSegment {
    pub file: File,
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("java.lang.RuntimeException: Failed to open file: {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("java.lang.RuntimeException: Block file {0} resolves outside the executor's registered local directories")]
    Escape(PathBuf),
    #[error("java.lang.IllegalStateException: Chunk was not found ({0} does not exist)")]
    NotFound(PathBuf),
    #[error("java.lang.RuntimeException: index file {path} is corrupt: {detail}")]
    BadIndex { path: PathBuf, detail: String },
    #[error("java.lang.RuntimeException: data file {path} has {have} bytes but the index says block {block} ends at {need}")]
    ShortData {
        path: PathBuf,
        block: String,
        have: u64,
        need: u64,
    },
    #[error("java.lang.IllegalArgumentException: {0}")]
    Invalid(String),
}

/// Java's `String.hashCode` over UTF-16 code units, with 32-bit wrap-around.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Spark's `JavaUtils.nonNegativeHash`.
pub fn non_negative_hash(s: &str) -> i32 {
    let h = java_string_hash(s);
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

/// `ExecutorDiskUtils.getFilePath`: `<dir>/<%02x sub>/<file>` with the hash placement.
pub fn placed_path(
    dirs: &[PathBuf],
    sub_dirs: i32,
    filename: &str,
) -> Result<PathBuf, ResolveError> {
    if dirs.is_empty() || sub_dirs <= 0 {
        return Err(ResolveError::Invalid(format!(
            "executor has {} local dirs and {sub_dirs} sub-dirs per dir",
            dirs.len()
        )));
    }
    let h = non_negative_hash(filename);
    let n = dirs.len() as i64;
    let dir = &dirs[(i64::from(h) % n) as usize];
    let sub = (i64::from(h) / n) % i64::from(sub_dirs);
    Ok(dir.join(format!("{sub:02x}")).join(filename))
}

/// Opens `path` read-only with `openat2(RESOLVE_NO_SYMLINKS)`.
fn open_no_symlinks(path: &Path) -> nix::Result<File> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(AT_FDCWD, path, how).map(File::from)
}

/// Offsets of a map output's partitions, cached because every reducer reads the same index.
/// Bounded by bytes; the oldest entries go first.
pub struct Resolver {
    cache: Mutex<IndexCache>,
}

struct IndexCache {
    map: HashMap<PathBuf, Arc<[i64]>>,
    order: VecDeque<PathBuf>,
    bytes: usize,
    limit: usize,
}

impl Resolver {
    pub fn new(index_cache_bytes: usize) -> Self {
        Self {
            cache: Mutex::new(IndexCache {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                limit: index_cache_bytes,
            }),
        }
    }

    /// Canonicalises `path` and checks it lies under one of the executor's dirs.
    fn fenced(layout: &ExecutorLayout, path: &Path) -> Result<PathBuf, ResolveError> {
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ResolveError::NotFound(path.to_owned()))
            }
            Err(e) => {
                return Err(ResolveError::Open {
                    path: path.to_owned(),
                    source: e,
                })
            }
        };
        if layout.canonical_dirs.iter().any(|d| real.starts_with(d)) {
            Ok(real)
        } else {
            Err(ResolveError::Escape(path.to_owned()))
        }
    }

    fn open_fenced(
        layout: &ExecutorLayout,
        filename: &str,
    ) -> Result<(File, PathBuf), ResolveError> {
        let path = placed_path(&layout.canonical_dirs, layout.sub_dirs, filename)?;
        // Fast path, one syscall: the path is a canonical registered dir, a hex sub-dir and a
        // plain file name, so an open that refuses every symlink on the way cannot leave the
        // dir. Anything but success or "no such file" (a symlink met, an old kernel without
        // openat2) falls through to the canonicalise-and-compare fence.
        if !filename.contains('/') && filename != ".." {
            match open_no_symlinks(&path) {
                Ok(file) => return Ok((file, path)),
                Err(nix::errno::Errno::ENOENT) => return Err(ResolveError::NotFound(path)),
                Err(_) => {}
            }
        }
        let real = Self::fenced(layout, &path)?;
        let file = File::open(&real).map_err(|e| ResolveError::Open {
            path: path.clone(),
            source: e,
        })?;
        Ok((file, path))
    }

    fn index(
        &self,
        layout: &ExecutorLayout,
        shuffle_id: i32,
        map_id: i64,
    ) -> Result<(Arc<[i64]>, PathBuf), ResolveError> {
        let name = format!("shuffle_{shuffle_id}_{map_id}_0.index");
        let path = placed_path(&layout.canonical_dirs, layout.sub_dirs, &name)?;
        if let Ok(cache) = self.cache.lock() {
            if let Some(v) = cache.map.get(&path) {
                return Ok((v.clone(), path));
            }
        }
        let (mut file, path) = Self::open_fenced(layout, &name).map_err(|e| match e {
            ResolveError::NotFound(p) => ResolveError::Open {
                path: p,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "No such file or directory",
                ),
            },
            other => other,
        })?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(|e| ResolveError::Open {
            path: path.clone(),
            source: e,
        })?;
        if raw.len() % 8 != 0 || raw.len() < 16 {
            return Err(ResolveError::BadIndex {
                path,
                detail: format!(
                    "{} bytes is not a whole number (>= 2) of 8-byte offsets",
                    raw.len()
                ),
            });
        }
        let offsets: Arc<[i64]> = raw
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                i64::from_be_bytes(a)
            })
            .collect();
        if let Ok(mut cache) = self.cache.lock() {
            let size = raw.len() + path.as_os_str().len() + 64;
            while cache.bytes + size > cache.limit {
                let Some(old) = cache.order.pop_front() else {
                    break;
                };
                if let Some(v) = cache.map.remove(&old) {
                    cache.bytes -= v.len() * 8 + old.as_os_str().len() + 64;
                }
            }
            if size <= cache.limit && cache.map.insert(path.clone(), offsets.clone()).is_none() {
                cache.order.push_back(path.clone());
                cache.bytes += size;
            }
        }
        Ok((offsets, path))
    }

    /// Forgets cached indexes under `dirs` (their files are about to be deleted).
    pub fn forget(&self, dirs: &[PathBuf]) {
        if let Ok(mut cache) = self.cache.lock() {
            let gone: Vec<PathBuf> = cache
                .map
                .keys()
                .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
                .cloned()
                .collect();
            for p in gone {
                if let Some(v) = cache.map.remove(&p) {
                    cache.bytes -= v.len() * 8 + p.as_os_str().len() + 64;
                }
                cache.order.retain(|q| q != &p);
            }
        }
    }

    /// The byte range of `[start, end)` partitions of a map output.
    fn shuffle_range(
        &self,
        layout: &ExecutorLayout,
        shuffle_id: i32,
        map_id: i64,
        start: i32,
        end: i32,
    ) -> Result<(u64, u64), ResolveError> {
        let (offsets, index_path) = self.index(layout, shuffle_id, map_id)?;
        let parts = offsets.len() - 1;
        if start < 0 || end < start || end as usize > parts {
            return Err(ResolveError::Invalid(format!(
                "reduce ids [{start}, {end}) are outside the {parts} partitions in {}",
                index_path.display()
            )));
        }
        let (a, b) = (offsets[start as usize], offsets[end as usize]);
        if a < 0 || b < a {
            return Err(ResolveError::BadIndex {
                path: index_path,
                detail: format!("offsets {a}..{b} for reduce ids [{start}, {end})"),
            });
        }
        Ok((a as u64, (b - a) as u64))
    }

    /// The file segment holding `block`.
    pub fn block(
        &self,
        layout: &ExecutorLayout,
        block: &BlockRef,
    ) -> Result<FileSegment, ResolveError> {
        match *block {
            BlockRef::Shuffle {
                shuffle_id,
                map_id,
                start_reduce,
                end_reduce,
            } => {
                let (offset, len) =
                    self.shuffle_range(layout, shuffle_id, map_id, start_reduce, end_reduce)?;
                let name = format!("shuffle_{shuffle_id}_{map_id}_0.data");
                let (file, path) = Self::open_fenced(layout, &name).map_err(|e| match e {
                    ResolveError::NotFound(p) => ResolveError::Open {
                        path: p,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "No such file or directory",
                        ),
                    },
                    other => other,
                })?;
                let have = file
                    .metadata()
                    .map_err(|e| ResolveError::Open {
                        path: path.clone(),
                        source: e,
                    })?
                    .len();
                if offset + len > have {
                    return Err(ResolveError::ShortData {
                        path,
                        block: block.to_string(),
                        have,
                        need: offset + len,
                    });
                }
                Ok(FileSegment {
                    file,
                    path,
                    offset,
                    len,
                })
            }
            BlockRef::Rdd { .. } => {
                let (file, path) = Self::open_fenced(layout, &block.to_string())?;
                let len = file
                    .metadata()
                    .map_err(|e| ResolveError::Open {
                        path: path.clone(),
                        source: e,
                    })?
                    .len();
                Ok(FileSegment {
                    file,
                    path,
                    offset: 0,
                    len,
                })
            }
        }
    }

    /// Deletes one block file by name (RemoveBlocks). True if a file was deleted.
    pub fn remove_file(&self, layout: &ExecutorLayout, filename: &str) -> bool {
        let Ok(path) = placed_path(&layout.canonical_dirs, layout.sub_dirs, filename) else {
            return false;
        };
        // Fence the parent, then unlink the name itself: a symlink is removed, never followed.
        let Some(parent) = path.parent() else {
            return false;
        };
        match Self::fenced(layout, parent) {
            Ok(real_parent) => std::fs::remove_file(real_parent.join(filename)).is_ok(),
            Err(_) => false,
        }
    }

    /// DiagnoseCorruption: recompute the block's checksum and compare with the writer's and
    /// the reader's.
    pub fn diagnose(
        &self,
        layout: &ExecutorLayout,
        shuffle_id: i32,
        map_id: i64,
        reduce_id: i32,
        reader_checksum: i64,
        algorithm: &str,
    ) -> Cause {
        let Some(mut algo) = Checksum::new(algorithm) else {
            return Cause::UnsupportedChecksumAlgorithm;
        };
        let mut run = || -> Result<Cause, ResolveError> {
            let name = format!("shuffle_{shuffle_id}_{map_id}_0.checksum.{algorithm}");
            let (mut file, path) = Self::open_fenced(layout, &name)?;
            let at = u64::try_from(reduce_id)
                .map_err(|_| ResolveError::Invalid(format!("negative reduce id {reduce_id}")))?
                * 8;
            let io = |e| ResolveError::Open {
                path: path.clone(),
                source: e,
            };
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            let mut b = [0u8; 8];
            file.read_exact(&mut b).map_err(io)?;
            let writer = i64::from_be_bytes(b);
            let block = BlockRef::Shuffle {
                shuffle_id,
                map_id,
                start_reduce: reduce_id,
                end_reduce: reduce_id.saturating_add(1),
            };
            let seg = self.block(layout, &block)?;
            let mut f = seg.file;
            f.seek(SeekFrom::Start(seg.offset))
                .map_err(|e| ResolveError::Open {
                    path: seg.path.clone(),
                    source: e,
                })?;
            let mut left = seg.len;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let n = (left as usize).min(buf.len());
                f.read_exact(&mut buf[..n])
                    .map_err(|e| ResolveError::Open {
                        path: seg.path.clone(),
                        source: e,
                    })?;
                algo.update(&buf[..n]);
                left -= n as u64;
            }
            let recomputed = algo.value();
            Ok(if recomputed != writer {
                Cause::DiskIssue
            } else if writer != reader_checksum {
                Cause::NetworkIssue
            } else {
                Cause::ChecksumVerifyPass
            })
        };
        match run() {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "cannot diagnose corruption of shuffle_{shuffle_id}_{map_id}_{reduce_id}");
                Cause::UnknownIssue
            }
        }
    }
}

/// The checksum algorithms Spark writes (`spark.shuffle.checksum.algorithm`).
pub enum Checksum {
    Adler32(adler2::Adler32),
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
}

impl Checksum {
    pub fn new(name: &str) -> Option<Checksum> {
        match name.to_ascii_uppercase().as_str() {
            "ADLER32" => Some(Checksum::Adler32(adler2::Adler32::new())),
            "CRC32" => Some(Checksum::Crc32(crc32fast::Hasher::new())),
            "CRC32C" => Some(Checksum::Crc32c(0)),
            _ => None,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Adler32(a) => a.write_slice(data),
            Checksum::Crc32(c) => c.update(data),
            Checksum::Crc32c(v) => *v = crc32c::crc32c_append(*v, data),
        }
    }

    /// Java's `Checksum.getValue()`: the unsigned 32-bit value in a long.
    pub fn value(&self) -> i64 {
        i64::from(match self {
            Checksum::Adler32(a) => a.checksum(),
            Checksum::Crc32(c) => c.clone().finalize(),
            Checksum::Crc32c(v) => *v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_spec_examples() {
        // spec §9.2 worked examples (2 local dirs, 64 sub-dirs)
        assert_eq!(non_negative_hash("shuffle_0_0_0.data"), 581811660);
        assert_eq!(non_negative_hash("shuffle_0_0_0.index"), 861282032);
        assert_eq!(non_negative_hash("rdd_2_3"), 1054352921);
        let dirs = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        assert_eq!(
            placed_path(&dirs, 64, "shuffle_0_0_0.data").ok(),
            Some(PathBuf::from("/a/26/shuffle_0_0_0.data"))
        );
        assert_eq!(
            placed_path(&dirs, 64, "shuffle_0_0_0.index").ok(),
            Some(PathBuf::from("/a/38/shuffle_0_0_0.index"))
        );
        assert_eq!(
            placed_path(&dirs, 64, "rdd_2_3").ok(),
            Some(PathBuf::from("/b/0c/rdd_2_3"))
        );
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(non_negative_hash("polygenelubricants"), 0);
        assert!(placed_path(&dirs, 0, "x").is_err());
        assert!(placed_path(&[], 64, "x").is_err());
    }

    fn layout(root: &Path) -> ExecutorLayout {
        let d = root.join("blockmgr-1");
        std::fs::create_dir_all(&d).expect("mkdir");
        ExecutorLayout {
            local_dirs: vec![d.display().to_string()],
            canonical_dirs: vec![d.canonicalize().expect("canon")],
            sub_dirs: 4,
            shuffle_manager: "sort".into(),
        }
    }

    fn write_placed(l: &ExecutorLayout, name: &str, data: &[u8]) {
        let p = placed_path(&l.canonical_dirs, l.sub_dirs, name).expect("path");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }

    #[test]
    fn shuffle_blocks_come_from_index_ranges() {
        let tmp = tempfile::tempdir().expect("tmp");
        let l = layout(tmp.path());
        let data = b"aaabbbbbcc";
        let idx: Vec<u8> = [0i64, 3, 8, 8, 10]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        write_placed(&l, "shuffle_1_7_0.data", data);
        write_placed(&l, "shuffle_1_7_0.index", &idx);
        let r = Resolver::new(1 << 20);
        let seg = |s, e| {
            r.block(
                &l,
                &BlockRef::Shuffle {
                    shuffle_id: 1,
                    map_id: 7,
                    start_reduce: s,
                    end_reduce: e,
                },
            )
            .map(|f| (f.offset, f.len))
        };
        assert_eq!(seg(0, 1).ok(), Some((0, 3)));
        assert_eq!(seg(1, 2).ok(), Some((3, 5)));
        assert_eq!(seg(2, 3).ok(), Some((8, 0)));
        assert_eq!(seg(1, 4).ok(), Some((3, 7)));
        assert!(seg(3, 5).is_err());
        assert!(seg(-1, 0).is_err());
        assert!(r
            .block(
                &l,
                &BlockRef::Shuffle {
                    shuffle_id: 2,
                    map_id: 7,
                    start_reduce: 0,
                    end_reduce: 1
                }
            )
            .is_err());

        // checksum diagnosis
        let mut c = Checksum::new("ADLER32").expect("adler");
        c.update(b"bbbbb");
        let good = c.value();
        let sums: Vec<u8> = [0i64, good, 0, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        write_placed(&l, "shuffle_1_7_0.checksum.ADLER32", &sums);
        assert_eq!(
            r.diagnose(&l, 1, 7, 1, good, "ADLER32"),
            Cause::ChecksumVerifyPass
        );
        assert_eq!(
            r.diagnose(&l, 1, 7, 1, good + 1, "ADLER32"),
            Cause::NetworkIssue
        );
        assert_eq!(r.diagnose(&l, 1, 7, 0, 0, "ADLER32"), Cause::DiskIssue);
        assert_eq!(
            r.diagnose(&l, 1, 7, 1, good, "MD5"),
            Cause::UnsupportedChecksumAlgorithm
        );
        assert_eq!(r.diagnose(&l, 1, 7, 1, good, "CRC32"), Cause::UnknownIssue);

        assert!(r.remove_file(&l, "shuffle_1_7_0.data"));
        assert!(!r.remove_file(&l, "shuffle_1_7_0.data"));
    }

    #[test]
    fn the_fast_open_takes_files_and_refuses_symlinks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert!(open_no_symlinks(&file).is_ok(), "openat2 unavailable?");
        assert_eq!(
            open_no_symlinks(&link).err(),
            Some(nix::errno::Errno::ELOOP)
        );
    }

    #[test]
    fn symlinks_that_stay_inside_the_dirs_are_served() {
        // The one-syscall open refuses every symlink; the canonicalising fence behind it
        // still serves a link whose target is inside the executor's dirs.
        let tmp = tempfile::tempdir().expect("tmp");
        let l = layout(tmp.path());
        let target = l.canonical_dirs[0].join("elsewhere");
        std::fs::write(&target, b"cached block").expect("write");
        let p = placed_path(&l.canonical_dirs, l.sub_dirs, "rdd_2_3").expect("path");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(&target, &p).expect("symlink");
        let r = Resolver::new(1 << 20);
        let seg = r
            .block(
                &l,
                &BlockRef::Rdd {
                    rdd_id: 2,
                    split_index: 3,
                },
            )
            .expect("served through the fence");
        assert_eq!(seg.len, 12);
        let mut body = String::new();
        let mut f = seg.file;
        f.read_to_string(&mut body).expect("read");
        assert_eq!(body, "cached block");
    }

    #[test]
    fn symlinks_out_of_the_dirs_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let l = layout(tmp.path());
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, b"top secret").expect("write");
        let p = placed_path(&l.canonical_dirs, l.sub_dirs, "rdd_1_1").expect("path");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(&secret, &p).expect("symlink");
        let r = Resolver::new(1 << 20);
        let got = r.block(
            &l,
            &BlockRef::Rdd {
                rdd_id: 1,
                split_index: 1,
            },
        );
        assert!(matches!(got, Err(ResolveError::Escape(_))), "{got:?}");
        // RemoveBlocks unlinks the link itself, never its target
        assert!(r.remove_file(&l, "rdd_1_1"));
        assert!(secret.exists());
        let missing = r.block(
            &l,
            &BlockRef::Rdd {
                rdd_id: 9,
                split_index: 9,
            },
        );
        assert!(matches!(missing, Err(ResolveError::NotFound(_))));
    }

    #[test]
    fn checksum_values_match_java() {
        // java.util.zip.Adler32/CRC32 and CRC32C of "123456789"
        let v = |name| {
            let mut c = Checksum::new(name).expect("algo");
            c.update(b"123456789");
            c.value()
        };
        assert_eq!(v("ADLER32"), 0x091E01DE);
        assert_eq!(v("CRC32"), 0xCBF43926);
        assert_eq!(v("CRC32C"), 0xE3069283);
    }
}
