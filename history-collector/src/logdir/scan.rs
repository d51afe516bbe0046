//! The one scan of a watched event-log directory, shared by ingest (what to copy) and serving
//! (what to replay): every regular file Spark would write there, with its size, time and
//! inode, and whether it can still grow. Entries are typed without following symbolic links
//! (`d_type`, else `fstatat(AT_SYMLINK_NOFOLLOW)`), rolling directories are opened through
//! [`Root::open_dir`], so a link, a FIFO or a device named like a log is never listed, and
//! nothing outside the directory is ever looked at.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

use super::names::{self, EventLogName, Kind};
use super::open::Root;

/// Size, modification time and identity of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    /// Modification time in ms since the epoch.
    pub modified_ms: i64,
    /// (device, inode): a file replaced under the same name has another.
    pub ino: (u64, u64),
}

impl FileMeta {
    fn of(st: &FileStat) -> FileMeta {
        FileMeta {
            size: st.st_size.max(0) as u64,
            modified_ms: st.st_mtime * 1000 + st.st_mtime_nsec / 1_000_000,
            ino: (st.st_dev, st.st_ino),
        }
    }
}

/// One event-log file found by a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The file's name as Spark wrote it, its log and codec; `name.rel` is the path
    /// relative to the watched directory.
    pub name: EventLogName,
    pub meta: FileMeta,
    /// The file will not change any more (renamed from `.inprogress`, a rolled file, a
    /// status marker).
    pub complete: bool,
}

/// What kind of entry a name is, never following a link.
fn entry_type(dir: &OwnedFd, name: &str, d_type: Option<Type>) -> Option<(Type, Option<FileStat>)> {
    let stat = || fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    match d_type {
        Some(t @ (Type::File | Type::Directory)) => Some((t, None)),
        Some(_) => None,
        None => {
            let st = stat()?;
            let t = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFREG => Type::File,
                SFlag::S_IFDIR => Type::Directory,
                _ => return None,
            };
            Some((t, Some(st)))
        }
    }
}

/// The UTF-8 names and types of the entries of an open directory (`.` and `..` left out).
fn entries(fd: OwnedFd) -> io::Result<Vec<(String, Type, Option<FileStat>)>> {
    // the directory stream takes a duplicate; `fd` stays for fstatat
    let dup = fd.try_clone()?;
    let mut dir = Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let Ok(e) = e else { continue };
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        if let Some((t, st)) = entry_type(&fd, name, e.file_type()) {
            out.push((name.to_string(), t, st));
        }
    }
    Ok(out)
}

fn stat_file(dir: &OwnedFd, name: &str, known: Option<FileStat>) -> Option<FileMeta> {
    let st = match known {
        Some(st) => st,
        None => fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?,
    };
    // typed as a file by d_type, but replaced since: only what is still regular counts
    (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
        .then(|| FileMeta::of(&st))
}

/// Every event-log file directly in `root` or in its rolling directories.
pub fn scan(root: &Root) -> io::Result<Vec<Found>> {
    let top = nix::fcntl::openat(
        root.fd().as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut out = Vec::new();
    for (name, t, st) in entries(top.try_clone()?)? {
        match t {
            Type::File => {
                let Some(n) = names::single(&name) else {
                    continue;
                };
                let Some(meta) = stat_file(&top, &name, st) else {
                    continue;
                };
                let complete = n.kind == Kind::Single { in_progress: false };
                out.push(Found {
                    name: n,
                    meta,
                    complete,
                });
            }
            Type::Directory if names::rolling_dir(&name).is_some() => {
                let Ok(sub) = root.open_dir(&name) else {
                    continue;
                };
                let mut files = Vec::new();
                for (fname, t, st) in entries(sub.try_clone()?).unwrap_or_default() {
                    if t != Type::File {
                        continue;
                    }
                    let Some(n) = names::rolling_file(&name, &fname) else {
                        continue;
                    };
                    if let Some(meta) = stat_file(&sub, &fname, st) {
                        files.push((n, meta));
                    }
                }
                let all: Vec<EventLogName> = files.iter().map(|(n, _)| n.clone()).collect();
                let done = names::rolling_complete(&all);
                for (n, meta) in files {
                    let complete = done.get(&n.rel).copied().unwrap_or(false);
                    out.push(Found {
                        name: n,
                        meta,
                        complete,
                    });
                }
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.name.rel.cmp(&b.name.rel));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lists_regular_log_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("events_1_b"), b"{}\n").unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::write(d.join("local-1"), b"{}\n").unwrap();
        std::fs::write(d.join("local-2.lz4.inprogress"), b"").unwrap();
        std::fs::write(d.join(".hidden"), b"").unwrap();
        std::fs::write(d.join("notes.txt"), b"").unwrap();
        symlink(outside.path().join("secret"), d.join("local-3")).unwrap();
        symlink(outside.path(), d.join("eventlog_v2_b")).unwrap();
        nix::unistd::mkfifo(&d.join("local-4"), Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let r = d.join("eventlog_v2_spark-3");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("appstatus_spark-3.inprogress"), b"").unwrap();
        std::fs::write(r.join("events_1_spark-3.zstd"), b"1").unwrap();
        std::fs::write(r.join("events_2_spark-3.zstd"), b"22").unwrap();
        symlink(
            outside.path().join("secret"),
            r.join("events_3_spark-3.zstd"),
        )
        .unwrap();
        let found = scan(&Root::open(d).unwrap()).unwrap();
        let got: Vec<(&str, u64, bool)> = found
            .iter()
            .map(|f| (f.name.rel.as_str(), f.meta.size, f.complete))
            .collect();
        assert_eq!(
            got,
            [
                ("eventlog_v2_spark-3/appstatus_spark-3.inprogress", 0, true),
                ("eventlog_v2_spark-3/events_1_spark-3.zstd", 1, true),
                ("eventlog_v2_spark-3/events_2_spark-3.zstd", 2, false),
                ("local-1", 3, true),
                ("local-2.lz4.inprogress", 0, false),
            ]
        );
    }
}
