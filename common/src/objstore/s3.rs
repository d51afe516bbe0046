//! The S3 backend (AWS, MinIO, Ceph RGW, Garage): `s3://bucket/prefix`.
//!
//! Credentials and region come from the standard AWS chain (environment variables, profile,
//! web identity, instance metadata); `S3Options` overrides the endpoint, region and
//! addressing style. A put reads one part at a time: a body smaller than one part becomes a
//! single PutObject, a larger one a multipart upload that is aborted on any failure, so an
//! interrupted put never leaves a readable object. The sha256, computed while streaming, is
//! kept as user metadata (`x-amz-meta-sha256`); for multipart objects it is attached after
//! completion by a metadata-replacing copy onto itself.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{resolve_range, validate_key, validate_prefix, GetResult, ObjectMeta, ObjectStore, Reader, Result, StoreError};

const SHA_META: &str = "sha256";
/// CopyObject's limit; larger objects are re-tagged with a multipart copy.
const MAX_SINGLE_COPY: u64 = 5 << 30;

/// S3 settings beyond the standard AWS environment.
#[derive(Clone, Debug, Default, clap::Args)]
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
    /// Multipart part size; puts larger than this use multipart upload. Memory per put is
    /// about one part.
    #[arg(long, env = "SIDECARS_S3_PART_SIZE", default_value = "8MiB", value_parser = crate::config::parse_byte_size)]
    pub s3_part_size: u64,
}

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    part_size: usize,
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &opts.s3_region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            conf = conf.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(ep) = &opts.s3_endpoint {
            conf = conf.endpoint_url(ep);
        }
        conf = conf.force_path_style(opts.s3_path_style);
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            validate_prefix(&prefix)?;
        }
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let part_size = opts.s3_part_size.clamp(5 << 20, 1 << 30) as usize;
        Ok(Self {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix,
            url,
            part_size,
        })
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    fn strip(&self, full: &str) -> String {
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(full)
                .to_string()
        }
    }

    fn err<E, R>(&self, key: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let url = self.object_url(key);
        match &e {
            SdkError::DispatchFailure(d) => StoreError::Unreachable {
                url,
                message: format!("{:?}", d.as_connector_error()),
            },
            SdkError::TimeoutError(_) => StoreError::Unreachable {
                url,
                message: "timed out".into(),
            },
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("");
                let message = se.err().message().unwrap_or(code).to_string();
                match code {
                    "NoSuchKey" | "NotFound" => StoreError::NotFound { url },
                    "NoSuchBucket" => StoreError::NoSuchBucket {
                        url: format!("s3://{}", self.bucket),
                    },
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden" => {
                        StoreError::AccessDenied { url, message }
                    }
                    _ => StoreError::Other {
                        url,
                        message: format!("{code}: {message}"),
                    },
                }
            }
            _ => StoreError::Other {
                url,
                message: format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e)),
            },
        }
    }

    /// HEAD answers carry no error body, so a 404 there may be a missing bucket or key.
    async fn classify_missing(&self, key: &str) -> StoreError {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                StoreError::NoSuchBucket {
                    url: format!("s3://{}", self.bucket),
                }
            }
            _ => StoreError::NotFound {
                url: self.object_url(key),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        first: Bytes,
        body: &mut Reader,
        hasher: &mut Sha256,
    ) -> Result<u64> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut size = 0u64;
            let mut chunk = first;
            let mut number = 1;
            loop {
                size += chunk.len() as u64;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| self.err(key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
                chunk = read_part(body, self.part_size, &self.object_url(key)).await?;
                if chunk.is_empty() {
                    break;
                }
                hasher.update(&chunk);
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
            Ok(size)
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

    /// Replaces the object's metadata with its sha256, keeping its bytes.
    async fn tag_sha(&self, key: &str, full: &str, size: u64, sha: &str) -> Result<()> {
        let source = format!("{}/{}", self.bucket, urlencode_key(full));
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
                .map_err(|e| self.err(key, e))?;
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
            .map_err(|e| self.err(key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            let step = MAX_SINGLE_COPY;
            let mut start = 0u64;
            let mut number = 1;
            while start < size {
                let end = (start + step).min(size) - 1;
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
                    .map_err(|e| self.err(key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_string))
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
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
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
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put(&self, key: &str, mut body: Reader) -> Result<ObjectMeta> {
        let full = self.full_key(key)?;
        let mut hasher = Sha256::new();
        let first = read_part(&mut body, self.part_size, &self.object_url(key)).await?;
        hasher.update(&first);
        let size = if first.len() < self.part_size {
            let size = first.len() as u64;
            let sha = hex::encode(hasher.clone().finalize());
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .metadata(SHA_META, &sha)
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
            size
        } else {
            let size = self
                .put_multipart(key, &full, first, &mut body, &mut hasher)
                .await?;
            let sha = hex::encode(hasher.clone().finalize());
            self.tag_sha(key, &full, size, &sha).await?;
            size
        };
        let mut meta = self.head(key).await?;
        meta.size = size;
        meta.sha256 = hex::encode(hasher.finalize());
        Ok(meta)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        let full = self.full_key(key)?;
        let meta = self.head(key).await?;
        let range = resolve_range(&self.object_url(key), range, meta.size)?;
        if range.is_empty() {
            return Ok(GetResult {
                meta,
                range,
                body: Box::pin(tokio::io::empty()),
            });
        }
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        let body = Box::pin(resp.body.into_async_read());
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full = self.full_key(key)?;
        let resp = match self.client.head_object().bucket(&self.bucket).key(&full).send().await {
            Ok(r) => r,
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                return Err(self.classify_missing(key).await)
            }
            Err(e) => return Err(self.err(key, e)),
        };
        let size = resp.content_length().unwrap_or(0).max(0) as u64;
        let sha256 = resp
            .metadata()
            .and_then(|m| m.get(SHA_META))
            .cloned()
            .unwrap_or_default();
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            sha256,
            last_modified: resp
                .last_modified()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_else(Utc::now),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(prefix, e))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                let key = self.strip(k);
                if validate_key(&key).is_err() {
                    continue;
                }
                // listings carry no user metadata; ask for each object
                match self.head(&key).await {
                    Ok(m) => out.push(m),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(())
    }
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
