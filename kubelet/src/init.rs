//! `sidecars-kubelet container-init SPEC`: the small program between the kubelet and a container's
//! process, playing the part a container runtime plays. It is started by the kubelet for every
//! container, reads the [`InitSpec`] the kubelet wrote, and
//!
//! 1. joins the pod's network namespace (or the node's, for `hostNetwork` pods);
//! 2. unshares a mount, UTS, IPC and PID namespace of its own (one per container, as with a real
//!    runtime), sets the pod's hostname;
//! 3. builds the container's root: an overlay whose lower layer is the machine's `/` and whose
//!    upper layer is a tmpfs private to the container (so writes, new mount points and
//!    `/etc/passwd` entries never touch the machine), with the image's software, the volumes
//!    and the pod's `/etc/hosts` bind-mounted at their paths;
//! 4. forks the container's process, which becomes PID 1 of the new PID namespace (so when it
//!    ends, everything it started ends too), mounts `/proc`, changes root, drops to the
//!    container's user and groups and execs the command;
//! 5. forwards SIGTERM and friends to it and exits with its status (128 + signal when killed).
//!
//! Errors before the exec are written to the file descriptor named by `SIDECARS_INIT_ERRFD`; a
//! successful exec closes it (close-on-exec), which is how the kubelet tells "started" from
//! "failed to start" (the runtime's StartError) without guessing from exit codes.
//!
//! The helper runs single-threaded, so forking here is safe.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    chdir, chroot, fork, setgid, setgroups, sethostname, setuid, ForkResult, Gid, Uid,
};
use serde::{Deserialize, Serialize};

/// Environment variable naming the error pipe's file descriptor.
pub const ERRFD_ENV: &str = "SIDECARS_INIT_ERRFD";

/// Everything the helper needs to start one container; written as JSON by the kubelet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitSpec {
    /// Network namespace to join (a file under /run/netns).
    pub netns: PathBuf,
    pub hostname: String,
    /// Empty directory on the machine where the container's private tmpfs is mounted.
    pub scratch: PathBuf,
    /// Size of that tmpfs (the container's writable layer), e.g. "2g".
    pub scratch_size: String,
    pub read_only_root: bool,
    /// Extra writable overlays (the image's software), applied before `mounts`.
    pub overlays: Vec<OverlayMount>,
    /// Bind mounts, in order (a mount at a path inside an earlier one comes after it).
    pub mounts: Vec<BindMount>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// User name for an `/etc/passwd` entry when the container's uid has none.
    pub user_name: String,
    /// Directories created (owned by uid:gid) before the process starts, e.g. the image's
    /// working directory.
    pub owned_dirs: Vec<PathBuf>,
    /// Directories of `/` made enterable by others (o+x) in the container's own view, on the
    /// way to software the image runs from the machine.
    pub traversable: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A read-only directory of the machine shown writable at `target` (copy-on-write in tmpfs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayMount {
    pub lower: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The PID of the container's process, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs the helper; only returns on failure (the process then exits 128, like a runtime's
/// StartError).
pub fn main(spec_path: &Path) -> ! {
    let mut errfd = std::env::var(ERRFD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        // SAFETY: the kubelet passed this descriptor open for us alone.
        .map(|fd| {
            // closed by a successful exec: that EOF is the kubelet's "started"
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
        });
    let result = (|| -> Result<std::convert::Infallible> {
        let text =
            fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        let spec: InitSpec = serde_json::from_slice(&text).context("parsing the container spec")?;
        run(&spec, errfd.as_ref())
    })();
    let err = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let msg = format!("{err:#}");
    match errfd.as_mut() {
        Some(f) => {
            let _ = f.write_all(msg.as_bytes());
        }
        None => eprintln!("container-init: {msg}"),
    }
    std::process::exit(128)
}

fn run(spec: &InitSpec, errfd: Option<&fs::File>) -> Result<std::convert::Infallible> {
    let netns = fs::File::open(&spec.netns)
        .with_context(|| format!("opening network namespace {}", spec.netns.display()))?;
    setns(&netns, CloneFlags::CLONE_NEWNET).context("joining the pod's network namespace")?;
    drop(netns);
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWPID,
    )
    .context("unsharing the container's namespaces")?;
    sethostname(&spec.hostname).context("setting the hostname")?;
    // nothing mounted from here on propagates back to the machine
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    let root = build_root(spec)?;

    // SAFETY: this process is single-threaded.
    match unsafe { fork() }.context("forking the container process")? {
        ForkResult::Child => {
            let err = match exec_child(spec, &root) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if let Some(mut f) = errfd {
                let _ = f.write_all(format!("{err:#}").as_bytes());
            }
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(128) }
        }
        ForkResult::Parent { child } => {
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                // SAFETY: installing an async-signal-safe handler.
                unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
            }
            // the child holds the error pipe until its exec closes it
            if let Some(f) = errfd {
                // SAFETY: closing our copy only; the child has its own.
                unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(f)) };
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => std::process::exit(128 + sig as i32),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("container-init: waiting for the container: {e}");
                        std::process::exit(255)
                    }
                }
            }
        }
    }
}

