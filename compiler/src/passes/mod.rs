//! Graph-level passes: each takes a validated [`Graph`] and returns a new
//! validated one (rebuilt through [`lpu_graph::load::build_from_parts`], so
//! every pass output is re-checked, re-sorted and re-inferred). They run
//! before lowering:
//!
//! ```text
//!  Graph ──► optimize ────────────────────────────► apply_precision ──► lower
//!            │ fold     constant folding                │ fp32: unchanged
//!            │ bn       BatchNormalization into Conv/   │ fp16: f16 weights and
//!            │          Gemm/MatMul weights             │   activations
//!            │ layout   Identity / Reshape / Transpose  │ int8: QDQ rewrite
//!            │          elimination                     │ mixed: int8 + fp16
//!            │ split    Split of a product -> products  │   + f32 reductions
//!            │ lrn      LRN -> banded 1x1 Conv + VXM ops│
//!            │ spatial1d 1-D Conv/pool -> 2-D (H = 1)   │
//!            │ gemm     Gemm transA -> Transpose of A   │
//!            │ dce      dead nodes and initializers     │
//!            └── repeated to a fixed point
//! ```
//!
//! - [`fold`]: constant folding. A node whose inputs are all initializers
//!   (or values the loader already folded, [`Graph::constants`]: `Constant`,
//!   `Shape` of a static shape, ...) is evaluated with the reference
//!   interpreter and becomes an initializer.
//! - [`dce`]: dead node elimination: nodes that do not reach a graph output,
//!   and initializers nobody reads.
//! - [`bn`]: BatchNormalization folding into the preceding Conv, Gemm or
//!   MatMul when legal; otherwise the BN node stays and is lowered
//!   elementwise.
//! - [`layout`]: Identity removal, Reshape→Reshape collapse,
//!   Transpose→Transpose composition, and reshape-like nodes whose output
//!   equals their input removed; [`layout::is_layout_alias`] tells the
//!   lowering which reshapes can share storage.
//! - [`split`]: a `Split` along the last (lane) axis of a constant-weight
//!   product (GPT-2's fused Q/K/V projection) becomes one product per piece,
//!   splitting the weights at compile time instead of the result's lanes at
//!   run time.
//! - [`lrn`]: LRN becomes a banded 1x1 Conv (the across-channel sum of
//!   squares, on the MXM) and elementwise ops (for the `beta`s the `Pow`
//!   lowering computes).
//! - [`spatial1d`]: a 1-D Conv, ConvInteger, ConvTranspose or pool on a
//!   3-D `[N, C, L]` input becomes Unsqueeze -> the 2-D operator with a
//!   window of height 1 -> Squeeze.
//! - [`gemm`]: a `Gemm` with `transA = 1` reads a transposed left operand
//!   (a `Transpose` node, or a constant transposed at compile time) instead.
//! - [`precision`] / [`quantize`] / [`calib`]: the precision rewrite
//!   ([`Precision`], [`apply_precision`]).
//!
//! **Activation fusion** is not a graph pass: it happens in the lowering
//! (`crate::lower`, `plan_fusion`), which appends every elementwise node that
//! is the only consumer of a chain's result (Relu, Cast, Quantize/Dequantize,
//! bias Add, ...) to the producer's VXM chain, so a matrix product's result
//! flows through dequantize, bias, activation and requantize before one SRAM
//! write. The passes here only make that fusion apply more often: they
//! remove the Identity/Reshape/BN nodes that would otherwise sit between a
//! producer and its activation, and the int8 rewrite emits its
//! Quantize -> MatMulInteger -> Dequantize -> bias Add chain in the order
//! `plan_fusion` fuses.
//!
//! New nodes and tensors are named after the node they come from
//! (`fc1/quant`, `conv1/bn_weight`); a name already taken gets `_1`, `_2`,
//! ... appended. Everything is ordered (`BTreeMap`, node order), so the same
//! graph always gives the same result.

pub mod bn;
pub mod calib;
pub mod dce;
pub mod fold;
pub mod gemm;
pub mod layout;
pub mod lrn;
pub mod precision;
pub mod quantize;
pub mod spatial1d;
pub mod split;

pub use calib::{calibration_inputs, DEFAULT_CALIB_SAMPLES, DEFAULT_CALIB_SEED};
pub use precision::{apply_precision, node_precisions, Precision, PrecisionOutcome};

pub use layout::is_layout_alias;

use std::collections::{BTreeMap, BTreeSet};

use lpu_graph::format::{GraphFile, ValueInfo};
use lpu_graph::{DType, Graph, Node, Tensor, TensorInfo, Values};

use crate::CompileError;

/// The most rounds [`optimize`] runs its passes before stopping (each round
/// runs every pass once; it stops early when a round changes nothing).
pub const MAX_ROUNDS: usize = 8;

