//! The input gradient of a convolution whose width stride is 1, as a direct transposed
//! convolution on the CPU (AVX-512F): input row `y` of channels `ci..ci+12` and 32 columns
//! from `x0` sums, over every output channel `co` and kernel position `(kh, kw)` that
//! reaches it, the weight `W[co, ci + i, kh, kw]` (one broadcast per channel) times the
//! gradient's row `oh` read in place from column `x0 + pad_left - kw` (two vectors, masked
//! where the columns fall outside the gradient). Nothing is packed but the weight, and
//! each input value is written once: no product in memory, no col2im pass.
//!
//! Masked lanes are left out of the sums (masked multiply-adds), so an infinite weight
//! meets only the gradient values that reach a position, as in the plain loops. Images go
//! to rayon tasks and each value is summed by one tile in a fixed order: the same bits on
//! any number of threads.

use rayon::prelude::*;

use super::matmul::{FlushSubnormals, Kernel};
use super::pool::HostBuf;
use crate::backend::conv2d::ConvGeometry;

/// Input channels per tile (the AVX-512 micro-kernel's height).
const MR: usize = 12;
/// Input columns per tile (two 16-lane vectors).
const NR: usize = 32;
/// Fewer input channels than this take the col2im product (a tile would be mostly
/// empty).
pub const MIN_CHANNELS: usize = 8;

/// One step of a tile: kernel position `k = (co*KH + kh)*KW + kw` (its row of the packed
/// weight), where lane 0 reads the gradient (relative to the image's start), and the
/// lanes of each vector that read a column of the gradient inside the row.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Step {
    k: u32,
    lo: u16,
    hi: u16,
    at: isize,
}

/// The input gradient `[B, Cin, H, W]` from the output's gradient `go` (`[Cout, B, OH,
/// OW]`) and the weight `w` (`[Cout, Cin*KH*KW]`), both contiguous; `None` where this
/// path does not apply (no AVX-512F, a width stride above 1, or fewer than
/// [`MIN_CHANNELS`] input channels).
pub fn input_grad(go: &[f32], w: &[f32], g: &ConvGeometry) -> Option<HostBuf> {
    // A stride-1 convolution whose output is as wide as its input (padding K-1 in all
    // along the width) reads the gradient at a fixed offset from each input position,
    // so a tile runs over 32 consecutive positions of the plane, across rows. Otherwise a
    // tile is 32 columns of one row, and rows that leave most of its lanes empty (a
    // 14-wide image fills 14) are cheaper through the product.
    let flat = g.stride == [1, 1] && g.ow == g.w;
    let lanes_used = flat || g.w * 5 >= 4 * NR * g.w.div_ceil(NR);
    if Kernel::detect() != Kernel::Avx512 || g.stride[1] != 1 || g.cin < MIN_CHANNELS || !lanes_used
    {
        return None;
    }
    let (kk, per_image) = (g.kh * g.kw, g.oh * g.ow);
    let img_in = g.cin * g.h * g.w;
    let mut dx = HostBuf::take(g.b * img_in);
    if dx.is_empty() {
        return Some(dx);
    }
    if per_image == 0 || g.cout == 0 {
        dx.fill(0.0);
        return Some(dx);
    }
    assert!(go.len() >= g.cout * g.b * per_image && w.len() >= g.cout * g.cin * kk);
    let depth = g.cout * kk;
    // The weight transposed into panels of MR input channels: panel p, step k holds
    // W[co, p*MR + i, kh, kw] for i in 0..MR (zeros past the last channel).
    let panels = g.cin.div_ceil(MR);
    let mut apack = HostBuf::full(panels * depth * MR, 0.0);
    for (p, panel) in apack.chunks_mut(depth * MR).enumerate() {
        for k in 0..depth {
            let (co, pos) = (k / kk, k % kk);
            for i in 0..MR.min(g.cin - p * MR) {
                panel[k * MR + i] = w[co * g.cin * kk + (p * MR + i) * kk + pos];
            }
        }
    }
    // Each tile: where it starts in an input plane, its width, and its steps (in the
    // order of k).
    let (pt, pl) = (g.pad[0].0 as isize, g.pad[1].0 as isize);
    let plane_go = g.b * per_image;
    let plane = g.h * g.w;
    let mut steps: Vec<Step> = Vec::new();
    let mut tiles: Vec<(usize, usize, usize, usize)> = Vec::new();
    if flat {
        for o0 in (0..plane).step_by(NR) {
            let (first, width) = (steps.len(), NR.min(plane - o0));
            // Per kernel position: the lanes whose input position reads a gradient value
            // (oh = y + pt - kh in 0..OH, ow = x + pl - kw in 0..OW).
            let masks: Vec<(u16, u16)> = (0..kk)
                .map(|pos| {
                    let (kh, kw) = ((pos / g.kw) as isize, (pos % g.kw) as isize);
                    let mut m = 0u32;
                    for j in 0..width {
                        let (y, x) = (((o0 + j) / g.w) as isize, ((o0 + j) % g.w) as isize);
                        let (oh, ow) = (y + pt - kh, x + pl - kw);
                        if (0..g.oh as isize).contains(&oh) && (0..g.ow as isize).contains(&ow) {
                            m |= 1 << j;
                        }
                    }
                    (m as u16, (m >> 16) as u16)
                })
                .collect();
            for co in 0..g.cout {
                for (pos, &(m0, m1)) in masks.iter().enumerate() {
                    if m0 | m1 == 0 {
                        continue;
                    }
                    let (kh, kw) = ((pos / g.kw) as isize, (pos % g.kw) as isize);
                    // Input position p reads the gradient at p + (pt - kh)*OW + pl - kw.
                    let shift = (pt - kh) * g.ow as isize + pl - kw;
                    steps.push(Step {
                        k: (co * kk + pos) as u32,
                        lo: m0,
                        hi: m1,
                        at: (co * plane_go + o0) as isize + shift,
                    });
                }
            }
            tiles.push((o0, width, first, steps.len()));
        }
    } else {
        // Runs of NR columns of each input row y.
        let chunks = g.w.div_ceil(NR);
        for y in 0..g.h {
            for c in 0..chunks {
                let first = steps.len();
                let x0 = (c * NR) as isize;
                let width = NR.min(g.w - c * NR) as isize;
                for co in 0..g.cout {
                    for kh in 0..g.kh {
                        // The output row oh with oh*sh + kh - pt == y, if any.
                        let t = y as isize + pt - kh as isize;
                        let sh = g.stride[0] as isize;
                        if t < 0 || t % sh != 0 || t / sh >= g.oh as isize {
                            continue;
                        }
                        let oh = (t / sh) as usize;
                        for kw in 0..g.kw {
                            // Lane j reads the gradient's column s + j, inside 0..OW.
                            let s = x0 + pl - kw as isize;
                            let (lo, hi) = (-s, (g.ow as isize - s).min(width));
                            let (m0, m1) = (lanes(lo, hi), lanes(lo - 16, hi - 16));
                            if m0 | m1 == 0 {
                                continue;
                            }
                            steps.push(Step {
                                k: ((co * g.kh + kh) * g.kw + kw) as u32,
                                lo: m0,
                                hi: m1,
                                at: (co * plane_go + oh * g.ow) as isize + s,
                            });
                        }
                    }
                }
                tiles.push((y * g.w + c * NR, width as usize, first, steps.len()));
            }
        }
    }
    let image = |(b, dxb): (usize, &mut [f32])| {
        let _flush = FlushSubnormals::new();
        for &(o0, width, s0, s1) in &tiles {
            for p in 0..panels {
                let h = MR.min(g.cin - p * MR);
                let t = Tile {
                    a: apack[p * depth * MR..].as_ptr(),
                    steps: &steps[s0..s1],
                    go: go.as_ptr().wrapping_add(b * per_image),
                    c: dxb[p * MR * plane + o0..].as_mut_ptr(),
                    c_rs: plane,
                    width: (lanes(0, width as isize), lanes(-16, width as isize - 16)),
                };
                // SAFETY: AVX-512F is available (checked above); each step's lanes read
                // gradient values (row oh in 0..OH, column ow in 0..OW) of channel co of
                // image b, inside `go` (asserted above), and its k is below the depth of
                // the packed panel; the tile writes h channel planes' `width` values from
                // o0 (inside the plane) of this image's gradient, inside `dxb`.
                unsafe { run_tile(h, &t) };
            }
        }
    };
    if rayon::current_num_threads() > 1 && g.b > 1 {
        dx.par_chunks_mut(img_in).enumerate().for_each(image);
    } else {
        dx.chunks_mut(img_in).enumerate().for_each(image);
    }
    Some(dx)
}

