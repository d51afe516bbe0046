//! A streaming tar reader for untrusted archives, with every allocation bounded.
//!
//! The `tar` crate reads a GNU long name or a PAX header whole into memory, whatever size its
//! header declares, so a 1 MB gzip of a 1 GiB long name cost gigabytes of memory (and a 1 GiB
//! PAX header half a minute of CPU). This reader refuses an extension record above a fixed
//! size before reading it, and walks the archive's structure itself so that what it checks is
//! exactly what it extracts: ustar and GNU headers (octal or base-256 sizes, the ustar name
//! prefix), GNU long names (`L`), and PAX `path` and `size` records (`x`); global PAX headers
//! (`g`) and GNU long link names (`K`) are read within the same bound and otherwise ignored.
//! It reports every other entry type as it is, and the caller decides what to refuse.

use std::io::Read;

/// The largest GNU long name accepted (the names a bundle may use are far shorter).
pub const MAX_LONG_NAME: u64 = 4096;
/// The largest PAX extended header accepted.
pub const MAX_PAX_HEADER: u64 = 64 << 10;
/// Most extension headers (long names, PAX) in a row before the entry they describe.
const MAX_EXTENSIONS: usize = 8;

/// What kind of entry a header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// Any other type flag (GNU sparse, volume labels, vendor extensions, ...).
    Other(u8),
}

/// One entry's header, with long names and PAX records applied.
#[derive(Debug)]
pub struct Entry {
    /// The raw name bytes (at most [`MAX_LONG_NAME`]).
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Bytes of data that follow the header.
    pub size: u64,
}

/// Why an archive cannot be read. Messages carry numbers and fixed words, never archive bytes.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the archive ends in the middle of an entry")]
    Truncated,
    #[error("header checksum mismatch at byte {offset} (not a tar archive, or damaged)")]
    Checksum { offset: u64 },
    #[error("invalid number in the {field} field of the header at byte {offset}")]
    Number { field: &'static str, offset: u64 },
    #[error("{what} of {size} bytes exceeds the {limit}-byte limit")]
    TooBig {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("malformed PAX extended header at byte {offset}")]
    Pax { offset: u64 },
    #[error("more than {MAX_EXTENSIONS} extension headers before one entry")]
    Extensions,
}

