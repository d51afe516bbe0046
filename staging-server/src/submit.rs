//! `spark-stage submit`: finds the submitter-local files in a spark-submit command line,
//! and rewrites them once they are uploaded.
//!
//! Local means no scheme or `file:` (the original's rule); `local://`, `http://`, `s3a://`
//! and the rest are left alone. The entries considered are the primary resource, `--jars`,
//! `--files`, `--py-files`, `--archives`, and the `spark.jars`, `spark.files`,
//! `spark.submit.pyFiles` and `spark.archives` keys of `--properties-file` (which spark-submit
//! reads on this machine, so it is rewritten into a copy rather than uploaded). Everything
//! else passes through untouched, including the application's own arguments.
//!
//! Parsing is pure (strings in, a [`Plan`] out) so it is tested without running anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Pod, PodSpec, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// spark-submit options that take a value (so the next argument is not the primary resource).
const VALUE_OPTS: &[&str] = &[
    "--master",
    "--deploy-mode",
    "--class",
    "--name",
    "--jars",
    "--packages",
    "--exclude-packages",
    "--repositories",
    "--files",
    "--py-files",
    "--archives",
    "--conf",
    "-c",
    "--properties-file",
    "--driver-memory",
    "--driver-java-options",
    "--driver-library-path",
    "--driver-class-path",
    "--executor-memory",
    "--proxy-user",
    "--driver-cores",
    "--total-executor-cores",
    "--executor-cores",
    "--num-executors",
    "--queue",
    "--principal",
    "--keytab",
    "--kill",
    "--status",
    "--remote",
];

const PROPERTY_LISTS: &[(&str, &str)] = &[
    ("spark.jars", "jars"),
    ("spark.files", "files"),
    ("spark.submit.pyFiles", "pyfiles"),
    ("spark.archives", "archives"),
];

/// One piece of the rewritten command line.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    /// Passed through as is.
    Keep(String),
    /// A comma list whose local entries become staged references.
    List(Vec<Entry>),
    /// A properties file to copy with its list keys rewritten.
    Properties(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Keep(String),
    /// Bundle name, plus the `#fragment` to keep (archives' rename alias).
    Staged(String, Option<String>),
}

/// A parsed command line: what to upload and how to rebuild the arguments.
#[derive(Debug, Default)]
pub struct Plan {
    pieces: Vec<Piece>,
    /// (bundle name, local path) to upload.
    pub uploads: Vec<(String, PathBuf)>,
    /// Spark conf values `--conf` would set, as far as this tool needs them.
    pub confs: BTreeMap<String, String>,
}

fn local_path(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if let Some(rest) = uri.strip_prefix("file:") {
        return Some(PathBuf::from(rest));
    }
    match uri.split_once(':') {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            None
        }
        _ => Some(PathBuf::from(uri)),
    }
}

impl Plan {
    fn stage(&mut self, dir: &str, path: &Path) -> anyhow::Result<String> {
        let md = std::fs::metadata(path).with_context(|| {
            format!(
                "local file {} does not exist or is unreadable",
                path.display()
            )
        })?;
        if !md.is_file() {
            bail!(
                "{} is not a regular file (directories cannot be staged)",
                path.display()
            );
        }
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        for (name, p) in &self.uploads {
            if p == &abs && name.starts_with(&format!("{dir}/")) {
                return Ok(name.clone());
            }
            if name.rsplit('/').next() == Some(base) && p != &abs {
                bail!(
                    "two different local files are both named `{base}` ({} and {}); Spark downloads them into one directory, so rename one",
                    p.display(),
                    abs.display()
                );
            }
        }
        let name = format!("{dir}/{base}");
        self.uploads.push((name.clone(), abs));
        Ok(name)
    }

    fn list(&mut self, dir: &str, value: &str) -> anyhow::Result<Piece> {
        Ok(Piece::List(self.entries(dir, value)?))
    }

