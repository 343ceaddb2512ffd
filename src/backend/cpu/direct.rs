//! Direct convolutions whose width stride is 1, on the CPU (AVX-512F), both ways round:
//! the forward (`out[co] = Σ W[co, ci, kh, kw] · x[ci, oh*s + kh - pad, ow + kw - pad]`)
//! and the input gradient, the transposed convolution
//! (`dx[ci] = Σ W[co, ci, kh, kw] · go[co, (h + pad - kh)/s, w + pad - kw]`).
//!
//! One engine serves both. An output tile is up to 14 channels by 32 positions;
//! each of its steps is one kernel position `k` of the depth (a source channel and a tap
//! `(kh, kw)`): one broadcast of the packed weight per tile channel, times the source row
//! read in place (two vectors, masked where the columns fall outside the source).
//! Nothing is packed but the weight (a few KiB), no im2col columns are written, and each
//! output value is written once, by one tile. Where the output rows are as long as the
//! source's and the height stride is 1 (a "same" convolution: 3x3 with padding 1), a tap
//! reads at a fixed offset from each output position, so a tile runs over 32 consecutive
//! positions of the plane, across rows; otherwise a tile is 32 columns of one row.
//!
//! Masked lanes are left out of the sums (masked multiply-adds), so an infinite weight
//! meets only the values that reach a position, as in the plain loops. Images go to rayon
//! tasks and each value is summed by one tile in a fixed order: the same bits on any
//! number of threads.

use rayon::prelude::*;

use super::matmul::{FlushSubnormals, Kernel, OutPtr};
use super::pool::HostBuf;
use crate::backend::conv2d::ConvGeometry;
use crate::backend::pad::{pad_rows, PadSpec};
use crate::layout::Layout;

/// Output channels per tile at most: 28 accumulators, two source vectors and a broadcast
/// fill the 32 vector registers.
const MAX_MR: usize = 14;
/// Output positions per tile (two 16-lane vectors).
const NR: usize = 32;
/// Fewer output channels than this take the product (a tile would be mostly empty).
pub const MIN_CHANNELS: usize = 8;

/// What the forward does to its output values once summed.
#[derive(Clone, Copy)]
pub enum Epilogue<'f> {
    /// A bias per output channel (where given), then relu (where `relu`), on the tile's
    /// registers before they are stored: the same operations as the interpreter's.
    BiasRelu {
        /// One value per output channel.
        bias: Option<&'f [f32]>,
        /// Relu after the bias.
        relu: bool,
    },
    /// Any other: `f(at, run)` on each finished run of output values, `at` its offset in
    /// the output.
    Runs(&'f (dyn Fn(usize, &mut [f32]) + Sync)),
}

impl Epilogue<'_> {
    /// Nothing to do.
    pub const NONE: Epilogue<'static> = Epilogue::BiasRelu {
        bias: None,
        relu: false,
    };
}

/// Which way round a convolution reads its source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Output row `y` reads source row `y*stride + kh - pad` (the forward).
    Forward,
    /// Output row `y` reads source row `(y + pad - kh)/stride` where that divides (the
    /// input gradient).
    Transposed,
}

/// Where each tap of a direct convolution reads: source planes `src` (height, width) to
/// output planes `out`, a `kh x kw` kernel, the height stride and the padding before
/// (top, left) of the forward convolution.
struct Taps {
    dir: Direction,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: (isize, isize),
    src: (usize, usize),
    out: (usize, usize),
}

impl Taps {
    /// The taps of convolution `g` read `dir` way round: the forward reads the input
    /// planes into the output's, the transposed convolution the output's into the input's.
    fn of(g: &ConvGeometry, dir: Direction) -> Taps {
        let (input, output) = ((g.h, g.w), (g.oh, g.ow));
        let (src, out) = match dir {
            Direction::Forward => (input, output),
            Direction::Transposed => (output, input),
        };
        Taps {
            dir,
            kh: g.kh,
            kw: g.kw,
            stride: g.stride[0],
            pad: (g.pad[0].0 as isize, g.pad[1].0 as isize),
            src,
            out,
        }
    }

