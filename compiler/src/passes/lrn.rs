//! LRN (local response normalization) as operators the machine has.
//!
//! `LRN(x)` on `[N, C, H, W]` divides each element by
//! `(bias + alpha / size * s)^beta`, with `s` the sum of the squares of the
//! channels `c - floor((size-1)/2) ..= c + ceil((size-1)/2)` at the same
//! pixel. The sum runs *across channels*, which the channels-last layout
//! puts across the lanes, so it is a matrix product: a 1x1 convolution with
//! a constant banded `[C, C, 1, 1]` weight of ones. The rewrite is
//!
//! ```text
//!   sq = Mul(x, x)
//!   s  = Conv(sq, band)                 band[o, i] = 1 where i is in o's window
//!   t  = Add(Mul(s, alpha / size), bias)
//!   y  = Mul(x, Pow(t, -beta))
//! ```
//!
//! which the lowering runs on the MXM (the conv, fp16 squares with fp32
//! accumulation, as every f32 product) and the VXM (the rest; `Pow` with
//! exponent -beta needs `beta` in the lowered set: 0.25, 0.5, 0.75, 1, 1.5,
//! 2). Multiplying by `t^-beta` instead of dividing by `t^beta` and the
//! product's fp16 squares differ from the reference LRN by rounding only.
//! Applies to 4-D f32 inputs; anything else keeps its LRN (and the lowering
//! then reports it).

use lpu_graph::{AttrValue, DType, Graph, Node, Tensor, Values};

use super::{rewrite_nodes, Names, Rewrite};
use crate::CompileError;

/// The exponents `-beta` the lowering's `Pow` computes (see
/// `lower/unary.rs`).
const LOWERED_BETAS: [f32; 6] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0];

fn scalar(v: f32) -> Option<Tensor> {
    Tensor::new(vec![], Values::F32(vec![v])).ok()
}

/// The decomposition of LRN node `n`, or `None` when it does not apply.
fn plan(g: &Graph, names: &mut Names, n: &Node) -> Option<Rewrite> {
    let x = n.input(0)?;
    let y = n.outputs.first()?;
    let info = g.info(x)?;
    if info.dtype != DType::F32 || info.shape.len() != 4 {
        return None;
    }
    let alpha = n.attr_float("alpha", 1e-4).ok()?;
    let beta = n.attr_float("beta", 0.75).ok()?;
    let bias = n.attr_float("bias", 1.0).ok()?;
    let size = n.attr_int("size", 1).ok()?;
    if size < 1 || !LOWERED_BETAS.contains(&beta) {
        return None;
    }
    let (size, c) = (size as usize, info.shape[1]);
    let (below, above) = ((size - 1) / 2, (size - 1).div_ceil(2));
    // band[o, i, 0, 0] = 1 when input channel i is in output o's window.
    let band: Vec<f32> = (0..c * c)
        .map(|k| {
            let (o, i) = (k / c, k % c);
            f32::from(i + below >= o && i <= o + above)
        })
        .collect();
    let name = |names: &mut Names, what: &str| names.fresh(&format!("{}/{what}", n.name));
    let (sq, s, st, t, p) = (
        name(names, "square"),
        name(names, "window_sum"),
        name(names, "scaled"),
        name(names, "base"),
        name(names, "power"),
    );
    let (wb, wa, wbias, wexp) = (
        name(names, "band"),
        name(names, "alpha_over_size"),
        name(names, "bias"),
        name(names, "minus_beta"),
    );
    let inits = vec![
        (
            wb.clone(),
            Tensor::new(vec![c, c, 1, 1], Values::F32(band)).ok()?,
        ),
        (wa.clone(), scalar(alpha / size as f32)?),
        (wbias.clone(), scalar(bias)?),
        (wexp.clone(), scalar(-beta)?),
    ];
    let node = |what: &str, op: &str, inputs: Vec<String>, out: String| Node {
        name: format!("{}/{what}", n.name),
        op_type: op.into(),
        inputs,
        outputs: vec![out],
        attributes: Default::default(),
    };
    let mut conv = node("window_sum", "Conv", vec![sq.clone(), wb], s.clone());
    conv.attributes
        .insert("kernel_shape".into(), AttrValue::Ints(vec![1, 1]));
    let nodes = vec![
        node("square", "Mul", vec![x.into(), x.into()], sq),
        conv,
        node("scaled", "Mul", vec![s, wa], st.clone()),
        node("base", "Add", vec![st, wbias], t.clone()),
        node("power", "Pow", vec![t, wexp], p.clone()),
        Node {
            name: n.name.clone(),
            op_type: "Mul".into(),
            inputs: vec![x.into(), p],
            outputs: vec![y.clone()],
            attributes: Default::default(),
        },
    ];
    Some((nodes, inits))
}

/// Rewrites every LRN that [`plan`] accepts (see the module doc); returns
/// the graph and the number rewritten.
pub fn decompose_lrn(g: Graph) -> Result<(Graph, usize), CompileError> {
    rewrite_nodes(g, "lrn", |_, n| n.op_type == "LRN", plan)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn lrn(size: i64, beta: f32) -> String {
        format!(
            r#"Graph(name: "lrn",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 7, 3, 2])],
              outputs: [ValueInfo(name: "y")],
              nodes: [Node(name: "n", op_type: "LRN", inputs: ["x"], outputs: ["y"],
                attributes: {{"size": Int({size}), "alpha": Float(0.2), "beta": Float({beta}), "bias": Float(1.5)}})],
            )"#
        )
    }

    #[test]
    fn lrn_becomes_a_banded_conv_and_elementwise_ops() {
        for size in [1, 2, 3, 5, 8] {
            let g = parse(&lrn(size, 0.75));
            let (h, n) = decompose_lrn(g.clone()).expect("rewrite");
            assert_eq!(n, 1);
            let ops: Vec<&str> = h.nodes.iter().map(|n| n.op_type.as_str()).collect();
            assert_eq!(ops, ["Mul", "Conv", "Mul", "Add", "Pow", "Mul"]);
            // Rounding only: a product instead of a quotient, another order.
            assert_same_outputs(&g, &h, 1e-5);
        }
    }

    #[test]
    fn lrn_with_an_unlowered_beta_stays() {
        let g = parse(&lrn(3, 0.6));
        assert_eq!(decompose_lrn(g).expect("runs").1, 0);
    }
}
