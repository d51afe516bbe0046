//! The S3 backend (AWS, MinIO, Ceph RGW, Garage): `s3://bucket/prefix`.
//!
//! Credentials and region come from the standard AWS chain (environment variables, profile,
//! web identity, instance metadata) unless `S3Options::credentials` gives static ones;
//! `S3Options` also sets the endpoint, region and addressing style.
//!
//! How a put stays atomic and still records the object's sha256:
//! - A body smaller than one part is one PutObject carrying the sha256 as user metadata
//!   (`x-amz-meta-sha256`); S3 makes it visible whole or not at all.
//! - A larger body is streamed as a multipart upload (a few parts in flight at once) to a
//!   temporary key under `<prefix>/.sidecars/tmp/`, which no key can name and no listing
//!   shows. The sha256 is only known once the last byte has been read, and S3 cannot attach
//!   metadata to a finished object in place, so the finished temp object is then copied
//!   server-side onto the real key with `MetadataDirective=REPLACE` and the sha256, and the
//!   temp object is deleted. The real key therefore appears in one step, already carrying
//!   its sha256. (Copying onto the real key itself after completion would leave a window in
//!   which a reader, or a crash, sees the object without its hash.) On Garage the copy only
//!   relinks blocks; on AWS it is a server-side copy, multipart above 5 GiB.
//! - Any failure aborts the multipart upload. A process killed mid-put cannot abort, so it
//!   leaves an incomplete upload (never readable) or, between completion and copy, a temp
//!   object; opening a store sweeps both once they are an hour old.
//!
//! Request checksums are sent only when S3 requires them: the SigV4 signature already covers
//! each request's sha256, and a CRC on multipart parts would make Garage rewrite the data on
//! the copy instead of relinking it.
//!
//! Objects written by other tools carry no `sha256` metadata; for them `ObjectMeta::sha256`
//! is empty rather than computed by reading the whole object.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::{
    resolve_range, validate_key, validate_prefix, GetResult, ObjectMeta, ObjectStore, Reader,
    Result, StoreError,
};

const SHA_META: &str = "sha256";
/// CopyObject's limit; larger objects are copied part by part.
const MAX_SINGLE_COPY: u64 = 5 << 30;
/// S3's limit on parts per upload.
const MAX_PARTS: i32 = 10_000;
/// Where unfinished puts live, below the store's prefix; `validate_key` refuses this name.
const TMP_DIR: &str = ".sidecars/tmp";
/// Temp objects and uploads older than this when a store opens belong to a dead writer.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Heads in flight at once while listing (listings carry no user metadata).
const LIST_HEADS: usize = 16;

