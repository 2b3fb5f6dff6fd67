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
    /// The node-by-node comparison, when the run captured the computed
    /// tensors (an in-process compile); it then decides `passed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_node: Option<NodeCheck>,
    /// Outputs missing, or of the wrong type or shape (these fail whatever
    /// the node-by-node comparison says).
    #[serde(skip)]
    structural: usize,
}

/// The verdict with a node-by-node comparison: `nodes` decides, unless an
/// output is missing or of the wrong type or shape. The end-to-end error and
/// its failures stay in the report as information: with every node right on
/// its own inputs, an end-to-end difference is accumulated rounding (and for
/// int8, requantization steps that compound through later layers).
pub fn with_nodes(end_to_end: Check, nodes: NodeCheck) -> Check {
    Check {
        passed: nodes.passed && end_to_end.structural == 0,
        tolerance: format!(
            "node by node: each computed tensor against the reference on its own simulated inputs; {}; int8 within one quantization step",
            end_to_end.tolerance
        ),
        per_node: Some(nodes),
        ..end_to_end
    }
}

/// `--check` node by node: every computed tensor the simulation captured,
/// compared with the reference interpreter run on that node's own simulated
/// inputs ([`lpu_graph::interpret_nodes`]). Rounding differences (fp16 MXM
/// operands, a summation order that depends on the lane count) then cannot
/// cascade through later nodes, so a failure names the node whose lowering
/// is wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeCheck {
    /// Whether every captured tensor is within tolerance.
    pub passed: bool,
    /// Computed tensors compared.
    pub tensors_compared: usize,
    /// Computed tensors not compared: values fused into a chain that never
    /// reach SRAM, or stored in a form the host cannot read back.
    pub tensors_not_captured: usize,
    /// Their names, in graph order.
    pub not_captured: Vec<String>,
    /// Largest absolute difference over the float tensors.
    pub max_abs_err: f64,
    /// Elements of int8 tensors one quantization step from the reference
    /// (allowed: see [`compare_nodes`]).
    pub int8_off_by_one: usize,
    /// Elements of int8 tensors compared.
    pub int8_elements: usize,
    /// One line per failing tensor, in graph order (the first is where the
    /// simulation first departs from the reference).
    pub failures: Vec<String>,
}

/// Compares the captured tensors `probed` with `reference`, the interpreter's
/// value of each computed tensor from its node's captured inputs
/// ([`lpu_graph::interpret_nodes`]). `order` lists the computed tensors in
/// graph order. Floats pass as in [`compare`]; int8 tensors may differ by one
/// quantization step in an element, because a requantized value that lies
/// within rounding of a step boundary can round either way when the float
/// value before it was summed in another order; every other integer must be
/// exact.
pub fn compare_nodes(
    order: &[String],
    probed: &BTreeMap<String, Tensor>,
    reference: &BTreeMap<String, Tensor>,
) -> NodeCheck {
    let mut c = NodeCheck {
        passed: true,
        tensors_compared: 0,
        tensors_not_captured: 0,
        not_captured: Vec::new(),
        max_abs_err: 0.0,
        int8_off_by_one: 0,
        int8_elements: 0,
        failures: Vec::new(),
    };
    for name in order {
        let (Some(s), Some(r)) = (probed.get(name), reference.get(name)) else {
            c.tensors_not_captured += 1;
            c.not_captured.push(name.clone());
            continue;
        };
        c.tensors_compared += 1;
        if s.dtype() != r.dtype() || s.shape != r.shape {
            c.failures.push(format!(
                "'{name}': simulated {} {:?}, reference {} {:?}",
                s.dtype(),
                s.shape,
                r.dtype(),
                r.shape
            ));
            continue;
        }
        let d = diff(s, r);
        let limit = if r.dtype().is_float() {
            c.max_abs_err = c.max_abs_err.max(d.max);
            FLOAT_TOLERANCE * d.scale.max(1.0)
        } else if r.dtype() == lpu_isa::DType::I8 {
            c.int8_off_by_one += d.differing;
            c.int8_elements += r.len();
            1.0
        } else {
            0.0
        };
        if d.max > limit {
            c.failures.push(format!(
                "'{name}': max abs error {} at element {} (simulated {}, reference {}) exceeds {limit}",
                d.max,
                d.worst,
                s.values.get_f64(d.worst),
                r.values.get_f64(d.worst)
            ));
        }
    }
    c.passed = c.failures.is_empty();
    c
}

