//! random (shaders/random.wgsl): the counter-based generator on the device, one thread
//! per element; the same values as `backend::random::uniform`. Metadata from
//! [`meta::random_meta`], shared with CUDA.

use super::runtime::{Family, Launch, Runtime};
use super::{meta_words, WgpuBackend};
use crate::backend::gpu::meta;
use crate::backend::Storage;
use crate::error::Result;

/// `len` values of the draw with `key`.
pub fn uniform(rt: &Runtime, len: usize, key: [u32; 2]) -> Result<Storage> {
    rt.check_len("uniform", len)?;
    let out = rt.alloc("uniform", len)?;
    if len > 0 {
        // Every kernel family binds one input buffer; this one reads none.
        let unused = rt.alloc("uniform", 1)?;
        let mut words = meta_words("uniform");
        meta::random_meta(len, key, |what, v| words.push(what, v))?;
        let launch = Launch {
            op: "uniform",
            kernel: Family::Random,
            entry: "uniform",
            contiguous: false,
            groups: rt.groups_1d("uniform", len.div_ceil(256))?,
        };
        rt.dispatch(&launch, &[unused.raw()], out.raw(), words.words())?;
    }
    Ok(WgpuBackend::wrap(out, len))
}
