//! The image table: which local software a container image name stands for. There is no image
//! registry and no container runtime here, so an image is a name mapped to software already on
//! the machine (docs/local-kubernetes.md has the table for users):
//!
//! | image | runs |
//! |---|---|
//! | `apache/spark:<version>[-…]`, `spark:<version>[-…]` | Spark `<version>` from its pyspark wheel, at `/opt/spark`, with the image's entrypoint (driver / executor / pass-through) and the wheel's venv python first on `PATH` |
//! | `spark-sidecars/<daemon>:<any tag>` | `$SIDECARS_BIN_DIR/<daemon>`, at `/usr/local/bin/<daemon>` as in `images/<daemon>.Dockerfile`, as that file's user |
//! | `busybox:<any tag>` | the machine's own shell and tools, as root |
//!
//! A `docker.io/`, `index.docker.io/` or `library/` prefix is ignored. Anything else fails the
//! pod the way an image that cannot be pulled does (`ErrImagePull`, with the reason).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where each Spark version and our daemons' binaries are, from the kubelet's flags.
#[derive(Debug, Clone, Default)]
pub struct ImageTable {
    /// Spark version -> the pyspark wheel's SPARK_HOME and its venv's `bin/` directory.
    pub spark: BTreeMap<String, SparkInstall>,
    /// Directory holding the daemons' binaries.
    pub sidecars_bin_dir: Option<PathBuf>,
    /// The machine's Java, used as the Spark images' JAVA_HOME.
    pub java_home: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SparkInstall {
    pub home: PathBuf,
    pub python_bin: Option<PathBuf>,
}

/// What an image resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub kind: ImageKind,
    /// The image's USER.
    pub uid: u32,
    pub gid: u32,
    pub user_name: String,
    /// The image's WORKDIR.
    pub workdir: PathBuf,
    /// The image's ENV.
    pub env: Vec<(String, String)>,
    /// The image's ENTRYPOINT (empty: none) and CMD.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Software shown inside the container: (machine path, container path, writable overlay?).
    pub files: Vec<ImageFile>,
    /// A digest-like id for the container status's imageID.
    pub id: String,
    /// Paths of the machine the image's programs run from (a venv, its Python, Java): any
    /// directory on the way to them that others may not enter is made enterable in the
    /// container's own view of `/`, so a non-root container can run them.
    pub needs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// Apache Spark of this version: the entrypoint is [`crate::entrypoint`]'s.
    Spark {
        version: String,
    },
    Sidecars,
    Busybox,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub source: PathBuf,
    pub target: PathBuf,
    /// A directory shown writable through a private overlay (else a read-only bind mount).
    pub overlay: bool,
}

/// The daemons we ship images for, with their Dockerfile's USER (uid, gid, name).
pub const SIDECARS_IMAGES: &[(&str, u32, &str)] = &[
    ("staging-server", 65532, "nonroot"),
    ("shuffle-service", 185, "spark"),
    ("history-collector", 65532, "nonroot"),
    ("spark-stage", 185, "spark"),
];

/// Spark images' user, as in Apache Spark's Dockerfiles.
pub const SPARK_UID: u32 = 185;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("image {image:?} is not in the local image table (docs/local-kubernetes.md): {why}")]
    Unknown { image: String, why: String },
}

impl ImageTable {
    pub fn resolve(&self, image: &str) -> Result<Image, ImageError> {
        let unknown = |why: String| ImageError::Unknown {
            image: image.to_string(),
            why,
        };
        let (name, tag) = split_reference(image).map_err(unknown)?;
        match name.as_str() {
            "apache/spark" | "spark" => {
                let version = tag.split('-').next().unwrap_or_default().to_string();
                let Some(install) = self.spark.get(&version) else {
                    let have: Vec<&str> = self.spark.keys().map(String::as_str).collect();
                    return Err(unknown(format!(
                        "no local Spark {version} (this kubelet has {})",
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    )));
                };
                Ok(self.spark_image(&version, install))
            }
            "busybox" => Ok(Image {
                kind: ImageKind::Busybox,
                uid: 0,
                gid: 0,
                user_name: "root".into(),
                workdir: "/".into(),
                env: vec![("PATH".into(), DEFAULT_PATH.into())],
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                files: vec![],
                id: "local://busybox".into(),
                needs: vec![],
            }),
            n => {
                let Some(daemon) = n.strip_prefix("spark-sidecars/") else {
                    return Err(unknown(
                        "only apache/spark, spark, spark-sidecars/<daemon> and busybox images run here"
                            .into(),
                    ));
                };
                let Some(&(_, uid, user)) = SIDECARS_IMAGES.iter().find(|(d, ..)| *d == daemon)
                else {
                    return Err(unknown(format!("spark-sidecars has no image {daemon:?}")));
                };
                let Some(dir) = &self.sidecars_bin_dir else {
                    return Err(unknown(
                        "this kubelet was started without --sidecars-bin-dir".into(),
                    ));
                };
                let binary = dir.join(daemon);
                if !binary.is_file() {
                    return Err(unknown(format!("{} does not exist", binary.display())));
                }
                let target = PathBuf::from("/usr/local/bin").join(daemon);
                Ok(Image {
                    kind: ImageKind::Sidecars,
                    uid,
                    gid: uid,
                    user_name: user.into(),
                    workdir: "/".into(),
                    env: vec![("PATH".into(), DEFAULT_PATH.into())],
                    entrypoint: vec![target.display().to_string()],
                    cmd: vec![],
                    files: vec![ImageFile {
                        source: binary,
                        target,
                        overlay: false,
                    }],
                    id: format!("local://spark-sidecars/{daemon}"),
                    needs: vec![],
                })
            }
        }
    }

