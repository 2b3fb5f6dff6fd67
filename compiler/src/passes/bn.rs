//! BatchNormalization folding.
//!
//! Inference-mode `BatchNormalization(X, scale, B, mean, var)` computes, per
//! channel `c` (axis 1), `y = x * a[c] + b[c]` with
//! `a = scale / sqrt(var + epsilon)` and `b = B - mean * a` (f32). When `X`
//! is produced by a product whose output channel is that axis, the BN folds
//! into the product's constant weights and bias:
//!
//! - `Conv(X, W[M, C/g, k...], Bc)`: `W'[m, ..] = W[m, ..] * a[m]`,
//!   `Bc'[m] = Bc[m] * a[m] + b[m]` (`Bc` absent: `b`);
//! - `Gemm(A, B, C)` with a rank-2 output `[M, N]`: the columns of `B`
//!   (rows if `transB`) scale by `a`, `C' = beta * C * a + b` (broadcast to
//!   at least `[N]`) and `beta` becomes 1;
//! - `MatMul(A, W[K, N])` with a rank-2 output: `W'[k, n] = W[k, n] * a[n]`,
//!   and the BN becomes an `Add` of `b` (keeping the BN node's name), which
//!   the lowering fuses into the product's chain.
//!
//! Legal only when the product's output has no other reader and is not a
//! graph output, the weights, bias and BN parameters are constants with
//! `C` elements, and the BN is in inference mode with one output. Otherwise
//! the BN stays and is lowered elementwise. The folded weights are new
//! initializers (`<product>/bn_weight`, `<product>/bn_bias`); f16 weights
//! are computed in f32 and rounded back. Folding changes rounding, so the
//! results match the unfolded graph to a tolerance, not bit for bit.

use std::collections::BTreeMap;

use lpu_graph::{Graph, Node, Tensor};

use super::{constant, f32s, float_values, Names, Parts};
use crate::CompileError;

/// One fold: the BN node's index, the product's index and what replaces it.
struct Fold {
    bn: usize,
    producer: usize,
    /// Replaces the producer.
    replacement: Vec<Node>,
    inits: Vec<(String, Tensor)>,
}