/// Reads entries one after another from the decompressed archive `R`. Read the current
/// entry's data through [`std::io::Read`]; whatever is left of it is skipped by the next
/// [`TarReader::next_entry`].
pub struct TarReader<R> {
    inner: R,
    /// Bytes of the archive read so far (for messages).
    offset: u64,
    /// Data bytes of the current entry not read yet.
    left: u64,
    /// Padding after the current entry's data.
    pad: u64,
    ended: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            left: 0,
            pad: 0,
            ended: false,
        }
    }

    /// Gives the underlying reader back (to drain what follows the archive).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` at the end-of-archive marker (or at a clean end of input).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.ended {
            return Ok(None);
        }
        let skip = self.left + self.pad;
        self.skip(skip)?;
        self.left = 0;
        self.pad = 0;
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        for _ in 0..=MAX_EXTENSIONS {
            let at = self.offset;
            let mut block = [0u8; 512];
            if !self.read_block(&mut block)? {
                self.ended = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.ended = true;
                return Ok(None);
            }
            check_sum(&block, at)?;
            let size = number(&block[124..136], "size", at)?;
            let flag = block[156];
            match flag {
                b'L' | b'K' => {
                    let data = self.read_extension(size, MAX_LONG_NAME, "GNU long name")?;
                    if flag == b'L' {
                        long_name = Some(trim_nul(data));
                    }
                }
                b'x' | b'g' => {
                    let data = self.read_extension(size, MAX_PAX_HEADER, "PAX header")?;
                    if flag == b'x' {
                        parse_pax(&data, at, &mut pax_path, &mut pax_size)?;
                    }
                }
                _ => {
                    let size = pax_size.unwrap_or(size);
                    let name = match pax_path.or(long_name) {
                        Some(n) => n,
                        None => ustar_name(&block),
                    };
                    if name.len() as u64 > MAX_LONG_NAME {
                        return Err(TarError::TooBig {
                            what: "entry name",
                            size: name.len() as u64,
                            limit: MAX_LONG_NAME,
                        });
                    }
                    let kind = match flag {
                        b'0' | b'\0' | b'7' => Kind::File,
                        b'5' => Kind::Dir,
                        b'2' => Kind::Symlink,
                        b'1' => Kind::HardLink,
                        b'3' => Kind::CharDevice,
                        b'4' => Kind::BlockDevice,
                        b'6' => Kind::Fifo,
                        other => Kind::Other(other),
                    };
                    // links and devices carry no data whatever their size field says; the
                    // caller refuses them before reading anyway
                    self.left = size;
                    self.pad = padding(size);
                    return Ok(Some(Entry { name, kind, size }));
                }
            }
        }
        Err(TarError::Extensions)
    }

    /// Reads one 512-byte block; `false` at a clean end of input before its first byte.
    fn read_block(&mut self, block: &mut [u8; 512]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < 512 {
            match self.inner.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += 512;
        Ok(true)
    }

    /// Reads an extension record's data (refusing it above `limit` before reading a byte)
    /// and its padding.
    fn read_extension(
        &mut self,
        size: u64,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, TarError> {
        if size > limit {
            return Err(TarError::TooBig { what, size, limit });
        }
        let mut data = vec![0u8; size as usize];
        self.inner.read_exact(&mut data).map_err(eof_is_truncated)?;
        self.offset += size;
        self.skip(padding(size))?;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        if n == 0 {
            return Ok(());
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        self.offset += copied;
        if copied < n {
            return Err(TarError::Truncated);
        }
        Ok(())
    }
}

impl<R: Read> Read for TarReader<R> {
    /// Reads the current entry's data; an archive that ends before the entry does is an error.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of an entry",
            ));
        }
        self.left -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn eof_is_truncated(e: std::io::Error) -> TarError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        TarError::Truncated
    } else {
        TarError::Io(e)
    }
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

/// The header checksum: the sum of its bytes with the checksum field taken as spaces; tar
/// implementations have summed them as unsigned or signed bytes, and both are accepted.
fn check_sum(block: &[u8; 512], offset: u64) -> Result<(), TarError> {
    let stored = number(&block[148..156], "checksum", offset)?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
        Ok(())
    } else {
        Err(TarError::Checksum { offset })
    }
}

/// A numeric header field: octal digits (leading spaces or zeros, ended by NUL or space), or
/// GNU's base-256 form (high bit of the first byte set; negative values are refused).
fn number(field: &[u8], name: &'static str, offset: u64) -> Result<u64, TarError> {
    let bad = || TarError::Number {
        field: name,
        offset,
    };
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(bad());
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(bad)? + u64::from(b);
        }
        return Ok(v);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    // an all-blank field is zero
    let mut v: u64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return Err(bad());
        }
        v = v.checked_mul(8).ok_or_else(bad)? + u64::from(b - b'0');
    }
    Ok(v)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The name of a plain header: `name`, with the POSIX ustar `prefix` in front when present.
fn ustar_name(block: &[u8; 512]) -> Vec<u8> {
    let name = cstr(&block[0..100]);
    let posix = &block[257..263] == b"ustar\0";
    let prefix = if posix { cstr(&block[345..500]) } else { &[] };
    if prefix.is_empty() {
        name.to_vec()
    } else {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(name);
        full
    }
}

