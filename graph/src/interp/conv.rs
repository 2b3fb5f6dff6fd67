//! `Conv`, `ConvInteger` and `ConvTranspose` over any number of spatial
//! dimensions (summation order in the module doc of [`crate::interp`]).

use lpu_isa::Values;
use rayon::prelude::*;

use super::{as_f32, from_f32, scalar_i64, strides, Ins};
use crate::infer::params::{self, ConvGeom};
use crate::ir::Node;

/// Row-major multi-indices of `shape`.
pub(super) fn multi_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(shape.iter().product());
    super::for_each_index(shape, |i| out.push(i.to_vec()));
    out
}

/// Marks a tap in the padding in [`taps`].
const PAD: u32 = u32::MAX;

/// For each kernel position (row-major), for each output spatial position
/// (row-major), the flat offset of the input spatial element it reads, or
/// [`PAD`] in the padding. (Offsets are below 2^28, so they fit in `u32`.)
fn taps(g: &ConvGeom) -> Vec<Vec<u32>> {
    let w = &g.win;
    let ist = strides(&g.input);
    let outs = multi_indices(&w.out);
    multi_indices(&w.kernel)
        .iter()
        .map(|k| {
            outs.iter()
                .map(|o| {
                    let mut off = 0usize;
                    for d in 0..o.len() {
                        let i = (o[d] * w.strides[d] + k[d] * w.dilations[d]) as i64
                            - w.pads_begin[d] as i64;
                        if i < 0 || i >= g.input[d] as i64 {
                            return PAD;
                        }
                        off += i as usize * ist[d];
                    }
                    off as u32
                })
                .collect()
        })
        .collect()
}

/// A run of output positions `p0..p0 + len` whose taps read the input at
/// `off0, off0 + step, ...` (no padding inside): the inner loop walks it
/// without a per-element padding test or offset table, so it vectorizes.
#[derive(Clone, Copy)]
struct Run {
    p0: usize,
    len: usize,
    off0: usize,
    step: usize,
}

/// [`taps`] of one kernel position as runs of evenly spaced offsets.
fn runs(tk: &[u32]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (p, &off) in tk.iter().enumerate() {
        if off == PAD {
            continue;
        }
        let off = off as usize;
        if let Some(r) = out.last_mut() {
            if r.p0 + r.len == p {
                if r.len == 1 && off > r.off0 {
                    r.step = off - r.off0;
                    r.len = 2;
                    continue;
                }
                if r.len > 1 && off == r.off0 + r.len * r.step {
                    r.len += 1;
                    continue;
                }
            }
        }
        out.push(Run {
            p0: p,
            len: 1,
            off0: off,
            step: 1,
        });
    }
    out
}

/// The shared loop: for every output element `[n, m, o..]`, `acc = zero`,
/// then `acc = step(acc, x, w, m)` over (input channel of the group, kernel
/// position) ascending, skipping padding. Both kernels below perform
/// exactly these operations in this order for every element, so they give
/// the same bits; which one runs only changes the speed.
fn conv_loop<T: Copy + Sync, A: Copy + Send + Sync>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    zero: A,
    step: impl Fn(A, T, T, usize) -> A + Sync,
) -> Vec<A> {
    // (An input plane with no elements, all padding, takes the plane
    // kernel too: the tiles walk the input plane by plane.)
    if (g.cout / g.group).is_multiple_of(TILE_CHANNELS) && spatial_sizes(g).1 > 0 {
        conv_tiles(g, x, w, zero, step)
    } else {
        conv_planes(g, x, w, zero, step)
    }
}

/// Elements of the kernel, of an input plane and of an output plane.
fn spatial_sizes(g: &ConvGeom) -> (usize, usize, usize) {
    let n = |d: &[usize]| d.iter().product::<usize>();
    (n(&g.win.kernel), n(&g.input), n(&g.win.out))
}

/// Output channels of one register tile of [`conv_tiles`].
const TILE_CHANNELS: usize = 8;

/// Output positions of one register tile of [`conv_tiles`].
const TILE_POSITIONS: usize = 4;

