//! `ReduceSum`, `ReduceMean` and `ReduceMax`.

use lpu_isa::Values;

use super::{as_f32, from_f32, strides, Ins};
use crate::infer::params;
use crate::ir::Node;

/// For each input element (row-major), the flat index of the output element
/// it reduces into (the output with the reduced axes kept as size 1).
fn targets(shape: &[usize], mask: &[bool]) -> Vec<usize> {
    let kept: Vec<usize> = shape
        .iter()
        .zip(mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .collect();
    let ost = strides(&kept);
    let mut out = Vec::with_capacity(shape.iter().product());
    super::for_each_index(shape, |idx| {
        out.push(
            idx.iter()
                .zip(mask)
                .zip(&ost)
                .map(|((&i, &m), &s)| if m { 0 } else { i * s })
                .sum(),
        )
    });
    out
}

/// The reductions.
pub(super) fn reduce(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let Some(mask) = params::reduce_mask(node, t.shape.len(), x.opt(1))? else {
        return Ok(t.values.clone());
    };
    let tg = targets(&t.shape, &mask);
    let n_out: usize = t
        .shape
        .iter()
        .zip(&mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .product();
    let count: usize = t
        .shape
        .iter()
        .zip(&mask)
        .filter(|(_, &m)| m)
        .map(|(&d, _)| d)
        .product();
    let op = node.op_type.as_str();
    fn fold<T: Copy>(v: &[T], tg: &[usize], n: usize, f: impl Fn(T, T) -> T) -> Vec<T> {
        let mut acc: Vec<Option<T>> = vec![None; n];
        for (&x, &o) in v.iter().zip(tg) {
            acc[o] = Some(match acc[o] {
                None => x,
                Some(a) => f(a, x),
            });
        }
        acc.into_iter().map(|a| a.unwrap_or(v[0])).collect()
    }
    Ok(match (&t.values, op) {
        (Values::I8(v), "ReduceSum") => Values::I8(fold(v, &tg, n_out, i8::saturating_add)),
        (Values::I32(v), "ReduceSum") => Values::I32(fold(v, &tg, n_out, i32::wrapping_add)),
        (Values::I8(v), "ReduceMax") => Values::I8(fold(v, &tg, n_out, i8::max)),
        (Values::I32(v), "ReduceMax") => Values::I32(fold(v, &tg, n_out, i32::max)),
        (vals, _) => {
            let v = as_f32(vals)?;
            let y = match op {
                "ReduceMax" => fold(&v, &tg, n_out, |a, b| if b > a { b } else { a }),
                _ => {
                    // 0.0 + first element is the first element (except -0.0,
                    // which becomes +0.0, as a sum from 0.0 would).
                    let mut s = fold(&v, &tg, n_out, |a, b| a + b);
                    for x in &mut s {
                        *x += 0.0;
                    }
                    if op == "ReduceMean" {
                        for x in &mut s {
                            *x /= count as f32;
                        }
                    }
                    s
                }
            };
            from_f32(t.dtype(), y)
        }
    })
}