/// The tile kernel for `h` channels.
///
/// # Safety
/// As [`avx512::TILES`] says.
unsafe fn run_tile(h: usize, t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    avx512::TILES[h - 1](t);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "the direct input gradient runs on x86-64 only ({h}, {})",
        t.c_rs
    );
}

/// Lanes `lo..hi` of 16 (clamped to `0..16`), as an AVX-512 mask.
pub(super) fn lanes(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
    let upto = |n: u32| if n >= 16 { 0xffffu32 } else { (1u32 << n) - 1 };
    (upto(hi) & !upto(lo)) as u16
}

/// One tile: `h` input channel rows of up to [`NR`] columns.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile<'s> {
    /// The packed weight panel: step k's `MR` values at `a[k * MR..]`.
    a: *const f32,
    steps: &'s [Step],
    /// The gradient at this image's start.
    go: *const f32,
    /// The tile's first value in the input gradient, rows `c_rs` apart.
    c: *mut f32,
    c_rs: usize,
    /// The lanes of the two vectors inside the input row.
    width: (u16, u16),
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Tile, MR};

    /// An `H x 32` tile.
    ///
    /// # Safety
    /// AVX-512F available; `t` as [`input_grad`](super::input_grad) builds it.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const H: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; H];
        for s in t.steps {
            let p = t.go.wrapping_offset(s.at);
            // Masked-off lanes are neither read nor faulted on, nor added.
            let b0 = _mm512_maskz_loadu_ps(s.lo, p);
            let b1 = _mm512_maskz_loadu_ps(s.hi, p.wrapping_add(16));
            let a = t.a.add(s.k as usize * MR);
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                c[0] = _mm512_mask3_fmadd_ps(av, b0, c[0], s.lo);
                c[1] = _mm512_mask3_fmadd_ps(av, b1, c[1], s.hi);
            }
        }
        for (i, c) in acc.iter().enumerate() {
            let o = t.c.add(i * t.c_rs);
            _mm512_mask_storeu_ps(o, t.width.0, c[0]);
            _mm512_mask_storeu_ps(o.wrapping_add(16), t.width.1, c[1]);
        }
    }

    /// `TILES[h - 1]`: the tile for `h` channels (AVX-512F available; the tile as
    /// [`input_grad`](super::input_grad) builds it).
    pub(super) const TILES: [unsafe fn(&Tile); MR] = [
        tile::<1>, tile::<2>, tile::<3>, tile::<4>, tile::<5>, tile::<6>, tile::<7>, tile::<8>,
        tile::<9>, tile::<10>, tile::<11>, tile::<12>,
    ];
}
