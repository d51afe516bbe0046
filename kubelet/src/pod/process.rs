//! Starting one run of a container: resolve its image, build its command line, environment,
//! user and mounts into an [`InitSpec`], and start `sidecars-kubelet container-init` with it,
//! its output going to the container's log.
//!
//! The command line follows Kubernetes: `command` replaces the image's ENTRYPOINT (and then the
//! image's CMD is ignored), `args` replace its CMD, and `$(VAR)` in either refers to the
//! container's variables. A Spark image's entrypoint is [`crate::entrypoint`].

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::io::AsyncReadExt;

use crate::entrypoint;
use crate::env::{self, PodFacts, Sources};
use crate::images::{Image, ImageKind};
use crate::init::{BindMount, InitSpec, OverlayMount, ERRFD_ENV};
use crate::logs::LogKey;
use crate::node::NodeCtx;

/// Why a container could not be started, as the container's waiting/terminated reason.
#[derive(Debug, Clone)]
pub enum StartFailure {
    /// The image is not in the table (`ErrImagePull`).
    Image(String),
    /// Bad configuration: env references, user (`CreateContainerConfigError`).
    Config(String),
    /// The process could not be started (`StartError`, exit code 128).
    Start(String),
}

/// A running container process (the `container-init` helper, which passes signals on).
pub struct Proc {
    pub pid: i32,
    pub alive: Arc<AtomicBool>,
    pub started_at: k8s_openapi::jiff::Timestamp,
    pub termination_log: PathBuf,
    pub log_path: PathBuf,
}

impl Proc {
    /// Sends `sig` to the container if it still runs.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.alive.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: i32,
    pub finished_at: k8s_openapi::jiff::Timestamp,
}

/// Everything about the pod a container start needs.
pub struct PodEnv<'a> {
    pub pod: &'a Pod,
    pub dir: &'a Path,
    pub netns: PathBuf,
    pub ip: String,
    pub hostname: String,
    pub volumes: &'a BTreeMap<String, PathBuf>,
    pub hosts_file: PathBuf,
}

