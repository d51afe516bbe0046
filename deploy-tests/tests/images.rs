//! images/: each Dockerfile builds a binary the workspace has, runs it as a numeric non-root
//! user, exposes exactly that daemon's default ports, and is the image the manifests run with
//! the workspace's version as tag. Building the images needs a Docker engine: see
//! `images_build_with_docker` (ignored by default; run it where an engine exists).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use sidecars_deploy_tests::dockerfile::{self, Dockerfile};
use sidecars_deploy_tests::{daemon, deploy, repo_root, workspace};

/// Image name (images/<name>.Dockerfile) -> (package, binary).
const IMAGES: &[(&str, &str, &str)] = &[
    ("staging-server", "staging-server", "staging-server"),
    ("spark-stage", "staging-server", "spark-stage"),
    ("shuffle-service", "shuffle-service", "shuffle-service"),
    (
        "history-collector",
        "history-collector",
        "history-collector",
    ),
];

fn dockerfiles() -> BTreeMap<String, (PathBuf, Dockerfile)> {
    let dir = repo_root().join("images");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("images/") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(image) = name.strip_suffix(".Dockerfile") else {
            panic!(
                "{}: images/ holds only <image>.Dockerfile files",
                p.display()
            );
        };
        let df = dockerfile::read(&p).unwrap_or_else(|e| panic!("{e:#}"));
        out.insert(image.to_string(), (p, df));
    }
    out
}

#[test]
fn every_dockerfile_builds_a_workspace_binary_as_non_root() {
    let meta = workspace::metadata().unwrap_or_else(|e| panic!("{e:#}"));
    let dfs = dockerfiles();
    let names: BTreeSet<&str> = dfs.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = IMAGES.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(
        names, expected,
        "one Dockerfile per daemon plus spark-stage"
    );
    for (image, pkg, bin) in IMAGES {
        let (path, df) = &dfs[*image];
        let at = path.display();
        assert_eq!(df.package.as_deref(), Some(*pkg), "{at}: cargo build -p");
        assert_eq!(df.bin.as_deref(), Some(*bin), "{at}: cargo build --bin");
        assert!(
            df.release && df.locked,
            "{at}: cargo build --release --locked"
        );
        let package = meta
            .package(pkg)
            .unwrap_or_else(|| panic!("{at}: package {pkg} is not in the workspace"));
        assert!(
            package.bins().contains(bin),
            "{at}: package {pkg} has no binary {bin} ({:?})",
            package.bins()
        );
        assert_eq!(
            df.stages.len(),
            2,
            "{at}: a builder stage and a runtime stage"
        );
        assert!(
            df.stages[0].contains("rust:"),
            "{at}: the builder is a Rust image"
        );
        assert!(
            df.stages[1].starts_with("gcr.io/distroless/cc-debian12")
                || df.stages[1].contains("debian:bookworm-slim"),
            "{at}: minimal runtime base, got {}",
            df.stages[1]
        );
        let target = format!("/usr/local/bin/{bin}");
        assert_eq!(df.entrypoint, vec![target.clone()], "{at}: ENTRYPOINT");
        assert_eq!(
            df.copies_from_build,
            vec![(format!("/out/{bin}"), target)],
            "{at}: COPY --from"
        );
        let user = df.user.clone().unwrap_or_else(|| panic!("{at}: no USER"));
        for part in user.split(':') {
            let id: u32 = part
                .parse()
                .unwrap_or_else(|_| panic!("{at}: USER {user} must be numeric"));
            assert_ne!(id, 0, "{at}: USER {user} is root");
        }
        // the builder copies the binary out of the cache-mounted target dir
        let run = df
            .instructions
            .iter()
            .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"));
        let run = run.expect("RUN cargo build");
        assert!(
            run.args
                .contains(&format!("target/release/{bin} /out/{bin}")),
            "{at}: install line"
        );
    }
}

#[test]
fn dockerignore_keeps_build_output_out_of_the_context() {
    let path = repo_root().join(".dockerignore");
    let text = std::fs::read_to_string(&path).expect(".dockerignore at the repository root");
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for needed in ["target/", ".git/", "sidecars-data/"] {
        assert!(lines.contains(needed), ".dockerignore lacks {needed}");
    }
}

