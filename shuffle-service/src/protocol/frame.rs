//! Transport frames of Spark's network-common layer: `u64 frame_length` (counting itself) ‖
//! `u8 type` ‖ header fields ‖ [body]. Pure encode/decode; I/O lives in `connection`.
//!
//! Bodies that are file segments are not part of these values: the sender encodes the header
//! with [`chunk_success_header`] / [`stream_response_header`] and sends the bytes from the file.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{string_len, DecodeError, Reader, WireWrite};

/// Size of the length prefix, which the length counts.
pub const LENGTH_SIZE: usize = 8;

/// One transport message. Bodies "in frame" are carried as bytes; for `StreamResponse` and
/// `UploadStream` the body follows the frame raw and only its size is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    ChunkFetchRequest {
        stream_id: i64,
        chunk_index: i32,
    },
    ChunkFetchSuccess {
        stream_id: i64,
        chunk_index: i32,
        body: Bytes,
    },
    ChunkFetchFailure {
        stream_id: i64,
        chunk_index: i32,
        error: String,
    },
    RpcRequest {
        request_id: i64,
        body: Bytes,
    },
    RpcResponse {
        request_id: i64,
        body: Bytes,
    },
    RpcFailure {
        request_id: i64,
        error: String,
    },
    StreamRequest {
        stream_id: String,
    },
    StreamResponse {
        stream_id: String,
        byte_count: i64,
    },
    StreamFailure {
        stream_id: String,
        error: String,
    },
    OneWayMessage {
        body: Bytes,
    },
    UploadStream {
        request_id: i64,
        meta: Bytes,
        body_byte_count: i64,
    },
    MergedBlockMetaRequest {
        request_id: i64,
        app_id: String,
        shuffle_id: i32,
        shuffle_merge_id: i32,
        reduce_id: i32,
    },
    MergedBlockMetaSuccess {
        request_id: i64,
        num_chunks: i32,
        body: Bytes,
    },
}

impl Message {
    pub fn type_id(&self) -> u8 {
        match self {
            Message::ChunkFetchRequest { .. } => 0,
            Message::ChunkFetchSuccess { .. } => 1,
            Message::ChunkFetchFailure { .. } => 2,
            Message::RpcRequest { .. } => 3,
            Message::RpcResponse { .. } => 4,
            Message::RpcFailure { .. } => 5,
            Message::StreamRequest { .. } => 6,
            Message::StreamResponse { .. } => 7,
            Message::StreamFailure { .. } => 8,
            Message::OneWayMessage { .. } => 9,
            Message::UploadStream { .. } => 10,
            Message::MergedBlockMetaRequest { .. } => 11,
            Message::MergedBlockMetaSuccess { .. } => 12,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Message::ChunkFetchRequest { .. } => "ChunkFetchRequest",
            Message::ChunkFetchSuccess { .. } => "ChunkFetchSuccess",
            Message::ChunkFetchFailure { .. } => "ChunkFetchFailure",
            Message::RpcRequest { .. } => "RpcRequest",
            Message::RpcResponse { .. } => "RpcResponse",
            Message::RpcFailure { .. } => "RpcFailure",
            Message::StreamRequest { .. } => "StreamRequest",
            Message::StreamResponse { .. } => "StreamResponse",
            Message::StreamFailure { .. } => "StreamFailure",
            Message::OneWayMessage { .. } => "OneWayMessage",
            Message::UploadStream { .. } => "UploadStream",
            Message::MergedBlockMetaRequest { .. } => "MergedBlockMetaRequest",
            Message::MergedBlockMetaSuccess { .. } => "MergedBlockMetaSuccess",
        }
    }

    /// Size of the header fields (after the type byte), excluding any body.
    fn header_len(&self) -> usize {
        match self {
            Message::ChunkFetchRequest { .. } | Message::ChunkFetchSuccess { .. } => 12,
            Message::ChunkFetchFailure { error, .. } => 12 + string_len(error),
            Message::RpcRequest { .. } | Message::RpcResponse { .. } => 12,
            Message::RpcFailure { error, .. } => 8 + string_len(error),
            Message::StreamRequest { stream_id } => string_len(stream_id),
            Message::StreamResponse { stream_id, .. } => string_len(stream_id) + 8,
            Message::StreamFailure { stream_id, error } => {
                string_len(stream_id) + string_len(error)
            }
            Message::OneWayMessage { .. } => 4,
            Message::UploadStream { meta, .. } => 8 + 4 + meta.len() + 8,
            Message::MergedBlockMetaRequest { app_id, .. } => 8 + string_len(app_id) + 12,
            Message::MergedBlockMetaSuccess { .. } => 12,
        }
    }