/// Access key and secret given directly instead of through the AWS credential chain
/// (tests, embedding). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// S3 settings beyond the standard AWS environment.
#[derive(Clone, Debug, clap::Args)]
pub struct S3Options {
    /// S3 endpoint URL, for MinIO, Ceph RGW, Garage (default: AWS, or AWS_ENDPOINT_URL).
    #[arg(long, env = "SIDECARS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: from the AWS environment/profile, else us-east-1).
    #[arg(long, env = "SIDECARS_S3_REGION")]
    pub s3_region: Option<String>,
    /// Use path-style addressing (http://endpoint/bucket/key), as most self-hosted stores need.
    #[arg(long, env = "SIDECARS_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Multipart part size (5MiB..1GiB); puts larger than this use multipart upload. Memory
    /// per put is about (upload concurrency + 1) parts; objects are limited to 10000 parts.
    #[arg(long, env = "SIDECARS_S3_PART_SIZE", default_value = "8MiB", value_parser = crate::config::parse_byte_size)]
    pub s3_part_size: u64,
    /// Parts of one put uploaded at the same time.
    #[arg(long, env = "SIDECARS_S3_UPLOAD_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub s3_upload_concurrency: u16,
    /// Static credentials; `None` uses the standard AWS credential chain. Not a flag: secrets
    /// come from the AWS environment or profile in production.
    #[arg(skip)]
    pub credentials: Option<StaticCredentials>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_part_size: 8 << 20,
            s3_upload_concurrency: 2,
            credentials: None,
        }
    }
}

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    part_size: usize,
    concurrency: usize,
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self> {
        let prefix = prefix.trim_matches('/').to_string();
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        if !prefix.is_empty() {
            validate_prefix(&prefix).map_err(|e| StoreError::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &opts.s3_region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(c) = &opts.credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "sidecars-static",
            ));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .force_path_style(opts.s3_path_style);
        if shared.region().is_none() {
            conf = conf.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(ep) = &opts.s3_endpoint {
            conf = conf.endpoint_url(ep);
        }
        let store = Self {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix,
            url,
            part_size: opts.s3_part_size.clamp(5 << 20, 1 << 30) as usize,
            concurrency: usize::from(opts.s3_upload_concurrency.max(1)),
        };
        store.spawn_sweep();
        Ok(store)
    }

    /// The underlying client, for callers that need an S3 call this interface lacks.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 key that holds `key` (the store's prefix joined with it).
    pub fn s3_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(self.join(key))
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }

    fn bucket_url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn err<E>(&self, url: String, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(url, &self.bucket_url(), e)
    }

    /// Removes what killed writers left: incomplete uploads and temp objects under the temp
    /// directory that are older than `STALE_TMP`. Best effort, in the background.
    fn spawn_sweep(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let tmp = format!("{}/", self.join(TMP_DIR));
        rt.spawn(async move {
            if let Err(error) = sweep(&client, &bucket, &tmp).await {
                tracing::debug!(bucket, prefix = tmp, error, "stale upload sweep failed");
            }
        });
    }

    /// Streams `first` and the rest of `body` into a multipart upload of `tmp`, keeping up to
    /// `concurrency` parts in flight; aborts the upload on any failure.
    async fn upload_multipart(
        &self,
        url: &str,
        tmp: &str,
        first: Bytes,
        body: &mut Reader,
        hasher: &mut Sha256,
    ) -> Result<u64> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(tmp)
            .send()
            .await
            .map_err(|e| self.err(url.to_string(), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(StoreError::Other {
                url: url.into(),
                message: "CreateMultipartUpload answered without an upload id".into(),
            });
        };
        let result = async {
            // dropping the set (on error) cancels the uploads still running
            let mut running: JoinSet<Result<CompletedPart>> = JoinSet::new();
            let mut parts = Vec::new();
            let mut size = 0u64;
            let mut chunk = first;
            let mut number: i32 = 1;
            loop {
                if number > MAX_PARTS {
                    return Err(StoreError::Other {
                        url: url.into(),
                        message: format!(
                            "object larger than {MAX_PARTS} parts of {} bytes; raise --s3-part-size",
                            self.part_size
                        ),
                    });
                }
                size += chunk.len() as u64;
                while running.len() >= self.concurrency {
                    parts.push(joined(url, running.join_next().await)?);
                }
                let req = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(tmp)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .content_length(chunk.len() as i64)
                    .body(ByteStream::from(chunk));
                let (part_url, bucket_url) = (url.to_string(), self.bucket_url());
                running.spawn(async move {
                    let out = req.send().await.map_err(|e| classify(part_url, &bucket_url, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build())
                });
                // the next part is read while the previous ones upload
                chunk = read_part(body, self.part_size, url).await?;
                if chunk.is_empty() {
                    break;
                }
                hasher.update(&chunk);
                number += 1;
            }
            while let Some(done) = running.join_next().await {
                parts.push(joined(url, Some(done))?);
            }
            parts.sort_by_key(|p| p.part_number());
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(tmp)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.err(url.to_string(), e))?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(tmp)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(url, upload_id, error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "could not abort multipart upload; it stays invisible until swept");
            }
        }
        result
    }

    /// Copies the finished temp object onto `full` with `sha` as its only metadata.
    async fn publish(&self, url: &str, tmp: &str, full: &str, size: u64, sha: &str) -> Result<()> {
        let source = format!("{}/{}", self.bucket, urlencode_key(tmp));
        if size <= MAX_SINGLE_COPY {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(full)
                .copy_source(source)
                .metadata_directive(MetadataDirective::Replace)
                .metadata(SHA_META, sha)
                .send()
                .await
                .map_err(|e| self.err(url.to_string(), e))?;
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .metadata(SHA_META, sha)
            .send()
            .await
            .map_err(|e| self.err(url.to_string(), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(StoreError::Other {
                url: url.into(),
                message: "CreateMultipartUpload answered without an upload id".into(),
            });
        };
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            let mut number = 1;
            while start < size {
                let end = (start + MAX_SINGLE_COPY).min(size) - 1;
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| self.err(url.to_string(), e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(
                            out.copy_part_result()
                                .and_then(|r| r.e_tag())
                                .map(str::to_string),
                        )
                        .build(),
                );
                start = end + 1;
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.err(url.to_string(), e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// HEAD answers carry no error body, so a 404 may be a missing bucket or a missing key.
    async fn classify_missing(&self, url: String) -> StoreError {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                StoreError::NoSuchBucket {
                    url: self.bucket_url(),
                }
            }
            _ => StoreError::NotFound { url },
        }
    }

    fn meta_from(
        &self,
        key: &str,
        size: u64,
        metadata: Option<&std::collections::HashMap<String, String>>,
        modified: Option<&aws_smithy_types::DateTime>,
    ) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size,
            sha256: metadata
                .and_then(|m| m.get(SHA_META))
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_default(),
            last_modified: modified
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_else(Utc::now),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put(&self, key: &str, body: Reader) -> Result<ObjectMeta> {
        match self.put_unexplained(key, body).await {
            // a server that rejects a request (bad credentials, no bucket) may close the
            // connection while the body is still being sent: ask the bucket for the reason
            Err(e @ StoreError::Unreachable { .. }) => match self.check().await {
                Err(why @ (StoreError::AccessDenied { .. } | StoreError::NoSuchBucket { .. })) => {
                    Err(why)
                }
                _ => Err(e),
            },
            other => other,
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        let full = self.s3_key(key)?;
        let url = self.object_url(key);
        if let Some(r) = &range {
            if r.is_empty() {
                // HTTP cannot ask for zero bytes; the size alone decides
                let meta = self.head(key).await?;
                let range = resolve_range(&url, range, meta.size)?;
                return Ok(GetResult {
                    meta,
                    range,
                    body: Box::pin(tokio::io::empty()),
                });
            }
        }
        let mut req = self.client.get_object().bucket(&self.bucket).key(&full);
        if let Some(r) = &range {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 416 => {
                let size = self.head(key).await?.size;
                return Err(resolve_range(&url, range, size)
                    .err()
                    .unwrap_or(StoreError::Other {
                        url,
                        message: "the store refused a range inside the object".into(),
                    }));
            }
            Err(e) => return Err(self.err(url, e)),
        };
        let length = resp.content_length().unwrap_or(0).max(0) as u64;
        let size = match (&range, resp.content_range()) {
            (None, _) => length,
            (Some(_), Some(cr)) => parse_total(cr).ok_or_else(|| StoreError::Other {
                url: url.clone(),
                message: format!("unreadable Content-Range `{cr}`"),
            })?,
            // some stores answer a range that covers the whole object with the whole object
            (Some(_), None) => length,
        };
        let range = resolve_range(&url, range, size)?;
        let meta = self.meta_from(key, size, resp.metadata(), resp.last_modified());
        if length != range.end - range.start {
            return Err(StoreError::Other {
                url,
                message: format!(
                    "asked for bytes {}..{} but the store sent {length} bytes",
                    range.start, range.end
                ),
            });
        }
        let body = Box::pin(resp.body.into_async_read());
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full = self.s3_key(key)?;
        let url = self.object_url(key);
        let resp = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(r) => r,
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                return Err(self.classify_missing(url).await)
            }
            Err(e) => return Err(self.err(url, e)),
        };
        let size = resp.content_length().unwrap_or(0).max(0) as u64;
        Ok(self.meta_from(key, size, resp.metadata(), resp.last_modified()))
    }

    async fn list_shallow(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut pages = self.list_shallow_pages(prefix);
        while let Some(page) = pages.try_next().await? {
            out.extend(page);
        }
        // S3 lists in key order already; kept sorted whatever the server does
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One ListObjectsV2 request per page (S3 returns keys in UTF-8 binary order, which is
    /// the order of our keys: they are valid UTF-8).
    fn list_shallow_pages<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<Vec<ObjectMeta>>> {
        if let Err(e) = validate_prefix(prefix) {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        let url = self.object_url(prefix);
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.join(prefix))
            .into_paginator()
            .send();
        Box::pin(futures::stream::unfold(
            Some((pages, url)),
            move |state| async move {
                let (mut pages, url) = state?;
                let page = match pages.next().await? {
                    Ok(page) => page,
                    // the listing ends at its first error
                    Err(e) => return Some((Err(self.err(url, e)), None)),
                };
                let metas = page
                    .contents()
                    .iter()
                    .filter_map(|obj| {
                        let key = obj.key().and_then(|k| self.strip(k))?;
                        validate_key(key).ok()?;
                        let size = obj.size().unwrap_or(0).max(0) as u64;
                        Some(self.meta_from(key, size, None, obj.last_modified()))
                    })
                    .collect();
                Some((Ok(metas), Some((pages, url))))
            },
        ))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let url = self.object_url(prefix);
        let full_prefix = self.join(prefix);
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(url.clone(), e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| self.strip(k)) else {
                    continue;
                };
                // temp objects and names this interface cannot express
                if validate_key(key).is_ok() {
                    keys.push(key.to_string());
                }
            }
        }
        keys.sort();
        // listings carry no user metadata, so each object's sha256 needs a head
        let metas: Vec<Option<ObjectMeta>> = futures::stream::iter(keys)
            .map(|key| async move {
                match self.head(&key).await {
                    Ok(m) => Ok(Some(m)),
                    // deleted while listing
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(LIST_HEADS)
            .try_collect()
            .await?;
        Ok(metas.into_iter().flatten().collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.s3_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.err(self.object_url(key), e))?;
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            // HEAD answers carry no error code
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                Err(StoreError::NoSuchBucket {
                    url: self.bucket_url(),
                })
            }
            Err(e) => Err(self.err(self.url.clone(), e)),
        }
    }
}

impl S3Store {
    /// The put itself; [`ObjectStore::put`] explains connection failures.
    async fn put_unexplained(&self, key: &str, mut body: Reader) -> Result<ObjectMeta> {
        let full = self.s3_key(key)?;
        let url = self.object_url(key);
        let mut hasher = Sha256::new();
        let first = read_part(&mut body, self.part_size, &url).await?;
        hasher.update(&first);
        let size = if first.len() < self.part_size {
            let size = first.len() as u64;
            let sha = hex::encode(hasher.clone().finalize());
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .metadata(SHA_META, &sha)
                .content_length(size as i64)
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| self.err(url.clone(), e))?;
            size
        } else {
            let tmp = self.join(&format!("{TMP_DIR}/{}", uuid::Uuid::new_v4()));
            let size = self
                .upload_multipart(&url, &tmp, first, &mut body, &mut hasher)
                .await?;
            let sha = hex::encode(hasher.clone().finalize());
            let published = self.publish(&url, &tmp, &full, size, &sha).await;
            if let Err(e) = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&tmp)
                .send()
                .await
            {
                tracing::warn!(url, tmp, error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "could not delete temp object; it will be swept");
            }
            published?;
            size
        };
        let mut meta = self.head(key).await?;
        meta.size = size;
        meta.sha256 = hex::encode(hasher.finalize());
        Ok(meta)
    }
}