/// [`conv_loop`] in register tiles of [`TILE_POSITIONS`] output positions
/// by [`TILE_CHANNELS`] output channels of one group: the tile's
/// accumulators stay in registers for the whole sum over (input channel,
/// kernel position), each input element read serves the tile's channels,
/// and the weights are repacked so a tile's channels are adjacent. This is
/// what the int8 calibration of a convolutional network spends its time in
/// (ResNet-50 int8: 2.0 s to 0.93 s on a 2-core EPYC, same bits).
fn conv_tiles<T: Copy + Sync, A: Copy + Send + Sync>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    zero: A,
    step: impl Fn(A, T, T, usize) -> A + Sync,
) -> Vec<A> {
    const TM: usize = TILE_CHANNELS;
    const TP: usize = TILE_POSITIONS;
    let taps = taps(g);
    let (ksize, isize, osize) = spatial_sizes(g);
    let (cg, mg) = (g.cin / g.group, g.cout / g.group);
    // Weights by (channel block, input channel, kernel position, channel
    // of the block): one tile step reads TM adjacent weights.
    let blocks = g.cout / TM;
    let mut wt: Vec<T> = Vec::with_capacity(w.len());
    for b in 0..blocks {
        for ci in 0..cg {
            for kp in 0..ksize {
                wt.extend((0..TM).map(|j| w[((b * TM + j) * cg + ci) * ksize + kp]));
            }
        }
    }
    let mut y = vec![zero; g.n * g.cout * osize];
    if osize == 0 {
        return y;
    }
    // Each task owns TM whole output planes of one batch element (TM
    // divides the channels of a group, so a block stays in one group);
    // planes keep their summation order, so the result does not depend on
    // the thread count.
    y.par_chunks_mut(osize * TM)
        .enumerate()
        .for_each(|(chunk, planes)| {
            let (n, b) = (chunk / blocks, chunk % blocks);
            let m0 = b * TM;
            let grp = m0 / mg;
            let xs = &x[(n * g.cin + grp * cg) * isize..][..cg * isize];
            let wb = &wt[b * cg * ksize * TM..][..cg * ksize * TM];
            let full = osize - osize % TP;
            for p0 in (0..full).step_by(TP) {
                conv_tile::<T, A, TP>(&taps, p0, xs, isize, wb, m0, zero, &step, planes, osize);
            }
            for p0 in full..osize {
                conv_tile::<T, A, 1>(&taps, p0, xs, isize, wb, m0, zero, &step, planes, osize);
            }
        });
    y
}

/// One tile of [`conv_tiles`]: output positions `p0..p0 + P` of the TM
/// planes of channels `m0..`, summed over every input channel of the group
/// (`xs`, `isize` elements each) and kernel position, then stored. `P` is a
/// constant so the accumulators stay in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv_tile<T: Copy, A: Copy, const P: usize>(
    taps: &[Vec<u32>],
    p0: usize,
    xs: &[T],
    isize: usize,
    wb: &[T],
    m0: usize,
    zero: A,
    step: &impl Fn(A, T, T, usize) -> A,
    planes: &mut [A],
    osize: usize,
) {
    const TM: usize = TILE_CHANNELS;
    let ksize = taps.len();
    let mut acc = [[zero; TM]; P];
    for (xc, wc) in xs.chunks_exact(isize).zip(wb.chunks_exact(ksize * TM)) {
        for (tk, w8) in taps.iter().zip(wc.chunks_exact(TM)) {
            // Copied into arrays (the lengths hold by construction), so
            // the loops below index without checks.
            let offs: [u32; P] = std::array::from_fn(|p| tk[p0 + p]);
            let w8: [T; TM] = std::array::from_fn(|j| w8[j]);
            for p in 0..P {
                let off = offs[p];
                if off != PAD {
                    let xv = xc[off as usize];
                    for j in 0..TM {
                        acc[p][j] = step(acc[p][j], xv, w8[j], m0 + j);
                    }
                }
            }
        }
    }
    for (p, a) in acc.iter().enumerate() {
        for (j, &v) in a.iter().enumerate() {
            planes[j * osize + p0 + p] = v;
        }
    }
}

