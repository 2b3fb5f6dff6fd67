//! Calibration for int8 quantization: sample inputs, run through the fp32
//! graph with the reference interpreter, recording every float tensor's
//! largest magnitude.
//!
//! Without user-supplied inputs, the samples are
//! [`lpu_graph::random_inputs`]`(graph, seed + i)` for `i` in
//! `0..samples` (wrapping add): floats uniform in `[-1, 1)`, see
//! `lpu_graph::random`. The defaults are [`DEFAULT_CALIB_SAMPLES`] samples
//! from [`DEFAULT_CALIB_SEED`].

use std::collections::BTreeMap;

use lpu_graph::{Graph, Tensor, Values};

use super::{constant, eval};
use crate::CompileError;

/// Calibration samples used when none are given.
pub const DEFAULT_CALIB_SAMPLES: usize = 4;

/// Seed of the first calibration sample when none is given (sample `i` uses
/// `DEFAULT_CALIB_SEED + i`).
pub const DEFAULT_CALIB_SEED: u64 = 0x00CA_11B0;

/// `samples` seeded random input sets for `graph`: sample `i` is
/// `random_inputs(graph, seed.wrapping_add(i))`.
pub fn calibration_inputs(
    graph: &Graph,
    samples: usize,
    seed: u64,
) -> Vec<BTreeMap<String, Tensor>> {
    (0..samples)
        .map(|i| lpu_graph::random_inputs(graph, seed.wrapping_add(i as u64)))
        .collect()
}

/// The largest `|x|` of every float tensor of `g` (graph inputs,
/// initializers and node outputs) over all `samples`, by tensor name. NaN
/// elements are ignored; an infinite element makes the entry infinite.
pub fn max_abs(
    g: &Graph,
    samples: &[BTreeMap<String, Tensor>],
) -> Result<BTreeMap<String, f32>, CompileError> {
    let mut amax: BTreeMap<String, f32> = BTreeMap::new();
    for (k, t) in g.initializers.iter().chain(&g.constants) {
        record(&mut amax, k, t);
    }
    // The last node reading each tensor, so values can be dropped early.
    let mut last_use: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for t in &n.inputs {
            last_use.insert(t.as_str(), i);
        }
    }
    // Samples run in parallel; the maximum is the same whatever the order,
    // so the result does not depend on the thread count.
    use rayon::prelude::*;
    let per_sample = samples
        .par_iter()
        .enumerate()
        .map(|(s, inputs)| sample_max_abs(g, s, inputs, &last_use))
        .collect::<Result<Vec<_>, _>>()?;
    for m in per_sample {
        for (k, v) in m {
            let e = amax.entry(k).or_insert(0.0);
            *e = e.max(v);
        }
    }
    Ok(amax)
}

/// Folds `|x|` of a float tensor into `amax[name]`.
fn record(amax: &mut BTreeMap<String, f32>, name: &str, t: &Tensor) {
    let m = match &t.values {
        Values::F32(v) => max_abs_of(v, |x| x),
        Values::F16(v) => max_abs_of(v, |h| h.to_f32()),
        _ => return,
    };
    let e = amax.entry(name.to_string()).or_insert(0.0);
    *e = e.max(m);
}

/// Running maxima [`max_abs_of`] keeps, one per lane of a vector loop.
const MAX_ABS_LANES: usize = 16;

/// The largest `|x|` of `values` as `f32`s (0 if none), NaNs ignored.
///
/// Each `|x|` (NaN as 0) is non-negative and not NaN, so a plain `>` picks
/// the maximum, which is one of the values and the same whatever the
/// order. The values are folded into [`MAX_ABS_LANES`] independent running
/// maxima, which LLVM turns into a vector `maxps` loop; a single running
/// maximum stayed scalar, each `maxss` waiting on the one before (about
/// 170 ms of CPU time in ResNet-50's int8 compile).
fn max_abs_of<T: Copy>(values: &[T], to_f32: impl Fn(T) -> f32) -> f32 {
    let abs = |x: T| {
        let x = to_f32(x);
        if x.is_nan() {
            0.0
        } else {
            x.abs()
        }
    };
    let larger = |m: f32, a: f32| if a > m { a } else { m };
    let mut lanes = [0.0f32; MAX_ABS_LANES];
    let mut blocks = values.chunks_exact(MAX_ABS_LANES);
    for block in &mut blocks {
        for (m, &x) in lanes.iter_mut().zip(block) {
            *m = larger(*m, abs(x));
        }
    }
    for (m, &x) in lanes.iter_mut().zip(blocks.remainder()) {
        *m = larger(*m, abs(x));
    }
    lanes.into_iter().fold(0.0, larger)
}