/// Parses PAX records (`<len> <key>=<value>\n`), keeping `path` and `size`.
fn parse_pax(
    data: &[u8],
    offset: u64,
    path: &mut Option<Vec<u8>>,
    size: &mut Option<u64>,
) -> Result<(), TarError> {
    let bad = || TarError::Pax { offset };
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => *path = Some(value.to_vec()),
            b"size" => {
                let v = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(bad)?;
                *size = Some(v);
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], flag: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn entry(out: &mut Vec<u8>, name: &[u8], flag: u8, data: &[u8]) {
        out.extend_from_slice(&header(name, flag, data.len() as u64));
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(
            0u8,
            padding(data.len() as u64) as usize,
        ));
    }

    /// (name, kind, data) of one entry read back.
    type ReadBack = (Vec<u8>, Kind, Vec<u8>);

    fn all(tar: &[u8]) -> Result<Vec<ReadBack>, TarError> {
        let mut r = TarReader::new(tar);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            if e.kind == Kind::File {
                r.read_to_end(&mut data)?;
            }
            out.push((e.name, e.kind, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_the_tar_crates_output_the_same_way() {
        // GNU long names, a PAX path, ustar prefixes: as the tar crate writes them
        let long = format!("{}/file.txt", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("a.txt", &b"alpha"[..]), (&long, b"beta"), ("dir/c", b"")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "x/y/z.bin", &b"xyz"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let got = all(&tar).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|(n, _, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(names, ["a.txt", long.as_str(), "dir/c", "x/y/z.bin"]);
        assert_eq!(got[1].2, b"beta");
        assert_eq!(got[3].2, b"xyz");
    }

    #[test]
    fn pax_path_and_size_apply_to_the_next_entry() {
        let mut tar = Vec::new();
        let rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        let pax = format!("{}{}", rec("path", "from/pax.txt"), rec("size", "4"));
        entry(&mut tar, b"PaxHeader", b'x', pax.as_bytes());
        // the ustar size field says 9, PAX says 4: PAX wins, as in every tar
        let mut h = header(b"short", b'0', 9);
        h[124..136].copy_from_slice(b"00000000011\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(b"data");
        tar.extend(std::iter::repeat_n(0u8, 508));
        tar.extend(std::iter::repeat_n(0u8, 1024));
        let got = all(&tar).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"from/pax.txt");
        assert_eq!(got[0].2, b"data");
    }

    #[test]
    fn oversized_extensions_are_refused_before_they_are_read() {
        // a header claiming a 1 GiB long name, followed by nothing: refused at the header
        let mut tar = header(b"././@LongLink", b'L', 1 << 30).to_vec();
        tar.extend(std::iter::repeat_n(b'a', 512));
        match all(&tar) {
            Err(TarError::TooBig { what, size, .. }) => {
                assert_eq!((what, size), ("GNU long name", 1 << 30))
            }
            other => panic!("{other:?}"),
        }
        let tar = header(b"pax", b'x', 1 << 30).to_vec();
        assert!(matches!(all(&tar), Err(TarError::TooBig { .. })));
        let tar = header(b"g", b'g', MAX_PAX_HEADER + 1).to_vec();
        assert!(matches!(all(&tar), Err(TarError::TooBig { .. })));
    }

    #[test]
    fn damaged_headers_and_endless_extension_chains() {
        let mut h = header(b"a", b'0', 1);
        h[0] = b'b';
        assert!(matches!(all(&h), Err(TarError::Checksum { .. })));
        let mut tar = Vec::new();
        for _ in 0..20 {
            entry(&mut tar, b"L", b'L', b"name");
        }
        assert!(matches!(all(&tar), Err(TarError::Extensions)));
        let mut tar = Vec::new();
        entry(&mut tar, b"p", b'x', b"99 path=x\n");
        assert!(matches!(all(&tar), Err(TarError::Pax { .. })));
        let mut tar = header(b"f", b'0', 1000).to_vec();
        tar.extend_from_slice(&[1u8; 10]);
        let mut r = TarReader::new(&tar[..]);
        r.next_entry().unwrap().unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn base256_sizes() {
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "size", 0).unwrap(),
            256
        );
        assert!(number(&[0xff; 12], "size", 0).is_err());
        assert!(number(b"12x\0", "size", 0).is_err());
        assert_eq!(number(b"   17 \0", "size", 0).unwrap(), 15);
    }
}
