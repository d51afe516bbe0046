//! The compression codecs of Spark's event logs: the one table of their names (used by
//! ingest and serving alike) and their decoders, as `Read` adapters.
//!
//! Spark does not use the standard framings: `.lz4` is lz4-java's `LZ4BlockOutputStream`
//! (a 21-byte header per block), `.snappy` is xerial's `SnappyOutputStream` (a 16-byte stream
//! header, then length-prefixed raw snappy chunks), `.lzf` is ning's chunked LZF, and `.zstd`
//! is a run of standard zstd frames (one per flush). The block codecs themselves come from
//! lz4_flex, snap and zstd; only the thin framing is parsed here, so a truncated last block
//! surfaces as an `UnexpectedEof` error after every whole block has been delivered.

use std::io::{self, Read};

/// Compression codecs, by the short names Spark puts in event-log suffixes
/// (`CompressionCodec.shortCompressionCodecNames`): nothing else is a Spark log's suffix.
/// An uncompressed log is `Option::<Codec>::None` wherever a codec is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Lz4,
    Lzf,
    Snappy,
    Zstd,
}

impl Codec {
    pub fn from_suffix(s: &str) -> Option<Self> {
        match s {
            "lz4" => Some(Self::Lz4),
            "lzf" => Some(Self::Lzf),
            "snappy" => Some(Self::Snappy),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The codec a file name says (its last dotted part, after dropping `.inprogress` and
    /// `.compact` as Spark's `EventLogFileWriter.codecName` does); `None`: uncompressed.
    pub fn of_file_name(name: &str) -> Option<Self> {
        let name = name.rsplit('/').next().unwrap_or(name);
        let base = name.strip_suffix(".inprogress").unwrap_or(name);
        let base = base.strip_suffix(".compact").unwrap_or(base);
        Self::from_suffix(base.rsplit_once('.')?.1)
    }

    /// Wraps `inner` in this codec's decoder.
    pub fn reader<'a, R: Read + 'a>(self, inner: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Codec::Lz4 => Box::new(BlockReader::new(inner, Lz4Blocks)),
            Codec::Lzf => Box::new(BlockReader::new(inner, LzfBlocks)),
            Codec::Snappy => Box::new(BlockReader::new(inner, SnappyBlocks { header_seen: false })),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
        })
    }
}

/// `inner` decoded as `codec` says (passed through when uncompressed).
pub fn decoder<'a, R: Read + 'a>(codec: Option<Codec>, inner: R) -> io::Result<Box<dyn Read + 'a>> {
    match codec {
        Some(c) => c.reader(inner),
        None => Ok(Box::new(inner)),
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One block framing: reads the next block from `src` and decodes it into `out`.
/// Returns false at a clean end of stream.
trait Blocks {
    fn next_block(&mut self, src: &mut dyn Read, out: &mut Vec<u8>) -> io::Result<bool>;
}

/// Serves decoded blocks through `Read`.
struct BlockReader<R, B> {
    src: R,
    blocks: B,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read, B: Blocks> BlockReader<R, B> {
    fn new(src: R, blocks: B) -> Self {
        BlockReader {
            src,
            blocks,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl<R: Read, B: Blocks> Read for BlockReader<R, B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.buf.clear();
            self.pos = 0;
            if !self.blocks.next_block(&mut self.src, &mut self.buf)? {
                self.done = true;
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads exactly `buf.len()` bytes, or returns Ok(false) if the stream ends before the
/// first byte (a clean end); a partial read is an `UnexpectedEof`.
fn read_or_end(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Blocks larger than this are refused as corrupt rather than allocated.
const MAX_BLOCK: usize = 64 << 20;

/// lz4-java `LZ4BlockOutputStream`: "LZ4Block", token (method | level), compressed length,
/// original length, checksum (all little-endian). An empty block ends one stream; another
/// may follow (Spark reads concatenated streams).
struct Lz4Blocks;

impl Blocks for Lz4Blocks {
    fn next_block(&mut self, src: &mut dyn Read, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let mut h = [0u8; 21];
            if !read_or_end(src, &mut h)? {
                return Ok(false);
            }
            if &h[..8] != b"LZ4Block" {
                return Err(corrupt("lz4: bad block magic"));
            }
            let method = h[8] & 0xf0;
            let clen = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
            let olen = u32::from_le_bytes([h[13], h[14], h[15], h[16]]) as usize;
            if clen > MAX_BLOCK || olen > MAX_BLOCK {
                return Err(corrupt("lz4: block length out of range"));
            }
            if olen == 0 {
                // end-of-stream marker; a concatenated stream may follow
                continue;
            }
            let mut comp = vec![0u8; clen];
            src.read_exact(&mut comp)?;
            match method {
                0x10 => {
                    if clen != olen {
                        return Err(corrupt("lz4: raw block lengths differ"));
                    }
                    out.extend_from_slice(&comp);
                }
                0x20 => {
                    out.resize(olen, 0);
                    let n = lz4_flex::block::decompress_into(&comp, out)
                        .map_err(|e| corrupt(&format!("lz4: {e}")))?;
                    if n != olen {
                        return Err(corrupt("lz4: block decompressed to the wrong length"));
                    }
                }
                _ => return Err(corrupt("lz4: unknown block method")),
            }
            return Ok(true);
        }
    }
}

/// xerial snappy-java `SnappyOutputStream`: an 8-byte magic and two big-endian version
/// ints, then `[int32 BE length][raw snappy]` chunks.
struct SnappyBlocks {
    header_seen: bool,
}

const SNAPPY_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

impl Blocks for SnappyBlocks {
    fn next_block(&mut self, src: &mut dyn Read, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let mut len = [0u8; 4];
            if !read_or_end(src, &mut len)? {
                return Ok(false);
            }
            if !self.header_seen || len == SNAPPY_MAGIC[..4] {
                // the stream header (also found again where streams were concatenated)
                let mut rest = [0u8; 12];
                src.read_exact(&mut rest)?;
                if len != SNAPPY_MAGIC[..4] || rest[..4] != SNAPPY_MAGIC[4..] {
                    return Err(corrupt("snappy: bad stream header"));
                }
                self.header_seen = true;
                continue;
            }
            let clen = u32::from_be_bytes(len) as usize;
            if clen > MAX_BLOCK {
                return Err(corrupt("snappy: chunk length out of range"));
            }
            let mut comp = vec![0u8; clen];
            src.read_exact(&mut comp)?;
            let olen =
                snap::raw::decompress_len(&comp).map_err(|e| corrupt(&format!("snappy: {e}")))?;
            if olen > MAX_BLOCK {
                return Err(corrupt("snappy: chunk length out of range"));
            }
            out.resize(olen, 0);
            snap::raw::Decoder::new()
                .decompress(&comp, out)
                .map_err(|e| corrupt(&format!("snappy: {e}")))?;
            return Ok(true);
        }
    }
}

/// ning compress-lzf chunks: "ZV", type 0 (stored: u16 BE length) or 1 (compressed:
/// u16 BE compressed length, u16 BE original length), then the body.
struct LzfBlocks;

impl Blocks for LzfBlocks {
    fn next_block(&mut self, src: &mut dyn Read, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut h = [0u8; 5];
        if !read_or_end(src, &mut h)? {
            return Ok(false);
        }
        if h[0] != b'Z' || h[1] != b'V' {
            return Err(corrupt("lzf: bad chunk magic"));
        }
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        match h[2] {
            0 => {
                out.resize(len, 0);
                src.read_exact(out)?;
            }
            1 => {
                let mut o = [0u8; 2];
                src.read_exact(&mut o)?;
                let olen = u16::from_be_bytes(o) as usize;
                let mut comp = vec![0u8; len];
                src.read_exact(&mut comp)?;
                lzf_decompress(&comp, olen, out)?;
            }
            _ => return Err(corrupt("lzf: unknown chunk type")),
        }
        Ok(true)
    }
}

/// The LZF algorithm: a control byte below 32 starts a literal run of ctrl+1 bytes;
/// otherwise it is a back reference of length (ctrl >> 5) + 2 (7 means "plus next byte").
fn lzf_decompress(inp: &[u8], olen: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let bad = || corrupt("lzf: corrupt chunk");
    out.reserve(olen);
    let mut i = 0;
    while i < inp.len() {
        let ctrl = inp[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = inp.get(i..i + run).ok_or_else(bad)?;
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *inp.get(i).ok_or_else(bad)? as usize;
                i += 1;
            }
            len += 2;
            let back = ((ctrl & 0x1f) << 8) + *inp.get(i).ok_or_else(bad)? as usize + 1;
            i += 1;
            if back > out.len() {
                return Err(bad());
            }
            let start = out.len() - back;
            // overlapping copies are the point of LZ77, so byte by byte
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > olen {
            return Err(bad());
        }
    }
    if out.len() != olen {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        codec.reader(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn codec_names_follow_spark() {
        assert_eq!(
            Codec::of_file_name("app-1.lz4.inprogress"),
            Some(Codec::Lz4)
        );
        assert_eq!(Codec::of_file_name("events_1_app.zstd"), Some(Codec::Zstd));
        assert_eq!(
            Codec::of_file_name("eventlog_v2_app/events_2_app.snappy.compact"),
            Some(Codec::Snappy)
        );
        assert_eq!(Codec::of_file_name("local-1700000000000"), None);
        assert_eq!(Codec::of_file_name("local-1700000000000.inprogress"), None);
        assert_eq!(Codec::of_file_name("x.lzf"), Some(Codec::Lzf));
        // not a name Spark's codecs have
        assert_eq!(Codec::of_file_name("x.zst"), None);
    }

    #[test]
    fn lz4_blocks_raw_and_compressed_with_concatenation() {
        let payload = b"hello hello hello hello hello hello\n".repeat(10);
        let comp = lz4_flex::block::compress(&payload);
        let mut f = Vec::new();
        let mut block = |method: u8, body: &[u8], olen: usize| {
            f.extend_from_slice(b"LZ4Block");
            f.push(method);
            f.extend_from_slice(&(body.len() as u32).to_le_bytes());
            f.extend_from_slice(&(olen as u32).to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(body);
        };
        block(0x20 | 4, &comp, payload.len());
        block(0x10, b"raw\n", 4);
        block(0x10, b"", 0);
        block(0x10, b"more\n", 5);
        let mut want = payload.clone();
        want.extend_from_slice(b"raw\nmore\n");
        assert_eq!(read_all(Codec::Lz4, &f).unwrap(), want);
        // a block cut short is an error, after the earlier blocks were delivered
        let mut r = Codec::Lz4.reader(&f[..f.len() - 2]).unwrap();
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
        assert!(got.starts_with(&payload));
    }

    #[test]
    fn snappy_stream_header_and_chunks() {
        let mut f = SNAPPY_MAGIC.to_vec();
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&1u32.to_be_bytes());
        for part in [&b"first line\n"[..], b"second line\n"] {
            let c = snap::raw::Encoder::new().compress_vec(part).unwrap();
            f.extend_from_slice(&(c.len() as u32).to_be_bytes());
            f.extend_from_slice(&c);
        }
        assert_eq!(
            read_all(Codec::Snappy, &f).unwrap(),
            b"first line\nsecond line\n"
        );
        assert!(read_all(Codec::Snappy, b"garbage garbage garbage").is_err());
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abcabcabc": literal "abc", then a 6-byte back reference at distance 3
        let comp = [2u8, b'a', b'b', b'c', (4 << 5), 2];
        let mut f = vec![b'Z', b'V', 1];
        f.extend_from_slice(&(comp.len() as u16).to_be_bytes());
        f.extend_from_slice(&9u16.to_be_bytes());
        f.extend_from_slice(&comp);
        f.extend_from_slice(&[b'Z', b'V', 0, 0, 2, b'!', b'\n']);
        assert_eq!(read_all(Codec::Lzf, &f).unwrap(), b"abcabcabc!\n");
        f[12] = 200; // back reference before the start of the output
        assert!(read_all(Codec::Lzf, &f).is_err());
    }

    #[test]
    fn zstd_concatenated_frames() {
        let mut f = zstd::encode_all(&b"one\n"[..], 3).unwrap();
        f.extend(zstd::encode_all(&b"two\n"[..], 3).unwrap());
        assert_eq!(read_all(Codec::Zstd, &f).unwrap(), b"one\ntwo\n");
    }
}
