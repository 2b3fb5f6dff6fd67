//! `Gemm` with `transA = 1` as a `Gemm` of the transposed left operand.
//!
//! The lowering reads the left operand of a product row by row (one
//! activation row per result row), so it takes `A` as `[M, K]` only. A
//! `Gemm` with `transA = 1` reads `A` as `[K, M]`; it is rewritten as
//!
//! ```text
//!   Gemm(A, B, C, transA = 1)  ─►  Gemm(Transpose(A, perm = [1, 0]), B, C)
//! ```
//!
//! where the `Transpose` is lowered as lane moves (`lower/lanes.rs`) when
//! `A` is computed, and done at compile time (a new initializer
//! `<A>/transposed`) when `A` is a constant. `transA` is dropped; every
//! other attribute (`alpha`, `beta`, `transB`) stays. The product sees the
//! same elements in the same order, so the rewrite is bit-exact under the
//! reference interpreter.

use lpu_graph::{AttrValue, Graph, Node, Tensor};

use super::{constant, rewrite_nodes, Names, Rewrite};
use crate::CompileError;

/// Whether `n` is a Gemm with a nonzero `transA`.
fn transposes_a(n: &Node) -> bool {
    n.op_type == "Gemm" && n.attr_int("transA", 0).is_ok_and(|t| t != 0)
}

/// The rewrite of Gemm node `n` (with `transA = 1`), or `None` when `A` is
/// not rank 2.
fn plan(g: &Graph, names: &mut Names, n: &Node) -> Option<Rewrite> {
    let a = n.input(0)?;
    let s = &g.info(a)?.shape;
    if s.len() != 2 {
        return None;
    }
    let (k, m) = (s[0], s[1]);
    let at = names.fresh(&format!("{a}/transposed"));
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    match constant(g, a) {
        Some(t) => {
            // at[i, j] = a[j, i]: element i * k + j of the result is element
            // j * m + i of `a`.
            let idx: Vec<usize> = (0..m * k).map(|e| (e % k) * m + e / k).collect();
            inits.push((
                at.clone(),
                Tensor::new(vec![m, k], t.values.gather(&idx)).ok()?,
            ));
        }
        None => {
            let mut t = Node {
                name: names.fresh(&format!("{}/transpose_a", n.name)),
                op_type: "Transpose".into(),
                inputs: vec![a.into()],
                outputs: vec![at.clone()],
                attributes: Default::default(),
            };
            t.attributes
                .insert("perm".into(), AttrValue::Ints(vec![1, 0]));
            nodes.push(t);
        }
    }
    let mut gemm = n.clone();
    gemm.inputs[0] = at;
    gemm.attributes.remove("transA");
    nodes.push(gemm);
    Some((nodes, inits))
}

/// Rewrites every `Gemm` with `transA = 1` (see the module doc); returns the
/// graph and the number rewritten.
pub fn untranspose_gemm_a(g: Graph) -> Result<(Graph, usize), CompileError> {
    rewrite_nodes(g, "gemm", |_, n| transposes_a(n), plan)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// `Gemm(A, B, C)` with `A: [5, 3]` (an input, or a constant when
    /// `const_a`), `B: [5, 4]` constant, `transA = 1` and `attrs`.
    fn gemm(const_a: bool, attrs: &str) -> String {
        let (input, init) = if const_a {
            (
                r#"ValueInfo(name: "c", dtype: F32, shape: [3, 4])"#,
                r#"Initializer(name: "a", dtype: F32, shape: [5, 3], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 1.0))),
                   Initializer(name: "b", dtype: F32, shape: [5, 4], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 1.0)))"#,
            )
        } else {
            (
                r#"ValueInfo(name: "a", dtype: F32, shape: [5, 3]), ValueInfo(name: "c", dtype: F32, shape: [3, 4])"#,
                r#"Initializer(name: "b", dtype: F32, shape: [5, 4], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 1.0)))"#,
            )
        };
        format!(
            r#"Graph(name: "t", inputs: [{input}],
              outputs: [ValueInfo(name: "y")],
              initializers: [{init}],
              nodes: [Node(name: "g", op_type: "Gemm", inputs: ["a", "b", "c"], outputs: ["y"],
                attributes: {{ "transA": Int(1) {attrs} }})])"#
        )
    }

    #[test]
    fn a_computed_left_operand_gets_a_transpose() {
        let g = parse(&gemm(false, r#", "alpha": Float(0.5), "beta": Float(2.0)"#));
        let (h, n) = untranspose_gemm_a(g.clone()).expect("rewrite");
        assert_eq!(n, 1);
        assert_eq!(ops(&h), ["Transpose", "Gemm"]);
        assert_eq!(h.nodes[1].attr_int("transA", 0).unwrap(), 0);
        assert_same_outputs(&g, &h, 0.0);
        assert_eq!(untranspose_gemm_a(h).expect("runs").1, 0);
    }

    #[test]
    fn a_constant_left_operand_is_transposed_at_compile_time() {
        let g = parse(&gemm(true, ""));
        let (h, n) = untranspose_gemm_a(g.clone()).expect("rewrite");
        assert_eq!(n, 1);
        assert_eq!(ops(&h), ["Gemm"]);
        assert_eq!(h.initializers["a/transposed"].shape, [3, 5]);
        assert_same_outputs(&g, &h, 0.0);
    }
}