/// Mounts the container's root under `scratch/root` and returns that path.
fn build_root(spec: &InitSpec) -> Result<PathBuf> {
    let scratch = &spec.scratch;
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("size={},mode=0700", spec.scratch_size).as_str()),
    )
    .with_context(|| format!("mounting the container's tmpfs on {}", scratch.display()))?;
    let root = scratch.join("root");
    overlay(Path::new("/"), &root, &scratch.join("rootfs"))?;

    for (i, o) in spec.overlays.iter().enumerate() {
        let target = inside(&root, &o.target);
        fs::create_dir_all(&target).with_context(|| format!("creating {}", o.target.display()))?;
        overlay(&o.lower, &target, &scratch.join(format!("overlay-{i}")))?;
    }
    // the machine's devices and kernel interfaces, as a runtime gives them
    for (src, flags) in [("/dev", MsFlags::empty()), ("/sys", MsFlags::MS_RDONLY)] {
        let target = root.join(&src[1..]);
        bind(Path::new(src), &target, true)?;
        if flags.contains(MsFlags::MS_RDONLY) {
            remount_ro(&target)?;
        }
    }
    for m in &spec.mounts {
        let target = inside(&root, &m.target);
        let is_dir = fs::metadata(&m.source)
            .with_context(|| format!("volume source {}", m.source.display()))?
            .is_dir();
        if is_dir {
            fs::create_dir_all(&target)
                .with_context(|| format!("creating mount point {}", m.target.display()))?;
        } else {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating mount point {}", m.target.display()))?;
            }
            if fs::symlink_metadata(&target).is_err() {
                fs::write(&target, b"")
                    .with_context(|| format!("creating mount point {}", m.target.display()))?;
            }
        }
        bind(&m.source, &target, true)?;
        if m.read_only {
            remount_ro(&target)?;
        }
    }
    ensure_passwd(&root, spec)?;
    for dir in &spec.traversable {
        let d = inside(&root, dir);
        if let Ok(meta) = fs::metadata(&d) {
            // a metadata-only copy-up into the container's own layer
            fs::set_permissions(&d, fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o001))
                .with_context(|| format!("chmod o+x {}", dir.display()))?;
        }
    }
    for dir in &spec.owned_dirs {
        let d = inside(&root, dir);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", dir.display()))?;
        std::os::unix::fs::chown(&d, Some(spec.uid), Some(spec.gid))
            .with_context(|| format!("chown {}", dir.display()))?;
    }
    let cwd = inside(&root, &spec.cwd);
    if !cwd.is_dir() {
        fs::create_dir_all(&cwd)
            .with_context(|| format!("creating the working directory {}", spec.cwd.display()))?;
    }
    fs::create_dir_all(root.join("proc")).context("creating /proc")?;
    if spec.read_only_root {
        remount_ro(&root)?;
    }
    Ok(root)
}

