//! `MaxPool`, `AveragePool` and `GlobalAveragePool`.

use lpu_isa::Values;

use super::conv::multi_indices;
use super::{as_f32, from_f32, strides};
use crate::infer::params;
use crate::ir::Node;
use crate::tensor::Tensor;

/// One window position along a dimension.
enum Tap {
    /// Inside the input, at this flat spatial offset contribution.
    In(usize),
    /// In the padding (counted by `count_include_pad`).
    Pad,
    /// Past the end padding (never counted).
    Out,
}

/// `MaxPool` and `AveragePool`.
pub(super) fn pool(node: &Node, x: &Tensor) -> Result<Values, String> {
    let w = params::pool_geom(node, &x.shape)?;
    let is_max = node.op_type == "MaxPool";
    let include_pad = !is_max && params::flag(node, "count_include_pad", false)?;
    let input = &x.shape[2..];
    let ist = strides(input);
    let isize: usize = input.iter().product();
    let kidx = multi_indices(&w.kernel);
    let outs = multi_indices(&w.out);
    let osize = outs.len();
    let nc = x.shape[0] * x.shape[1];
    // For each output position: the in-bounds offsets (row-major window
    // order) and the divisor with count_include_pad.
    let windows: Vec<(Vec<usize>, usize)> = outs
        .iter()
        .map(|o| {
            let mut offs = Vec::new();
            let mut padded_count = 0usize;
            for k in &kidx {
                let mut tap = Tap::In(0);
                for d in 0..o.len() {
                    let i = (o[d] * w.strides[d] + k[d] * w.dilations[d]) as i64
                        - w.pads_begin[d] as i64;
                    let this = if i < 0 || i >= input[d] as i64 {
                        if i < input[d] as i64 + w.pads_end[d] as i64 {
                            Tap::Pad
                        } else {
                            Tap::Out
                        }
                    } else {
                        Tap::In(i as usize * ist[d])
                    };
                    tap = match (tap, this) {
                        (Tap::Out, _) | (_, Tap::Out) => Tap::Out,
                        (Tap::Pad, _) | (_, Tap::Pad) => Tap::Pad,
                        (Tap::In(a), Tap::In(b)) => Tap::In(a + b),
                    };
                }
                match tap {
                    Tap::In(off) => {
                        offs.push(off);
                        padded_count += 1;
                    }
                    Tap::Pad => padded_count += 1,
                    Tap::Out => {}
                }
            }
            (offs, padded_count)
        })
        .collect();
    if windows.iter().any(|(o, _)| o.is_empty()) {
        return Err("a pooling window lies entirely in the padding".into());
    }
    if is_max {
        fn max_pool<T: Copy + PartialOrd>(
            v: &[T],
            nc: usize,
            isize: usize,
            windows: &[(Vec<usize>, usize)],
        ) -> Vec<T> {
            let mut y = Vec::with_capacity(nc * windows.len());
            for c in 0..nc {
                let base = c * isize;
                for (offs, _) in windows {
                    let mut acc = v[base + offs[0]];
                    for &o in &offs[1..] {
                        if v[base + o] > acc {
                            acc = v[base + o];
                        }
                    }
                    y.push(acc);
                }
            }
            y
        }
        return Ok(match &x.values {
            Values::I8(v) => Values::I8(max_pool(v, nc, isize, &windows)),
            Values::I32(v) => Values::I32(max_pool(v, nc, isize, &windows)),
            other => from_f32(x.dtype(), max_pool(&as_f32(other)?, nc, isize, &windows)),
        });
    }
    let v = as_f32(&x.values)?;
    let mut y = Vec::with_capacity(nc * osize);
    for c in 0..nc {
        let base = c * isize;
        for (offs, padded) in &windows {
            let mut acc = 0.0f32;
            for &o in offs {
                acc += v[base + o];
            }
            let count = if include_pad { *padded } else { offs.len() };
            y.push(acc / count as f32);
        }
    }
    Ok(from_f32(x.dtype(), y))
}

/// `GlobalAveragePool`.
pub(super) fn global_average_pool(x: &Tensor) -> Result<Values, String> {
    let v = as_f32(&x.values)?;
    let s: usize = x.shape[2..].iter().product();
    Ok(from_f32(
        x.dtype(),
        v.chunks(s.max(1))
            .map(|c| {
                let mut acc = 0.0f32;
                for &e in c {
                    acc += e;
                }
                acc / s as f32
            })
            .collect(),
    ))
}
