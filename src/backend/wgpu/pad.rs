//! pad (shaders/pad.wgsl): zero padding with dilation, one thread per output element;
//! metadata from [`meta::pad_meta`], shared with CUDA.

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, meta_words, WgpuBackend};
use crate::backend::gpu::meta;
use crate::backend::pad::PadSpec;
use crate::backend::{check, Storage};
use crate::error::Result;
use crate::layout::{shape_size, Layout};

/// `x` read through `layout`, padded and dilated as `spec` says.
pub fn pad(rt: &Runtime, x: &Storage, layout: &Layout, spec: &PadSpec) -> Result<Storage> {
    check::pad(x, layout, spec)?;
    let xb = buffer(x)?;
    let size = shape_size(&spec.out_shape);
    let out = rt.alloc("pad", size)?;
    if size > 0 {
        let mut words = meta_words("pad");
        meta::pad_meta(layout, spec, |what, v| words.push(what, v))?;
        let launch = Launch {
            op: "pad",
            kernel: Family::Pad,
            entry: "any",
            contiguous: false,
            groups: rt.groups_1d("pad", size.div_ceil(256))?,
        };
        rt.dispatch(&launch, &[xb], out.raw(), words.words())?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