/// [`conv_loop`] one output plane at a time with a plane of accumulators,
/// channel and kernel position outermost: for groups whose channels are
/// not a multiple of [`TILE_CHANNELS`] (depthwise convolutions), or an
/// empty input plane.
fn conv_planes<T: Copy + Sync, A: Copy + Send>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    zero: A,
    step: impl Fn(A, T, T, usize) -> A + Sync,
) -> Vec<A> {
    let taps: Vec<Vec<Run>> = taps(g).iter().map(|t| runs(t)).collect();
    let (ksize, isize, osize) = spatial_sizes(g);
    let (cg, mg) = (g.cin / g.group, g.cout / g.group);
    let mut y = vec![zero; g.n * g.cout * osize];
    // Output planes are independent and each keeps its summation order, so
    // the result does not depend on the thread count. A task takes
    // `PLANES` planes at once, so each input plane is read once for all of
    // them (the loop is memory-bound otherwise).
    const PLANES: usize = 8;
    let osize1 = osize.max(1);
    y.par_chunks_mut(osize1 * PLANES)
        .enumerate()
        .for_each(|(chunk, accs)| {
            let planes: Vec<(usize, usize, usize)> = (0..accs.len() / osize1)
                .map(|j| {
                    let plane = chunk * PLANES + j;
                    let (n, m) = (plane / g.cout, plane % g.cout);
                    (n, m, m / mg)
                })
                .collect();
            for ci in 0..cg {
                for (kp, tk) in taps.iter().enumerate() {
                    for (acc, &(n, m, grp)) in accs.chunks_mut(osize1).zip(&planes) {
                        let xs = &x[(n * g.cin + grp * cg + ci) * isize..][..isize];
                        let wv = w[(m * cg + ci) * ksize + kp];
                        for r in tk {
                            let out = &mut acc[r.p0..r.p0 + r.len];
                            if r.step == 1 {
                                for (a, &xv) in out.iter_mut().zip(&xs[r.off0..r.off0 + r.len]) {
                                    *a = step(*a, xv, wv, m);
                                }
                            } else {
                                let strided = xs[r.off0..].iter().step_by(r.step);
                                for (a, &xv) in out.iter_mut().zip(strided) {
                                    *a = step(*a, xv, wv, m);
                                }
                            }
                        }
                    }
                }
            }
        });
    y
}

/// `conv_loop(g, x, w, 0.0, |acc, a, b, _| acc + a * b)`, the f32 `Conv`,
/// by [`conv_panels`] where that gives the same bits: its tiles add a
/// padding tap as `acc + 0.0 * w`, which leaves `acc` as it is when `w` is
/// finite (a sum from `+0.0` is never `-0.0`, and `x + ±0.0 == x`
/// otherwise), but not when `w` is infinite or NaN.
fn conv_f32(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (_, isize, osize) = spatial_sizes(g);
    use super::tile::{wide_registers, WIDE_TILE_COLUMNS};
    let mg = g.cout / g.group;
    let tiles = mg.is_multiple_of(TILE_CHANNELS) && isize > 0 && osize > 0;
    if tiles && w.iter().all(|v| v.is_finite()) {
        if mg.is_multiple_of(WIDE_TILE_COLUMNS) && wide_registers() {
            conv_panels::<WIDE_TILE_COLUMNS>(g, x, w, PANEL_BLOCK_FLOATS)
        } else {
            conv_panels::<TILE_CHANNELS>(g, x, w, PANEL_BLOCK_FLOATS)
        }
    } else {
        conv_loop(g, x, w, 0.0f32, |acc, a, b, _| acc + a * b)
    }
}

/// Output positions of one register tile of [`conv_panels`].
const PANEL_POSITIONS: usize = 4;