/// Sorts an SDK failure into the error kinds callers can tell apart.
fn classify<E>(url: String, bucket_url: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = || aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unreachable {
            url,
            message: detail(),
        },
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or(code).to_string();
            match (code, status) {
                ("NoSuchBucket", _) => StoreError::NoSuchBucket {
                    url: bucket_url.into(),
                },
                ("NoSuchKey" | "NotFound", _) | ("", 404) => StoreError::NotFound { url },
                (
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "Forbidden"
                    | "InvalidToken"
                    | "ExpiredToken",
                    _,
                )
                | (_, 403) => StoreError::AccessDenied {
                    url,
                    message: if message.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        message
                    },
                },
                _ => StoreError::Other {
                    url,
                    message: format!("HTTP {status} {code}: {message}"),
                },
            }
        }
        _ => StoreError::Other {
            url,
            message: detail(),
        },
    }
}

fn joined(
    url: &str,
    done: Option<Result<Result<CompletedPart>, tokio::task::JoinError>>,
) -> Result<CompletedPart> {
    match done {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(StoreError::Other {
            url: url.into(),
            message: format!("part upload task failed: {e}"),
        }),
        None => Err(StoreError::Other {
            url: url.into(),
            message: "part upload task vanished".into(),
        }),
    }
}

async fn sweep(client: &Client, bucket: &str, tmp_prefix: &str) -> std::result::Result<(), String> {
    fn text<E: std::error::Error + 'static>(e: E) -> String {
        aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
    }
    let cutoff = std::time::SystemTime::now() - STALE_TMP;
    let old = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| std::time::SystemTime::try_from(*t).ok())
            .is_some_and(|t| t < cutoff)
    };
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(tmp_prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for obj in page.map_err(text)?.contents() {
            if let (Some(k), true) = (obj.key(), old(obj.last_modified())) {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await
                    .map_err(text)?;
            }
        }
    }
    let uploads = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(tmp_prefix)
        .send()
        .await
        .map_err(text)?;
    for u in uploads.uploads() {
        if let (Some(k), Some(id), true) = (u.key(), u.upload_id(), old(u.initiated())) {
            client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(k)
                .upload_id(id)
                .send()
                .await
                .map_err(text)?;
        }
    }
    Ok(())
}

/// The total size from a `Content-Range: bytes a-b/total` header.
fn parse_total(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

/// Reads up to `part` bytes; fewer only at end of input.
async fn read_part(body: &mut Reader, part: usize, url: &str) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(part);
    while buf.len() < part {
        let n = (&mut *body)
            .take((part - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|source| StoreError::Io {
                url: url.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

fn urlencode_key(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_total() {
        assert_eq!(parse_total("bytes 0-9/100"), Some(100));
        assert_eq!(parse_total("bytes 5-5/6"), Some(6));
        assert_eq!(parse_total("bytes */*"), None);
        assert_eq!(parse_total("garbage"), None);
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = StaticCredentials {
            access_key_id: "GKabc".into(),
            secret_access_key: "topsecret".into(),
        };
        let shown = format!(
            "{:?}",
            S3Options {
                credentials: Some(c),
                ..Default::default()
            }
        );
        assert!(
            shown.contains("GKabc") && !shown.contains("topsecret"),
            "{shown}"
        );
    }
}
