//! `--check`: compares the simulator's outputs with the reference
//! interpreter's.
//!
//! Integer outputs must be bit-exact. Floating-point outputs pass when
//! `max |sim - ref| <= FLOAT_TOLERANCE * max(1, max |ref|)` for each output:
//! the MXM multiplies in fp16 (fp32 operands are rounded to fp16 on the way
//! in) and sums K-tiles in a different order than the reference's single
//! fp32 loop, so bit-exactness is not expected there. Elementwise fp32 and
//! fp16 arithmetic on the VXM follows the reference's rounding exactly.

use lpu_graph::Tensor;
use serde::Serialize;
use std::collections::BTreeMap;

/// Relative tolerance for floating-point outputs (see the module docs).
pub const FLOAT_TOLERANCE: f64 = 1e-2;

/// The result of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Whether every output is within tolerance (integers: exact).
    pub passed: bool,
    /// Largest absolute difference over all outputs.
    pub max_abs_err: f64,
    /// Number of output tensors compared.
    pub outputs_compared: usize,
    /// The rule applied, in words.
    pub tolerance: String,
    /// One line per output that failed.
    pub failures: Vec<String>,
}

/// Compares simulated outputs with reference outputs, by name.
pub fn compare(sim: &BTreeMap<String, Tensor>, reference: &BTreeMap<String, Tensor>) -> Check {
    let mut max_abs_err = 0f64;
    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, r) in reference {
        let Some(s) = sim.get(name) else {
            failures.push(format!("output '{name}' is missing from the simulation"));
            continue;
        };
        compared += 1;
        if s.dtype() != r.dtype() || s.shape != r.shape {
            failures.push(format!(
                "output '{name}': simulated {} {:?}, reference {} {:?}",
                s.dtype(),
                s.shape,
                r.dtype(),
                r.shape
            ));
            continue;
        }
        let mut err = 0f64;
        let mut scale = 0f64;
        let mut worst = 0usize;
        for i in 0..r.len() {
            let (a, b) = (s.values.get_f64(i), r.values.get_f64(i));
            let e = if a.is_nan() && b.is_nan() {
                0.0
            } else if a.is_nan() || b.is_nan() {
                f64::INFINITY
            } else {
                (a - b).abs()
            };
            if e > err {
                err = e;
                worst = i;
            }
            scale = scale.max(b.abs());
        }
        max_abs_err = max_abs_err.max(err);
        let limit = if r.dtype().is_float() {
            FLOAT_TOLERANCE * scale.max(1.0)
        } else {
            0.0
        };
        if err > limit {
            failures.push(format!(
                "output '{name}': max abs error {err} at element {worst} (simulated {}, reference {}) exceeds {limit}",
                s.values.get_f64(worst),
                r.values.get_f64(worst)
            ));
        }
    }
    Check {
        passed: failures.is_empty(),
        max_abs_err,
        outputs_compared: compared,
        tolerance: format!(
            "integers exact; floats max_abs_err <= {FLOAT_TOLERANCE} x max(1, max|ref|)"
        ),
        failures,
    }
}