/// The ports a daemon listens on by default, from its own `--help`.
fn default_ports(bin: &str) -> BTreeSet<u16> {
    let path = daemon::bin_path(bin).unwrap_or_else(|e| panic!("{e:#}"));
    let help = daemon::help(&path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    help.flags
        .iter()
        .filter(|f| f.long == "port" || f.long.ends_with("-port"))
        .filter_map(|f| f.default.as_deref())
        .map(|d| {
            d.parse()
                .unwrap_or_else(|_| panic!("{bin}: port default {d}"))
        })
        .collect()
}

#[test]
fn each_image_exposes_its_daemons_default_ports() {
    let dfs = dockerfiles();
    for (image, _, bin) in IMAGES {
        let (path, df) = &dfs[*image];
        let exposed: BTreeSet<u16> = df.expose.iter().copied().collect();
        assert_eq!(
            exposed,
            default_ports(bin),
            "{}: EXPOSE vs `{bin} --help` defaults",
            path.display()
        );
    }
}

#[test]
fn manifests_run_these_images_on_the_exposed_ports() {
    let meta = workspace::metadata().unwrap_or_else(|e| panic!("{e:#}"));
    let version = &meta
        .package("staging-server")
        .expect("staging-server")
        .version;
    let dfs = dockerfiles();
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let mut seen = BTreeSet::new();
    for w in deploy::workloads(&objects) {
        for c in w.all_containers() {
            let image = c.image.clone().unwrap_or_default();
            let (name, tag) = deploy::split_image(&image);
            let Some(short) = name.strip_prefix("spark-sidecars/") else {
                assert_eq!(
                    c.name,
                    "prepare-host-dirs",
                    "{}: unexpected image {image}",
                    w.what()
                );
                continue;
            };
            let (path, df) = dfs.get(short).unwrap_or_else(|| {
                panic!(
                    "{}: image {image} has no images/{short}.Dockerfile",
                    w.what()
                )
            });
            assert_eq!(
                tag,
                Some(version.as_str()),
                "{}: {image} is not tagged {version}",
                w.what()
            );
            let ports: BTreeSet<u16> = c
                .ports
                .iter()
                .flatten()
                .map(|p| u16::try_from(p.container_port).expect("port"))
                .collect();
            let exposed: BTreeSet<u16> = df.expose.iter().copied().collect();
            assert_eq!(
                ports,
                exposed,
                "{} container {} vs {}",
                w.what(),
                c.name,
                path.display()
            );
            seen.insert(short.to_string());
        }
    }
    let expected: BTreeSet<String> = ["staging-server", "shuffle-service", "history-collector"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, expected);
}

/// Builds every image. Needs a Docker engine with BuildKit, and a release build of the whole
/// workspace per image (long on a small machine), so it runs only when asked:
/// `cargo test -p sidecars-deploy-tests --test images -- --ignored`.
#[test]
#[ignore = "needs a Docker engine; run with --ignored where one exists"]
fn images_build_with_docker() {
    let engine = Command::new("docker").arg("info").output();
    match engine {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "no Docker engine answers `docker info`; this test builds the images and needs one"
        ),
    }
    for (image, _, bin) in IMAGES {
        let tag = format!("spark-sidecars/{image}:test");
        let status = Command::new("docker")
            .args([
                "build",
                "-f",
                &format!("images/{image}.Dockerfile"),
                "-t",
                &tag,
                ".",
            ])
            .env("DOCKER_BUILDKIT", "1")
            .current_dir(repo_root())
            .status()
            .expect("docker build");
        assert!(
            status.success(),
            "docker build of images/{image}.Dockerfile failed"
        );
        let out = Command::new("docker")
            .args(["run", "--rm", &tag, "--version"])
            .output()
            .expect("docker run");
        assert!(out.status.success(), "{tag} --version failed");
        assert!(
            !out.stdout.is_empty(),
            "{tag} ({bin}) --version printed nothing"
        );
    }
}
