//! pad (shaders/pad.wgsl): zero padding with dilation, one thread per output element;
//! metadata from [`crate::backend::pad::meta`], shared with CUDA.

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, WgpuBackend};
use crate::backend::pad::{self, PadSpec};
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
        let meta = pad::meta("pad", layout, spec)?;
        let pipeline = rt.pipeline(Family::Pad, "any", false)?;
        let groups = rt.groups_1d("pad", size.div_ceil(256))?;
        let launch = Launch {
            op: "pad",
            kernel: Family::Pad,
            pipeline: &pipeline,
            groups,
        };
        rt.dispatch(&launch, &[xb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
