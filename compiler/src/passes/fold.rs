//! Constant folding: a node all of whose inputs are constant (initializers,
//! or values folded earlier in this pass or by the loader, such as `Shape` of
//! a static shape or a `Constant`) is evaluated with the reference
//! interpreter, and its outputs become initializers; the node is removed.
//!
//! Not folded:
//! - nodes producing a graph output (a program output must be computed);
//! - `DequantizeLinear`: a dequantized constant is the QDQ idiom for int8
//!   weights, which the lowering consumes as int8;
//! - nodes whose outputs have more elements than
//!   `max(FOLD_LIMIT, elements of all inputs)` (an `Expand` or
//!   `ConstantOfShape` would turn a few bytes into a large constant that
//!   occupies SRAM for the whole run).

use std::collections::{BTreeMap, BTreeSet};

use lpu_graph::load::FOLD_LIMIT;
use lpu_graph::{Graph, Tensor};

use super::{constant, eval, Parts};
use crate::CompileError;

/// Folds constant nodes into initializers; returns the graph and the number
/// of nodes folded (0: `g` is returned as it was).
pub fn fold_constants(g: Graph) -> Result<(Graph, usize), CompileError> {
    let mut values: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut folded: BTreeSet<usize> = BTreeSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type == "DequantizeLinear" || n.outputs.iter().any(|o| g.outputs.contains(o)) {
            continue;
        }
        let known: Option<Vec<Tensor>> = n
            .outputs
            .iter()
            .map(|o| g.constants.get(o).cloned())
            .collect();
        let result = match known {
            Some(ts) => ts,
            None => {
                let ins: Option<Vec<Option<&Tensor>>> = n
                    .inputs
                    .iter()
                    .map(|t| {
                        if t.is_empty() {
                            Some(None)
                        } else {
                            values.get(t).or_else(|| constant(&g, t)).map(Some)
                        }
                    })
                    .collect();
                let Some(ins) = ins else { continue };
                let outs: Option<Vec<_>> = n.outputs.iter().map(|o| g.info(o).cloned()).collect();
                let Some(outs) = outs else { continue };
                let in_elems: usize = ins.iter().flatten().map(|t| t.len()).sum();
                let out_elems: usize = outs.iter().map(|o| o.len()).sum();
                if n.op_type != "Constant" && out_elems > FOLD_LIMIT.max(in_elems) {
                    continue;
                }
                eval(n, &ins, &outs).map_err(|m| CompileError::Pass {
                    model: g.name.clone(),
                    pass: "fold".into(),
                    message: format!(
                        "node '{}' ({}) has constant inputs but cannot be evaluated: {m}",
                        n.name, n.op_type
                    ),
                })?
            }
        };
        for (o, t) in n.outputs.iter().zip(result) {
            values.insert(o.clone(), t);
        }
        folded.insert(i);
    }
    if folded.is_empty() {
        return Ok((g, 0));
    }
    let count = folded.len();
    let mut p = Parts::of(g);
    let mut i = 0;
    p.nodes.retain(|_| {
        i += 1;
        !folded.contains(&(i - 1))
    });
    p.initializers.extend(values);
    Ok((p.rebuild("fold")?, count))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn folds_constant_subgraphs_into_initializers() {
        let g = parse(
            r#"Graph(
              name: "fold",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3])],
              outputs: [ValueInfo(name: "y")],
              initializers: [
                Initializer(name: "a", dtype: F32, shape: [3], data: Inline([1, 2, 3])),
                Initializer(name: "b", dtype: F32, shape: [3], data: Inline([0.5, -1, 4])),
                Initializer(name: "w", dtype: F32, shape: [3, 3], data: Random(seed: 5, dist: Normal(mean: 0.0, std: 1.0))),
              ],
              nodes: [
                Node(name: "ab", op_type: "Mul", inputs: ["a", "b"], outputs: ["c"]),
                Node(name: "c2", op_type: "Relu", inputs: ["c"], outputs: ["d"]),
                Node(name: "ww", op_type: "MatMul", inputs: ["w", "w"], outputs: ["w2"]),
                Node(name: "mm", op_type: "MatMul", inputs: ["x", "w2"], outputs: ["t"]),
                Node(name: "add", op_type: "Add", inputs: ["t", "d"], outputs: ["y"]),
              ],
            )"#,
        );
        let (o, n) = fold_constants(g.clone()).unwrap();
        assert_eq!(n, 3, "ab, c2, ww");
        assert!(o.initializers.contains_key("c"), "dead code is dce's job");
        let (o, _) = super::super::dce::eliminate_dead(o).unwrap();
        assert_eq!(ops(&o), ["MatMul", "Add"]);
        let d = &o.initializers["d"];
        assert_eq!(d.values, lpu_graph::Values::F32(vec![0.5, 0.0, 12.0]));
        assert!(o.initializers.contains_key("w2"));
        assert!(
            !o.initializers.contains_key("c"),
            "intermediate folds are dropped"
        );
        assert_same_outputs(&g, &o, 0.0);
    }

    #[test]
    fn leaves_graph_outputs_and_dequantize_alone() {
        let g = parse(
            r#"Graph(
              name: "fold",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 2])],
              outputs: [ValueInfo(name: "y"), ValueInfo(name: "k")],
              initializers: [
                Initializer(name: "wq", dtype: I8, shape: [2, 2], data: Inline([1, -2, 3, 4])),
                Initializer(name: "s", dtype: F32, shape: [], data: Inline([0.5])),
                Initializer(name: "a", dtype: F32, shape: [2], data: Inline([1, 2])),
              ],
              nodes: [
                Node(name: "dq", op_type: "DequantizeLinear", inputs: ["wq", "s"], outputs: ["w"]),
                Node(name: "mm", op_type: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
                Node(name: "k", op_type: "Relu", inputs: ["a"], outputs: ["k"]),
              ],
            )"#,
        );
        let (o, n) = fold_constants(g.clone()).unwrap();
        assert_eq!(n, 0);
        assert_eq!(ops(&o), ["DequantizeLinear", "MatMul", "Relu"]);
    }

    #[test]
    fn folds_shape_of_a_static_shape() {
        let g = parse(
            r#"Graph(
              name: "shape",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 4])],
              outputs: [ValueInfo(name: "y")],
              nodes: [
                Node(name: "sh", op_type: "Shape", inputs: ["x"], outputs: ["s"]),
                Node(name: "r", op_type: "Reshape", inputs: ["x", "s"], outputs: ["y"]),
              ],
            )"#,
        );
        let (o, n) = fold_constants(g.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&o), ["Reshape"]);
        let s = &o.initializers["s"];
        assert_eq!(super::super::ints(&s.values), Some(vec![2, 3, 4]));
        assert_same_outputs(&g, &o, 0.0);
    }
}
