//! Metadata of the convolution family's kernels (`cuda/pad.cu`, `cuda/random.cu`) in a
//! [`Meta`]; the words are those of the wgpu twins (`crate::backend::pad::meta`).

use super::kernels::{Meta, META_WORDS};
use crate::backend::pad::PadSpec;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// `pad_any`'s metadata.
pub fn pad_meta(layout: &Layout, spec: &PadSpec) -> Result<Meta> {
    let words = crate::backend::pad::meta("pad", layout, spec)?;
    if words.len() > META_WORDS {
        return Err(Error::backend(
            "cuda",
            "pad",
            format!("kernel metadata longer than {META_WORDS} words"),
        ));
    }
    let mut m = [0u32; META_WORDS];
    m[..words.len()].copy_from_slice(&words);
    Ok(Meta(m))
}

/// `random_uniform`'s metadata: `[len_lo, len_hi, k0, k1]`.
pub fn uniform_meta(len: usize, key: [u32; 2]) -> Meta {
    let mut m = [0u32; META_WORDS];
    m[..4].copy_from_slice(&[len as u32, (len as u64 >> 32) as u32, key[0], key[1]]);
    Meta(m)
}