    /// The in-frame body, if this type carries one.
    fn body(&self) -> Option<&Bytes> {
        match self {
            Message::ChunkFetchSuccess { body, .. }
            | Message::RpcRequest { body, .. }
            | Message::RpcResponse { body, .. }
            | Message::OneWayMessage { body }
            | Message::MergedBlockMetaSuccess { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Encodes the whole frame (for `StreamResponse`/`UploadStream`, the raw body that
    /// follows the frame is the caller's business).
    pub fn encode(&self) -> BytesMut {
        let body_len = self.body().map_or(0, Bytes::len);
        let mut out = BytesMut::with_capacity(LENGTH_SIZE + 1 + self.header_len() + body_len);
        self.encode_header_into(&mut out, body_len);
        if let Some(body) = self.body() {
            out.put_slice(body);
        }
        out
    }

    /// Length prefix, type and header fields; `in_frame_body` is counted in the length.
    fn encode_header_into(&self, out: &mut BytesMut, in_frame_body: usize) {
        let frame_len = LENGTH_SIZE + 1 + self.header_len() + in_frame_body;
        out.put_u64(frame_len as u64);
        out.put_u8(self.type_id());
        let body_i32 = i32::try_from(in_frame_body).unwrap_or(i32::MAX);
        match self {
            Message::ChunkFetchRequest {
                stream_id,
                chunk_index,
            }
            | Message::ChunkFetchSuccess {
                stream_id,
                chunk_index,
                ..
            } => {
                out.put_i64(*stream_id);
                out.put_i32(*chunk_index);
            }
            Message::ChunkFetchFailure {
                stream_id,
                chunk_index,
                error,
            } => {
                out.put_i64(*stream_id);
                out.put_i32(*chunk_index);
                out.put_string(error);
            }
            Message::RpcRequest { request_id, .. } | Message::RpcResponse { request_id, .. } => {
                out.put_i64(*request_id);
                out.put_i32(body_i32);
            }
            Message::RpcFailure { request_id, error } => {
                out.put_i64(*request_id);
                out.put_string(error);
            }
            Message::StreamRequest { stream_id } => out.put_string(stream_id),
            Message::StreamResponse {
                stream_id,
                byte_count,
            } => {
                out.put_string(stream_id);
                out.put_i64(*byte_count);
            }
            Message::StreamFailure { stream_id, error } => {
                out.put_string(stream_id);
                out.put_string(error);
            }
            Message::OneWayMessage { .. } => out.put_i32(body_i32),
            Message::UploadStream {
                request_id,
                meta,
                body_byte_count,
            } => {
                out.put_i64(*request_id);
                out.put_bytes_prefixed(meta);
                out.put_i64(*body_byte_count);
            }
            Message::MergedBlockMetaRequest {
                request_id,
                app_id,
                shuffle_id,
                shuffle_merge_id,
                reduce_id,
            } => {
                out.put_i64(*request_id);
                out.put_string(app_id);
                out.put_i32(*shuffle_id);
                out.put_i32(*shuffle_merge_id);
                out.put_i32(*reduce_id);
            }
            Message::MergedBlockMetaSuccess {
                request_id,
                num_chunks,
                ..
            } => {
                out.put_i64(*request_id);
                out.put_i32(*num_chunks);
            }
        }
    }

    /// Decodes one frame's payload: everything after the 8-byte length (type byte first).
    pub fn decode(payload: Bytes) -> Result<Message, DecodeError> {
        let mut r = Reader::new(&payload);
        let type_id = r.u8("message type")?;
        let body_at = |r: &Reader<'_>| payload.slice(r.position()..);
        let msg = match type_id {
            0 => Message::ChunkFetchRequest {
                stream_id: r.i64("streamId")?,
                chunk_index: r.i32("chunkIndex")?,
            },
            1 => {
                let stream_id = r.i64("streamId")?;
                let chunk_index = r.i32("chunkIndex")?;
                Message::ChunkFetchSuccess {
                    stream_id,
                    chunk_index,
                    body: body_at(&r),
                }
            }
            2 => Message::ChunkFetchFailure {
                stream_id: r.i64("streamId")?,
                chunk_index: r.i32("chunkIndex")?,
                error: r.string("errorString")?,
            },
            3 | 4 => {
                let request_id = r.i64("requestId")?;
                // Java ignores the declared body length and takes the rest of the frame.
                let _ = r.i32("bodyLength")?;
                let body = body_at(&r);
                if type_id == 3 {
                    Message::RpcRequest { request_id, body }
                } else {
                    Message::RpcResponse { request_id, body }
                }
            }
            5 => Message::RpcFailure {
                request_id: r.i64("requestId")?,
                error: r.string("errorString")?,
            },
            6 => Message::StreamRequest {
                stream_id: r.string("streamId")?,
            },
            7 => Message::StreamResponse {
                stream_id: r.string("streamId")?,
                byte_count: r.i64("byteCount")?,
            },
            8 => Message::StreamFailure {
                stream_id: r.string("streamId")?,
                error: r.string("error")?,
            },
            9 => {
                let _ = r.i32("bodyLength")?;
                Message::OneWayMessage { body: body_at(&r) }
            }
            10 => {
                let request_id = r.i64("requestId")?;
                let meta = Bytes::copy_from_slice(r.bytes("meta")?);
                Message::UploadStream {
                    request_id,
                    meta,
                    body_byte_count: r.i64("bodyByteCount")?,
                }
            }
            11 => Message::MergedBlockMetaRequest {
                request_id: r.i64("requestId")?,
                app_id: r.string("appId")?,
                shuffle_id: r.i32("shuffleId")?,
                shuffle_merge_id: r.i32("shuffleMergeId")?,
                reduce_id: r.i32("reduceId")?,
            },
            12 => {
                let request_id = r.i64("requestId")?;
                let num_chunks = r.i32("numChunks")?;
                Message::MergedBlockMetaSuccess {
                    request_id,
                    num_chunks,
                    body: body_at(&r),
                }
            }
            other => return Err(DecodeError::UnknownMessageType(other as i8)),
        };
        Ok(msg)
    }
}

/// Frame header of a `ChunkFetchSuccess` whose `body_len` body bytes the caller sends itself.
pub fn chunk_success_header(stream_id: i64, chunk_index: i32, body_len: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(LENGTH_SIZE + 1 + 12);
    out.put_u64(LENGTH_SIZE as u64 + 1 + 12 + body_len);
    out.put_u8(1);
    out.put_i64(stream_id);
    out.put_i32(chunk_index);
    out
}

/// Frame of a `StreamResponse`; `byte_count` raw bytes must follow it on the wire.
pub fn stream_response_header(stream_id: &str, byte_count: u64) -> BytesMut {
    Message::StreamResponse {
        stream_id: stream_id.to_owned(),
        byte_count: i64::try_from(byte_count).unwrap_or(i64::MAX),
    }
    .encode()
}

/// Outcome of looking at the front of a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// Need more bytes.
    Incomplete,
    /// A whole frame of this total length (length prefix included) is buffered.
    Ready(usize),
}

/// Validates the length prefix at the start of `buf` against Java's rules (payload > 0 and
/// < 2^31-1) and the configured bound; says whether the whole frame is there.
pub fn check_frame(buf: &[u8], max_frame: usize) -> Result<FrameCheck, DecodeError> {
    if buf.len() < LENGTH_SIZE {
        return Ok(FrameCheck::Incomplete);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&buf[..LENGTH_SIZE]);
    let frame_len = u64::from_be_bytes(len);
    let payload = frame_len.wrapping_sub(LENGTH_SIZE as u64);
    if frame_len <= LENGTH_SIZE as u64 || payload >= i32::MAX as u64 {
        return Err(DecodeError::Invalid {
            what: "frame length",
            detail: format!("{frame_len} is outside (8, 2^31+7)"),
        });
    }
    if frame_len > max_frame as u64 {
        return Err(DecodeError::Invalid {
            what: "frame length",
            detail: format!(
                "{frame_len} bytes exceeds the limit of {max_frame} (--max-frame-size)"
            ),
        });
    }
    let frame_len = frame_len as usize;
    if buf.len() < frame_len {
        Ok(FrameCheck::Incomplete)
    } else {
        Ok(FrameCheck::Ready(frame_len))
    }
}