    /// The source row that output row `y` reads through kernel row `r`, if any.
    fn src_row(&self, y: usize, r: usize) -> Option<usize> {
        let (s, (y, r)) = (self.stride as isize, (y as isize, r as isize));
        let row = match self.dir {
            Direction::Forward => y * s + r - self.pad.0,
            Direction::Transposed => {
                let t = y + self.pad.0 - r;
                if t < 0 || t % s != 0 {
                    return None;
                }
                t / s
            }
        };
        (0..self.src.0 as isize)
            .contains(&row)
            .then_some(row as usize)
    }

    /// The source column minus the output column, through kernel column `c`.
    fn col_shift(&self, c: usize) -> isize {
        match self.dir {
            Direction::Forward => c as isize - self.pad.1,
            Direction::Transposed => self.pad.1 - c as isize,
        }
    }

    /// Whether tiles run across rows: height stride 1 and rows as long as the source's,
    /// so that each tap reads at one offset from every output position.
    fn flat(&self) -> bool {
        self.stride == 1 && self.src.1 == self.out.1
    }

    /// Whether tiles keep most lanes busy: across rows, or rows filling 80% of theirs (a
    /// 14-wide row fills 14 of 32: cheaper through the product).
    fn lanes_used(&self) -> bool {
        let w = self.out.1;
        self.flat() || w * 5 >= 4 * NR * w.div_ceil(NR)
    }
}

/// One step of a tile: kernel position `k` (its row of the packed weight), where lane 0
/// reads the source (relative to the image's start), and the lanes of each vector that
/// read a value inside the source's plane.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Step {
    k: u32,
    lo: u16,
    hi: u16,
    at: isize,
}

/// A tile's place: its first output position in the plane, its width and its steps.
struct Span {
    p0: usize,
    width: usize,
    steps: std::ops::Range<usize>,
}

/// A direct convolution, planned once for every image: the weight in panels of output
/// channels, and each tile's steps.
struct Plan {
    /// The source's channels: how many, how far apart, and the values of each plane.
    src_planes: (usize, usize, usize),
    /// Per panel: its first output channel, its height and where it starts in `apack`.
    panels: Vec<(usize, usize, usize)>,
    /// Panel `p`, step `k`: the weights of its `h` channels at `apack[start + k*h..]`.
    apack: HostBuf,
    steps: Vec<Step>,
    spans: Vec<Span>,
}

