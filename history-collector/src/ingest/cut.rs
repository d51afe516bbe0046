//! Where a growing event-log file can be cut so the stored prefix is consistent: after the
//! last newline of an uncompressed file, after the last whole unit of a compressed one (zstd
//! frame, lz4-java block, snappy-java chunk, lzf chunk). Only unit headers are read; the
//! payloads are skipped, so the cost does not depend on how much was appended.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::logdir::names::Codec;

/// Why no cut could be found.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt {codec:?} data at offset {offset}: {what}")]
    Corrupt {
        codec: Codec,
        offset: u64,
        what: &'static str,
    },
}

/// The largest `c` in `start..=end` such that bytes `..c` of `file` end on a consistent
/// boundary, given that `start` is one.
pub fn consistent_len(
    file: &File,
    start: u64,
    end: u64,
    codec: Option<Codec>,
) -> Result<u64, CutError> {
    if end <= start {
        return Ok(start);
    }
    match codec {
        None => last_newline(file, start, end),
        Some(c) => units(file, start, end, c),
    }
}

fn last_newline(file: &File, start: u64, end: u64) -> Result<u64, CutError> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut hi = end;
    while hi > start {
        let lo = hi.saturating_sub(CHUNK).max(start);
        let n = (hi - lo) as usize;
        file.read_exact_at(&mut buf[..n], lo)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(start)
}

/// Reads up to `buf.len()` bytes at `pos`, or fewer if the data ends first.
fn read_at(file: &File, buf: &mut [u8], pos: u64, end: u64) -> std::io::Result<usize> {
    let n = ((end.saturating_sub(pos)) as usize).min(buf.len());
    file.read_exact_at(&mut buf[..n], pos)?;
    Ok(n)
}

fn units(file: &File, start: u64, end: u64, codec: Codec) -> Result<u64, CutError> {
    let mut pos = start;
    loop {
        match unit_len(file, pos, end, codec)? {
            Some(len) if pos + len <= end => pos += len,
            _ => return Ok(pos),
        }
    }
}

/// The length of the unit starting at `pos`, or `None` if its header is not all there yet.
fn unit_len(file: &File, pos: u64, end: u64, codec: Codec) -> Result<Option<u64>, CutError> {
    let corrupt = |what| CutError::Corrupt {
        codec,
        offset: pos,
        what,
    };
    let mut h = [0u8; 21];
    match codec {
        Codec::Lz4 => {
            if read_at(file, &mut h, pos, end)? < 21 {
                return Ok(None);
            }
            if &h[..8] != b"LZ4Block" {
                return Err(corrupt("no LZ4Block magic"));
            }
            if !matches!(h[8] & 0xF0, 0x10 | 0x20) {
                return Err(corrupt("unknown lz4 block method"));
            }
            let clen = u32::from_le_bytes([h[9], h[10], h[11], h[12]]);
            if clen > 1 << 30 {
                return Err(corrupt("lz4 block length out of range"));
            }
            Ok(Some(21 + clen as u64))
        }
        Codec::Snappy => {
            const MAGIC: &[u8] = b"\x82SNAPPY\x00";
            let n = read_at(file, &mut h[..16], pos, end)?;
            if n >= 1 && h[0] == 0x82 {
                if n < 16 {
                    return Ok(None);
                }
                if &h[..8] != MAGIC {
                    return Err(corrupt("bad snappy-java stream header"));
                }
                return Ok(Some(16));
            }
            if n < 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            if !(0..=1 << 30).contains(&len) {
                return Err(corrupt("snappy chunk length out of range"));
            }
            Ok(Some(4 + len as u64))
        }
        Codec::Lzf => {
            let n = read_at(file, &mut h[..7], pos, end)?;
            if n < 5 {
                return Ok(None);
            }
            if &h[..2] != b"ZV" {
                return Err(corrupt("no ZV chunk signature"));
            }
            let len = u16::from_be_bytes([h[3], h[4]]) as u64;
            match h[2] {
                0 => Ok(Some(5 + len)),
                1 if n < 7 => Ok(None),
                1 => Ok(Some(7 + len)),
                _ => Err(corrupt("unknown lzf chunk type")),
            }
        }
        Codec::Zstd => zstd_frame_len(file, pos, end).map_err(|e| match e {
            ZstdErr::Io(e) => CutError::Io(e),
            ZstdErr::Corrupt(what) => corrupt(what),
        }),
    }
}

