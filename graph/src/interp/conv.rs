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
/// position) ascending, skipping padding. It runs one output plane at a
/// time with a plane of accumulators, channel and kernel position outermost,
/// which performs exactly these operations in this order for every element.
fn conv_loop<T: Copy + Sync, A: Copy + Send>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    zero: A,
    step: impl Fn(A, T, T, usize) -> A + Sync,
) -> Vec<A> {
    let taps: Vec<Vec<Run>> = taps(g).iter().map(|t| runs(t)).collect();
    let ksize: usize = g.win.kernel.iter().product();
    let isize: usize = g.input.iter().product();
    let osize: usize = g.win.out.iter().product();
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

/// Adds the bias per output channel.
fn add_bias(g: &ConvGeom, y: &mut [f32], b: &[f32]) {
    let osize: usize = g.win.out.iter().product();
    for (e, v) in y.iter_mut().enumerate() {
        *v += b[(e / osize) % g.cout];
    }
}

/// `Conv`.
pub(super) fn conv(node: &Node, x: &Ins) -> Result<Values, String> {
    let (xt, wt) = (x.req(0)?, x.req(1)?);
    let g = params::conv_geom(node, &xt.shape, &wt.shape)?;
    let (xv, wv) = (as_f32(&xt.values)?, as_f32(&wt.values)?);
    let mut y = conv_loop(&g, &xv, &wv, 0.0f32, |acc, a, b, _| acc + a * b);
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