fn exec_child(spec: &InitSpec, root: &Path) -> Result<std::convert::Infallible> {
    mount(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting /proc")?;
    chroot(root).context("changing root")?;
    chdir(&spec.cwd).with_context(|| format!("changing to {}", spec.cwd.display()))?;
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).context("setting supplementary groups")?;
    setgid(Gid::from_raw(spec.gid)).context("setting the group id")?;
    setuid(Uid::from_raw(spec.uid)).context("setting the user id")?;
    // the credential change cleared it: the container dies with this helper
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    let Some(program) = spec.argv.first() else {
        bail!("no command: the container has neither a command nor an image entrypoint");
    };
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .context("an argument holds a NUL byte")?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .context("an environment variable holds a NUL byte")?;
    // execvp searches the PATH of this process: make it the container's
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: single-threaded process.
    unsafe { std::env::set_var("PATH", path) };
    let prog = CString::new(program.as_str()).context("the command holds a NUL byte")?;
    let e = nix::unistd::execvpe(&prog, &argv, &env).unwrap_err();
    bail!("exec {program}: {e}")
}

/// `path` (absolute, inside the container) under `root` on the machine, with symlinks resolved
/// as the container sees them: an absolute link (`/var/run -> /run`) points into `root`, and
/// `..` stops at `root`, so a mount point is never made outside the container's root.
fn inside(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if out != root {
                out.pop();
            }
            continue;
        }
        let next = out.join(&part);
        match fs::read_link(&next) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    out = root.to_path_buf();
                }
                for c in target.components().rev() {
                    match c {
                        std::path::Component::Normal(n) => pending.push(n.to_os_string()),
                        std::path::Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => out = next,
        }
    }
    out
}

fn overlay(lower: &Path, target: &Path, dir: &Path) -> Result<()> {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // the upper layer's root takes the lower's mode and owner, as an image layer would
    let meta = fs::metadata(lower).with_context(|| format!("{}", lower.display()))?;
    fs::set_permissions(&upper, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .with_context(|| {
        format!(
            "mounting an overlay of {} on {}",
            lower.display(),
            target.display()
        )
    })
}

fn bind(source: &Path, target: &Path, recursive: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("bind-mounting {} on {}", source.display(), target.display()))
}

fn remount_ro(target: &Path) -> Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| format!("making {} read-only", target.display()))
}

/// Adds `/etc/passwd` and `/etc/group` entries (in the container's own copy) for a uid/gid the
/// machine does not know, as the images do for their users: Java and Hadoop look the user up.
fn ensure_passwd(root: &Path, spec: &InitSpec) -> Result<()> {
    let passwd = root.join("etc/passwd");
    let text = fs::read_to_string(&passwd).unwrap_or_default();
    let has = |text: &str, id: u32| {
        text.lines()
            .any(|l| l.split(':').nth(2).and_then(|f| f.parse::<u32>().ok()) == Some(id))
    };
    if !has(&text, spec.uid) {
        let line = format!(
            "{}:x:{}:{}:{}:{}:/bin/false\n",
            spec.user_name,
            spec.uid,
            spec.gid,
            spec.user_name,
            spec.cwd.display()
        );
        append(&passwd, &line)?;
    }
    let group = root.join("etc/group");
    let text = fs::read_to_string(&group).unwrap_or_default();
    if !has(&text, spec.gid) {
        append(&group, &format!("{}:x:{}:\n", spec.user_name, spec.gid))?;
    }
    Ok(())
}

fn append(path: &Path, line: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("run")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("run/up")).unwrap();
        assert_eq!(
            inside(root, Path::new("/var/run/secrets/x")),
            root.join("run/secrets/x")
        );
        assert_eq!(inside(root, Path::new("/run/up/etc")), root.join("etc"));
        assert_eq!(
            inside(root, Path::new("/../../etc/hosts")),
            root.join("etc/hosts")
        );
    }
}