enum ZstdErr {
    Io(std::io::Error),
    Corrupt(&'static str),
}

impl From<std::io::Error> for ZstdErr {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Walks one zstd frame (RFC 8878) by its block headers.
fn zstd_frame_len(file: &File, pos: u64, end: u64) -> Result<Option<u64>, ZstdErr> {
    let mut h = [0u8; 18];
    let n = read_at(file, &mut h, pos, end)?;
    if n < 4 {
        return Ok(None);
    }
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        if n < 8 {
            return Ok(None);
        }
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
        return Ok(Some(8 + size));
    }
    if magic != 0xFD2F_B528 {
        return Err(ZstdErr::Corrupt("no zstd frame magic"));
    }
    if n < 5 {
        return Ok(None);
    }
    let fhd = h[4];
    if fhd & 0x08 != 0 {
        return Err(ZstdErr::Corrupt("reserved bit set in zstd frame header"));
    }
    let single_segment = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let did_size = [0u64, 1, 2, 4][(fhd & 0x03) as usize];
    let fcs_size = match fhd >> 6 {
        0 => u64::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut p = pos + 5 + u64::from(!single_segment) + did_size + fcs_size;
    loop {
        let mut bh = [0u8; 3];
        if read_at(file, &mut bh, p, end)? < 3 {
            return Ok(None);
        }
        let v = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
        let last = v & 1 != 0;
        let btype = (v >> 1) & 3;
        let bsize = (v >> 3) as u64;
        let content = match btype {
            0 | 2 => bsize,
            1 => 1,
            _ => return Err(ZstdErr::Corrupt("reserved zstd block type")),
        };
        p += 3 + content;
        if p > end {
            return Ok(None);
        }
        if last {
            if checksum {
                p += 4;
            }
            return Ok(Some(p - pos));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(data).unwrap();
        let f = t.reopen().unwrap();
        (t, f)
    }

    #[test]
    fn newline_cut() {
        let (_t, f) = file_with(b"{\"a\":1}\n{\"b\":2}\n{\"c\"");
        assert_eq!(consistent_len(&f, 0, 20, None).unwrap(), 16);
        assert_eq!(consistent_len(&f, 16, 20, None).unwrap(), 16);
        assert_eq!(consistent_len(&f, 0, 5, None).unwrap(), 0);
    }

    #[test]
    fn zstd_frames() {
        let mut data = Vec::new();
        let mut frames = Vec::new();
        for i in 0..5 {
            let text = format!("{{\"Event\":\"E{i}\"}}\n").repeat(100 * (i + 1));
            data.extend(zstd::encode_all(text.as_bytes(), 3).unwrap());
            frames.push(data.len() as u64);
        }
        let (_t, f) = file_with(&data);
        let total = data.len() as u64;
        assert_eq!(
            consistent_len(&f, 0, total, Some(Codec::Zstd)).unwrap(),
            total
        );
        assert_eq!(
            consistent_len(&f, 0, total - 1, Some(Codec::Zstd)).unwrap(),
            frames[3]
        );
        assert_eq!(
            consistent_len(&f, frames[0], frames[1] + 2, Some(Codec::Zstd)).unwrap(),
            frames[1]
        );
        let (_t2, g) = file_with(b"garbage garbage");
        assert!(matches!(
            consistent_len(&g, 0, 15, Some(Codec::Zstd)),
            Err(CutError::Corrupt { .. })
        ));
    }

    #[test]
    fn lz4_blocks() {
        let mut data = Vec::new();
        for len in [10u32, 0, 7] {
            data.extend_from_slice(b"LZ4Block");
            data.push(0x10);
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&[0; 4]);
            data.extend(std::iter::repeat_n(b'x', len as usize));
        }
        let (_t, f) = file_with(&data);
        let total = data.len() as u64;
        assert_eq!(
            consistent_len(&f, 0, total, Some(Codec::Lz4)).unwrap(),
            total
        );
        assert_eq!(
            consistent_len(&f, 0, total - 1, Some(Codec::Lz4)).unwrap(),
            31 + 21
        );
    }

    #[test]
    fn snappy_and_lzf_chunks() {
        let mut data = b"\x82SNAPPY\x00\0\0\0\x01\0\0\0\x01".to_vec();
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"abc");
        let (_t, f) = file_with(&data);
        assert_eq!(consistent_len(&f, 0, 23, Some(Codec::Snappy)).unwrap(), 23);
        assert_eq!(consistent_len(&f, 0, 22, Some(Codec::Snappy)).unwrap(), 16);
        let lzf = b"ZV\x00\x00\x03abcZV\x01\x00\x02\x00\x09xy";
        let (_t2, g) = file_with(lzf);
        assert_eq!(
            consistent_len(&g, 0, lzf.len() as u64, Some(Codec::Lzf)).unwrap(),
            lzf.len() as u64
        );
        assert_eq!(consistent_len(&g, 0, 10, Some(Codec::Lzf)).unwrap(), 8);
    }
}