/// `a` and `b` of the module doc, if the BN's parameters are constant
/// vectors of `channels` elements.
fn affine(g: &Graph, bn: &Node, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    let p = |k: usize| -> Option<Vec<f32>> {
        let t = constant(g, bn.input(k)?)?;
        let v = f32s(&t.values)?;
        (v.len() == channels && t.shape.len() <= 1).then_some(v)
    };
    let (scale, bias, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
    let eps = bn.attr_float("epsilon", 1e-5).ok()?;
    let a: Vec<f32> = scale
        .iter()
        .zip(&var)
        .map(|(s, v)| s / (v + eps).sqrt())
        .collect();
    let b: Vec<f32> = bias
        .iter()
        .zip(&mean)
        .zip(&a)
        .map(|((b, m), a)| b - m * a)
        .collect();
    Some((a, b))
}

/// Multiplies `w` (row-major, `shape`) by `a[index along axis]`, in place.
fn scale_axis(mut w: Vec<f32>, shape: &[usize], axis: usize, a: &[f32]) -> Vec<f32> {
    let inner: usize = shape.iter().skip(axis + 1).product::<usize>().max(1);
    let dim = shape.get(axis).copied().unwrap_or(1).max(1);
    // `w` is `[outer][dim][inner]`: one factor per run of `inner`.
    for (i, run) in w.chunks_mut(inner).enumerate() {
        let f = a[i % dim];
        for x in run {
            *x *= f;
        }
    }
    w
}

fn plan(g: &Graph, names: &mut Names, bn_idx: usize) -> Option<Fold> {
    let bn = &g.nodes[bn_idx];
    if bn.outputs.len() != 1 || bn.attr_int("training_mode", 0).ok()? != 0 {
        return None;
    }
    let x = bn.input(0)?;
    let y = bn.outputs[0].clone();
    let xi = g.info(x)?;
    let channels = *xi.shape.get(1)?;
    let pi = g.producer(x)?;
    if g.consumers(x) != [bn_idx] || g.outputs.iter().any(|o| o == x) {
        return None;
    }
    let prod = &g.nodes[pi];
    let (a, b) = affine(g, bn, channels)?;
    let mut inits = Vec::new();
    let mut add_init = |names: &mut Names, base: &str, t: Tensor| -> String {
        let name = names.fresh(base);
        inits.push((name.clone(), t));
        name
    };
    let mut replacement = Vec::new();
    match prod.op_type.as_str() {
        "Conv" => {
            let w = constant(g, prod.input(1)?)?;
            if w.shape.first() != Some(&channels) {
                return None;
            }
            let wv = scale_axis(f32s(&w.values)?, &w.shape, 0, &a);
            let bias: Vec<f32> = match prod.input(2) {
                Some(bc) => {
                    let bc = f32s(&constant(g, bc)?.values)?;
                    if bc.len() != channels {
                        return None;
                    }
                    bc.iter()
                        .zip(&a)
                        .zip(&b)
                        .map(|((c, a), b)| c * a + b)
                        .collect()
                }
                None => b,
            };
            let wt = Tensor::new(w.shape.clone(), float_values(w.dtype(), wv)).ok()?;
            let bt = Tensor::new(vec![channels], float_values(w.dtype(), bias)).ok()?;
            let wn = add_init(names, &format!("{}/bn_weight", prod.name), wt);
            let bname = add_init(names, &format!("{}/bn_bias", prod.name), bt);
            let mut c = prod.clone();
            c.inputs = vec![prod.inputs[0].clone(), wn, bname];
            c.outputs = vec![y];
            replacement.push(c);
        }
        "Gemm" | "MatMul" => {
            if xi.shape.len() != 2 {
                return None;
            }
            let w = constant(g, prod.input(1)?)?;
            let trans_b = prod.op_type == "Gemm" && prod.attr_int("transB", 0).ok()? != 0;
            let axis = if trans_b { 0 } else { 1 };
            if w.shape.len() != 2 || w.shape[axis] != channels {
                return None;
            }
            let wv = scale_axis(f32s(&w.values)?, &w.shape, axis, &a);
            let wt = Tensor::new(w.shape.clone(), float_values(w.dtype(), wv)).ok()?;
            let wn = add_init(names, &format!("{}/bn_weight", prod.name), wt);
            if prod.op_type == "Gemm" {
                let beta = prod.attr_float("beta", 1.0).ok()?;
                let (cshape, cv) = match prod.input(2) {
                    Some(c) => {
                        let c = constant(g, c)?;
                        let shape = lpu_graph::infer::broadcast(&c.shape, &[channels])?;
                        let cv = f32s(&c.values)?;
                        let vals = broadcast_to(&cv, &c.shape, &shape)?
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| beta * v * a[i % channels] + b[i % channels])
                            .collect();
                        (shape, vals)
                    }
                    None => (vec![channels], b),
                };
                let ct = Tensor::new(cshape, float_values(w.dtype(), cv)).ok()?;
                let cn = add_init(names, &format!("{}/bn_bias", prod.name), ct);
                let mut n = prod.clone();
                n.inputs = vec![prod.inputs[0].clone(), wn, cn];
                n.outputs = vec![y];
                n.attributes.remove("beta");
                replacement.push(n);
            } else {
                let bt = Tensor::new(vec![channels], float_values(w.dtype(), b)).ok()?;
                let bname = add_init(names, &format!("{}/bn_bias", prod.name), bt);
                let mut n = prod.clone();
                n.inputs[1] = wn;
                replacement.push(n);
                replacement.push(Node {
                    name: bn.name.clone(),
                    op_type: "Add".into(),
                    inputs: vec![x.to_string(), bname],
                    outputs: vec![y],
                    attributes: BTreeMap::new(),
                });
            }
        }
        _ => return None,
    }
    Some(Fold {
        bn: bn_idx,
        producer: pi,
        replacement,
        inits,
    })
}

/// `v` (row-major, `from`) broadcast (NumPy rules) to `to`.
fn broadcast_to(v: &[f32], from: &[usize], to: &[usize]) -> Option<Vec<f32>> {
    let off = to.len().checked_sub(from.len())?;
    let mut strides = vec![0usize; to.len()];
    let mut s = 1;
    for (i, &d) in from.iter().enumerate().rev() {
        if d != 1 {
            strides[off + i] = s;
        }
        s *= d;
    }
    let total: usize = to.iter().product();
    let mut out = Vec::with_capacity(total);
    for flat in 0..total {
        let (mut rem, mut src) = (flat, 0);
        for (d, st) in to.iter().zip(&strides).rev() {
            src += (rem % d) * st;
            rem /= d;
        }
        out.push(*v.get(src)?);
    }
    Some(out)
}

