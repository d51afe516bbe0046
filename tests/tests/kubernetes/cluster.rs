//! The one local Kubernetes a test binary shares: `scripts/kube-local.sh up` on first use
//! (nodes running the binaries in `$SIDECARS_BIN_DIR`), deploy/ installed as
//! docs/spark-on-k8s.md says, `down` when the binary exits, and the helpers the tests use on it
//! (kubectl, stock spark-submit in cluster mode, waiting for pods, logs, HTTP to pod
//! addresses, the kubelets' CPU time). docs/local-kubernetes.md says how to reuse it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const API: &str = "k8s://https://198.18.0.1:443";
/// Namespace of the Spark applications, with the `spark` service account.
pub const APPS: &str = "spark-apps";
/// The nodes and their addresses (the shuffle services' host-network address).
pub const NODES: [(&str, &str); 2] = [("node-1", "198.18.0.11"), ("node-2", "198.18.0.12")];

pub struct Cluster {
    pub repo: PathBuf,
    pub kubeconfig: PathBuf,
    pub state: PathBuf,
}

/// One Spark version under test.
#[derive(Clone, Copy, Debug)]
pub struct Spark {
    pub version: &'static str,
    pub home_var: &'static str,
}

pub const SPARK35: Spark = Spark {
    version: "3.5.7",
    home_var: "SPARK35_HOME",
};
pub const SPARK4: Spark = Spark {
    version: "4.3.0",
    home_var: "SPARK4_HOME",
};

impl Spark {
    pub fn home(&self) -> PathBuf {
        PathBuf::from(std::env::var(self.home_var).unwrap_or_else(|_| {
            panic!(
                "{} is not set: run the suite through scripts/test.sh",
                self.home_var
            )
        }))
    }

    pub fn image(&self) -> String {
        format!("apache/spark:{}", self.version)
    }

    /// A short name for objects of this version ("35", "43").
    pub fn tag(&self) -> String {
        self.version.split('.').take(2).collect::<Vec<_>>().join("")
    }
}

static STATE_FOR_EXIT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

extern "C" fn bring_down() {
    if let Some((repo, state)) = STATE_FOR_EXIT.get() {
        let _ = Command::new("bash")
            .arg(repo.join("scripts/kube-local.sh"))
            .arg("down")
            .env("SIDECARS_KUBE_DIR", state)
            .stdout(Stdio::null())
            .status();
    }
}

/// This crate's directory, as cargo sets it when it runs the test (a binary reused from
/// another clone that shares the target directory would name that clone).
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The tests run one at a time: the machine has two cores and the cluster is shared.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cluster, brought up with deploy/ installed on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let repo = crate_dir().join("..");
        let repo = repo.canonicalize().expect("repository root");
        std::env::var("SIDECARS_BIN_DIR").expect(
            "SIDECARS_BIN_DIR is not set: run the suite through scripts/test.sh, which builds the binaries",
        );
        let cache = std::env::var("SIDECARS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/spark-sidecars"));
        let state = cache.join("kube-e2e");
        let _ = STATE_FOR_EXIT.set((repo.clone(), state.clone()));
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc_atexit(bring_down) };
        // a run that was killed (no exit handlers) left its cluster up
        bring_down();
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(repo.join("scripts/kube-local.sh"))
            .arg("up")
            .env("SIDECARS_KUBE_DIR", &state)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/kube-local.sh up");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "scripts/kube-local.sh up failed: {stdout}");
        let kubeconfig = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("kube-local.sh up printed no `export KUBECONFIG=`: {stdout}"));
        eprintln!("[kubernetes] cluster up in {:.1}s", t0.elapsed().as_secs_f64());
        let c = Cluster {
            repo,
            kubeconfig,
            state,
        };
        c.install();
        c
    })
}

extern "C" {
    #[link_name = "atexit"]
    fn libc_atexit(f: extern "C" fn()) -> i32;
}

