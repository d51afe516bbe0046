//! The client half of `spark-stage`: upload a set of local files as one bundle, and fetch a
//! bundle into the jars and files directories (the init container's job).
//!
//! Bundle layout chosen by the client: `jars/<name>` for jars, `files/<name>`, `pyfiles/<name>`,
//! `archives/<name>` and `conf/<name>` for the rest. `fetch` puts `jars/*` in the jars
//! directory and everything else in the files directory (top-level names from other clients
//! too), so one bundle serves both of the original's downloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::bundle::{self, Limits};
use crate::store::Owner;

/// What `spark-stage upload` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    pub resource_id: String,
    pub resource_secret: String,
    pub download_token: String,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub files: Vec<UploadedFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The URL stock Spark can fetch (`spark.jars`, `spark.files`, ...).
    pub url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdAndSecret {
    resource_id: String,
    resource_secret: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    download_token: String,
    bundle_size: u64,
    bundle_sha256: String,
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
    path: String,
}

/// The HTTP client; with `ca_cert`, a PEM file of CA certificates trusted for https servers
/// in addition to the usual public roots (for a staging server with a private CA or a
/// self-signed certificate).
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-cert {} is not PEM", path.display()))?;
        if certs.is_empty() {
            bail!(
                "--ca-cert {}: no `BEGIN CERTIFICATE` block found",
                path.display()
            );
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().context("cannot build the HTTP client")
}

fn endpoint(server: &str, path: &str) -> String {
    format!("{}{}", server.trim_end_matches('/'), path)
}

/// Builds the bundle of `files` (bundle name, local path) and uploads it, with a progress bar
/// on stderr when `progress` is set.
pub async fn upload(
    server: &str,
    files: &[(String, PathBuf)],
    owner: &Owner,
    progress: bool,
    ca_cert: Option<&Path>,
) -> anyhow::Result<Uploaded> {
    let client = http_client(ca_cert)?;
    let tmp = tempfile::Builder::new()
        .prefix("spark-stage-bundle")
        .suffix(".tar.gz")
        .tempfile()
        .context("cannot create a temporary file for the bundle")?;
    let list = files.to_vec();
    let out = tmp
        .reopen()
        .context("cannot reopen the temporary bundle file")?;
    // Level 1: jars and wheels are already compressed; speed matters more than a few percent.
    tokio::task::spawn_blocking(move || {
        bundle::create(std::io::BufWriter::new(out), &list, 1)
            .and_then(|mut w| std::io::Write::flush(&mut w))
    })
    .await
    .context("bundle builder crashed")?
    .context("cannot build the bundle")?;
    let len = tmp
        .as_file()
        .metadata()
        .context("cannot stat the bundle")?
        .len();

    let bar = if progress {
        let b = indicatif::ProgressBar::new(len);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let file = tokio::fs::File::open(tmp.path())
        .await
        .context("cannot open the bundle")?;
    let b2 = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            b2.inc(c.len() as u64);
        }
    });
    let body = reqwest::Body::wrap_stream(stream);
    // The parts are shaped exactly as the original Retrofit client sent them: no file names,
    // `resources` typed multipart/form-data, `resourcesOwner` typed application/json.
    let resources =
        reqwest::multipart::Part::stream_with_length(body, len).mime_str("multipart/form-data")?;
    let owner_part = reqwest::multipart::Part::text(serde_json::to_string(owner)?)
        .mime_str("application/json")?;
    let form = reqwest::multipart::Form::new()
        .part("resources", resources)
        .part("resourcesOwner", owner_part);
    let url = endpoint(server, "/api/v0/resources/");
    let resp = client
        .post(&url)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("cannot upload to {url}"))?;
    bar.finish_and_clear();
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("upload to {url} failed: {status}: {}", text.trim());
    }
    let ids: IdAndSecret = resp
        .json()
        .await
        .with_context(|| format!("unexpected answer from {url}"))?;
    let manifest = get_manifest(&client, server, &ids.resource_id, &ids.resource_secret).await?;
    Ok(Uploaded {
        files: manifest
            .files
            .iter()
            .map(|f| UploadedFile {
                name: f.name.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
                url: endpoint(server, &f.path),
            })
            .collect(),
        resource_id: ids.resource_id,
        resource_secret: ids.resource_secret,
        download_token: manifest.download_token,
        bundle_sha256: manifest.bundle_sha256,
        bundle_size: manifest.bundle_size,
    })
}

/// A failure worth retrying (network, 5xx) or not (4xx: wrong id or secret).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0:#}")]
    Transient(anyhow::Error),
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

async fn check(resp: reqwest::Response, url: &str) -> Result<reqwest::Response, FetchError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let e = anyhow::anyhow!("GET {url}: {status}: {}", text.trim());
    if status.is_client_error() {
        Err(FetchError::Permanent(e))
    } else {
        Err(FetchError::Transient(e))
    }
}

async fn get_manifest_once(
    client: &reqwest::Client,
    server: &str,
    id: &str,
    secret: &str,
) -> Result<Manifest, FetchError> {
    let url = endpoint(server, &format!("/api/v0/resources/{id}/manifest"));
    let resp = client
        .get(&url)
        .header(reqwest::header::AUTHORIZATION, secret)
        .send()
        .await
        .map_err(|e| FetchError::Transient(anyhow::anyhow!("GET {url}: {e}")))?;
    let resp = check(resp, &url).await?;
    resp.json()
        .await
        .map_err(|e| FetchError::Transient(anyhow::anyhow!("GET {url}: bad manifest: {e}")))
}