    fn entries(&mut self, dir: &str, value: &str) -> anyhow::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (uri, frag) = match item.split_once('#') {
                Some((u, f)) => (u, Some(f.to_string())),
                None => (item, None),
            };
            match local_path(uri) {
                Some(p) => entries.push(Entry::Staged(self.stage(dir, &p)?, frag)),
                None => entries.push(Entry::Keep(item.to_string())),
            }
        }
        Ok(entries)
    }

    /// Parses spark-submit arguments.
    pub fn parse(args: &[String]) -> anyhow::Result<Plan> {
        let mut plan = Plan::default();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if !a.starts_with('-') {
                // The primary resource; everything after it belongs to the application.
                let special = [
                    "spark-shell",
                    "pyspark-shell",
                    "sparkr-shell",
                    "spark-internal",
                ];
                if special.contains(&a.as_str()) {
                    plan.pieces.push(Piece::Keep(a.clone()));
                } else {
                    match local_path(a) {
                        Some(p) => {
                            let dir = if a.ends_with(".jar") { "jars" } else { "app" };
                            let name = plan.stage(dir, &p)?;
                            plan.pieces
                                .push(Piece::List(vec![Entry::Staged(name, None)]));
                        }
                        None => plan.pieces.push(Piece::Keep(a.clone())),
                    }
                }
                plan.pieces
                    .extend(args[i + 1..].iter().cloned().map(Piece::Keep));
                break;
            }
            let (opt, inline) = match a.split_once('=') {
                Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            if !VALUE_OPTS.contains(&opt.as_str()) {
                plan.pieces.push(Piece::Keep(a.clone()));
                i += 1;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .with_context(|| format!("spark-submit option {opt} needs a value"))?
                }
            };
            plan.pieces.push(Piece::Keep(opt.clone()));
            let piece = match opt.as_str() {
                "--jars" => plan.list("jars", &value)?,
                "--files" => plan.list("files", &value)?,
                "--py-files" => plan.list("pyfiles", &value)?,
                "--archives" => plan.list("archives", &value)?,
                "--properties-file" => Piece::Properties(plan.properties(Path::new(&value))?),
                "--conf" | "-c" => {
                    if let Some((k, v)) = value.split_once('=') {
                        plan.confs.insert(k.trim().to_string(), v.to_string());
                    }
                    Piece::Keep(value)
                }
                _ => Piece::Keep(value),
            };
            plan.pieces.push(piece);
            i += 1;
        }
        Ok(plan)
    }

    /// Stages the local entries of a properties file's list keys; the file itself is
    /// rewritten by [`Plan::render`].
    fn properties(&mut self, path: &Path) -> anyhow::Result<PathBuf> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --properties-file {}", path.display()))?;
        for line in text.lines() {
            if let Some((k, v)) = property(line) {
                if let Some((_, dir)) = PROPERTY_LISTS.iter().find(|(key, _)| *key == k) {
                    self.list(dir, &v)?;
                }
            }
        }
        Ok(path.to_path_buf())
    }

    /// Rebuilds the command line, turning each staged bundle name into `resolve(name)`;
    /// rewritten properties files are written into `workdir`.
    pub fn render(
        &self,
        resolve: &dyn Fn(&str) -> String,
        workdir: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Keep(s) => out.push(s.clone()),
                Piece::List(entries) => out.push(render_list(entries, resolve)),
                Piece::Properties(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let mut rewritten = String::new();
                    let mut scratch = Plan {
                        uploads: self.uploads.clone(),
                        ..Default::default()
                    };
                    for line in text.lines() {
                        match property(line) {
                            Some((k, v)) if PROPERTY_LISTS.iter().any(|(key, _)| *key == k) => {
                                let dir = PROPERTY_LISTS
                                    .iter()
                                    .find(|(key, _)| *key == k)
                                    .map(|(_, d)| *d)
                                    .unwrap_or("files");
                                let entries = scratch.entries(dir, &v)?;
                                rewritten.push_str(&format!(
                                    "{k}={}\n",
                                    escape_property(&render_list(&entries, resolve))
                                ));
                            }
                            _ => {
                                rewritten.push_str(line);
                                rewritten.push('\n');
                            }
                        }
                    }
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("spark.properties");
                    let dest = workdir.join(format!("rewritten-{name}"));
                    std::fs::write(&dest, rewritten)
                        .with_context(|| format!("cannot write {}", dest.display()))?;
                    out.push(dest.display().to_string());
                }
            }
        }
        Ok(out)
    }

    /// Inserts extra arguments before the primary resource (or at the end if there is none).
    pub fn insert_options(&mut self, extra: Vec<String>) {
        let pos = self
            .pieces
            .iter()
            .enumerate()
            .position(|(i, p)| {
                let prev_is_opt = i > 0 && matches!(&self.pieces[i - 1], Piece::Keep(s) if VALUE_OPTS.contains(&s.as_str()));
                !prev_is_opt && match p {
                    Piece::Keep(s) => !s.starts_with('-'),
                    Piece::List(_) => true,
                    Piece::Properties(_) => false,
                }
            })
            .unwrap_or(self.pieces.len());
        for (k, e) in extra.into_iter().enumerate() {
            self.pieces.insert(pos + k, Piece::Keep(e));
        }
    }
}

