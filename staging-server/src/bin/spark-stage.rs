//! spark-stage: the staging server's client. `upload` stages local files, `fetch` is the init
//! container, `submit` wraps a stock spark-submit so its local files are staged first.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use sidecars_common::config::{parse_byte_size, parse_duration};
use staging_server::bundle::Limits;
use staging_server::client::{self, FetchArgs};
use staging_server::store::Owner;
use staging_server::submit::{self, InitContainer, Plan};

/// Client of the Spark Sidecars staging server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct OwnerArgs {
    /// Namespace of the pods that own the bundle.
    #[arg(long, env = "SPARK_STAGE_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Label (k=v) the owning pods carry; repeatable. The bundle lives while such pods exist.
    #[arg(long = "owner-label", value_parser = parse_label)]
    owner_labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not a label; use key=value"))
}

#[derive(clap::Args, Debug)]
struct TlsArgs {
    /// PEM file of CA certificates to trust for an https server, besides the public roots
    /// (a private CA, or the server's self-signed certificate).
    #[arg(long, env = "SPARK_STAGE_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq)]
enum Mode {
    /// Rewrite local files to http URLs on the staging server (Spark fetches them itself).
    Urls,
    /// Rewrite local files to local:// paths filled by a `spark-stage fetch` init container.
    InitContainer,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Obtain an upload credential for a namespace (for spark-submit through WebHDFS). Prints
    /// the --conf lines to use on stderr, and the credential alone on stdout's last line.
    ///
    /// The server checks, with the Kubernetes API, that the token presented may create pods in
    /// the namespace; the token is --kube-token(-file), else $SPARK_STAGE_KUBE_TOKEN, else the
    /// current kubeconfig context's token, else --admin-token-file.
    Token {
        /// Staging server base URL, e.g. https://staging.example.com:10000
        #[arg(long, env = "SPARK_STAGE_SERVER")]
        server: String,
        #[command(flatten)]
        tls: TlsArgs,
        /// The namespace the application runs in.
        #[arg(long, env = "SPARK_STAGE_NAMESPACE")]
        namespace: String,
        /// A Kubernetes bearer token (e.g. `kubectl -n NS create token spark`).
        #[arg(long, env = "SPARK_STAGE_KUBE_TOKEN", hide_env_values = true)]
        kube_token: Option<String>,
        /// File holding a Kubernetes bearer token.
        #[arg(long)]
        kube_token_file: Option<PathBuf>,
        /// File holding the staging server's administrator token (instead of a Kubernetes one).
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// How long the credential is valid (the server caps it; default: the server's).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// The server URL as the pods reach it, for the printed --conf lines (default:
        /// --server).
        #[arg(long, env = "SPARK_STAGE_INTERNAL_SERVER")]
        internal_server: Option<String>,
    },
    /// Upload files as one bundle; prints JSON with the id, the secret and a URL per file.
    Upload {
        /// Staging server base URL, e.g. http://staging:10000
        #[arg(long, env = "SPARK_STAGE_SERVER")]
        server: String,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        /// Local files; jars go under jars/, the rest under files/.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Download a bundle, check its sha256 and extract it (the init container).
    Fetch {
        #[arg(long, env = "SPARK_STAGE_SERVER")]
        server: String,
        #[command(flatten)]
        tls: TlsArgs,
        #[arg(long)]
        resource_id: String,
        /// File holding the resource secret.
        #[arg(long)]
        secret_file: PathBuf,
        #[arg(long, default_value = "/var/spark-data/spark-jars")]
        jars_dir: PathBuf,
        #[arg(long, default_value = "/var/spark-data/spark-files")]
        files_dir: PathBuf,
        /// Download attempts before giving up.
        #[arg(long, default_value_t = 6)]
        attempts: u32,
        /// Longest wait between attempts (the wait doubles from 0.5s).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        max_backoff: Duration,
        #[arg(long, default_value_t = 10_000)]
        max_entries: u64,
        #[arg(long, default_value = "16GiB", value_parser = parse_byte_size)]
        max_extracted_size: u64,
    },
    /// Stage the local files of a spark-submit command line, then exec the real spark-submit.
    Submit {
        #[arg(long, env = "SPARK_STAGE_SERVER")]
        server: String,
        /// PEM file of CA certificates to trust for an https server, besides the public
        /// roots. In init-container mode it also goes into the generated Secret, and the init
        /// containers trust it too.
        #[arg(long, env = "SPARK_STAGE_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The server URL pods use (default: --server).
        #[arg(long, env = "SPARK_STAGE_INTERNAL_SERVER")]
        internal_server: Option<String>,
        #[arg(long, value_enum, default_value = "urls")]
        mode: Mode,
        /// Namespace of the application (default: spark.kubernetes.namespace, else `default`).
        #[arg(long)]
        namespace: Option<String>,
        /// Image of the init container (init-container mode): the spark-stage image from images/.
        #[arg(
            long,
            env = "SPARK_STAGE_INIT_IMAGE",
            default_value = concat!("spark-sidecars/spark-stage:", env!("CARGO_PKG_VERSION"))
        )]
        init_image: String,
        /// Where generated pod templates and the Secret manifest go (default: a new temp dir).
        #[arg(long)]
        output_dir: Option<PathBuf>,
        #[arg(long, default_value = "/var/spark-data/spark-jars")]
        jars_dir: String,
        #[arg(long, default_value = "/var/spark-data/spark-files")]
        files_dir: String,
        /// Run `kubectl apply -f` on the Secret manifest before submitting.
        #[arg(long)]
        kubectl_apply: bool,
        /// The spark-submit to run (default: $SPARK_HOME/bin/spark-submit, else PATH).
        #[arg(long, env = "SPARK_SUBMIT")]
        spark_submit: Option<PathBuf>,
        /// Print the rewritten command instead of running it.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        quiet: bool,
        /// spark-submit arguments, after `--`.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("spark-stage: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Token {
            server,
            tls,
            namespace,
            kube_token,
            kube_token_file,
            admin_token_file,
            ttl,
            internal_server,
        } => {
            let read = |p: &PathBuf, what: &str| -> anyhow::Result<String> {
                Ok(std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {what} {}", p.display()))?
                    .trim()
                    .to_string())
            };
            let bearer = match (kube_token, &kube_token_file, &admin_token_file) {
                (Some(t), _, _) => t,
                (None, Some(f), _) => read(f, "--kube-token-file")?,
                (None, None, Some(f)) => read(f, "--admin-token-file")?,
                (None, None, None) => client::kubeconfig_token()?.context(
                    "no token to present: pass --kube-token \"$(kubectl -n NS create token SERVICEACCOUNT)\", --kube-token-file or --admin-token-file (the current kubeconfig context has no bearer token)",
                )?,
            };
            let issued =
                client::token(&server, &namespace, &bearer, ttl, tls.ca_cert.as_deref()).await?;
            let pods = internal_server
                .as_deref()
                .unwrap_or(&server)
                .trim_end_matches('/');
            let (scheme, hostport) = match pods.split_once("://") {
                Some(("https", rest)) => ("swebhdfs", rest),
                Some((_, rest)) => ("webhdfs", rest),
                None => ("webhdfs", pods),
            };
            eprintln!(
                "spark-stage: upload credential for namespace `{}`, valid until {}.\n\
                 Spark 4.x (OAuth2; the credential never appears in a path):\n\
                 \x20 --conf spark.kubernetes.file.upload.path={scheme}://{hostport}/uploads \\\n\
                 \x20 --conf spark.hadoop.dfs.webhdfs.oauth2.enabled=true \\\n\
                 \x20 --conf spark.hadoop.dfs.webhdfs.oauth2.access.token.provider=org.apache.hadoop.hdfs.web.oauth2.ConfCredentialBasedAccessTokenProvider \\\n\
                 \x20 --conf spark.hadoop.dfs.webhdfs.oauth2.client.id=spark \\\n\
                 \x20 --conf spark.hadoop.dfs.webhdfs.oauth2.refresh.url={pods}{} \\\n\
                 \x20 --conf spark.hadoop.dfs.webhdfs.oauth2.credential=\"$CREDENTIAL\"\n\
                 Spark 3.5 (its OAuth2 provider is broken; the credential goes in the path):\n\
                 \x20 --conf spark.kubernetes.file.upload.path={scheme}://{hostport}/$CREDENTIAL\n\
                 The credential is the last line below.",
                issued.namespace, issued.expires, issued.token_endpoint
            );
            println!("{}", issued.credential);
            Ok(())
        }
        Cmd::Upload {
            server,
            tls,
            owner,
            quiet,
            files,
        } => {
            let mut list: Vec<(String, PathBuf)> = Vec::new();
            for f in files {
                let base = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no usable file name", f.display()))?
                    .to_string();
                let dir = if base.ends_with(".jar") {
                    "jars"
                } else {
                    "files"
                };
                if list
                    .iter()
                    .any(|(n, _)| n.rsplit('/').next() == Some(base.as_str()))
                {
                    bail!("two files are named `{base}`; Spark downloads them into one directory, so rename one");
                }
                std::fs::metadata(&f).with_context(|| format!("cannot read {}", f.display()))?;
                list.push((format!("{dir}/{base}"), f));
            }
            let owner = Owner {
                owner_namespace: owner.namespace,
                owner_labels: owner.owner_labels.into_iter().collect(),
                owner_type: "Pod".into(),
                owner_name: None,
            };
            let up = client::upload(&server, &list, &owner, !quiet, tls.ca_cert.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&up)?);
            Ok(())
        }
        Cmd::Fetch {
            server,
            tls,
            resource_id,
            secret_file,
            jars_dir,
            files_dir,
            attempts,
            max_backoff,
            max_entries,
            max_extracted_size,
        } => {
            let secret = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("cannot read --secret-file {}", secret_file.display()))?;
            let written = client::fetch(&FetchArgs {
                server: &server,
                resource_id: &resource_id,
                secret: secret.trim(),
                jars_dir: &jars_dir,
                files_dir: &files_dir,
                attempts: attempts.max(1),
                max_backoff,
                limits: Limits {
                    max_entries,
                    max_extracted: max_extracted_size,
                    max_entry_size: max_extracted_size,
                    // the server checked the archive's expansion at upload
                    max_ratio: 0,
                },
                ca_cert: tls.ca_cert.as_deref(),
            })
            .await
            .with_context(|| format!("cannot fetch bundle {resource_id} from {server}"))?;
            for w in &written {
                eprintln!("spark-stage fetch: wrote {}", w.display());
            }
            Ok(())
        }
        Cmd::Submit {
            server,
            ca_cert,
            internal_server,
            mode,
            namespace,
            init_image,
            output_dir,
            jars_dir,
            files_dir,
            kubectl_apply,
            spark_submit,
            dry_run,
            quiet,
            args,
        } => {
            let mut plan = Plan::parse(&args)?;
            let namespace = namespace
                .or_else(|| plan.confs.get("spark.kubernetes.namespace").cloned())
                .unwrap_or_else(|| "default".into());
            // A label of our own on the driver and executors ties the bundle's lifetime to them.
            let app_label = uuid::Uuid::new_v4().simple().to_string();
            let owner = Owner {
                owner_namespace: namespace.clone(),
                owner_labels: BTreeMap::from([("spark-stage-app".to_string(), app_label.clone())]),
                owner_type: "Pod".into(),
                owner_name: None,
            };
            let mut extra = vec![
                "--conf".to_string(),
                format!("spark.kubernetes.driver.label.spark-stage-app={app_label}"),
                "--conf".to_string(),
                format!("spark.kubernetes.executor.label.spark-stage-app={app_label}"),
            ];
            let workdir = match output_dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    d
                }
                None => tempfile::Builder::new()
                    .prefix("spark-stage-submit")
                    .tempdir()
                    .context("cannot create a temporary directory")?
                    .keep(),
            };
            let rewritten = if plan.uploads.is_empty() {
                plan.insert_options(extra);
                plan.render(&|n| n.to_string(), &workdir)?
            } else {
                let up = client::upload(&server, &plan.uploads, &owner, !quiet, ca_cert.as_deref())
                    .await?;
                eprintln!(
                    "spark-stage: staged {} files as bundle {}",
                    up.files.len(),
                    up.resource_id
                );
                match mode {
                    Mode::Urls => {
                        let urls: BTreeMap<String, String> = up
                            .files
                            .iter()
                            .map(|f| (f.name.clone(), f.url.clone()))
                            .collect();
                        plan.insert_options(extra);
                        plan.render(
                            &|n| urls.get(n).cloned().unwrap_or_else(|| n.to_string()),
                            &workdir,
                        )?
                    }
                    Mode::InitContainer => {
                        let internal = internal_server.as_deref().unwrap_or(&server);
                        let ca_pem = match &ca_cert {
                            Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                                format!("cannot read --ca-cert {}", p.display())
                            })?),
                            None => None,
                        };
                        let secret_name = format!("spark-stage-{}", &up.resource_id[..8]);
                        let ic = InitContainer {
                            image: &init_image,
                            server: internal,
                            resource_id: &up.resource_id,
                            secret_name: &secret_name,
                            jars_dir: &jars_dir,
                            files_dir: &files_dir,
                            with_ca_cert: ca_pem.is_some(),
                        };
                        let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
                            let p = workdir.join(name);
                            std::fs::write(&p, text)
                                .with_context(|| format!("cannot write {}", p.display()))?;
                            Ok(p)
                        };
                        let driver = write(
                            "driver-pod-template.yaml",
                            serde_yaml_ng::to_string(&submit::pod_template(
                                &ic,
                                "spark-kubernetes-driver",
                            ))?,
                        )?;
                        // Spark 3.5's executors do not put `local://` py-files on their Python
                        // workers' path (Spark 4's do): the fetched files directory goes on it.
                        // Only on executors: their workers add pyspark's own path to this one,
                        // while a driver's PYTHONPATH would replace the image's.
                        let mut executor_pod =
                            submit::pod_template(&ic, "spark-kubernetes-executor");
                        if let Some(c) = executor_pod
                            .spec
                            .as_mut()
                            .and_then(|s| s.containers.first_mut())
                        {
                            c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
                                name: "PYTHONPATH".into(),
                                value: Some(files_dir.trim_end_matches('/').to_string()),
                                ..Default::default()
                            }]);
                        }
                        let executor = write(
                            "executor-pod-template.yaml",
                            serde_yaml_ng::to_string(&executor_pod)?,
                        )?;
                        let secret = write(
                            "secret.yaml",
                            serde_yaml_ng::to_string(&submit::secret_manifest(
                                &secret_name,
                                &namespace,
                                &up.resource_secret,
                                ca_pem.as_deref(),
                            ))?,
                        )?;
                        eprintln!(
                            "spark-stage: pod templates and Secret manifest in {}",
                            workdir.display()
                        );
                        if kubectl_apply && !dry_run {
                            let st = std::process::Command::new("kubectl")
                                .arg("apply")
                                .arg("-f")
                                .arg(&secret)
                                .status()
                                .context("cannot run kubectl")?;
                            if !st.success() {
                                bail!("kubectl apply -f {} failed ({st})", secret.display());
                            }
                        } else if !kubectl_apply {
                            eprintln!(
                                "spark-stage: create the Secret first: kubectl apply -f {}",
                                secret.display()
                            );
                        }
                        extra.extend([
                            "--conf".to_string(),
                            format!(
                                "spark.kubernetes.driver.podTemplateFile={}",
                                driver.display()
                            ),
                            "--conf".to_string(),
                            format!(
                                "spark.kubernetes.executor.podTemplateFile={}",
                                executor.display()
                            ),
                        ]);
                        plan.insert_options(extra);
                        let (jd, fd) = (
                            jars_dir.trim_end_matches('/'),
                            files_dir.trim_end_matches('/'),
                        );
                        // `--files` go by URL: Spark 3.5's executors do not copy `local://`
                        // files into their working directory, where SparkFiles looks (Spark
                        // 4's do), and stock Spark downloads URLs into it on every version.
                        let urls: BTreeMap<String, String> = up
                            .files
                            .iter()
                            .map(|f| (f.name.clone(), f.url.clone()))
                            .collect();
                        plan.render(
                            &|n| match n.split_once('/') {
                                Some(("files", _)) if urls.contains_key(n) => urls[n].clone(),
                                Some(("jars", rest)) => format!("local://{jd}/{rest}"),
                                Some((_, rest)) => format!("local://{fd}/{rest}"),
                                None => format!("local://{fd}/{n}"),
                            },
                            &workdir,
                        )?
                    }
                }
            };
            let program = spark_submit.unwrap_or_else(|| match std::env::var_os("SPARK_HOME") {
                Some(h) => PathBuf::from(h).join("bin/spark-submit"),
                None => PathBuf::from("spark-submit"),
            });
            if dry_run {
                println!(
                    "{}",
                    serde_json::to_string(
                        &std::iter::once(program.display().to_string())
                            .chain(rewritten)
                            .collect::<Vec<_>>()
                    )?
                );
                return Ok(());
            }
            let err = std::process::Command::new(&program).args(&rewritten).exec();
            bail!("cannot run {}: {err}", program.display())
        }
    }
}
