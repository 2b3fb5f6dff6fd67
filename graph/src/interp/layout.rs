//! Layout ops, which copy values exactly: `Transpose`, `Concat`, `Split`,
//! `Slice`, `Gather`, `Pad`, `Expand`, `Resize` (which also interpolates)
//! and `ConstantOfShape`. (`Reshape`, `Flatten`, `Squeeze`, `Unsqueeze` and
//! `Identity` copy the values unchanged; see [`super::eval_node`].)

use lpu_isa::Values;

use super::{as_f32, bcast_offsets, for_each_index, from_f32, strides, take, take_or, Ins};
use crate::infer::params;
use crate::ir::Node;
use crate::tensor::{Tensor, TensorInfo};

/// `Transpose`.
pub(super) fn transpose(node: &Node, t: &Tensor) -> Result<Values, String> {
    let perm = params::transpose_perm(node, t.shape.len())?;
    let ist = strides(&t.shape);
    let out: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let mut idx = Vec::with_capacity(t.len());
    for_each_index(&out, |o| {
        idx.push(o.iter().zip(&perm).map(|(&i, &p)| i * ist[p]).sum());
    });
    take(&t.values, &idx)
}

/// `Concat`.
pub(super) fn concat(node: &Node, x: &Ins, out: &[usize]) -> Result<Values, String> {
    let axis = params::norm_axis(params::int(node, "axis", 0)?, out.len(), "axis")?;
    let ts: Vec<&Tensor> = (0..x.len()).map(|i| x.req(i)).collect::<Result<_, _>>()?;
    let outer: usize = out[..axis].iter().product();
    let inner: usize = out[axis + 1..].iter().product();
    // Concatenate all values, then gather.
    let mut all: Vec<usize> = Vec::new();
    let mut base = 0usize;
    let mut bases = Vec::new();
    for t in &ts {
        bases.push(base);
        base += t.len();
    }
    for o in 0..outer {
        for (t, b) in ts.iter().zip(&bases) {
            let chunk = t.shape[axis] * inner;
            all.extend(b + o * chunk..b + (o + 1) * chunk);
        }
    }
    let joined = join(&ts)?;
    take(&joined, &all)
}

/// All values of `ts`, one after another.
fn join(ts: &[&Tensor]) -> Result<Values, String> {
    let first = ts.first().ok_or("no inputs")?;
    let mut v = first.values.clone();
    for t in &ts[1..] {
        match (&mut v, &t.values) {
            (Values::F32(a), Values::F32(b)) => a.extend(b),
            (Values::F16(a), Values::F16(b)) => a.extend(b),
            (Values::I8(a), Values::I8(b)) => a.extend(b),
            (Values::I32(a), Values::I32(b)) => a.extend(b),
            _ => return Err("input types differ".into()),
        }
    }
    Ok(v)
}

/// Values of `t` in the box `starts[d] + k * steps[d]`, `k < lens[d]`.
fn select(t: &Tensor, plan: &[(i64, i64, usize)]) -> Result<Values, String> {
    let ist = strides(&t.shape);
    let lens: Vec<usize> = plan.iter().map(|p| p.2).collect();
    let mut idx = Vec::with_capacity(lens.iter().product());
    for_each_index(&lens, |o| {
        idx.push(
            o.iter()
                .zip(plan)
                .zip(&ist)
                .map(|((&k, &(s, st, _)), &stride)| (s + k as i64 * st) as usize * stride)
                .sum(),
        );
    });
    take(&t.values, &idx)
}

/// `Split`.
pub(super) fn split(node: &Node, x: &Ins, outs: &[TensorInfo]) -> Result<Vec<Tensor>, String> {
    let t = x.req(0)?;
    let (axis, sizes) = params::split_sizes(node, &t.shape, outs.len(), x.opt(1))?;
    let mut start = 0i64;
    let mut res = Vec::with_capacity(sizes.len());
    for s in sizes {
        let mut plan: Vec<(i64, i64, usize)> = t.shape.iter().map(|&d| (0, 1, d)).collect();
        plan[axis] = (start, 1, s);
        start += s as i64;
        let shape = plan.iter().map(|p| p.2).collect();
        res.push(Tensor::new(shape, select(t, &plan)?).map_err(|e| e.to_string())?);
    }
    Ok(res)
}

/// `Slice`.
pub(super) fn slice(x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let plan = params::slice_plan(&t.shape, x.req(1)?, x.req(2)?, x.opt(3), x.opt(4))?;
    select(t, &plan)
}