impl Plan {
    /// `n_out` output channels from `n_in` source channels `src_cs` values apart;
    /// `weight(o, k)` is output channel `o`'s weight at kernel position
    /// `k = (i*KH + kh)*KW + kw`.
    fn new(
        t: &Taps,
        n_out: usize,
        n_in: usize,
        src_cs: usize,
        weight: impl Fn(usize, usize) -> f32,
    ) -> Plan {
        let kk = t.kh * t.kw;
        let depth = n_in * kk;
        // Balanced panels of at most MAX_MR channels (64 channels: five of 13 or 12).
        let count = n_out.div_ceil(MAX_MR);
        let mut panels = Vec::with_capacity(count);
        let (mut o0, mut start) = (0, 0);
        for p in 0..count {
            let h = n_out / count + usize::from(p < n_out % count);
            panels.push((o0, h, start));
            (o0, start) = (o0 + h, start + depth * h);
        }
        let mut apack = HostBuf::take(start);
        for &(o0, h, start) in &panels {
            let panel = &mut apack[start..start + depth * h];
            for k in 0..depth {
                for i in 0..h {
                    panel[k * h + i] = weight(o0 + i, k);
                }
            }
        }
        let (src_w, plane) = (t.src.1, t.out.0 * t.out.1);
        let (mut steps, mut spans) = (Vec::new(), Vec::new());
        let push = |steps: &mut Vec<Step>, k: usize, m: u32, at: isize| {
            if m != 0 {
                let (lo, hi) = (m as u16, (m >> 16) as u16);
                steps.push(Step {
                    k: k as u32,
                    lo,
                    hi,
                    at,
                });
            }
        };
        if t.flat() {
            for p0 in (0..plane).step_by(NR) {
                let (first, width) = (steps.len(), NR.min(plane - p0));
                // Per tap: the lanes whose output position reads a source value, and the
                // offset it reads at (the same for every lane).
                let taps: Vec<(u32, isize)> = (0..kk)
                    .map(|pos| {
                        let (r, c) = (pos / t.kw, pos % t.kw);
                        let mut m = 0u32;
                        for j in 0..width {
                            let (y, x) = ((p0 + j) / t.out.1, (p0 + j) % t.out.1);
                            let col = x as isize + t.col_shift(c);
                            if t.src_row(y, r).is_some() && (0..src_w as isize).contains(&col) {
                                m |= 1 << j;
                            }
                        }
                        // Stride 1: the source row is y plus a constant.
                        let dy = match t.dir {
                            Direction::Forward => r as isize - t.pad.0,
                            Direction::Transposed => t.pad.0 - r as isize,
                        };
                        (m, dy * src_w as isize + t.col_shift(c))
                    })
                    .collect();
                for i in 0..n_in {
                    for (pos, &(m, shift)) in taps.iter().enumerate() {
                        let at = (i * src_cs + p0) as isize + shift;
                        push(&mut steps, i * kk + pos, m, at);
                    }
                }
                spans.push(Span {
                    p0,
                    width,
                    steps: first..steps.len(),
                });
            }
        } else {
            for y in 0..t.out.0 {
                for x0 in (0..t.out.1).step_by(NR) {
                    let (first, width) = (steps.len(), NR.min(t.out.1 - x0) as isize);
                    for i in 0..n_in {
                        for r in 0..t.kh {
                            let Some(row) = t.src_row(y, r) else {
                                continue;
                            };
                            for c in 0..t.kw {
                                // Lane j reads the source's column s + j, inside 0..W.
                                let s = x0 as isize + t.col_shift(c);
                                let (lo, hi) = (-s, (src_w as isize - s).min(width));
                                let m =
                                    lanes(lo, hi) as u32 | (lanes(lo - 16, hi - 16) as u32) << 16;
                                let at = (i * src_cs + row * src_w) as isize + s;
                                push(&mut steps, (i * t.kh + r) * t.kw + c, m, at);
                            }
                        }
                    }
                    spans.push(Span {
                        p0: y * t.out.1 + x0,
                        width: width as usize,
                        steps: first..steps.len(),
                    });
                }
            }
        }
        Plan {
            src_planes: (n_in, src_cs, t.src.0 * t.src.1),
            panels,
            apack,
            steps,
            spans,
        }
    }

