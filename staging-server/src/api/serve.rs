//! Downloads from the store: single byte ranges, ETags, and (for the local store) reads in
//! recycled buffers under one memory budget shared by every download.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{ApiError, AppState};

/// Parses a single `bytes=` range against `size`. `Ok(None)`: no (or an ignorable) range;
/// `Err`: unsatisfiable (416). Every range of an empty representation is unsatisfiable (RFC
/// 9110, 14.1.2): none of its bytes exist, suffix ranges included.
pub(crate) fn parse_range(value: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: allowed to answer with the whole body.
        return Ok(None);
    }
    if size == 0 {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        if start >= size || start >= end {
            return Err(());
        }
        start..end
    };
    Ok(Some(r))
}

pub(super) async fn serve_object(
    app: &AppState,
    key: &str,
    size: u64,
    sha256: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
        }
    }
    let mut range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response())
            }
        },
        None => None,
    };
    if let Some(ir) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if ir.trim() != etag {
            range = None;
        }
    }
    let body = object_body(&app.bundles, key, range.clone().unwrap_or(0..size), size).await?;
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag_value)
        .header("x-sha256", sha256);
    builder = match range {
        Some(r) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, r.end - r.start)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ),
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size),
    };
    builder
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The body of `range` of the object `key` (which must be `size` bytes long): read from disk
/// in budgeted chunks on a local store, streamed from the store's get on S3.
pub(crate) async fn object_body(
    bundles: &crate::store::Bundles,
    key: &str,
    range: std::ops::Range<u64>,
    size: u64,
) -> Result<Body, ApiError> {
    Ok(match bundles.local_path(key) {
        Some(path) => local_body(path, range, size).await?,
        None => {
            let got = bundles
                .objects
                .get(key, Some(range))
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                got.body,
                64 << 10,
            ))
        }
    })
}

/// All read buffers of local downloads in flight, in KiB. A chunk holds its share from the
/// read until hyper has written it to the socket (it is returned when the `Bytes` is
/// dropped), so however many connections download at once, and however slowly their clients
/// read, the buffers they hold add up to at most this much.
const DOWNLOAD_BUDGET_KIB: u32 = 16 << 10;

/// The chunk size of local downloads (every chunk buffer has this capacity, and takes this
/// much of the budget).
const CHUNK: usize = 256 << 10;

/// How long a chunk waits for its share before it is read anyway: clients that stop reading
/// can hold the budget, and they must not stall everyone else forever.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Most chunk reads running at once on the blocking pool. Reads from the page cache take
/// microseconds, so a few suffice for two cores; without this bound a couple of hundred
/// downloads would start a couple of hundred threads, each with its stack and allocator
/// caches (most of the peak RSS once the buffers themselves were bounded).
static READ_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

static DOWNLOAD_BUDGET: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        Arc::new(tokio::sync::Semaphore::new(DOWNLOAD_BUDGET_KIB as usize))
    });

/// A chunk of a download with its share of the budget, released when hyper drops it.
struct Chunk {
    data: Vec<u8>,
    _share: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

/// Chunk buffers kept for reuse, at most the budget's worth: downloads then recycle the same
/// few megabytes instead of spreading fresh allocations over the heap (whose freed pieces the
/// allocator keeps, raising the peak RSS), and skip the page faults of new memory.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn take_buffer() -> Vec<u8> {
    let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut buf = spare.unwrap_or_else(|| Vec::with_capacity(CHUNK));
    buf.clear();
    buf
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() != CHUNK {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() * CHUNK < (DOWNLOAD_BUDGET_KIB as usize) << 10 {
        spare.push(buf);
    }
}

/// The body of a download from the local store: `range` of the file at `path` (which must be
/// `size` bytes long), read chunk by chunk on the blocking pool within the download budget.
async fn local_body(
    path: PathBuf,
    range: std::ops::Range<u64>,
    size: u64,
) -> Result<Body, ApiError> {
    let shown = path.display().to_string();
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let slot = READ_SLOTS.acquire().await;
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        if len != size {
            return Err(std::io::Error::other(format!(
                "{len} bytes where {size} were recorded"
            )));
        }
        file.seek(SeekFrom::Start(range.start))?;
        Ok(file)
    })
    .await
    .map_err(|e| internal(format!("cannot open {shown}: {e}")))?
    .map_err(|e| internal(format!("cannot read {shown}: {e}")))?;
    drop(slot);
    let state = (Some(file), range.end - range.start);
    let stream = futures::stream::unfold(state, move |(file, left)| {
        let shown = shown.clone();
        async move {
            let file = file?;
            if left == 0 {
                return None;
            }
            let budget = DOWNLOAD_BUDGET.clone();
            let want = left.min(CHUNK as u64) as usize;
            let kib = (CHUNK / 1024) as u32;
            let share =
                match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many_owned(kib)).await {
                    Ok(Ok(p)) => Some(p),
                    _ => None,
                };
            let slot = READ_SLOTS.acquire().await;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut data = take_buffer();
                let r = (&file).take(want as u64).read_to_end(&mut data);
                (file, r.map(|_| data))
            })
            .await;
            drop(slot);
            match read {
                Ok((file, Ok(data))) if !data.is_empty() => {
                    let n = data.len() as u64;
                    let bytes = Bytes::from_owner(Chunk {
                        data,
                        _share: share,
                    });
                    Some((Ok(bytes), (Some(file), left - n)))
                }
                Ok((_, Ok(_))) => Some((
                    Err(std::io::Error::other(format!("{shown} ended early"))),
                    (None, 0),
                )),
                Ok((_, Err(e))) => Some((
                    Err(std::io::Error::new(e.kind(), format!("{shown}: {e}"))),
                    (None, 0),
                )),
                Err(e) => Some((
                    Err(std::io::Error::other(format!(
                        "read of {shown} failed: {e}"
                    ))),
                    (None, 0),
                )),
            }
        }
    });
    Ok(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=1-2", 100), Ok(None));
        // an empty file has no satisfiable range, suffix ranges included (this used to
        // underflow into a bogus Content-Range)
        assert_eq!(parse_range("bytes=-5", 0), Err(()));
        assert_eq!(parse_range("bytes=0-", 0), Err(()));
        assert_eq!(parse_range("bytes=-5", 3), Ok(Some(0..3)));
    }
}