/// Starts run number `attempt` of `c`. On success the returned future resolves when the
/// process exits.
pub async fn start(
    node: &NodeCtx,
    p: &PodEnv<'_>,
    c: &Container,
    attempt: u32,
) -> Result<(Proc, tokio::task::JoinHandle<Exit>), StartFailure> {
    let image_name = c.image.clone().unwrap_or_default();
    let image = node
        .images
        .resolve(&image_name)
        .map_err(|e| StartFailure::Image(e.to_string()))?;
    let ns = p.pod.metadata.namespace.clone().unwrap_or_default();
    let facts = PodFacts {
        pod: p.pod,
        pod_ip: p.ip.clone(),
        host_ip: node.ip.to_string(),
        node_cpu_millis: node.cpu_millis,
        node_memory_bytes: node.memory_bytes,
    };
    let mut sources = Sources::new(node.client.clone(), &ns);
    // set whatever enableServiceLinks says, as for the real kubernetes Service
    let service_env = env::kubernetes_service_env(&node.api_ip, node.api_port);
    let container_env = env::container_env(c, &facts, &service_env, &mut sources)
        .await
        .map_err(|e| StartFailure::Config(format!("{e:#}")))?;

    let vars: BTreeMap<&str, &str> = container_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expand_all = |v: &Option<Vec<String>>| -> Option<Vec<String>> {
        v.as_ref()
            .map(|v| v.iter().map(|a| env::expand(a, &vars)).collect())
    };
    let command = expand_all(&c.command);
    let args = expand_all(&c.args);

    // the image's variables first; the container's win
    let mut full_env: Vec<(String, String)> = image.env.clone();
    for (k, v) in &container_env {
        match full_env.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.clone(),
            None => full_env.push((k.clone(), v.clone())),
        }
    }
    if !full_env.iter().any(|(k, _)| k == "HOSTNAME") {
        full_env.push(("HOSTNAME".into(), p.hostname.clone()));
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| image.workdir.clone());

    let (uid, gid) = user(p.pod, c, &image).map_err(StartFailure::Config)?;
    let (argv, uid, gid) = match (&command, &image.kind) {
        (Some(cmd), _) => {
            let mut argv = cmd.clone();
            argv.extend(args.clone().unwrap_or_default());
            (argv, uid, gid)
        }
        (None, ImageKind::Spark { version }) => {
            let launch = entrypoint::spark(
                version,
                &args.clone().unwrap_or_else(|| image.cmd.clone()),
                &full_env,
                &cwd.display().to_string(),
            );
            let (u, g) = entrypoint::spark_user(uid, gid, &launch);
            (launch.argv, u, g)
        }
        (None, _) => {
            let mut argv = image.entrypoint.clone();
            argv.extend(args.clone().unwrap_or_else(|| image.cmd.clone()));
            (argv, uid, gid)
        }
    };
    let mut groups = vec![gid];
    if let Some(sc) = p
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
    {
        groups.extend(sc.fs_group.map(|g| g as u32));
        groups.extend(sc.supplemental_groups.iter().flatten().map(|g| *g as u32));
    }
    groups.sort();
    groups.dedup();

    let run_dir = p
        .dir
        .join("containers")
        .join(format!("{}-{attempt}", c.name));
    let scratch = run_dir.join("scratch");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))
        .map_err(|e| StartFailure::Start(format!("{e:#}")))?;
    let termination_log = run_dir.join("termination-log");
    std::fs::write(&termination_log, b"").map_err(|e| StartFailure::Start(e.to_string()))?;
    let _ = std::os::unix::fs::chown(&termination_log, Some(uid), Some(gid));

    let mut overlays = Vec::new();
    let mut mounts = Vec::new();
    for f in &image.files {
        if f.overlay {
            overlays.push(OverlayMount {
                lower: f.source.clone(),
                target: f.target.clone(),
            });
        } else {
            mounts.push(BindMount {
                source: f.source.clone(),
                target: f.target.clone(),
                read_only: true,
            });
        }
    }
    mounts.push(BindMount {
        source: p.hosts_file.clone(),
        target: "/etc/hosts".into(),
        read_only: false,
    });
    let tm_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(BindMount {
        source: termination_log.clone(),
        target: tm_path.into(),
        read_only: false,
    });
    let mut volume_mounts: Vec<_> = c.volume_mounts.iter().flatten().collect();
    // parents before children
    volume_mounts.sort_by_key(|m| m.mount_path.matches('/').count());
    for m in volume_mounts {
        let vol = p.volumes.get(&m.name).ok_or_else(|| {
            StartFailure::Config(format!("volumeMount {:?}: no such volume", m.name))
        })?;
        let sub = m
            .sub_path_expr
            .as_ref()
            .map(|e| env::expand(e, &vars))
            .or_else(|| m.sub_path.clone());
        let source = crate::volumes::mount_source(vol, sub.as_deref())
            .map_err(|e| StartFailure::Config(format!("volumeMount {:?}: {e:#}", m.name)))?;
        mounts.push(BindMount {
            source,
            target: m.mount_path.clone().into(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    let read_only_root = c
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    let owned_dirs = match image.kind {
        ImageKind::Spark { .. } => vec![PathBuf::from("/opt/spark/work-dir")],
        _ => vec![],
    };
    let traversable = closed_ancestors(&image.needs);
    let spec = InitSpec {
        netns: p.netns.clone(),
        hostname: p.hostname.clone(),
        scratch,
        scratch_size: "4g".into(),
        read_only_root,
        overlays,
        mounts,
        uid,
        gid,
        groups,
        user_name: image.user_name.clone(),
        owned_dirs,
        traversable,
        cwd,
        argv,
        env: full_env,
    };
    let spec_path = run_dir.join("spec.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec_pretty(&spec).unwrap_or_default(),
    )
    .map_err(|e| StartFailure::Start(e.to_string()))?;

    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StartFailure::Start(format!("pipe: {e}")))?;
    let write_fd = err_write.as_raw_fd();
    let mut cmd = tokio::process::Command::new(&node.exe);
    cmd.arg("container-init")
        .arg(&spec_path)
        .env_clear()
        .env(ERRFD_ENV, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // the helper inherits the pipe's write end; everything else stays close-on-exec
            if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // the container is its own process group, away from the kubelet's signals
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| StartFailure::Start(format!("starting {}: {e}", node.exe.display())))?;
    drop(err_write);
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    std::fs::write(run_dir.join("pid"), pid.to_string()).ok();
    let log_path = p
        .dir
        .join("logs")
        .join(&c.name)
        .join(format!("{attempt}.log"));
    let key: LogKey = (
        ns.clone(),
        p.pod.metadata.name.clone().unwrap_or_default(),
        c.name.clone(),
    );
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| StartFailure::Start("no stdout pipe".into()))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| StartFailure::Start("no stderr pipe".into()))?;
    let log_done = node
        .logs
        .capture(key, log_path.clone(), stdout, stderr)
        .map_err(|e| StartFailure::Start(format!("{e:#}")))?;

    // EOF without a message: the exec happened
    let message = read_all(err_read).await;
    let alive = Arc::new(AtomicBool::new(true));
    let alive_w = alive.clone();
    let wait = tokio::spawn(async move {
        let status = child.wait().await;
        alive_w.store(false, Ordering::SeqCst);
        let _ = log_done.await;
        let code = match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
            }
            Err(_) => 255,
        };
        Exit {
            code,
            finished_at: k8s_openapi::jiff::Timestamp::now(),
        }
    });
    if !message.is_empty() {
        let _ = wait.await;
        return Err(StartFailure::Start(message));
    }
    Ok((
        Proc {
            pid,
            alive,
            started_at: k8s_openapi::jiff::Timestamp::now(),
            termination_log,
            log_path,
        },
        wait,
    ))
}