/// What [`optimize`] did, per pass: how many nodes or initializers each
/// removed or rewrote, summed over the rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptimizeStats {
    /// Nodes folded into initializers.
    pub folded: usize,
    /// BatchNormalization nodes folded into the preceding product.
    pub bn_folded: usize,
    /// Identity/Reshape/Transpose nodes removed or merged.
    pub layout: usize,
    /// Splits of products rewritten as one product per piece.
    pub split: usize,
    /// LRN nodes rewritten as a banded Conv and elementwise ops.
    pub lrn: usize,
    /// 1-D spatial nodes rewritten as 2-D ones.
    pub spatial1d: usize,
    /// Gemms with `transA = 1` given a transposed left operand.
    pub gemm: usize,
    /// Dead nodes and unused initializers removed.
    pub dead: usize,
    /// Rounds run.
    pub rounds: usize,
}

/// Runs the graph passes ([`fold`], [`bn`], [`layout`], [`split`], [`lrn`],
/// [`spatial1d`], [`gemm`], [`dce`]) to a fixed point (at most
/// [`MAX_ROUNDS`] rounds) and returns the optimized graph.
/// The result computes the same outputs as `graph` under the reference
/// interpreter, exactly except where BatchNormalization was folded (the
/// folded weights round differently).
pub fn optimize(graph: &Graph) -> Result<Graph, CompileError> {
    optimize_with_stats(graph).map(|(g, _)| g)
}

/// [`optimize`], also returning what each pass did.
pub fn optimize_with_stats(graph: &Graph) -> Result<(Graph, OptimizeStats), CompileError> {
    optimize_owned(graph.clone())
}

/// [`optimize_with_stats`] on a graph the caller gives up, which saves
/// copying its initializers (hundreds of MiB for the large examples).
pub fn optimize_owned(graph: Graph) -> Result<(Graph, OptimizeStats), CompileError> {
    let mut g = graph;
    let mut stats = OptimizeStats::default();
    for _ in 0..MAX_ROUNDS {
        stats.rounds += 1;
        let (g1, folded) = fold::fold_constants(g)?;
        let (g2, bn_folded) = bn::fold_batch_norms(g1)?;
        let (g3, layout) = layout::eliminate_layout(g2)?;
        let (g3, split) = split::split_products(g3)?;
        let (g3, lrn) = lrn::decompose_lrn(g3)?;
        let (g3, spatial1d) = spatial1d::lift_1d(g3)?;
        let (g3, gemm) = gemm::untranspose_gemm_a(g3)?;
        let (g4, dead) = dce::eliminate_dead(g3)?;
        g = g4;
        stats.folded += folded;
        stats.bn_folded += bn_folded;
        stats.layout += layout;
        stats.split += split;
        stats.lrn += lrn;
        stats.spatial1d += spatial1d;
        stats.gemm += gemm;
        stats.dead += dead;
        if folded + bn_folded + layout + split + lrn + spatial1d + gemm + dead == 0 {
            break;
        }
    }
    Ok((g, stats))
}

/// A graph taken apart for rewriting: everything [`rebuild`] needs.
pub(crate) struct Parts {
    pub name: String,
    pub source: String,
    pub inputs: Vec<(String, TensorInfo)>,
    pub outputs: Vec<String>,
    pub initializers: BTreeMap<String, Tensor>,
    pub nodes: Vec<Node>,
}

impl Parts {
    /// Takes `g` apart (moving its initializers, not copying them).
    pub fn of(g: Graph) -> Parts {
        Parts {
            name: g.name,
            source: g.source,
            inputs: g.inputs,
            outputs: g.outputs,
            initializers: g.initializers,
            nodes: g.nodes,
        }
    }

    /// Validates the parts and builds the graph again; an error here means a
    /// pass produced an invalid graph and names the pass.
    pub fn rebuild(self, pass: &str) -> Result<Graph, CompileError> {
        let model = self.name.clone();
        let file = GraphFile {
            name: self.name,
            inputs: self
                .inputs
                .into_iter()
                .map(|(name, info)| ValueInfo {
                    name,
                    dtype: Some(info.dtype),
                    shape: Some(info.shape),
                })
                .collect(),
            outputs: self
                .outputs
                .into_iter()
                .map(|name| ValueInfo {
                    name,
                    dtype: None,
                    shape: None,
                })
                .collect(),
            initializers: Vec::new(),
            nodes: self.nodes,
        };
        lpu_graph::load::build_from_parts(file, self.initializers, &self.source).map_err(|e| {
            CompileError::Pass {
                model,
                pass: pass.to_string(),
                message: format!("the rewritten graph is invalid: {e}"),
            }
        })
    }
}

