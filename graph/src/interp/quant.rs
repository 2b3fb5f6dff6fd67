//! `QuantizeLinear`, `DequantizeLinear` (per tensor or per axis) and
//! `MatMulInteger`.

use crate::DType;
use lpu_isa::Values;

use super::{as_f32, scalar_i64, strides, Ins};
use crate::infer::params;
use crate::ir::Node;
use crate::tensor::Tensor;

/// `QuantizeLinear` of one value (see the module doc of [`crate::interp`]).
pub fn quantize(x: f32, scale: f32, zp: f32) -> i8 {
    let r = (x / scale).round_ties_even();
    (r + zp).clamp(-128.0, 127.0) as i8
}

/// For each element of `x`, the index into a per-axis parameter vector of
/// length `n` (all 0 for a per-tensor parameter, `n == 1`).
fn param_index(node: &Node, x: &Tensor, n: usize) -> Result<Vec<usize>, String> {
    if n == 1 {
        return Ok(vec![0; x.len()]);
    }
    let axis = params::norm_axis(
        params::int(node, "axis", 1)?,
        x.shape.len(),
        "attribute 'axis'",
    )?;
    if x.shape[axis] != n {
        return Err(format!(
            "per-axis parameters of length {n} do not match dimension {axis} of {:?}",
            x.shape
        ));
    }
    let st = strides(&x.shape)[axis];
    Ok((0..x.len()).map(|e| (e / st) % n).collect())
}

/// The zero points (as i64), defaulting to 0, matching the scale's length.
fn zero_points(x: &Ins, i: usize, n: usize) -> Result<Vec<i64>, String> {
    match x.opt(i) {
        None => Ok(vec![0; n]),
        Some(z) => {
            let v = params::int_values(z, "the zero point")?;
            if v.len() != n {
                return Err(format!("{} zero points for {n} scales", v.len()));
            }
            Ok(v)
        }
    }
}

/// `QuantizeLinear`.
pub(super) fn quantize_linear(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let v = as_f32(&t.values)?;
    let scale = params::float_values(x.req(1)?, "the scale")?;
    let zp = zero_points(x, 2, scale.len())?;
    let idx = param_index(node, t, scale.len())?;
    if x.opt(2).is_some_and(|z| z.values.dtype() == DType::I32) {
        // An i32 result: rounded and offset as the VXM's `qnt.f32.i32`
        // computes it (in f32), no clamp but i32's own.
        return Ok(Values::I32(
            v.iter()
                .zip(&idx)
                .map(|(&x, &k)| ((x / scale[k]).round_ties_even() + zp[k] as f32) as i32)
                .collect(),
        ));
    }
    Ok(Values::I8(
        v.iter()
            .zip(&idx)
            .map(|(&x, &k)| quantize(x, scale[k], zp[k] as f32))
            .collect(),
    ))
}

/// `DequantizeLinear`.
pub(super) fn dequantize_linear(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let scale = params::float_values(x.req(1)?, "the scale")?;
    let zp = zero_points(x, 2, scale.len())?;
    let idx = param_index(node, t, scale.len())?;
    let q = params::int_values(t, "x")?;
    Ok(Values::F32(
        q.iter()
            .zip(&idx)
            .map(|(&q, &k)| ((q - zp[k]) as f32) * scale[k])
            .collect(),
    ))
}

/// `MatMulInteger`.
pub(super) fn matmul_integer(x: &Ins) -> Result<Values, String> {
    let (a, b) = (x.req(0)?, x.req(1)?);
    let azp = x.opt(2).map(scalar_i64).transpose()?.unwrap_or(0) as i32;
    let bzp = x.opt(3).map(scalar_i64).transpose()?.unwrap_or(0) as i32;
    let (Values::I8(av), Values::I8(bv)) = (&a.values, &b.values) else {
        return Err("MatMulInteger needs i8 inputs".into());
    };
    let (&[m, k], &[k2, n]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return Err("MatMulInteger needs rank-2 inputs".into());
    };
    if k != k2 || av.len() != m * k || bv.len() != k * n {
        return Err("MatMulInteger: inconsistent shapes".into());
    }
    let mut y = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for kk in 0..k {
                let p = (av[i * k + kk] as i32 - azp).wrapping_mul(bv[kk * n + j] as i32 - bzp);
                acc = acc.wrapping_add(p);
            }
            y[i * n + j] = acc;
        }
    }
    Ok(Values::I32(y))
}