fn render_list(entries: &[Entry], resolve: &dyn Fn(&str) -> String) -> String {
    entries
        .iter()
        .map(|e| match e {
            Entry::Keep(s) => s.clone(),
            Entry::Staged(name, None) => resolve(name),
            Entry::Staged(name, Some(f)) => format!("{}#{f}", resolve(name)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A `key=value` (or `key: value`, `key value`) line of a Java properties file.
fn property(line: &str) -> Option<(String, String)> {
    let l = line.trim_start();
    if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
        return None;
    }
    let idx = l.find(['=', ':', ' ', '\t'])?;
    let key = l[..idx].to_string();
    let rest = l[idx..].trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
    Some((key, rest.to_string()))
}

fn escape_property(v: &str) -> String {
    v.replace('\\', "\\\\")
}

/// Where the init container puts things, and the in-pod names.
pub struct InitContainer<'a> {
    pub image: &'a str,
    pub server: &'a str,
    pub resource_id: &'a str,
    pub secret_name: &'a str,
    pub jars_dir: &'a str,
    pub files_dir: &'a str,
    /// The Secret also holds `ca.crt`, CA certificates the init container trusts.
    pub with_ca_cert: bool,
}

const SECRET_MOUNT: &str = "/mnt/secrets/spark-stage";

/// A pod template (driver or executor) whose init container fetches the bundle into two
/// emptyDir volumes that the Spark container (the template's first container) also mounts.
pub fn pod_template(ic: &InitContainer<'_>, spark_container: &str) -> Pod {
    let mounts = vec![
        VolumeMount {
            name: "spark-stage-jars".into(),
            mount_path: ic.jars_dir.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "spark-stage-files".into(),
            mount_path: ic.files_dir.into(),
            ..Default::default()
        },
    ];
    let mut init_mounts = mounts.clone();
    init_mounts.push(VolumeMount {
        name: "spark-stage-secret".into(),
        mount_path: SECRET_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    });
    let mut args: Vec<String> = [
        "fetch",
        "--server",
        ic.server,
        "--resource-id",
        ic.resource_id,
        "--secret-file",
        &format!("{SECRET_MOUNT}/secret"),
        "--jars-dir",
        ic.jars_dir,
        "--files-dir",
        ic.files_dir,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if ic.with_ca_cert {
        args.extend(["--ca-cert".to_string(), format!("{SECRET_MOUNT}/ca.crt")]);
    }
    let init = Container {
        name: "spark-stage-fetch".into(),
        image: Some(ic.image.into()),
        args: Some(args),
        volume_mounts: Some(init_mounts),
        ..Default::default()
    };
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta::default(),
        spec: Some(PodSpec {
            init_containers: Some(vec![init]),
            containers: vec![Container {
                name: spark_container.into(),
                volume_mounts: Some(mounts),
                ..Default::default()
            }],
            volumes: Some(vec![
                empty("spark-stage-jars"),
                empty("spark-stage-files"),
                Volume {
                    name: "spark-stage-secret".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(ic.secret_name.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Secret holding the resource secret (and, for an https server with a private CA, the
/// CA certificates as `ca.crt`), mounted by the init containers.
pub fn secret_manifest(
    name: &str,
    namespace: &str,
    secret: &str,
    ca_cert_pem: Option<&str>,
) -> Secret {
    let mut data = BTreeMap::from([("secret".to_string(), secret.to_string())]);
    if let Some(pem) = ca_cert_pem {
        data.insert("ca.crt".to_string(), pem.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "spark-stage".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rewrites_local_entries_only() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a.jar", "b.txt", "m.py", "app.py", "arch.zip"] {
            std::fs::write(d.path().join(f), f).unwrap();
        }
        let p = |f: &str| d.path().join(f).display().to_string();
        let args = s(&[
            "--master",
            "local[2]",
            "--jars",
            &format!("{},local:///opt/x.jar,http://h/y.jar", p("a.jar")),
            &format!("--files=file://{}", p("b.txt")),
            "--py-files",
            &p("m.py"),
            "--archives",
            &format!("{}#env", p("arch.zip")),
            "--conf",
            "spark.x=1",
            "--verbose",
            &p("app.py"),
            "--jars",
            "app-arg",
        ]);
        let mut plan = Plan::parse(&args).unwrap();
        assert_eq!(plan.uploads.len(), 5);
        plan.insert_options(s(&["--conf", "extra=1"]));
        let out = plan.render(&|n| format!("U/{n}"), d.path()).unwrap();
        assert_eq!(
            out,
            s(&[
                "--master",
                "local[2]",
                "--jars",
                "U/jars/a.jar,local:///opt/x.jar,http://h/y.jar",
                "--files",
                "U/files/b.txt",
                "--py-files",
                "U/pyfiles/m.py",
                "--archives",
                "U/archives/arch.zip#env",
                "--conf",
                "spark.x=1",
                "--verbose",
                "--conf",
                "extra=1",
                "U/app/app.py",
                "--jars",
                "app-arg",
            ])
        );
    }

    #[test]
    fn missing_files_and_name_clashes_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = Plan::parse(&s(&["--jars", "/nonexistent/x.jar", "app.py"])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.jar"), "{e}");
        std::fs::create_dir(d.path().join("o")).unwrap();
        std::fs::write(d.path().join("x.txt"), "1").unwrap();
        std::fs::write(d.path().join("o/x.txt"), "2").unwrap();
        let a = d.path().join("x.txt").display().to_string();
        let b = d.path().join("o/x.txt").display().to_string();
        let e = Plan::parse(&s(&["--files", &format!("{a},{b}")])).unwrap_err();
        assert!(e.to_string().contains("x.txt"), "{e}");
    }

    #[test]
    fn properties_file_is_rewritten() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("c.jar"), "c").unwrap();
        let props = d.path().join("spark.conf");
        std::fs::write(
            &props,
            format!(
                "# hi\nspark.jars {}\nspark.foo=bar\n",
                d.path().join("c.jar").display()
            ),
        )
        .unwrap();
        let plan = Plan::parse(&s(&[
            "--properties-file",
            &props.display().to_string(),
            "x.py",
        ]))
        .unwrap_err();
        assert!(plan.to_string().contains("x.py"));
        std::fs::write(d.path().join("x.py"), "print(1)").unwrap();
        let x = d.path().join("x.py").display().to_string();
        let plan =
            Plan::parse(&s(&["--properties-file", &props.display().to_string(), &x])).unwrap();
        assert_eq!(plan.uploads.len(), 2);
        let out = plan.render(&|n| format!("http://s/{n}"), d.path()).unwrap();
        let text = std::fs::read_to_string(&out[1]).unwrap();
        assert!(text.contains("spark.jars=http://s/jars/c.jar\n"), "{text}");
        assert!(text.contains("spark.foo=bar"));
    }
}