/// The largest `|x|` of every float input and node output on one sample.
fn sample_max_abs(
    g: &Graph,
    s: usize,
    inputs: &BTreeMap<String, Tensor>,
    last_use: &BTreeMap<&str, usize>,
) -> Result<BTreeMap<String, f32>, CompileError> {
    let err = |message: String| CompileError::Pass {
        model: g.name.clone(),
        pass: "calibration".into(),
        message,
    };
    let mut amax: BTreeMap<String, f32> = BTreeMap::new();
    {
        for (name, info) in &g.inputs {
            let t = inputs.get(name).ok_or_else(|| {
                err(format!(
                    "calibration sample #{s} has no value for input '{name}' ({info})"
                ))
            })?;
            if t.info() != *info {
                return Err(err(format!(
                    "calibration sample #{s}: input '{name}' is {}; expected {info}",
                    t.info()
                )));
            }
            record(&mut amax, name, t);
        }
        let mut values: BTreeMap<String, Tensor> = BTreeMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            let ins: Vec<Option<&Tensor>> = n
                .inputs
                .iter()
                .map(|t| {
                    if t.is_empty() {
                        None
                    } else {
                        values
                            .get(t)
                            .or_else(|| inputs.get(t))
                            .or_else(|| constant(g, t))
                    }
                })
                .collect();
            if let Some(k) = n
                .inputs
                .iter()
                .zip(&ins)
                .position(|(t, v)| !t.is_empty() && v.is_none())
            {
                return Err(err(format!(
                    "node '{}' ({}): input '{}' has no value",
                    n.name, n.op_type, n.inputs[k]
                )));
            }
            let outs: Vec<_> = n
                .outputs
                .iter()
                .map(|o| g.info(o).cloned())
                .collect::<Option<_>>()
                .ok_or_else(|| err(format!("node '{}': an output has no type", n.name)))?;
            let ts = eval(n, &ins, &outs).map_err(|m| {
                err(format!(
                    "node '{}' ({}) failed on calibration sample #{s}: {m}",
                    n.name, n.op_type
                ))
            })?;
            for (o, t) in n.outputs.iter().zip(ts) {
                record(&mut amax, o, &t);
                values.insert(o.clone(), t);
            }
            values.retain(|k, _| {
                g.outputs.contains(k) || last_use.get(k.as_str()).is_some_and(|&j| j > i)
            });
        }
    }
    Ok(amax)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn records_the_largest_magnitude_of_every_float_tensor() {
        let g = parse(
            r#"Graph(
              name: "c",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 64])],
              outputs: [ValueInfo(name: "y")],
              initializers: [Initializer(name: "k", dtype: F32, shape: [], data: Inline([-3.0]))],
              nodes: [
                Node(name: "m", op_type: "Mul", inputs: ["x", "k"], outputs: ["t"]),
                Node(name: "r", op_type: "Relu", inputs: ["t"], outputs: ["y"]),
              ],
            )"#,
        );
        let samples = calibration_inputs(&g, 3, 11);
        assert_eq!(samples, calibration_inputs(&g, 3, 11), "seeded");
        let amax = max_abs(&g, &samples).unwrap();
        assert_eq!(amax["k"], 3.0);
        let x = amax["x"];
        assert!(x > 0.9 && x <= 1.0, "{x}");
        assert_eq!(amax["t"], 3.0 * x);
        assert!(amax["y"] <= amax["t"] && amax["y"] > 0.0);
        let e = max_abs(&g, &[BTreeMap::new()]).unwrap_err().to_string();
        assert!(e.contains("no value for input 'x'"), "{e}");
    }

    #[test]
    fn max_abs_ignores_nans_and_keeps_infinities() {
        let m = |v: &[f32]| super::max_abs_of(v, |x| x);
        assert_eq!(m(&[]), 0.0);
        assert_eq!(m(&[-0.0]).to_bits(), 0.0f32.to_bits());
        assert_eq!(m(&[1.0, -3.5, 2.0]), 3.5);
        assert_eq!(m(&[f32::NAN, -2.0, f32::NAN]), 2.0);
        assert_eq!(m(&[-f32::NAN]), 0.0);
        assert_eq!(m(&[1.0, f32::NEG_INFINITY, f32::NAN]), f32::INFINITY);
        assert_eq!(m(&[f32::MIN_POSITIVE / 2.0, -0.0]), f32::MIN_POSITIVE / 2.0);
    }

    proptest::proptest! {
        /// The lane-wise maxima give the one-at-a-time fold's bits, over
        /// whole blocks and a remainder, with NaNs, infinities, signed
        /// zeros and subnormals anywhere.
        #[test]
        fn max_abs_is_the_plain_fold(bits in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::u32::ANY,
                proptest::sample::select(vec![
                    f32::NAN.to_bits(),
                    (-f32::NAN).to_bits(),
                    f32::INFINITY.to_bits(),
                    f32::NEG_INFINITY.to_bits(),
                    (-0.0f32).to_bits(),
                    1,
                ]),
            ],
            0..80,
        )) {
            let v: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
            let plain = v
                .iter()
                .map(|x| if x.is_nan() { 0.0 } else { x.abs() })
                .fold(0.0f32, |m, a| if a > m { a } else { m });
            proptest::prop_assert_eq!(super::max_abs_of(&v, |x| x).to_bits(), plain.to_bits());
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            let plain16 = h
                .iter()
                .map(|x| x.to_f32())
                .map(|x| if x.is_nan() { 0.0 } else { x.abs() })
                .fold(0.0f32, |m, a| if a > m { a } else { m });
            proptest::prop_assert_eq!(super::max_abs_of(&h, |x| x.to_f32()).to_bits(), plain16.to_bits());
        }
    }
}