async fn get_manifest(
    client: &reqwest::Client,
    server: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<Manifest> {
    get_manifest_once(client, server, id, secret)
        .await
        .map_err(|e| match e {
            FetchError::Transient(e) | FetchError::Permanent(e) => e,
        })
}

/// Settings of one fetch.
pub struct FetchArgs<'a> {
    pub server: &'a str,
    pub resource_id: &'a str,
    pub secret: &'a str,
    pub jars_dir: &'a Path,
    pub files_dir: &'a Path,
    pub attempts: u32,
    pub max_backoff: Duration,
    pub limits: Limits,
    /// Extra CA certificates (PEM) to trust, see [`http_client`].
    pub ca_cert: Option<&'a Path>,
}

/// Downloads the bundle (retrying transient failures with exponential backoff), checks its
/// sha256 against the manifest, and extracts it, re-checking every entry.
pub async fn fetch(a: &FetchArgs<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let client = http_client(a.ca_cert)?;
    for d in [a.jars_dir, a.files_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .with_context(|| format!("cannot create {}", d.display()))?;
    }
    let tmp = tempfile::Builder::new()
        .prefix(".spark-stage-download")
        .tempfile_in(a.files_dir)
        .with_context(|| {
            format!(
                "cannot create a temporary file in {}",
                a.files_dir.display()
            )
        })?;
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match download_once(&client, a, tmp.path()).await {
            Ok(()) => break,
            Err(FetchError::Permanent(e)) => return Err(e),
            Err(FetchError::Transient(e)) if attempt >= a.attempts => {
                return Err(e.context(format!("giving up after {attempt} attempts")))
            }
            Err(FetchError::Transient(e)) => {
                eprintln!(
                    "spark-stage fetch: attempt {attempt} failed: {e:#}; retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(a.max_backoff);
            }
        }
    }
    let (jars, files) = (a.jars_dir.to_path_buf(), a.files_dir.to_path_buf());
    let limits = a.limits;
    let path = tmp.path().to_path_buf();
    let written = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<PathBuf>> {
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let route = |name: &str| -> Option<(PathBuf, PathBuf)> {
            match name.split_once('/') {
                Some(("jars", rest)) => Some((jars.clone(), PathBuf::from(rest))),
                Some((_, rest)) => Some((files.clone(), PathBuf::from(rest))),
                None => Some((files.clone(), PathBuf::from(name))),
            }
        };
        let entries = bundle::extract(
            std::io::BufReader::with_capacity(bundle::COPY_BUF, f),
            limits,
            &route,
        )?;
        Ok(entries
            .iter()
            .filter_map(|e| route(&e.name).map(|(r, p)| r.join(p)))
            .collect())
    })
    .await
    .context("extraction crashed")??;
    Ok(written)
}

async fn download_once(
    client: &reqwest::Client,
    a: &FetchArgs<'_>,
    dest: &Path,
) -> Result<(), FetchError> {
    let manifest = get_manifest_once(client, a.server, a.resource_id, a.secret).await?;
    let url = endpoint(a.server, &format!("/api/v0/resources/{}", a.resource_id));
    let resp = client
        .get(&url)
        .header(reqwest::header::AUTHORIZATION, a.secret)
        .send()
        .await
        .map_err(|e| FetchError::Transient(anyhow::anyhow!("GET {url}: {e}")))?;
    let resp = check(resp, &url).await?;
    let io = |e: std::io::Error| {
        FetchError::Permanent(anyhow::anyhow!("cannot write {}: {e}", dest.display()))
    };
    let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            FetchError::Transient(anyhow::anyhow!("GET {url}: download interrupted: {e}"))
        })?;
        hasher.update(&chunk);
        n += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let got = hex::encode(hasher.finalize());
    if got != manifest.bundle_sha256 || n != manifest.bundle_size {
        return Err(FetchError::Transient(anyhow::anyhow!(
            "GET {url}: bundle is corrupt: got {n} bytes with sha256 {got}, expected {} bytes with sha256 {}",
            manifest.bundle_size,
            manifest.bundle_sha256
        )));
    }
    Ok(())
}

/// Asks `server` for an upload credential for `namespace`, presenting `bearer` (a Kubernetes
/// token whose identity may create pods in the namespace, or the administrator's token).
pub async fn token(
    server: &str,
    namespace: &str,
    bearer: &str,
    ttl: Option<Duration>,
    ca_cert: Option<&Path>,
) -> anyhow::Result<crate::auth::Issued> {
    let client = http_client(ca_cert)?;
    let url = endpoint(server, "/api/v1/credentials");
    let mut body = serde_json::json!({ "namespace": namespace });
    if let Some(ttl) = ttl {
        body["ttlSeconds"] = ttl.as_secs().into();
    }
    let resp = client
        .post(&url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("{url} refused: {status}: {}", text.trim());
    }
    resp.json()
        .await
        .with_context(|| format!("unexpected answer from {url}"))
}

/// The bearer token of the current kubeconfig context (`token` or `tokenFile`), if it has
/// one.
pub fn kubeconfig_token() -> anyhow::Result<Option<String>> {
    let config = match kube::config::Kubeconfig::read() {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let Some(ctx_name) = config.current_context.clone() else {
        return Ok(None);
    };
    let Some(user) = config
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
    else {
        return Ok(None);
    };
    let Some(auth) = config
        .auth_infos
        .iter()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.as_ref())
    else {
        return Ok(None);
    };
    if let Some(t) = &auth.token {
        use secrecy::ExposeSecret;
        return Ok(Some(t.expose_secret().to_string()));
    }
    if let Some(f) = &auth.token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the kubeconfig's tokenFile {f}"))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(None)
}
