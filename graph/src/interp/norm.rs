//! `BatchNormalization`, `LRN`, `Softmax`, `LayerNormalization` and
//! `RMSNormalization`.

use lpu_isa::Values;

use super::{as_f32, bcast_offsets, from_f32, Ins};
use crate::infer::params;
use crate::ir::Node;
use crate::tensor::Tensor;

/// `BatchNormalization` (inference form).
pub(super) fn batch_norm(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let eps = params::float(node, "epsilon", 1e-5)?;
    let p: Vec<Vec<f32>> = (1..5)
        .map(|i| as_f32(&x.req(i)?.values))
        .collect::<Result<_, _>>()?;
    let (scale, b, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
    let c = t.shape[1];
    let inner: usize = t.shape[2..].iter().product();
    let v = as_f32(&t.values)?;
    Ok(from_f32(
        t.dtype(),
        v.iter()
            .enumerate()
            .map(|(e, &x)| {
                let ch = (e / inner) % c;
                (x - mean[ch]) / (var[ch] + eps).sqrt() * scale[ch] + b[ch]
            })
            .collect(),
    ))
}

/// `LRN` across channels.
pub(super) fn lrn(node: &Node, t: &Tensor) -> Result<Values, String> {
    let alpha = params::float(node, "alpha", 1e-4)?;
    let beta = params::float(node, "beta", 0.75)?;
    let bias = params::float(node, "bias", 1.0)?;
    let size = params::int(node, "size", 1)?;
    if size < 1 {
        return Err(format!("size {size} must be at least 1"));
    }
    let size = size as usize;
    let c = t.shape[1];
    let inner: usize = t.shape[2..].iter().product();
    let v = as_f32(&t.values)?;
    let (below, above) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let a = alpha / size as f32;
    Ok(from_f32(
        t.dtype(),
        v.iter()
            .enumerate()
            .map(|(e, &x)| {
                let ch = (e / inner) % c;
                let base = e - ch * inner;
                let mut sq = 0.0f32;
                for k in ch.saturating_sub(below)..=(ch + above).min(c - 1) {
                    let y = v[base + k * inner];
                    sq += y * y;
                }
                x / (bias + a * sq).powf(beta)
            })
            .collect(),
    ))
}

/// `Softmax` along `axis`.
pub(super) fn softmax(node: &Node, t: &Tensor) -> Result<Values, String> {
    let axis = params::norm_axis(params::int(node, "axis", -1)?, t.shape.len(), "axis")?;
    let d = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    let outer: usize = t.shape[..axis].iter().product();
    let v = as_f32(&t.values)?;
    let mut y = vec![0.0f32; v.len()];
    let mut e = vec![0.0f32; d];
    for o in 0..outer {
        for j in 0..inner {
            let at = |i: usize| (o * d + i) * inner + j;
            let mut m = v[at(0)];
            for i in 1..d {
                if v[at(i)] > m {
                    m = v[at(i)];
                }
            }
            let mut s = 0.0f32;
            for i in 0..d {
                e[i] = (v[at(i)] - m).exp();
                s += e[i];
            }
            for i in 0..d {
                y[at(i)] = e[i] / s;
            }
        }
    }
    Ok(from_f32(t.dtype(), y))
}

/// `LayerNormalization` and `RMSNormalization`.
pub(super) fn layer_norm(node: &Node, x: &Ins) -> Result<Values, String> {
    layer_norm_stats(node, x).map(|(y, _, _)| y)
}

/// [`layer_norm`] with LayerNormalization's optional outputs: each row's
/// mean and `1 / sqrt(variance + epsilon)` (RMSNormalization: empty, and
/// its `1 / rms`), in f32.
pub(super) fn layer_norm_stats(
    node: &Node,
    x: &Ins,
) -> Result<(Values, Vec<f32>, Vec<f32>), String> {
    let t = x.req(0)?;
    let rms = node.op_type == "RMSNormalization";
    let axis = params::norm_axis(params::int(node, "axis", -1)?, t.shape.len(), "axis")?;
    let eps = params::float(node, "epsilon", 1e-5)?;
    let norm_shape = &t.shape[axis..];
    let n: usize = norm_shape.iter().product();
    let scale_t = x.req(1)?;
    let scale = as_f32(&scale_t.values)?;
    let si = bcast_offsets(&scale_t.shape, norm_shape)?;
    let bias = match x.opt(2).filter(|_| !rms) {
        Some(b) => Some((as_f32(&b.values)?, bcast_offsets(&b.shape, norm_shape)?)),
        None => None,
    };
    let v = as_f32(&t.values)?;
    let mut y = Vec::with_capacity(v.len());
    let (mut means, mut invs) = (Vec::new(), Vec::new());
    for row in v.chunks(n) {
        if rms {
            let mut ss = 0.0f32;
            for &x in row {
                ss += x * x;
            }
            let inv = 1.0 / (ss / n as f32 + eps).sqrt();
            invs.push(inv);
            for (k, &x) in row.iter().enumerate() {
                y.push(x * inv * scale[si[k]]);
            }
        } else {
            let mut s = 0.0f32;
            for &x in row {
                s += x;
            }
            let mean = s / n as f32;
            let mut ss = 0.0f32;
            for &x in row {
                let d = x - mean;
                ss += d * d;
            }
            let inv = 1.0 / (ss / n as f32 + eps).sqrt();
            means.push(mean);
            invs.push(inv);
            for (k, &x) in row.iter().enumerate() {
                let mut r = (x - mean) * inv * scale[si[k]];
                if let Some((b, bi)) = &bias {
                    r += b[bi[k]];
                }
                y.push(r);
            }
        }
    }
    Ok((from_f32(t.dtype(), y), means, invs))
}
