//! Primitive encoders and a bounds-checked reader for Spark's network encodings
//! (network-common `Encoders`): big-endian integers, length-prefixed UTF-8 strings and arrays.
//! The reader never trusts a declared count: it checks it against the bytes left before it
//! allocates anything, so hostile input costs at most its own size.

use bytes::{BufMut, BytesMut};

/// Why bytes could not be decoded. Carries enough to name the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {what}: needs {need} more bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("negative length {len} for {what}")]
    NegativeLength { what: &'static str, len: i64 },
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
    #[error("unknown message type {0}")]
    UnknownMessageType(i8),
    #[error("unknown block transfer message type {0}")]
    UnknownBlockTransferType(u8),
    #[error("empty message")]
    Empty,
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// Reads big-endian fields from a byte slice, refusing to read past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The rest of the input, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                have: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A count or length that must be non-negative and describe at most the bytes left
    /// (each element taking at least `min_elem_size` bytes).
    fn count(&mut self, what: &'static str, min_elem_size: usize) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Err(DecodeError::NegativeLength {
                what,
                len: n.into(),
            });
        }
        let n = n as usize;
        let need = n.saturating_mul(min_elem_size);
        if need > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                need,
                have: self.remaining(),
            });
        }
        Ok(n)
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(what, 1)?;
        self.take(n, what)
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { what })
    }

    pub fn string_array(&mut self, what: &'static str) -> Result<Vec<String>, DecodeError> {
        let n = self.count(what, 4)?;
        (0..n).map(|_| self.string(what)).collect()
    }

    pub fn int_array(&mut self, what: &'static str) -> Result<Vec<i32>, DecodeError> {
        let n = self.count(what, 4)?;
        (0..n).map(|_| self.i32(what)).collect()
    }

    pub fn long_array(&mut self, what: &'static str) -> Result<Vec<i64>, DecodeError> {
        let n = self.count(what, 8)?;
        (0..n).map(|_| self.i64(what)).collect()
    }

    pub fn int_matrix(&mut self, what: &'static str) -> Result<Vec<Vec<i32>>, DecodeError> {
        let n = self.count(what, 4)?;
        (0..n).map(|_| self.int_array(what)).collect()
    }
}

/// Writes the same encodings; lengths that do not fit an i32 are a programming error on the
/// sending side and are clamped by construction (callers only encode bounded data).
pub trait WireWrite {
    fn put_string(&mut self, s: &str);
    fn put_bytes_prefixed(&mut self, b: &[u8]);
    fn put_string_array(&mut self, a: &[String]);
    fn put_int_array(&mut self, a: &[i32]);
    fn put_long_array(&mut self, a: &[i64]);
    fn put_int_matrix(&mut self, a: &[Vec<i32>]);
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl WireWrite for BytesMut {
    fn put_string(&mut self, s: &str) {
        self.put_bytes_prefixed(s.as_bytes());
    }
    fn put_bytes_prefixed(&mut self, b: &[u8]) {
        self.put_i32(len_i32(b.len()));
        self.put_slice(b);
    }
    fn put_string_array(&mut self, a: &[String]) {
        self.put_i32(len_i32(a.len()));
        for s in a {
            self.put_string(s);
        }
    }
    fn put_int_array(&mut self, a: &[i32]) {
        self.put_i32(len_i32(a.len()));
        for v in a {
            self.put_i32(*v);
        }
    }
    fn put_long_array(&mut self, a: &[i64]) {
        self.put_i32(len_i32(a.len()));
        for v in a {
            self.put_i64(*v);
        }
    }
    fn put_int_matrix(&mut self, a: &[Vec<i32>]) {
        self.put_i32(len_i32(a.len()));
        for inner in a {
            self.put_int_array(inner);
        }
    }
}

/// Encoded size of a String field.
pub fn string_len(s: &str) -> usize {
    4 + s.len()
}