    /// Runs every tile of `images` images: image `b`'s source at `src[b * src_is..]`,
    /// its output channel `o` at `out + o*out_cs + b*out_is` (planes contiguous), then
    /// `epilogue` (a bias holds one value per output channel); `before(b)` runs first in
    /// image `b`'s task.
    ///
    /// # Safety
    /// AVX-512F is available; every value a step's lanes read (inside the source planes,
    /// as the plan was built) lies inside `src` for every image, and the output planes of
    /// every channel and image lie inside one allocation behind `out`, written by nothing
    /// else meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        src: &[f32],
        src_is: usize,
        images: usize,
        out: OutPtr,
        (out_cs, out_is): (usize, usize),
        epilogue: Epilogue,
        before: Option<&(dyn Fn(usize) + Sync)>,
    ) {
        let relu = matches!(epilogue, Epilogue::BiasRelu { relu: true, .. });
        let image = |b: usize| {
            // The image's source planes are read by every tile, in an order the hardware
            // prefetchers do not follow (a few rows of each of many planes): ask for all
            // of them into L2 first, so that the misses overlap.
            let (n_in, cs, len) = self.src_planes;
            let base = src.as_ptr().wrapping_add(b * src_is);
            for i in 0..n_in {
                for off in (0..len).step_by(16) {
                    prefetch_l2(base.wrapping_add(i * cs + off));
                }
            }
            if let Some(f) = before {
                f(b);
            }
            let _flush = FlushSubnormals::new();
            for &(o0, h, start) in &self.panels {
                let bias = match epilogue {
                    Epilogue::BiasRelu { bias: Some(b), .. } => b[o0..o0 + h].as_ptr(),
                    _ => std::ptr::null(),
                };
                for span in &self.spans {
                    let at = o0 * out_cs + b * out_is + span.p0;
                    let t = Tile {
                        a: self.apack[start..].as_ptr(),
                        steps: &self.steps[span.steps.clone()],
                        src: src.as_ptr().wrapping_add(b * src_is),
                        c: out.at(at),
                        c_rs: out_cs,
                        width: (
                            lanes(0, span.width as isize),
                            lanes(-16, span.width as isize - 16),
                        ),
                        bias,
                        relu,
                    };
                    // SAFETY: as this function's contract says; the tile writes `h`
                    // channels' `width` values from `p0`, inside their planes.
                    unsafe { run_tile(h, &t) };
                    if let Epilogue::Runs(f) = epilogue {
                        for i in 0..h {
                            let row = at + i * out_cs;
                            // SAFETY: this image's run of channel o0 + i, written above
                            // and by no other task.
                            f(row, unsafe {
                                std::slice::from_raw_parts_mut(out.at(row), span.width)
                            });
                        }
                    }
                }
            }
        };
        if rayon::current_num_threads() > 1 && images > 1 {
            (0..images).into_par_iter().for_each(image);
        } else {
            (0..images).for_each(image);
        }
    }
}

/// Whether the engine runs here at all (AVX-512F), for a width stride of `sw` and `n_out`
/// output channels.
fn available(sw: usize, n_out: usize) -> bool {
    Kernel::detect() == Kernel::Avx512 && sw == 1 && n_out >= MIN_CHANNELS
}