/// The f32 `Conv` as a matrix product per (batch element, group), the
/// convolution's input gathered first (im2col) into panels of
/// [`PANEL_POSITIONS`] output positions: panel `b` holds, for each (input
/// channel, kernel position) `k` ascending, the input elements the panel's
/// positions read, `0.0` in the padding (and past the last position). A
/// register tile of [`TILE_CHANNELS`] channels by one panel then sums
/// `acc + x * w` over `k` ascending from `+0.0`, reading both operands
/// contiguously with no padding test or offset table: the operations of
/// [`conv_loop`] in its order, plus `acc + 0.0 * w` for each padding tap
/// (see [`conv_f32`] for when that is the same). This is what the int8
/// calibration of a convolutional network spends its time in.
///
/// The caller guarantees a group's output channels are a multiple of
/// the tile's `TM` channels and the input and output planes are not
/// empty.
fn conv_panels<const TM: usize>(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    block_floats: usize,
) -> Vec<f32> {
    const TP: usize = PANEL_POSITIONS;
    let taps = taps(g);
    let (ksize, isize, osize) = spatial_sizes(g);
    let (cg, mg) = (g.cin / g.group, g.cout / g.group);
    let depth = cg * ksize;
    let panels = osize.div_ceil(TP);
    // Weights by (channel block, (input channel, kernel position), channel
    // of the block), as in `conv_tiles`.
    let blocks = g.cout / TM;
    let mut wt: Vec<f32> = Vec::with_capacity(w.len());
    for b in 0..blocks {
        for k in 0..depth {
            wt.extend((0..TM).map(|j| w[(b * TM + j) * depth + k]));
        }
    }
    let mut y = vec![0.0f32; g.n * g.cout * osize];
    // The panels are gathered a block at a time, at most `block_floats`
    // (or one panel), so a large convolution's im2col copy does not grow
    // with its output plane.
    let block = (block_floats / (depth * TP)).clamp(1, panels);
    let mut cols = vec![0.0f32; block * depth * TP];
    let arch = pulp::Arch::new();
    for (n, grp, first) in (0..g.n)
        .flat_map(|n| (0..g.group).map(move |grp| (n, grp)))
        .flat_map(|(n, grp)| (0..panels).step_by(block).map(move |first| (n, grp, first)))
    {
        let xs = &x[(n * g.cin + grp * cg) * isize..][..cg * isize];
        let cols = &mut cols[..(panels - first).min(block) * depth * TP];
        cols.par_chunks_mut(depth * TP)
            .enumerate()
            .for_each(|(b, panel)| {
                let b = first + b;
                let ps = b * TP..(b * TP + TP).min(osize);
                let channels = panel
                    .chunks_exact_mut(ksize * TP)
                    .zip(xs.chunks_exact(isize));
                for (rows, xc) in channels {
                    for (row, tk) in rows.chunks_exact_mut(TP).zip(&taps) {
                        let (used, past) = row.split_at_mut(ps.len());
                        for (v, &off) in used.iter_mut().zip(&tk[ps.clone()]) {
                            *v = if off == PAD { 0.0 } else { xc[off as usize] };
                        }
                        past.fill(0.0);
                    }
                }
            });
        let cols: &[f32] = cols;
        let ys = &mut y[(n * g.cout + grp * mg) * osize..][..mg * osize];
        // Each task owns TM whole output planes; each element keeps its
        // summation order, so the result does not depend on the thread
        // count.
        ys.par_chunks_mut(TM * osize)
            .enumerate()
            .for_each(|(bi, planes)| {
                let b = grp * (mg / TM) + bi;
                let wb = &wt[b * depth * TM..][..depth * TM];
                arch.dispatch(PanelTile::<TM> {
                    cols,
                    first,
                    wb,
                    planes,
                    depth,
                    osize,
                });
            });
    }
    y
}

/// The most `f32`s [`conv_f32`]'s panels gather at once (16 MiB).
const PANEL_BLOCK_FLOATS: usize = 1 << 22;

/// One task of [`conv_panels`]: the `TM` planes of `planes` over the
/// panels in `cols` (panels `first..` of the output plane), with the
/// channels' packed weights `wb`. Dispatched by `pulp` to AVX2 where the
/// CPU has it: a separate multiply and add per element in every width
/// (Rust never fuses them), so the bits are the same on every machine.
struct PanelTile<'a, const TM: usize> {
    cols: &'a [f32],
    first: usize,
    wb: &'a [f32],
    planes: &'a mut [f32],
    depth: usize,
    osize: usize,
}

impl<const TM: usize> pulp::WithSimd for PanelTile<'_, TM> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        const TP: usize = PANEL_POSITIONS;
        let (osize, planes) = (self.osize, self.planes);
        for (pb, panel) in self.cols.chunks_exact(self.depth * TP).enumerate() {
            let acc = super::tile::tile_sum::<TP, TM>(panel, self.wb);
            let p0 = (self.first + pb) * TP;
            for (p, a) in acc.iter().enumerate().take(osize - p0) {
                for (j, &v) in a.iter().enumerate() {
                    planes[j * osize + p0 + p] = v;
                }
            }
        }
    }
}

/// Adds the bias per output channel.
fn add_bias(g: &ConvGeom, y: &mut [f32], b: &[f32]) {
    let (_, _, osize) = spatial_sizes(g);
    for (plane, ys) in y.chunks_mut(osize.max(1)).enumerate() {
        let bias = b[plane % g.cout];
        for v in ys {
            *v += bias;
        }
    }
}