/// `Gather`.
pub(super) fn gather(node: &Node, t: &Tensor, indices: &Tensor) -> Result<Values, String> {
    let axis = params::norm_axis(params::int(node, "axis", 0)?, t.shape.len(), "axis")?;
    let ind = params::int_values(indices, "indices")?;
    let d = t.shape[axis] as i64;
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut rows = Vec::with_capacity(ind.len());
    for &i in &ind {
        if i < -d || i >= d {
            return Err(format!(
                "index {i} is out of range for axis {axis} of size {d} (expected {} to {})",
                -d,
                d - 1
            ));
        }
        rows.push(if i < 0 { i + d } else { i } as usize);
    }
    let mut idx = Vec::with_capacity(outer * rows.len() * inner);
    for o in 0..outer {
        for &r in &rows {
            let b = (o * t.shape[axis] + r) * inner;
            idx.extend(b..b + inner);
        }
    }
    take(&t.values, &idx)
}

/// The source index along a dimension of size `n` for output position `i`
/// (already shifted by the begin padding), per pad mode; `None` = constant.
/// The compiler's Pad lowering uses this same function.
pub fn pad_source(i: i64, n: i64, mode: &str) -> Option<i64> {
    if (0..n).contains(&i) {
        return Some(i);
    }
    match mode {
        "edge" => Some(i.clamp(0, n - 1)),
        "wrap" => Some(i.rem_euclid(n)),
        "reflect" => {
            if n == 1 {
                return Some(0);
            }
            let p = 2 * (n - 1);
            let m = i.rem_euclid(p);
            Some(if m < n { m } else { p - m })
        }
        _ => None,
    }
}

/// `Pad`.
pub(super) fn pad(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let (plan, mode) = params::pad_plan(node, t.shape.len(), x.opt(1), x.opt(3))?;
    let out = params::padded_shape(&t.shape, &plan)?;
    let ist = strides(&t.shape);
    let fill = match x.opt(2) {
        Some(c) => c.values.clone(),
        None => {
            let v = params::float(node, "value", 0.0)?;
            super::elementwise::cast(&Values::F32(vec![v]), t.dtype())
        }
    };
    let mut idx = Vec::with_capacity(out.iter().product());
    for_each_index(&out, |o| {
        let mut off = Some(0usize);
        for d in 0..o.len() {
            let i = o[d] as i64 - plan[d].0;
            off = match (off, pad_source(i, t.shape[d] as i64, &mode)) {
                (Some(a), Some(s)) => Some(a + s as usize * ist[d]),
                _ => None,
            };
        }
        idx.push(off);
    });
    take_or(&t.values, &idx, &fill)
}

/// `Expand`.
pub(super) fn expand(t: &Tensor, out: &[usize]) -> Result<Values, String> {
    take(&t.values, &bcast_offsets(&t.shape, out)?)
}

/// `ConstantOfShape`.
pub(super) fn constant_of_shape(node: &Node, shape: &Tensor) -> Result<Values, String> {
    let (out, value) = params::constant_of_shape(node, shape)?;
    let n: usize = out.iter().product();
    take(&value.values, &vec![0; n])
}

/// Resize's input coordinate of output coordinate `x` under the
/// `coordinate_transformation_mode` `coord` (see the module doc of
/// [`crate::interp`]; `tf_crop_and_resize`, which needs the roi, is
/// [`resize_taps`]'s, which the compiler's Resize lowering uses too).
pub fn source_coord(coord: &str, x: usize, scale: f64, len_in: usize, len_out: usize) -> f64 {
    let x = x as f64;
    match coord {
        "asymmetric" => x / scale,
        "align_corners" => {
            // ONNX divides by the resized length before rounding
            // (`in * scale`), which equals the output length when sizes
            // are given.
            let resized = len_in as f64 * scale;
            if len_out == 1 || resized <= 1.0 {
                0.0
            } else {
                x * (len_in as f64 - 1.0) / (resized - 1.0)
            }
        }
        "pytorch_half_pixel" => {
            if len_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        "half_pixel_symmetric" => {
            let adj = len_out as f64 / (scale * len_in as f64);
            let center = len_in as f64 / 2.0;
            center * (1.0 - adj) + (x + 0.5) / scale - 0.5
        }
        _ => (x + 0.5) / scale - 0.5,
    }
}

/// Resize's nearest input index for coordinate `c` along a dimension of
/// `len` under `nearest_mode` `mode`, clamped to the input.
pub fn nearest_index(mode: &str, c: f64, len: usize) -> usize {
    let r = match mode {
        "round_prefer_ceil" => (c + 0.5).floor(),
        "floor" => c.floor(),
        "ceil" => c.ceil(),
        _ => (c - 0.5).ceil(),
    };
    r.clamp(0.0, len as f64 - 1.0) as usize
}

/// The taps of one Resize output position along one dimension: `(input
/// index, weight)` pairs, or `None` where the output is the extrapolation
/// value.
pub type Taps = Option<Vec<(usize, f32)>>;

/// Resize's sampling plan, computed once from the node and its constant
/// inputs and shared by the interpreter and the compiler's lowering, so
/// that both take the same input elements with the same f32 weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeTaps {
    /// Input shape.
    pub input: Vec<usize>,
    /// Output shape.
    pub out: Vec<usize>,
    /// `mode` is `nearest`: every tap list is one `(index, 1.0)`, a copy.
    pub nearest: bool,
    /// Per dimension, per output position along it: the `(input index,
    /// weight)` taps, summed in this order in f32 (`v0 * w0 + v1 * w1 +
    /// ..`), or `None` where the output is `extrapolation`
    /// (`tf_crop_and_resize` outside the input).
    pub dims: Vec<Vec<Taps>>,
    /// `extrapolation_value`.
    pub extrapolation: f32,
}