/// What a node-local pass puts in place of one node: the new nodes and the
/// initializers they add.
pub(crate) type Rewrite = (Vec<Node>, Vec<(String, Tensor)>);

/// Runs a node-local pass: every node that `applies` to is offered to
/// `plan`, which may give its replacement; the replacements are spliced in
/// place and the graph is rebuilt (an error names `pass`). Returns the graph
/// and the number of nodes replaced; the graph is returned untouched when
/// nothing applies.
pub(crate) fn rewrite_nodes(
    g: Graph,
    pass: &str,
    applies: impl Fn(&Graph, &Node) -> bool,
    mut plan: impl FnMut(&Graph, &mut Names, &Node) -> Option<Rewrite>,
) -> Result<(Graph, usize), CompileError> {
    if !g.nodes.iter().any(|n| applies(&g, n)) {
        return Ok((g, 0));
    }
    let mut names = Names::of(&g);
    let plans: Vec<Option<Rewrite>> = g
        .nodes
        .iter()
        .map(|n| {
            if applies(&g, n) {
                plan(&g, &mut names, n)
            } else {
                None
            }
        })
        .collect();
    let count = plans.iter().flatten().count();
    if count == 0 {
        return Ok((g, 0));
    }
    let mut parts = Parts::of(g);
    let nodes = std::mem::take(&mut parts.nodes);
    for (n, p) in nodes.into_iter().zip(plans) {
        match p {
            Some((new, inits)) => {
                parts.nodes.extend(new);
                parts.initializers.extend(inits);
            }
            None => parts.nodes.push(n),
        }
    }
    Ok((parts.rebuild(pass)?, count))
}

/// Fresh, deterministic names: `base` if no tensor or node uses it yet,
/// otherwise `base_1`, `base_2`, ...
pub(crate) struct Names {
    used: BTreeSet<String>,
}

impl Names {
    /// Every tensor and node name of `g` counts as used.
    pub fn of(g: &Graph) -> Names {
        let mut used: BTreeSet<String> = g.tensors.keys().cloned().collect();
        used.extend(g.nodes.iter().map(|n| n.name.clone()));
        used.extend(g.initializers.keys().cloned());
        Names { used }
    }

    /// A name not used yet, derived from `base`; it counts as used from now on.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

/// The value of constant tensor `name`: an initializer or a value the loader
/// folded.
pub(crate) fn constant<'g>(g: &'g Graph, name: &str) -> Option<&'g Tensor> {
    g.initializers.get(name).or_else(|| g.constants.get(name))
}

/// The elements of a float tensor as `f32` (`None` for integer tensors).
pub(crate) fn f32s(v: &Values) -> Option<Vec<f32>> {
    match v {
        Values::F32(x) => Some(x.clone()),
        Values::F16(x) => Some(x.iter().map(|h| h.to_f32()).collect()),
        _ => None,
    }
}

/// `f32` elements as a float tensor of `dtype` (F16 rounds to nearest even;
/// any other type gives F32).
pub(crate) fn float_values(dtype: DType, v: Vec<f32>) -> Values {
    match dtype {
        DType::F16 => Values::F16(v.into_iter().map(half::f16::from_f32).collect()),
        _ => Values::F32(v),
    }
}

/// The integer elements of a tensor as `i64` (`None` for float tensors).
#[cfg(test)]
pub(crate) fn ints(v: &Values) -> Option<Vec<i64>> {
    match v {
        Values::I8(x) => Some(x.iter().map(|&a| a as i64).collect()),
        Values::I32(x) => Some(x.iter().map(|&a| a as i64).collect()),
        _ => None,
    }
}