/// The forward `[Cout, B, OH, OW]` (contiguous) of a convolution of geometry `g`: `x` is
/// read channel-major as `[Cin, B, H, W]` through `xl` (rows contiguous, any channel and
/// image strides), `w` is `[Cout, Cin*KH*KW]` contiguous, and then `epilogue` (a bias of
/// `Cout` values). Where `padded` is given, each image's task first writes its part of
/// the input padded as the spec says (`[Cin, B, HP, WP]`, the columns' source), reading
/// the image into cache for its tiles.
/// `None` where this path does not apply (no AVX-512F, a width stride above 1, fewer than
/// [`MIN_CHANNELS`] output channels, rows that leave most lanes empty, or rows that are
/// not contiguous).
pub fn forward(
    x: &[f32],
    xl: &Layout,
    w: &[f32],
    g: &ConvGeometry,
    epilogue: Epilogue,
    padded: Option<(&mut [f32], &PadSpec)>,
) -> Option<HostBuf> {
    let taps = Taps::of(g, Direction::Forward);
    let st = xl.strides();
    let rows_dense = (st[3] == 1 || g.w == 1) && (st[2] == g.w || g.h == 1);
    if !available(g.stride[1], g.cout) || !taps.lanes_used() || !rows_dense {
        return None;
    }
    let plane = g.oh * g.ow;
    let mut out = HostBuf::take(g.cout * g.b * plane);
    let (depth, m) = (g.ckk(), g.b * plane);
    if let Some((p, spec)) = padded.as_ref() {
        // Whole planes of channel-major [Cin, B, HP, WP], one per channel and image.
        let sh = &spec.out_shape;
        assert!(sh[..2] == [g.cin, g.b] && p.len() == sh.iter().product::<usize>());
    }
    let pad_to = padded.map(|(p, spec)| (OutPtr(p.as_mut_ptr()), spec));
    let pad_image = |b: usize| {
        let Some((p, spec)) = pad_to else { return };
        let (hp, wp) = (spec.out_shape[2], spec.out_shape[3]);
        for ci in 0..g.cin {
            let first = (ci * g.b + b) * hp;
            // SAFETY: rows `first..first + hp` of the padded buffer (inside it: asserted
            // above), image b's, written by this task only.
            let rows = unsafe { std::slice::from_raw_parts_mut(p.at(first * wp), hp * wp) };
            pad_rows(rows, first, x, xl, spec);
        }
    };
    if let Epilogue::BiasRelu { bias: Some(b), .. } = epilogue {
        assert!(b.len() >= g.cout, "conv2d: the bias is too short");
    }
    if out.is_empty() || depth == 0 {
        // Sums of nothing: zeros, then the epilogue (in the same order of operations).
        (0..g.b).for_each(pad_image);
        out.fill(0.0);
        for (o, run) in out.chunks_mut(m.max(1)).enumerate() {
            match epilogue {
                Epilogue::Runs(f) => f(o * m, run),
                Epilogue::BiasRelu { bias, relu } => {
                    let v = bias.map_or(0.0, |b| 0.0 + b[o]);
                    run.fill(if relu { crate::operators::relu(v) } else { v });
                }
            }
        }
        return Some(out);
    }
    assert!(w.len() >= g.cout * depth, "conv2d: the weight is too short");
    // One past the last value any lane reads (the views' checks keep it inside `x`).
    let last = xl.offset() + (g.cin - 1) * st[0] + (g.b - 1) * st[1] + g.h * g.w;
    assert!(last <= x.len(), "conv2d: the input is too short");
    let plan = Plan::new(&taps, g.cout, g.cin, st[0], |o, k| w[o * depth + k]);
    let dst = OutPtr(out.as_mut_ptr());
    // SAFETY: AVX-512F (checked); each lane reads a value of a channel below Cin in
    // image b's plane, inside `x` (asserted above); the output planes lie in `out`.
    unsafe {
        plan.run(
            &x[xl.offset()..],
            st[1],
            g.b,
            dst,
            (m, plane),
            epilogue,
            Some(&pad_image),
        )
    };
    Some(out)
}

/// The input gradient `[B, Cin, H, W]` (contiguous) from the output's gradient `go`
/// (`[Cout, B, OH, OW]`) and the weight `w` (`[Cout, Cin*KH*KW]`), both contiguous;
/// `None` where this path does not apply (no AVX-512F, a width stride above 1, fewer than
/// [`MIN_CHANNELS`] input channels, or rows that leave most lanes empty).
pub fn input_grad(go: &[f32], w: &[f32], g: &ConvGeometry) -> Option<HostBuf> {
    let taps = Taps::of(g, Direction::Transposed);
    if !available(g.stride[1], g.cin) || !taps.lanes_used() {
        return None;
    }
    let (kk, per_image) = (g.kh * g.kw, g.oh * g.ow);
    let plane = g.h * g.w;
    let mut dx = HostBuf::take(g.b * g.cin * plane);
    if dx.is_empty() {
        return Some(dx);
    }
    if per_image == 0 || g.cout == 0 {
        dx.fill(0.0);
        return Some(dx);
    }
    assert!(go.len() >= g.cout * g.b * per_image && w.len() >= g.cout * g.cin * kk);
    // The depth runs over output channels: dx's channel ci, position k = (co, kh, kw).
    let plan = Plan::new(&taps, g.cin, g.cout, g.b * per_image, |ci, k| {
        w[(k / kk) * g.cin * kk + ci * kk + k % kk]
    });
    let dst = OutPtr(dx.as_mut_ptr());
    // SAFETY: AVX-512F (checked); each lane reads a gradient value (row below OH, column
    // below OW) of a channel below Cout of image b, inside `go` (asserted above); the
    // input gradient's planes lie in `dx`.
    unsafe {
        plan.run(
            go,
            per_image,
            g.b,
            dst,
            (plane, g.cin * plane),
            Epilogue::NONE,
            None,
        )
    };
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
        "the direct convolution runs on x86-64 only ({h}, {})",
        t.c_rs
    );
}