/// How two tensors of one type and shape differ.
struct Diff {
    /// Largest absolute difference (infinite where exactly one is NaN).
    max: f64,
    /// Where it is.
    worst: usize,
    /// Largest magnitude in the reference.
    scale: f64,
    /// Elements that differ at all.
    differing: usize,
}

fn diff(s: &Tensor, r: &Tensor) -> Diff {
    let mut d = Diff {
        max: 0.0,
        worst: 0,
        scale: 0.0,
        differing: 0,
    };
    for i in 0..r.len() {
        let (a, b) = (s.values.get_f64(i), r.values.get_f64(i));
        let e = if a.is_nan() && b.is_nan() {
            0.0
        } else if a.is_nan() || b.is_nan() {
            f64::INFINITY
        } else {
            (a - b).abs()
        };
        if e > 0.0 {
            d.differing += 1;
        }
        if e > d.max {
            d.max = e;
            d.worst = i;
        }
        d.scale = d.scale.max(b.abs());
    }
    d
}

/// Compares simulated outputs with reference outputs, by name.
pub fn compare(sim: &BTreeMap<String, Tensor>, reference: &BTreeMap<String, Tensor>) -> Check {
    let mut max_abs_err = 0f64;
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut structural = 0;
    for (name, r) in reference {
        let Some(s) = sim.get(name) else {
            failures.push(format!("output '{name}' is missing from the simulation"));
            structural += 1;
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
            structural += 1;
            continue;
        }
        let Diff {
            max: err,
            worst,
            scale,
            ..
        } = diff(s, r);
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
        per_node: None,
        structural,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpu_isa::Values;

    fn map(name: &str, v: Values) -> BTreeMap<String, Tensor> {
        let n = v.len();
        BTreeMap::from([(name.to_string(), Tensor::new(vec![n], v).expect("tensor"))])
    }

    #[test]
    fn int8_may_be_one_step_off_int32_must_be_exact() {
        let order = vec!["q".to_string()];
        let r = map("q", Values::I8(vec![3, -4, 7, 0]));
        let one = map("q", Values::I8(vec![3, -3, 7, 0]));
        let c = compare_nodes(&order, &one, &r);
        assert!(c.passed, "{:?}", c.failures);
        assert_eq!((c.int8_off_by_one, c.int8_elements), (1, 4));
        let two = map("q", Values::I8(vec![3, -4, 9, 0]));
        let c = compare_nodes(&order, &two, &r);
        assert!(!c.passed);
        assert!(c.failures[0].contains("'q'"), "{:?}", c.failures);
        let r32 = map("q", Values::I32(vec![3, -4]));
        let s32 = map("q", Values::I32(vec![3, -3]));
        assert!(!compare_nodes(&order, &s32, &r32).passed);
    }

    #[test]
    fn uncaptured_tensors_are_listed_not_failed() {
        let order = vec!["a".to_string(), "b".to_string()];
        let r = map("a", Values::F32(vec![1.0, 2.0]));
        let mut reference = r.clone();
        reference.extend(map("b", Values::F32(vec![1.0])));
        let c = compare_nodes(&order, &r, &reference);
        assert!(c.passed);
        assert_eq!(c.tensors_compared, 1);
        assert_eq!(c.not_captured, vec!["b".to_string()]);
    }

    #[test]
    fn with_nodes_lets_the_nodes_decide_but_not_over_a_missing_output() {
        let reference = map("y", Values::F32(vec![1.0, 2.0]));
        let far = map("y", Values::F32(vec![1.0, 2.5]));
        let end = compare(&far, &reference);
        assert!(!end.passed);
        let nodes = compare_nodes(&["y".to_string()], &reference, &reference);
        let c = with_nodes(end, nodes.clone());
        assert!(c.passed);
        assert_eq!(c.failures.len(), 1, "the end-to-end failure stays reported");
        let missing = compare(&BTreeMap::new(), &reference);
        assert!(!with_nodes(missing, nodes).passed);
    }
}
