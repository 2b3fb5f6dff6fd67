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
/// [`crate::interp`]); the compiler's Resize lowering uses this same
/// function.
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

/// `Resize`.
pub(super) fn resize(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let plan = params::resize_plan(node, &t.shape, x.opt(2), x.opt(3))?;
    let rank = t.shape.len();
    let coords: Vec<Vec<f64>> = (0..rank)
        .map(|d| {
            (0..plan.out[d])
                .map(|o| source_coord(&plan.coord, o, plan.scales[d], t.shape[d], plan.out[d]))
                .collect()
        })
        .collect();
    if plan.mode == "nearest" {
        let ist = strides(&t.shape);
        let pick: Vec<Vec<usize>> = coords
            .iter()
            .zip(&t.shape)
            .map(|(cs, &n)| {
                cs.iter()
                    .map(|&c| nearest_index(&plan.nearest, c, n))
                    .collect()
            })
            .collect();
        let mut idx = Vec::with_capacity(plan.out.iter().product());
        for_each_index(&plan.out, |o| {
            idx.push((0..rank).map(|d| pick[d][o[d]] * ist[d]).sum());
        });
        return take(&t.values, &idx);
    }
    // Linear: interpolate one dimension at a time, last to first.
    let mut cur = as_f32(&t.values)?;
    let mut shape = t.shape.clone();
    for d in (0..rank).rev() {
        let (n_in, n_out) = (shape[d], plan.out[d]);
        let inner: usize = shape[d + 1..].iter().product();
        let outer: usize = shape[..d].iter().product();
        let taps: Vec<(usize, usize, f32)> = coords[d]
            .iter()
            .map(|&c| {
                let i0 = c.floor();
                let r = (c - i0) as f32;
                let hi = n_in as f64 - 1.0;
                let a = i0.clamp(0.0, hi) as usize;
                let b = (i0 + 1.0).clamp(0.0, hi) as usize;
                (a, b, r)
            })
            .collect();
        let mut next = Vec::with_capacity(outer * n_out * inner);
        for o in 0..outer {
            for &(a, b, r) in &taps {
                for j in 0..inner {
                    let v0 = cur[(o * n_in + a) * inner + j];
                    let v1 = cur[(o * n_in + b) * inner + j];
                    next.push(v0 * (1.0 - r) + v1 * r);
                }
            }
        }
        cur = next;
        shape[d] = n_out;
    }
    Ok(from_f32(t.dtype(), cur))
}
