//! The IDX file format, which MNIST, Fashion-MNIST, EMNIST and KMNIST all use: a 4-byte
//! magic (two zero bytes, the element type, the number of dimensions), each dimension as
//! a big-endian `u32`, then the elements in row-major order. Only unsigned bytes (type
//! `0x08`) are read: every MNIST-family file stores its pixels and labels that way.
//!
//! Files may be gzip-compressed (recognised by their first two bytes, whatever their
//! name). Every size is checked before anything is allocated, so a corrupt or hostile
//! header is an error naming the file, never an abort.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The element type code for unsigned bytes.
const UBYTE: u8 = 0x08;
/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// More dimensions than any image set uses: a header claiming more is corrupt.
const MAX_DIMS: usize = 8;

/// An n-dimensional array of bytes read from (or to be written to) an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (`[count]` for labels, `[count, rows, cols]` for
    /// images).
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

fn io_err(path: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        op: "idx",
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Reads the header (after the magic) and the elements from `r`, then checks that
/// nothing follows them.
fn read_body(r: &mut impl Read, path: &str) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    read_exact(r, &mut magic, path, "the 4-byte magic")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(io_err(
            path,
            format!(
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 <dims>)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != UBYTE {
        return Err(io_err(
            path,
            format!(
                "element type 0x{:02x} is not supported (only unsigned bytes, 0x08, as in every MNIST-family file)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(io_err(
            path,
            format!("{ndim} dimensions in the header (expected 1 to {MAX_DIMS})"),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut len: usize = 1;
    for i in 0..ndim {
        let mut b = [0u8; 4];
        read_exact(r, &mut b, path, &format!("dimension {i} of the header"))?;
        let d = u32::from_be_bytes(b) as usize;
        len = len
            .checked_mul(d)
            .ok_or_else(|| io_err(path, format!("dimensions {dims:?} x {d} overflow")))?;
        dims.push(d);
    }
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| {
        io_err(
            path,
            format!("dimensions {dims:?} need {len} bytes, which cannot be allocated"),
        )
    })?;
    let got = r
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(|e| io_err(path, format!("reading the elements: {e}")))?;
    if got < len {
        return Err(io_err(
            path,
            format!("truncated: the header {dims:?} promises {len} bytes of elements, the file holds {got}"),
        ));
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(IdxArray { dims, data }),
        Ok(_) => Err(io_err(
            path,
            format!("bytes follow the {len} elements that the header {dims:?} promises"),
        )),
        Err(e) => Err(io_err(path, format!("reading past the elements: {e}"))),
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &str, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            io_err(path, format!("truncated: the file ends inside {what}"))
        } else {
            io_err(path, format!("reading {what}: {e}"))
        }
    })
}

/// Parses an IDX file's bytes (gzip-compressed or not). `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &str) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        read_body(&mut flate2::read::GzDecoder::new(bytes), path)
    } else {
        read_body(&mut &bytes[..], path)
    }
}

/// Reads an IDX file (gzip-compressed or not).
pub fn read(path: &Path) -> Result<IdxArray> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| io_err(&name, format!("cannot open: {e}")))?;
    let mut r = BufReader::new(file);
    let mut head = [0u8; 2];
    let n = r
        .read(&mut head)
        .map_err(|e| io_err(&name, format!("reading: {e}")))?;
    let rest = (&head[..n]).chain(r);
    if n == 2 && head == GZIP_MAGIC {
        read_body(&mut flate2::read::GzDecoder::new(rest), &name)
    } else {
        let mut rest = rest;
        read_body(&mut rest, &name)
    }
}

/// Encodes `array` as IDX bytes (uncompressed).
pub fn encode(array: &IdxArray) -> Result<Vec<u8>> {
    let expected = array.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if array.dims.is_empty() || array.dims.len() > MAX_DIMS || expected != Some(array.data.len()) {
        return Err(Error::invalid(
            "idx",
            format!(
                "dimensions {:?} do not describe {} bytes",
                array.dims,
                array.data.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(4 + 4 * array.dims.len() + array.data.len());
    out.extend_from_slice(&[0, 0, UBYTE, array.dims.len() as u8]);
    for &d in &array.dims {
        let d = u32::try_from(d).map_err(|_| {
            Error::invalid(
                "idx",
                format!("dimension {d} does not fit the format's u32"),
            )
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    Ok(out)
}

/// Writes `array` to `path` as IDX, gzip-compressed when `gzip` is true.
pub fn write(path: &Path, array: &IdxArray, gzip: bool) -> Result<()> {
    let name = path.display().to_string();
    let bytes = encode(array)?;
    let werr = |e: std::io::Error| io_err(&name, format!("writing: {e}"));
    let mut file = File::create(path).map_err(|e| io_err(&name, format!("cannot create: {e}")))?;
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        enc.write_all(&bytes).map_err(werr)?;
        enc.finish().map_err(werr)?;
    } else {
        file.write_all(&bytes).map_err(werr)?;
    }
    Ok(())
}
