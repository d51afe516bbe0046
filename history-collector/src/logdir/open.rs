//! Opening what a scan found, relative to the watched directory and never through a
//! symbolic link: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or, where the
//! kernel (before 5.6) or a seccomp profile refuses `openat2`, a walk that opens one
//! component at a time with `O_NOFOLLOW`. Only regular files are handed out: a FIFO, socket
//! or device with a log's name is refused (opened non-blocking, so a FIFO cannot hang us),
//! and so is a file a symlink was swapped in for between the scan and the open.
//!
//! The watched directory itself is opened as configured (the operator chose that path);
//! everything under it is held to these rules.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// A watched event-log directory, open.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

/// Set once `openat2` has been refused (ENOSYS, or EPERM from a seccomp filter): later opens
/// go straight to the component walk.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

const READ_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_NONBLOCK);

fn err(e: Errno, what: &Path) -> io::Error {
    let msg = match e {
        Errno::ELOOP => "a symbolic link is in the way (links are never followed)".to_string(),
        Errno::EXDEV => "the path leaves the watched directory".to_string(),
        e => e.desc().to_string(),
    };
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{}: {msg}", what.display()),
    )
}

/// Checks a path relative to a watched directory: `/`-separated plain names, none empty,
/// `.` or `..`, no NUL.
pub fn check_rel(rel: &str) -> io::Result<()> {
    let bad = rel.is_empty()
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain relative path"),
        ));
    }
    Ok(())
}

impl Root {
    /// Opens the watched directory `path`.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e, path))?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens the regular file `rel` beneath this directory, read-only.
    pub fn open_file(&self, rel: &str) -> io::Result<File> {
        let fd = self.resolve(rel, READ_FLAGS)?;
        let st = fstat(&fd).map_err(|e| err(e, &self.path.join(rel)))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", self.path.join(rel).display()),
            ));
        }
        Ok(File::from(fd))
    }

    /// Opens the directory `rel` beneath this directory (for listing it).
    pub fn open_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        self.resolve(rel, READ_FLAGS | OFlag::O_DIRECTORY)
    }

    /// Removes the file (or, with `dir`, the empty directory) `rel` beneath this directory.
    /// The parent is reached without following links and the name itself is unlinked, so a
    /// link put in a log's place is removed, never what it points to.
    pub fn remove(&self, rel: &str, dir: bool) -> io::Result<()> {
        check_rel(rel)?;
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (Some(self.open_dir(p)?), n),
            None => (None, rel),
        };
        let at = parent.as_ref().map_or(self.fd.as_fd(), |p| p.as_fd());
        let how = if dir {
            nix::unistd::UnlinkatFlags::RemoveDir
        } else {
            nix::unistd::UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(at, name, how).map_err(|e| err(e, &self.path.join(rel)))
    }

    fn resolve(&self, rel: &str, flags: OFlag) -> io::Result<OwnedFd> {
        check_rel(rel)?;
        let what = self.path.join(rel);
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let how = OpenHow::new().flags(flags).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            match openat2(self.fd.as_fd(), rel, how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOSYS) | Err(Errno::EPERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    tracing::info!("openat2 is unavailable; opening event logs one path component at a time with O_NOFOLLOW");
                }
                Err(e) => return Err(err(e, &what)),
            }
        }
        // the walk: every component opened relative to the last with O_NOFOLLOW, so a symlink
        // anywhere fails with ELOOP (check_rel already refused `..`)
        let comps: Vec<&str> = rel.split('/').collect();
        let mut cur: Option<OwnedFd> = None;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let f = if last {
                flags
            } else {
                READ_FLAGS | OFlag::O_DIRECTORY
            };
            let dir = match &cur {
                Some(fd) => fd.as_fd(),
                None => self.fd.as_fd(),
            };
            let next = openat(dir, *c, f, Mode::empty()).map_err(|e| err(e, &what))?;
            cur = Some(next);
        }
        cur.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    #[test]
    fn opens_regular_files_beneath_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"token").unwrap();
        std::fs::write(d.join("app-1"), b"{}\n").unwrap();
        std::fs::create_dir(d.join("eventlog_v2_a")).unwrap();
        std::fs::write(d.join("eventlog_v2_a/events_1_a"), b"{}\n").unwrap();
        symlink(outside.path().join("secret"), d.join("app-2")).unwrap();
        symlink(outside.path(), d.join("eventlog_v2_b")).unwrap();
        symlink("app-1", d.join("app-3")).unwrap();
        nix::unistd::mkfifo(&d.join("app-4"), Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let root = Root::open(d).unwrap();
        let mut s = String::new();
        root.open_file("app-1")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "{}\n");
        assert!(root.open_file("eventlog_v2_a/events_1_a").is_ok());
        for bad in [
            "app-2",
            "app-3",
            "app-4",
            "eventlog_v2_b/secret",
            "eventlog_v2_a",
            "../x",
            "/etc/passwd",
            "a//b",
            "",
        ] {
            assert!(root.open_file(bad).is_err(), "{bad} opened");
        }
        // the walk used without openat2 refuses the same
        NO_OPENAT2.store(true, Ordering::Relaxed);
        assert!(root.open_file("eventlog_v2_a/events_1_a").is_ok());
        for bad in ["app-2", "app-3", "app-4", "eventlog_v2_b/secret"] {
            assert!(root.open_file(bad).is_err(), "{bad} opened by the walk");
        }
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }
}