/// Folds every foldable BatchNormalization; returns the graph and the number
/// folded (0: `g` is returned as it was).
pub fn fold_batch_norms(g: Graph) -> Result<(Graph, usize), CompileError> {
    let mut names = Names::of(&g);
    let mut folds: Vec<Fold> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type == "BatchNormalization" {
            folds.extend(plan(&g, &mut names, i));
        }
    }
    if folds.is_empty() {
        return Ok((g, 0));
    }
    let count = folds.len();
    let mut by_producer: BTreeMap<usize, Fold> = BTreeMap::new();
    let mut gone = vec![false; g.nodes.len()];
    for f in folds {
        gone[f.bn] = true;
        by_producer.insert(f.producer, f);
    }
    let mut p = Parts::of(g);
    let old = std::mem::take(&mut p.nodes);
    for (i, n) in old.into_iter().enumerate() {
        if let Some(f) = by_producer.remove(&i) {
            p.nodes.extend(f.replacement);
            p.initializers.extend(f.inits);
        } else if !gone[i] {
            p.nodes.push(n);
        }
    }
    Ok((p.rebuild("bn")?, count))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const BN_PARAMS: &str = r#"
        Initializer(name: "gamma", dtype: F32, shape: [4], data: Inline([1.0, 0.5, 2.0, -1.0])),
        Initializer(name: "beta", dtype: F32, shape: [4], data: Inline([0.1, 0.0, -0.2, 0.3])),
        Initializer(name: "mean", dtype: F32, shape: [4], data: Inline([0.05, -0.1, 0.2, 0.0])),
        Initializer(name: "var", dtype: F32, shape: [4], data: Inline([1.0, 0.25, 4.0, 0.5])),
    "#;

    fn graph(prod: &str, x_shape: &str, w: &str, extra: &str) -> String {
        format!(
            r#"Graph(
              name: "bn",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: {x_shape})],
              outputs: [ValueInfo(name: "y")],
              initializers: [{BN_PARAMS} {w}],
              nodes: [
                {prod}
                Node(name: "bn", op_type: "BatchNormalization", inputs: ["p", "gamma", "beta", "mean", "var"], outputs: ["q"], attributes: {{"epsilon": Float(0.001)}}),
                Node(name: "act", op_type: "Relu", inputs: ["q"], outputs: ["y"]),
                {extra}
              ],
            )"#
        )
    }

    #[test]
    fn folds_into_conv_weights_and_bias() {
        let g = parse(&graph(
            r#"Node(name: "conv", op_type: "Conv", inputs: ["x", "w", "cb"], outputs: ["p"], attributes: {"pads": Ints([1, 1, 1, 1])}),"#,
            "[1, 3, 5, 5]",
            r#"Initializer(name: "w", dtype: F32, shape: [4, 3, 3, 3], data: Random(seed: 7, dist: Normal(mean: 0.0, std: 0.5))),
               Initializer(name: "cb", dtype: F32, shape: [4], data: Inline([0.1, 0.2, 0.3, 0.4])),"#,
            "",
        ));
        let (o, n) = fold_batch_norms(g.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&o), ["Conv", "Relu"]);
        assert_eq!(o.nodes[0].inputs, ["x", "conv/bn_weight", "conv/bn_bias"]);
        assert_same_outputs(&g, &o, 1e-5);
    }

    #[test]
    fn folds_into_gemm_and_matmul() {
        let gemm = parse(&graph(
            r#"Node(name: "fc", op_type: "Gemm", inputs: ["x", "w", "c"], outputs: ["p"], attributes: {"transB": Int(1), "beta": Float(0.5)}),"#,
            "[2, 3]",
            r#"Initializer(name: "w", dtype: F32, shape: [4, 3], data: Random(seed: 8, dist: Normal(mean: 0.0, std: 0.5))),
               Initializer(name: "c", dtype: F32, shape: [2, 1], data: Inline([0.5, -0.5])),"#,
            "",
        ));
        let (o, n) = fold_batch_norms(gemm.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&o), ["Gemm", "Relu"]);
        assert_eq!(o.initializers["fc/bn_bias"].shape, [2, 4]);
        assert_same_outputs(&gemm, &o, 1e-5);

        let mm = parse(&graph(
            r#"Node(name: "fc", op_type: "MatMul", inputs: ["x", "w"], outputs: ["p"]),"#,
            "[2, 3]",
            r#"Initializer(name: "w", dtype: F32, shape: [3, 4], data: Random(seed: 9, dist: Normal(mean: 0.0, std: 0.5))),"#,
            "",
        ));
        let (o, n) = fold_batch_norms(mm.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&o), ["MatMul", "Add", "Relu"]);
        assert_eq!(o.nodes[1].name, "bn");
        assert_same_outputs(&mm, &o, 1e-5);
    }

    #[test]
    fn stays_when_the_product_has_another_reader() {
        let g = parse(&graph(
            r#"Node(name: "fc", op_type: "MatMul", inputs: ["x", "w"], outputs: ["p"]),"#,
            "[2, 3]",
            r#"Initializer(name: "w", dtype: F32, shape: [3, 4], data: Random(seed: 9, dist: Normal(mean: 0.0, std: 0.5))),"#,
            r#"Node(name: "other", op_type: "Relu", inputs: ["p"], outputs: ["unused"]),"#,
        ));
        let (o, n) = fold_batch_norms(g).unwrap();
        assert_eq!(n, 0);
        assert!(ops(&o).contains(&"BatchNormalization"));
    }
}