/// `Conv`.
pub(super) fn conv(node: &Node, x: &Ins) -> Result<Values, String> {
    let (xt, wt) = (x.req(0)?, x.req(1)?);
    let g = params::conv_geom(node, &xt.shape, &wt.shape)?;
    let (xv, wv) = (as_f32(&xt.values)?, as_f32(&wt.values)?);
    let mut y = conv_f32(&g, &xv, &wv);
    if let Some(b) = x.opt(2) {
        add_bias(&g, &mut y, &as_f32(&b.values)?);
    }
    Ok(from_f32(xt.dtype(), y))
}

/// `ConvInteger`.
pub(super) fn conv_integer(node: &Node, x: &Ins) -> Result<Values, String> {
    let (xt, wt) = (x.req(0)?, x.req(1)?);
    let g = params::conv_geom(node, &xt.shape, &wt.shape)?;
    let (Values::I8(xv), Values::I8(wv)) = (&xt.values, &wt.values) else {
        return Err("ConvInteger needs i8 x and w".into());
    };
    let xzp = x.opt(2).map(scalar_i64).transpose()?.unwrap_or(0) as i32;
    let wzp: Vec<i32> = match x.opt(3) {
        None => vec![0; g.cout],
        Some(t) => {
            let v = params::int_values(t, "w_zero_point")?;
            if v.len() == 1 {
                vec![v[0] as i32; g.cout]
            } else {
                v.iter().map(|&z| z as i32).collect()
            }
        }
    };
    if wzp.len() != g.cout {
        return Err(format!(
            "w_zero_point has {} values for {} output channels",
            wzp.len(),
            g.cout
        ));
    }
    let y = conv_loop(&g, xv, wv, 0i32, |acc, a, b, m| {
        acc.wrapping_add((a as i32 - xzp).wrapping_mul(b as i32 - wzp[m]))
    });
    Ok(Values::I32(y))
}