/// A hint to bring the line holding `p` into L2 (any address: a prefetch never faults).
#[inline]
fn prefetch_l2(p: *const f32) {
    // SAFETY: prefetching reads nothing and cannot fault.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch(p as *const i8, _MM_HINT_T1)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Lanes `lo..hi` of 16 (clamped to `0..16`), as an AVX-512 mask.
pub(super) fn lanes(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
    let upto = |n: u32| if n >= 16 { 0xffffu32 } else { (1u32 << n) - 1 };
    (upto(hi) & !upto(lo)) as u16
}

/// One tile: `h` output channels of up to [`NR`] positions.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile<'s> {
    /// The packed weight panel: step k's `h` values at `a[k * h..]`.
    a: *const f32,
    steps: &'s [Step],
    /// The source at this image's start.
    src: *const f32,
    /// The tile's first value in the output, channels `c_rs` apart.
    c: *mut f32,
    c_rs: usize,
    /// The lanes of the two vectors inside the tile.
    width: (u16, u16),
    /// The tile's channels' bias (null: none), then relu where `relu`.
    bias: *const f32,
    relu: bool,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Tile, MAX_MR};

    /// An `H x 32` tile.
    ///
    /// # Safety
    /// AVX-512F available; `t` as [`Plan::run`](super::Plan::run) builds it.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const H: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; H];
        for s in t.steps {
            let p = t.src.wrapping_offset(s.at);
            // Masked-off lanes are neither read nor faulted on, nor added.
            let b0 = _mm512_maskz_loadu_ps(s.lo, p);
            let b1 = _mm512_maskz_loadu_ps(s.hi, p.wrapping_add(16));
            let a = t.a.add(s.k as usize * H);
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                c[0] = _mm512_mask3_fmadd_ps(av, b0, c[0], s.lo);
                c[1] = _mm512_mask3_fmadd_ps(av, b1, c[1], s.hi);
            }
        }
        for (i, c) in acc.iter_mut().enumerate() {
            if !t.bias.is_null() {
                let b = _mm512_set1_ps(*t.bias.add(i));
                *c = [_mm512_add_ps(c[0], b), _mm512_add_ps(c[1], b)];
            }
            if t.relu {
                // max(x, +0) returns its second operand for NaN and for -0: relu's x > 0
                // ? x : 0 exactly.
                let z = _mm512_setzero_ps();
                *c = [_mm512_max_ps(c[0], z), _mm512_max_ps(c[1], z)];
            }
            let o = t.c.add(i * t.c_rs);
            _mm512_mask_storeu_ps(o, t.width.0, c[0]);
            _mm512_mask_storeu_ps(o.wrapping_add(16), t.width.1, c[1]);
        }
    }

    /// `TILES[h - 1]`: the tile for `h` channels (AVX-512F available; the tile as
    /// [`Plan::run`](super::Plan::run) builds it).
    pub(super) const TILES: [unsafe fn(&Tile); MAX_MR] = [
        tile::<1>, tile::<2>, tile::<3>, tile::<4>, tile::<5>, tile::<6>, tile::<7>, tile::<8>,
        tile::<9>, tile::<10>, tile::<11>, tile::<12>, tile::<13>, tile::<14>,
    ];
}