impl ResizeTaps {
    /// Whether dimension `d` is left as it is: as long as the input, and
    /// every output position `o` has exactly one tap of nonzero weight,
    /// weight 1 at input `o`. The interpreter skips such a dimension (the
    /// zero-weight taps would only add zeros), and so does the lowering.
    pub fn is_identity(&self, d: usize) -> bool {
        self.dims[d].len() == self.input[d]
            && self.dims[d].iter().enumerate().all(|(o, t)| {
                let Some(t) = t else { return false };
                let mut nz = t.iter().filter(|(_, w)| *w != 0.0);
                matches!((nz.next(), nz.next()), (Some(&(i, w)), None) if i == o && w == 1.0)
            })
    }

    /// Whether the output element at `o` is `extrapolation` (outside the
    /// input along some dimension).
    pub fn outside(&self, o: &[usize]) -> bool {
        o.iter().zip(&self.dims).any(|(&i, d)| d[i].is_none())
    }
}

/// Resize's sampling plan for input shape `shape` and the constant inputs
/// `roi` (read by `tf_crop_and_resize` only), `scales` and `sizes` (see
/// the module doc of [`crate::interp`] for the rules).
pub fn resize_taps(
    node: &Node,
    shape: &[usize],
    roi: Option<&Tensor>,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> Result<ResizeTaps, String> {
    let plan = params::resize_plan(node, shape, roi, scales, sizes)?;
    let dims = (0..shape.len())
        .map(|d| {
            (0..plan.out[d])
                .map(|o| {
                    resize_coord(&plan, d, o, shape[d]).map(|c| axis_taps(&plan, d, c, shape[d]))
                })
                .collect()
        })
        .collect();
    Ok(ResizeTaps {
        input: shape.to_vec(),
        out: plan.out.clone(),
        nearest: plan.mode == "nearest",
        dims,
        extrapolation: plan.extrapolation,
    })
}

/// The input coordinate of output position `x` along dimension `d` (of
/// input length `len_in`), or `None` where `tf_crop_and_resize` falls
/// outside `[0, len_in - 1]`.
fn resize_coord(plan: &params::ResizePlan, d: usize, x: usize, len_in: usize) -> Option<f64> {
    let scale = plan.scales[d];
    if plan.coord != "tf_crop_and_resize" {
        return Some(source_coord(&plan.coord, x, scale, len_in, plan.out[d]));
    }
    // As the ONNX reference: the resized length is `scale * in` (the
    // output length when sizes are given).
    let (start, end) = plan.roi[d];
    let last = len_in as f64 - 1.0;
    let resized = scale * len_in as f64;
    let c = if resized == 1.0 {
        (end - start) * last / 2.0
    } else {
        x as f64 * (end - start) * last / (resized - 1.0)
    } + start * last;
    (0.0..=last).contains(&c).then_some(c)
}

/// The taps along dimension `d` (of input length `len`) at input
/// coordinate `c`.
fn axis_taps(plan: &params::ResizePlan, d: usize, c: f64, len: usize) -> Vec<(usize, f32)> {
    let hi = len as f64 - 1.0;
    match plan.mode.as_str() {
        "nearest" => return vec![(nearest_index(&plan.nearest, c, len), 1.0)],
        "linear" if !plan.antialias => {
            let i0 = c.floor();
            let r = (c - i0) as f32;
            return vec![
                (i0.clamp(0.0, hi) as usize, 1.0 - r),
                ((i0 + 1.0).clamp(0.0, hi) as usize, r),
            ];
        }
        _ => {}
    }
    // The ONNX reference's rule: the left neighbour `i0` is the largest
    // integer below `c` (so the ratio `c - i0` is in (0, 1]); the window is
    // `i0 + start ..` (as many taps as coefficients), edge-padded, and
    // shifted into the padded input when it would leave it.
    let i0 = c.ceil() - 1.0;
    let ratio = c - i0;
    let (start, mut coeffs) = resize_coeffs(plan, ratio, plan.scales[d]);
    let n = coeffs.len() as i64;
    let pad = (n + 1) / 2;
    let first = (i0 as i64 + start).clamp(-pad, len as i64 + pad - n);
    if plan.exclude_outside {
        for (k, w) in coeffs.iter_mut().enumerate() {
            let j = first + k as i64;
            if j < 0 || j >= len as i64 {
                *w = 0.0;
            }
        }
        let sum: f64 = coeffs.iter().sum();
        if sum != 0.0 {
            coeffs.iter_mut().for_each(|w| *w /= sum);
        }
    }
    coeffs
        .iter()
        .enumerate()
        .map(|(k, &w)| {
            (
                (first + k as i64).clamp(0, len as i64 - 1) as usize,
                w as f32,
            )
        })
        .collect()
}

/// Resize's interpolation coefficients (computed in f64) at `ratio` in
/// (0, 1] and the offset of the first one from the left neighbour:
/// `cubic` (Keys, `cubic_coeff_a`) at offsets -1..=2; with `antialias`,
/// `linear` (triangle) and `cubic` stretched by `1 / min(scale, 1)` and
/// normalized to sum 1.
fn resize_coeffs(plan: &params::ResizePlan, ratio: f64, scale: f64) -> (i64, Vec<f64>) {
    let a = plan.cubic_a;
    let keys = |x: f64| {
        let x = x.abs();
        let (x2, x3) = (x * x, x * x * x);
        if x <= 1.0 {
            (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
        } else if x < 2.0 {
            a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    let normalized = |v: Vec<f64>| {
        let sum: f64 = v.iter().sum();
        v.into_iter().map(|w| w / sum).collect::<Vec<f64>>()
    };
    let s = scale.min(1.0);
    if plan.mode == "linear" {
        let start = (-1.0 / s).floor() as i64 + 1;
        let v = (start..2 - start)
            .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
            .collect();
        return (start, normalized(v));
    }
    if plan.antialias {
        let start = (-2.0 / s).floor() as i64 + 1;
        let v = (start..2 - start)
            .map(|i| keys(s * (i as f64 - ratio)))
            .collect();
        return (start, normalized(v));
    }
    let (r, q) = (ratio, 1.0 - ratio);
    (
        -1,
        vec![
            ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
            ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
            ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
            ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
        ],
    )
}

/// `Resize`.
pub(super) fn resize(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let plan = resize_taps(node, &t.shape, x.opt(1), x.opt(2), x.opt(3))?;
    let rank = t.shape.len();
    if plan.nearest {
        let ist = strides(&t.shape);
        let mut idx = Vec::with_capacity(plan.out.iter().product());
        for_each_index(&plan.out, |o| {
            idx.push(
                (0..rank)
                    .map(|d| {
                        plan.dims[d][o[d]]
                            .as_ref()
                            .and_then(|v| v.first())
                            .map(|v| v.0 * ist[d])
                    })
                    .sum::<Option<usize>>(),
            );
        });
        let fill = super::elementwise::cast(&Values::F32(vec![plan.extrapolation]), t.dtype());
        return take_or(&t.values, &idx, &fill);
    }
    // Interpolate one dimension at a time, last to first.
    let mut cur = as_f32(&t.values)?;
    let mut shape = t.shape.clone();
    for d in (0..rank).rev() {
        if plan.is_identity(d) {
            continue;
        }
        let (n_in, n_out) = (shape[d], plan.out[d]);
        let inner: usize = shape[d + 1..].iter().product();
        let outer: usize = shape[..d].iter().product();
        let mut next = Vec::with_capacity(outer * n_out * inner);
        for o in 0..outer {
            for taps in &plan.dims[d] {
                for j in 0..inner {
                    let at = |i: usize| cur[(o * n_in + i) * inner + j];
                    next.push(match taps {
                        None => plan.extrapolation,
                        Some(taps) => {
                            let mut it = taps.iter();
                            let first = it.next().map_or(0.0, |&(i, w)| at(i) * w);
                            it.fold(first, |acc, &(i, w)| acc + at(i) * w)
                        }
                    });
                }
            }
        }
        cur = next;
        shape[d] = n_out;
    }
    // Outside the input along any dimension: the extrapolation value
    // itself (not a weighted sum of it).
    if plan.dims.iter().any(|d| d.iter().any(Option::is_none)) {
        let mut k = 0;
        for_each_index(&plan.out, |o| {
            if plan.outside(o) {
                cur[k] = plan.extrapolation;
            }
            k += 1;
        });
    }
    Ok(from_f32(t.dtype(), cur))
}