/// `ConvTranspose`.
pub(super) fn conv_transpose(node: &Node, x: &Ins) -> Result<Values, String> {
    let (xt, wt) = (x.req(0)?, x.req(1)?);
    let g = params::conv_transpose_geom(node, &xt.shape, &wt.shape)?;
    let (xv, wv) = (as_f32(&xt.values)?, as_f32(&wt.values)?);
    let w = &g.win;
    let ist = strides(&g.input);
    let kidx = multi_indices(&w.kernel);
    let ksize = kidx.len();
    let isize: usize = g.input.iter().product();
    let outs = multi_indices(&w.out);
    let osize = outs.len();
    let (cg, mg) = (g.cin / g.group, g.cout / g.group);
    // For each output position and kernel position, the input offset.
    let taps: Vec<Vec<Option<usize>>> = outs
        .iter()
        .map(|o| {
            kidx.iter()
                .map(|k| {
                    let mut off = 0usize;
                    for d in 0..o.len() {
                        let t = (o[d] + w.pads_begin[d]) as i64 - (k[d] * w.dilations[d]) as i64;
                        let s = w.strides[d] as i64;
                        if t < 0 || t % s != 0 || t / s >= g.input[d] as i64 {
                            return None;
                        }
                        off += (t / s) as usize * ist[d];
                    }
                    Some(off)
                })
                .collect()
        })
        .collect();
    let mut y = vec![0.0f32; g.n * g.cout * osize];
    for n in 0..g.n {
        for (p, tp) in taps.iter().enumerate() {
            for m in 0..g.cout {
                let (grp, mm) = (m / mg, m % mg);
                let mut acc = 0.0f32;
                for ci in 0..cg {
                    let cin = grp * cg + ci;
                    let xb = (n * g.cin + cin) * isize;
                    let wb = (cin * mg + mm) * ksize;
                    for (kp, off) in tp.iter().enumerate() {
                        if let Some(off) = off {
                            acc += xv[xb + off] * wv[wb + kp];
                        }
                    }
                }
                y[(n * g.cout + m) * osize + p] = acc;
            }
        }
    }
    if let Some(b) = x.opt(2) {
        add_bias(&g, &mut y, &as_f32(&b.values)?);
    }
    Ok(from_f32(xt.dtype(), y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::params::Window;
    use proptest::prelude::*;

    /// A convolution geometry whose groups have a multiple of
    /// [`TILE_CHANNELS`] output channels, so [`conv_loop`] takes the tiles
    /// (unless an input dimension is 0 and only padding is read).
    fn geometry() -> impl Strategy<Value = ConvGeom> {
        let dims = prop::collection::vec(
            (
                0usize..9,
                1usize..4,
                1usize..3,
                1usize..3,
                0usize..3,
                0usize..3,
            ),
            1..3,
        );
        (1usize..3, 1usize..3, 1usize..4, 1usize..3, dims).prop_filter_map(
            "output has no positions",
            |(n, group, cg, blocks, dims)| {
                let mut win = Window {
                    kernel: vec![],
                    strides: vec![],
                    dilations: vec![],
                    pads_begin: vec![],
                    pads_end: vec![],
                    out: vec![],
                };
                let mut input = vec![];
                for (i, k, s, d, pb, pe) in dims {
                    let span = (i + pb + pe).checked_sub(d * (k - 1) + 1)?;
                    input.push(i);
                    win.kernel.push(k);
                    win.strides.push(s);
                    win.dilations.push(d);
                    win.pads_begin.push(pb);
                    win.pads_end.push(pe);
                    win.out.push(span / s + 1);
                }
                Some(ConvGeom {
                    n,
                    cin: group * cg,
                    cout: group * blocks * TILE_CHANNELS,
                    group,
                    input,
                    win,
                })
            },
        )
    }

    proptest! {
        /// The register tiles give the plane kernel's bits, in f32 (signed
        /// zeros included: padding is skipped, never added as 0) and in
        /// wrapping i32 with per-channel terms.
        #[test]
        fn tiles_match_planes(g in geometry(), seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let isize: usize = g.input.iter().product();
            let ksize: usize = g.win.kernel.iter().product();
            let xn = g.n * g.cin * isize;
            let wn = g.cout * (g.cin / g.group) * ksize;
            let pick = |r: &mut rand_chacha::ChaCha8Rng| match r.gen_range(0..8) {
                0 => -0.0f32,
                1 => 0.0,
                _ => r.gen_range(-2.0f32..2.0),
            };
            let x: Vec<f32> = (0..xn).map(|_| pick(&mut rng)).collect();
            let w: Vec<f32> = (0..wn).map(|_| pick(&mut rng)).collect();
            let f = |acc: f32, a: f32, b: f32, _| acc + a * b;
            let (t, p) = (conv_loop(&g, &x, &w, -0.0f32, f), conv_planes(&g, &x, &w, -0.0f32, f));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&t), bits(&p));
            // The f32 Conv from +0.0: the panels where they run, the tiles
            // with an infinite weight (a padding tap would add NaN there).
            let plus = |acc: f32, a: f32, b: f32, _| acc + a * b;
            let reference = bits(&conv_planes(&g, &x, &w, 0.0f32, plus));
            prop_assert_eq!(bits(&conv_f32(&g, &x, &w)), reference.clone());
            if spatial_sizes(&g).1 > 0 {
                let panels = conv_panels::<TILE_CHANNELS>;
                prop_assert_eq!(bits(&panels(&g, &x, &w, PANEL_BLOCK_FLOATS)), reference.clone());
                // Gathered one panel at a time.
                prop_assert_eq!(bits(&panels(&g, &x, &w, 1)), reference.clone());
                use crate::interp::tile::WIDE_TILE_COLUMNS;
                if (g.cout / g.group).is_multiple_of(WIDE_TILE_COLUMNS) {
                    let wide = conv_panels::<WIDE_TILE_COLUMNS>;
                    prop_assert_eq!(bits(&wide(&g, &x, &w, PANEL_BLOCK_FLOATS)), reference.clone());
                    prop_assert_eq!(bits(&wide(&g, &x, &w, 1)), reference);
                }
            }
            let mut winf = w.clone();
            winf[seed as usize % wn] = f32::INFINITY;
            let reference = bits(&conv_planes(&g, &x, &winf, 0.0f32, plus));
            prop_assert_eq!(bits(&conv_f32(&g, &x, &winf)), reference);
            let xi: Vec<i8> = (0..xn).map(|_| rng.gen()).collect();
            let wi: Vec<i8> = (0..wn).map(|_| rng.gen()).collect();
            let zp: Vec<i32> = (0..g.cout).map(|_| rng.gen_range(-128..128)).collect();
            let fi = |acc: i32, a: i8, b: i8, m: usize| {
                acc.wrapping_add((a as i32 - 3).wrapping_mul(b as i32 - zp[m]))
            };
            prop_assert_eq!(conv_loop(&g, &xi, &wi, 0, fi), conv_planes(&g, &xi, &wi, 0, fi));
        }
    }
}