    fn spark_image(&self, version: &str, install: &SparkInstall) -> Image {
        let java_bin = self.java_home.join("bin");
        let mut path = String::new();
        let mut needs = vec![self.java_home.clone()];
        if let Some(py) = &install.python_bin {
            path.push_str(&format!("{}:", py.display()));
            needs.push(py.clone());
            needs.extend(venv_home(py));
        }
        path.push_str(&format!("{}:{DEFAULT_PATH}", java_bin.display()));
        Image {
            kind: ImageKind::Spark {
                version: version.to_string(),
            },
            uid: SPARK_UID,
            gid: SPARK_UID,
            user_name: "spark".into(),
            workdir: "/opt/spark/work-dir".into(),
            env: vec![
                ("PATH".into(), path),
                ("JAVA_HOME".into(), self.java_home.display().to_string()),
                ("SPARK_HOME".into(), "/opt/spark".into()),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            entrypoint: vec!["/opt/entrypoint.sh".into()],
            cmd: vec![],
            files: vec![ImageFile {
                source: install.home.clone(),
                target: "/opt/spark".into(),
                overlay: true,
            }],
            id: format!("local://apache/spark:{version}"),
            needs,
        }
    }
}

/// The base Python a venv runs (`home` in its pyvenv.cfg), given the venv's `bin/`.
fn venv_home(bin: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(bin.parent()?.join("pyvenv.cfg")).ok()?;
    cfg.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "home")
        .map(|(_, v)| PathBuf::from(v.trim()))
}

/// `[registry/]name[:tag]` -> (name without docker.io/library prefixes, tag).
fn split_reference(image: &str) -> Result<(String, String), String> {
    if image.contains('@') {
        return Err("image digests cannot be resolved locally; use a tag".into());
    }
    let mut rest = image;
    for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
        }
    }
    if let Some(r) = rest.strip_prefix("library/") {
        rest = r;
    }
    // a colon after the last slash separates the tag
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].find(':') {
        Some(i) => (&rest[..slash + i], &rest[slash + i + 1..]),
        None => (rest, "latest"),
    };
    if name.is_empty() {
        return Err("empty image name".into());
    }
    Ok((name.to_string(), tag.to_string()))
}

/// The machine's Java home: `$JAVA_HOME`, or where `java` on PATH really lives.
pub fn detect_java_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("java"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(bin: &Path) -> ImageTable {
        let mut spark = BTreeMap::new();
        spark.insert(
            "3.5.7".to_string(),
            SparkInstall {
                home: "/w/pyspark35".into(),
                python_bin: Some("/w/venv35/bin".into()),
            },
        );
        ImageTable {
            spark,
            sidecars_bin_dir: Some(bin.to_path_buf()),
            java_home: "/usr/lib/jvm/java-17".into(),
        }
    }

    #[test]
    fn spark_images_by_version_with_any_suffix_and_registry() {
        let t = table(Path::new("/nonexistent"));
        for image in [
            "apache/spark:3.5.7",
            "docker.io/apache/spark:3.5.7-scala2.12-java17-python3-ubuntu",
            "spark:3.5.7",
            "docker.io/library/spark:3.5.7-python3",
        ] {
            let i = t.resolve(image).unwrap();
            assert_eq!(
                i.kind,
                ImageKind::Spark {
                    version: "3.5.7".into()
                },
                "{image}"
            );
            assert_eq!(i.files[0].target, Path::new("/opt/spark"));
            assert_eq!((i.uid, i.gid), (185, 185));
            assert!(i
                .env
                .iter()
                .any(|(k, v)| k == "PATH" && v.starts_with("/w/venv35/bin:")));
        }
        let e = t.resolve("apache/spark:3.4.1").unwrap_err().to_string();
        assert!(
            e.contains("no local Spark 3.4.1") && e.contains("3.5.7"),
            "{e}"
        );
    }

    #[test]
    fn sidecars_images_need_their_binary() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let e = t
            .resolve("spark-sidecars/shuffle-service:0.1.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(dir.path().join("shuffle-service"), b"").unwrap();
        let i = t.resolve("registry.example/spark-sidecars/shuffle-service:0.1.0");
        assert!(i.is_err(), "another registry's image is not ours");
        let i = t.resolve("spark-sidecars/shuffle-service").unwrap();
        assert_eq!(
            i.entrypoint,
            vec!["/usr/local/bin/shuffle-service".to_string()]
        );
        assert_eq!(i.uid, 185);
        assert!(t.resolve("spark-sidecars/nope:1").is_err());
    }

    #[test]
    fn unknown_images_say_why() {
        let t = table(Path::new("/x"));
        let e = t.resolve("nginx:1.25").unwrap_err().to_string();
        assert!(
            e.contains("nginx:1.25") && e.contains("only apache/spark"),
            "{e}"
        );
        assert!(t.resolve("busybox@sha256:abc").is_err());
        assert_eq!(
            t.resolve("docker.io/library/busybox:1.37").unwrap().kind,
            ImageKind::Busybox
        );
    }

    /// The table's users are the Dockerfiles' USER lines.
    #[test]
    fn sidecars_users_match_the_dockerfiles() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        for (daemon, uid, _) in SIDECARS_IMAGES {
            let text = std::fs::read_to_string(root.join(format!("{daemon}.Dockerfile"))).unwrap();
            let user = text
                .lines()
                .filter_map(|l| l.strip_prefix("USER "))
                .next_back()
                .unwrap();
            assert_eq!(user.trim(), format!("{uid}:{uid}"), "{daemon}");
            assert!(
                text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{daemon}\"]")),
                "{daemon}"
            );
        }
    }
}
