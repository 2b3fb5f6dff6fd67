//! 1-D convolutions and pools as 2-D ones with a unit height.
//!
//! The lowering handles spatial operators on 4-D `[N, C, H, W]` tensors
//! (stored channels-last, `lower/layout.rs`). A 1-D operator on a 3-D
//! `[N, C, L]` input is the same operator on `[N, C, 1, L]` with a window of
//! height 1, so it is rewritten as
//!
//! ```text
//!   y = Op(x, w, ...)   ─►   x4 = Unsqueeze(x, axes = [2])        [N, C, 1, L]
//!                            y4 = Op(x4, w4, ...)                 [N, C', 1, L']
//!                            y  = Squeeze(y4, axes = [2])         [N, C', L']
//! ```
//!
//! with the window attributes extended for the new axis: `kernel_shape`
//! `[k] -> [1, k]`, `strides` `[s] -> [1, s]`, `dilations` `[d] -> [1, d]`,
//! `pads` `[b, e] -> [0, b, 0, e]`, `output_padding` `[p] -> [0, p]` and
//! `output_shape` `[L] -> [1, L]` (attributes that are absent stay absent;
//! `auto_pad`, `ceil_mode`, `count_include_pad` and `group` carry over, and
//! give the unit axis no padding). Weights `[a, b, k]` become a new
//! initializer `[a, b, 1, k]`; a convolution whose weights are computed
//! stays 1-D (the lowering needs constant weights, and says so).
//!
//! Applies to `Conv`, `ConvInteger`, `ConvTranspose`, `MaxPool` (without its
//! `Indices` output), `AveragePool`, `GlobalAveragePool` and
//! `GlobalMaxPool`. Every window sees the same elements in the same order,
//! so the rewrite is bit-exact under the reference interpreter. The
//! Unsqueeze and Squeeze change the storage (row-major `[N*C, L]` against
//! channels-last `[N*L, C]`), which the lowering does with lane moves
//! (`lower/lanes.rs`); a Squeeze followed by another 1-D operator's
//! Unsqueeze collapses in [`super::layout`].

use lpu_graph::{AttrValue, Graph, Node, Tensor};

use super::{attr_ints, constant, rewrite_nodes, Names, Rewrite};
use crate::CompileError;

/// The operators rewritten, and whether their input 1 is a weight tensor
/// that gains the unit axis too.
const OPS: &[(&str, bool)] = &[
    ("Conv", true),
    ("ConvInteger", true),
    ("ConvTranspose", true),
    ("MaxPool", false),
    ("AveragePool", false),
    ("GlobalAveragePool", false),
    ("GlobalMaxPool", false),
];

/// A node on `input` with `axes = [2]` (Unsqueeze or Squeeze).
fn axis2(name: String, op: &str, input: &str, output: String) -> Node {
    let mut n = Node {
        name,
        op_type: op.into(),
        inputs: vec![input.into()],
        outputs: vec![output],
        attributes: Default::default(),
    };
    n.attributes.insert("axes".into(), AttrValue::Ints(vec![2]));
    n
}

/// The attributes of `n` extended for the new leading spatial axis, or
/// `None` when one of them does not have the 1-D length.
fn attributes_2d(n: &Node) -> Option<std::collections::BTreeMap<String, AttrValue>> {
    let mut attrs = n.attributes.clone();
    // (name, length in 1-D, value for the unit axis): the unit value goes
    // before every 1-D value, so `pads` `[b, e]` becomes `[0, b, 0, e]`.
    for (name, len, unit) in [
        ("kernel_shape", 1, 1),
        ("strides", 1, 1),
        ("dilations", 1, 1),
        ("output_padding", 1, 0),
        ("output_shape", 1, 1),
        ("pads", 2, 0),
    ] {
        if !n.attributes.contains_key(name) {
            continue;
        }
        let v = attr_ints(n, name)?;
        if v.len() != len {
            return None;
        }
        let v2: Vec<i64> = v.iter().flat_map(|&x| [unit, x]).collect();
        attrs.insert(name.into(), AttrValue::Ints(v2));
    }
    Some(attrs)
}

/// The rewrite of node `n`, or `None` when it does not apply.
fn plan(g: &Graph, names: &mut Names, n: &Node) -> Option<Rewrite> {
    let &(_, weighted) = OPS.iter().find(|(op, _)| *op == n.op_type)?;
    let x = n.input(0)?;
    if g.info(x)?.shape.len() != 3 {
        return None;
    }
    let y = n.outputs.first()?;
    if y.is_empty() || n.outputs[1..].iter().any(|o| !o.is_empty()) {
        return None;
    }
    let attributes = attributes_2d(n)?;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut inputs = n.inputs.clone();
    let x4 = names.fresh(&format!("{x}/2d"));
    nodes.push(axis2(
        names.fresh(&format!("{}/unsqueeze", n.name)),
        "Unsqueeze",
        x,
        x4.clone(),
    ));
    inputs[0] = x4;
    if weighted {
        let w = n.input(1)?;
        let ws = &g.info(w)?.shape;
        if ws.len() != 3 {
            return None;
        }
        let t = constant(g, w)?;
        let w4 = names.fresh(&format!("{w}/2d"));
        let t4 = Tensor::new(vec![ws[0], ws[1], 1, ws[2]], t.values.clone()).ok()?;
        inits.push((w4.clone(), t4));
        inputs[1] = w4;
    }
    let y4 = names.fresh(&format!("{y}/2d"));
    nodes.push(Node {
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        inputs,
        outputs: vec![y4.clone()],
        attributes,
    });
    nodes.push(axis2(
        names.fresh(&format!("{}/squeeze", n.name)),
        "Squeeze",
        &y4,
        y.clone(),
    ));
    Some((nodes, inits))
}