/// Integer-list attribute `name` of `n`, if present as `Ints`.
pub(crate) fn attr_ints(n: &Node, name: &str) -> Option<Vec<i64>> {
    match n.attributes.get(name) {
        Some(lpu_graph::AttrValue::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

/// Evaluates `n` with the reference interpreter on `ins` (by position,
/// `None` for omitted inputs); `outs` are the inferred outputs. The one
/// place the passes call the interpreter.
pub(crate) fn eval(
    n: &Node,
    ins: &[Option<&Tensor>],
    outs: &[TensorInfo],
) -> Result<Vec<Tensor>, String> {
    lpu_graph::interp::eval_node(n, ins, outs)
}

/// Infers the outputs of `n` from its inputs' infos and known constant
/// values (by position). The one place the passes call inference.
pub(crate) fn infer(
    n: &Node,
    ins: &[Option<&TensorInfo>],
    consts: &[Option<&Tensor>],
) -> Result<Vec<TensorInfo>, String> {
    lpu_graph::infer::infer_node(n, ins, consts).map_err(|e| e.to_string())
}

/// Replaces every input `from` of `nodes` by `to`.
pub(crate) fn rename_inputs(nodes: &mut [Node], from: &str, to: &str) {
    for n in nodes {
        for i in n.inputs.iter_mut() {
            if i == from {
                *i = to.to_string();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the passes' unit tests.

    use std::collections::BTreeMap;
    use std::path::Path;

    use lpu_graph::{Graph, Tensor};

    /// Parses `.graph` RON text, panicking with the error (tests only).
    pub fn parse(text: &str) -> Graph {
        lpu_graph::parse_graph(text, "<test>", Path::new("."))
            .unwrap_or_else(|e| panic!("test graph does not load: {e}"))
    }

    /// Outputs of `g` on seeded random inputs.
    pub fn run(g: &Graph, seed: u64) -> BTreeMap<String, Tensor> {
        let inputs = lpu_graph::random_inputs(g, seed);
        lpu_graph::interpret(g, &inputs).unwrap_or_else(|e| panic!("interpret: {e}"))
    }

    /// Asserts that `a` and `b` give the same outputs on three seeded
    /// inputs: bit-exactly when `tol` is 0, else within `tol` (absolute,
    /// plus `tol` relative).
    pub fn assert_same_outputs(a: &Graph, b: &Graph, tol: f32) {
        for seed in 0..3 {
            let (ya, yb) = (run(a, seed), run(b, seed));
            assert_eq!(ya.keys().collect::<Vec<_>>(), yb.keys().collect::<Vec<_>>());
            for (name, ta) in &ya {
                let tb = &yb[name];
                assert_eq!(ta.shape, tb.shape, "output '{name}' shape");
                if tol == 0.0 {
                    assert_eq!(ta, tb, "output '{name}' differs (seed {seed})");
                } else {
                    let (va, vb) = (
                        super::f32s(&ta.values).expect("float output"),
                        super::f32s(&tb.values).expect("float output"),
                    );
                    for (k, (x, y)) in va.iter().zip(&vb).enumerate() {
                        assert!(
                            (x - y).abs() <= tol * (1.0 + x.abs()),
                            "output '{name}'[{k}]: {x} vs {y} (seed {seed}, tol {tol})"
                        );
                    }
                }
            }
        }
    }

    /// Op types of `g`'s nodes, in order.
    pub fn ops(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    const MLP: &str = r#"Graph(
      name: "mlp",
      inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 8])],
      outputs: [ValueInfo(name: "y")],
      initializers: [
        Initializer(name: "w1", dtype: F32, shape: [8, 16], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.4))),
        Initializer(name: "b1", dtype: F32, shape: [16], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))),
        Initializer(name: "w2", dtype: F32, shape: [16, 4], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 0.3))),
        Initializer(name: "two", dtype: F32, shape: [], data: Inline([2.0])),
        Initializer(name: "unused", dtype: F32, shape: [3], data: Inline([1, 2, 3])),
      ],
      nodes: [
        Node(name: "fc1", op_type: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
        Node(name: "b1x2", op_type: "Add", inputs: ["b1", "b1"], outputs: ["b1d"]),
        Node(name: "bias1", op_type: "Add", inputs: ["h", "b1d"], outputs: ["hb"]),
        Node(name: "id", op_type: "Identity", inputs: ["hb"], outputs: ["hb2"]),
        Node(name: "relu1", op_type: "Relu", inputs: ["hb2"], outputs: ["a"]),
        Node(name: "fc2", op_type: "MatMul", inputs: ["a", "w2"], outputs: ["y"]),
        Node(name: "dead", op_type: "Mul", inputs: ["a", "two"], outputs: ["z"]),
      ],
    )"#;

    #[test]
    fn optimize_runs_every_pass_to_a_fixed_point() {
        let g = parse(MLP);
        let (o, stats) = optimize_with_stats(&g).unwrap();
        assert_eq!(ops(&o), ["MatMul", "Add", "Relu", "MatMul"]);
        assert_eq!(stats.folded, 1, "{stats:?}");
        assert_eq!(stats.layout, 1, "{stats:?}");
        assert!(stats.dead >= 2, "{stats:?}");
        assert!(!o.initializers.contains_key("unused"));
        assert_same_outputs(&g, &o, 0.0);
        // A second run changes nothing.
        let (o2, s2) = optimize_with_stats(&o).unwrap();
        assert_eq!(s2.rounds, 1);
        assert_eq!(o2.nodes, o.nodes);
    }

    #[test]
    fn names_are_fresh_and_deterministic() {
        let g = parse(MLP);
        let mut names = Names::of(&g);
        assert_eq!(names.fresh("fc1/quant"), "fc1/quant");
        assert_eq!(names.fresh("fc1/quant"), "fc1/quant_1");
        assert_eq!(names.fresh("fc1"), "fc1_1");
        assert_eq!(names.fresh("h"), "h_1");
    }
}