async fn read_all(fd: OwnedFd) -> String {
    let mut f = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Directories on the way to `paths` that others may not enter.
fn closed_ancestors(paths: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        for a in p.ancestors() {
            let closed = std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0);
            if closed && !out.iter().any(|o| o == a) {
                out.push(a.to_path_buf());
            }
        }
    }
    out
}

/// The uid and gid a container runs as: its securityContext, else the pod's, else the image's.
fn user(pod: &Pod, c: &Container, image: &Image) -> Result<(u32, u32), String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let uid = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
        .map(|u| u as u32)
        .unwrap_or(image.uid);
    let gid = csc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group))
        .map(|g| g as u32)
        .unwrap_or(if uid == image.uid { image.gid } else { 0 });
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    Ok((uid, gid))
}

/// The message of a terminated container: its termination-message file, or (with
/// `FallbackToLogsOnError` and a failure) the end of its log.
pub fn termination_message(c: &Container, proc_: &Proc, code: i32) -> Option<String> {
    let text = std::fs::read(&proc_.termination_log).unwrap_or_default();
    let text: Vec<u8> = text.into_iter().take(4096).collect();
    if !text.is_empty() {
        return Some(String::from_utf8_lossy(&text).into_owned());
    }
    if code != 0 && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        let log = std::fs::read_to_string(&proc_.log_path).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        let start = tail.len().saturating_sub(2048);
        let start = (start..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(0);
        return Some(tail[start..].to_string()).filter(|s| !s.is_empty());
    }
    None
}

/// Reads what a helper reported, for an error without a message.
pub fn describe(f: &StartFailure) -> (&'static str, String) {
    match f {
        StartFailure::Image(m) => ("ErrImagePull", m.clone()),
        StartFailure::Config(m) => ("CreateContainerConfigError", m.clone()),
        StartFailure::Start(m) => ("StartError", m.clone()),
    }
}