impl Cluster {
    /// deploy/ as docs/spark-on-k8s.md installs it (with a shorter staging-server owner grace),
    /// and the applications' namespace.
    fn install(&self) {
        let t0 = Instant::now();
        self.kubectl_ok(&["apply", "-k", "deploy/"]);
        // One setting differs from deploy/: the staging server deletes an upload 20 s (not
        // 5 min) after the last pod that names it, so a test can watch that happen.
        self.kubectl_ok(&[
            "-n",
            "spark-sidecars",
            "set",
            "env",
            "deploy/staging-server",
            "STAGING_OWNER_GRACE=20s",
        ]);
        self.kubectl_ok(&[
            "-n",
            "spark-sidecars",
            "rollout",
            "status",
            "deploy/staging-server",
            "deploy/history-collector",
            "ds/shuffle-service",
            "--timeout=300s",
        ]);
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {APPS}}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: spark, namespace: {APPS}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: spark-edit, namespace: {APPS}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\n\
             subjects: [{{kind: ServiceAccount, name: spark, namespace: {APPS}}}]\n"
        ));
        eprintln!(
            "[kubernetes] deploy/ installed in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(&self.repo)
            .output()
            .expect("running kubectl")
    }

    /// kubectl's stdout; panics (with stderr) when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl apply");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A jsonpath query on objects (`what` is kubectl's `get` arguments, split at spaces);
    /// empty when nothing matches.
    pub fn get(&self, ns: &str, what: &str, jsonpath: &str) -> String {
        let jp = format!("jsonpath={jsonpath}");
        let mut args = vec!["-n", ns, "get"];
        args.extend(what.split_whitespace());
        args.extend(["-o", &jp]);
        let out = self.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `f` gives Some, or panics with `what` after `timeout`.
    pub fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stock spark-submit in cluster mode, run from the repository root (the pod template paths
    /// in deploy/spark/spark-defaults.conf are relative to it). Returns its output.
    pub fn spark_submit(&self, spark: Spark, args: &[&str]) -> Output {
        let mut cmd = Command::new(spark.home().join("bin/spark-submit"));
        cmd.args(["--master", API, "--deploy-mode", "cluster"])
            .args([
                "--conf",
                &format!("spark.kubernetes.namespace={APPS}"),
                "--conf",
                "spark.kubernetes.authenticate.driver.serviceAccountName=spark",
                "--conf",
                &format!("spark.kubernetes.container.image={}", spark.image()),
                "--conf",
                "spark.driver.memory=512m",
                "--conf",
                "spark.executor.memory=512m",
                "--conf",
                "spark.kubernetes.driver.request.cores=0.5",
                "--conf",
                "spark.kubernetes.executor.request.cores=0.5",
            ])
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(&self.repo);
        cmd.output().expect("running spark-submit")
    }

    /// `spark_submit` with `--name name` of an application that must finish: returns its
    /// driver pod's name once spark-submit returned (it waits for the application) and the
    /// driver pod has Succeeded; panics with the driver's log otherwise.
    pub fn run_to_success(&self, spark: Spark, name: &str, args: &[&str]) -> String {
        let mut all = vec!["--name", name];
        all.extend_from_slice(args);
        let out = self.spark_submit(spark, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "spark-submit {name} failed:\n{stderr}"
        );
        let driver = self.driver_pod(name);
        assert!(!driver.is_empty(), "no driver pod for {name}:\n{stderr}");
        let phase = self.get(APPS, &format!("pod/{driver}"), "{.status.phase}");
        assert_eq!(
            phase,
            "Succeeded",
            "driver {driver} ended {phase}; its log:\n{}",
            self.logs(APPS, &driver, "spark-kubernetes-driver")
        );
        driver
    }

    /// Deletes an application's pods, Services and ConfigMaps (by its spark-app-name label) and
    /// waits until they are gone.
    pub fn delete_app(&self, name: &str) {
        self.kubectl_ok(&[
            "-n",
            APPS,
            "delete",
            "pods,services,configmaps",
            "-l",
            &format!("spark-app-name={name}"),
            "--wait=true",
            "--timeout=120s",
        ]);
    }

    /// Waits until `pod` in `ns` is in `phase` (Pending, Running, Succeeded, Failed); panics
    /// after `timeout`, or at once if it reached another terminal phase.
    pub fn wait_phase(&self, ns: &str, pod: &str, phase: &str, timeout: Duration) {
        self.wait(&format!("pod {ns}/{pod} to be {phase}"), timeout, || {
            let now = self.get(ns, &format!("pod/{pod}"), "{.status.phase}");
            if now != phase && (now == "Succeeded" || now == "Failed") {
                panic!("pod {ns}/{pod} is {now}, not {phase}");
            }
            (now == phase).then_some(())
        })
    }

    /// The address of the first pod in `ns` matching `selector` (from this machine every pod
    /// address is reachable).
    pub fn pod_ip(&self, ns: &str, selector: &str) -> String {
        let ip = self.get(
            ns,
            &format!("pods -l {selector}"),
            "{.items[0].status.podIP}",
        );
        assert!(!ip.is_empty(), "no pod {selector} in {ns} has an address");
        ip
    }

    /// CPU time (user + system) the kubelet of `node` has used so far, from /proc.
    pub fn kubelet_cpu(&self, node: &str) -> Duration {
        let pidfile = self.state.join("run").join(format!("{node}.pid"));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        process_cpu(pid.trim().parse().expect("a pid"))
    }

    /// The driver pod of application `name` (by its spark-app-name label).
    pub fn driver_pod(&self, name: &str) -> String {
        self.get(
            APPS,
            &format!("pods -l spark-app-name={name},spark-role=driver"),
            "{.items[0].metadata.name}",
        )
    }

    /// `kubectl logs` of a container (through the API server and the kubelet).
    pub fn logs(&self, ns: &str, pod: &str, container: &str) -> String {
        self.kubectl_ok(&["-n", ns, "logs", pod, "-c", container])
    }

    pub fn node_host_dir(&self, node: &str) -> PathBuf {
        self.state.join("run/nodes").join(node).join("host")
    }
}

/// A jar of `tests/spark-apps/LocalPi.java` compiled against `spark`'s jars, in a directory
/// any pod user can read (pods see the machine's files).
pub fn local_pi_jar(spark: Spark) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecars-kube-e2e-apps-{}", spark.tag()));
    let jar = dir.join("localpi.jar");
    if jar.exists() {
        return jar;
    }
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let repo = crate_dir();
    let cp = format!("{}/jars/*", spark.home().display());
    let st = Command::new("javac")
        .args(["-d"])
        .arg(&classes)
        .args(["-cp", &cp])
        .arg(repo.join("spark-apps/LocalPi.java"))
        .status()
        .expect("javac");
    assert!(st.success(), "javac LocalPi.java failed");
    let st = Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .expect("jar");
    assert!(st.success(), "jar failed");
    make_readable(&dir);
    jar
}

/// World-readable (directories enterable), for pods running as uid 185.
pub fn make_readable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).unwrap();
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            make_readable(&e.unwrap().path());
        }
    }
}

/// User + system CPU time of process `pid` (all its threads), from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    // the command name (field 2) may hold spaces; the fields after it are plain numbers
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe {
        libc_sysconf(2 /* _SC_CLK_TCK */)
    }
    .max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

/// GET over plain HTTP/1.0 to a pod or node address: (status, body).
pub fn http_get(host: &str, port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port))
        .unwrap_or_else(|e| panic!("connecting to {host}:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}