/// Rewrites every 1-D spatial node that [`plan`] accepts as its 2-D form
/// (see the module doc); returns the graph and the number rewritten.
pub fn lift_1d(g: Graph) -> Result<(Graph, usize), CompileError> {
    let applies = |g: &Graph, n: &Node| {
        OPS.iter().any(|(op, _)| *op == n.op_type)
            && n.input(0)
                .and_then(|x| g.info(x))
                .is_some_and(|i| i.shape.len() == 3)
    };
    rewrite_nodes(g, "spatial1d", applies, plan)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// One `op` node on `x: [2, 5, 11]` (plus weights `w: [wshape]` when
    /// given) with `attrs`.
    fn one(op: &str, dtype: &str, wshape: Option<[usize; 3]>, attrs: &str) -> String {
        let (winit, win) = match wshape {
            Some(s) => (
                format!(
                    r#"Initializer(name: "w", dtype: {dtype}, shape: {s:?}, data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.5)))"#
                ),
                r#", "w""#,
            ),
            None => (String::new(), ""),
        };
        format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: [2, 6, 11])],
              outputs: [ValueInfo(name: "y")],
              initializers: [{winit}],
              nodes: [Node(name: "n", op_type: "{op}", inputs: ["x"{win}], outputs: ["y"], attributes: {{ {attrs} }})])"#
        )
    }

    #[test]
    fn one_d_nodes_become_two_d_ones_exactly() {
        let cases = [
            one(
                "MaxPool",
                "F32",
                None,
                r#""kernel_shape": Ints([3]), "strides": Ints([2]), "pads": Ints([1, 2]), "dilations": Ints([2])"#,
            ),
            one(
                "AveragePool",
                "F32",
                None,
                r#""kernel_shape": Ints([4]), "strides": Ints([3]), "pads": Ints([2, 1]), "count_include_pad": Int(1)"#,
            ),
            one(
                "AveragePool",
                "F32",
                None,
                r#""kernel_shape": Ints([3]), "ceil_mode": Int(1), "strides": Ints([2])"#,
            ),
            one("GlobalAveragePool", "F32", None, ""),
            one(
                "Conv",
                "F32",
                Some([4, 3, 3]),
                r#""group": Int(2), "pads": Ints([1, 0]), "strides": Ints([2]), "dilations": Ints([2])"#,
            ),
            one(
                "Conv",
                "F32",
                Some([5, 6, 2]),
                r#""auto_pad": String("SAME_UPPER")"#,
            ),
            one(
                "ConvTranspose",
                "F32",
                Some([6, 2, 3]),
                r#""strides": Ints([3]), "pads": Ints([1, 1]), "output_padding": Ints([1])"#,
            ),
        ];
        for text in cases {
            let g = parse(&text);
            let (h, n) = lift_1d(g.clone()).expect("rewrite");
            assert_eq!(n, 1, "{text}");
            assert_eq!(ops(&h)[0], "Unsqueeze");
            assert_eq!(ops(&h)[ops(&h).len() - 1], "Squeeze");
            assert!(h.nodes.iter().all(|n| n.op_type == "Unsqueeze"
                || n.op_type == "Squeeze"
                || h.info(&n.inputs[0]).unwrap().shape.len() == 4));
            assert_same_outputs(&g, &h, 0.0);
            // The rewritten graph is a fixed point.
            assert_eq!(lift_1d(h).expect("runs").1, 0);
        }
    }

    #[test]
    fn two_d_nodes_and_computed_weights_stay() {
        let g = parse(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 2, 5]),
                ValueInfo(name: "w", dtype: F32, shape: [3, 2, 2])],
              outputs: [ValueInfo(name: "y")],
              nodes: [Node(op_type: "Conv", inputs: ["x", "w"], outputs: ["y"])])"#,
        );
        assert_eq!(lift_1d(g).expect("runs").1, 0);
        let g = parse(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 2, 5, 5])],
              outputs: [ValueInfo(name: "y")],
              nodes: [Node(op_type: "MaxPool", inputs: ["x"], outputs: ["y"], attributes: {"kernel_shape": Ints([2, 2])})])"#,
        );
        assert_eq!(lift_1d(g).expect("runs").1, 0);
    }
}
