//! Splitting a product instead of its result.
//!
//! Exporters fuse projections: GPT-2's `c_attn` computes Q, K and V as one
//! `MatMul(x, W[K, 3H])` (+ bias) and then `Split`s the result along its
//! last axis. On this machine the last axis runs across the lanes, and a
//! split whose pieces do not start on a vector boundary (`H = 768` on 320
//! lanes) would have to move every element to another lane. Splitting the
//! constant weights instead costs nothing at run time:
//!
//! ```text
//!   Split(Add(MatMul(A, W), b), axis = -1)  ─►  Add(MatMul(A, W[:, c0..c1]), b[c0..c1])
//!   Split(MatMul(A, W), axis = -1)          ─►  MatMul(A, W[:, c0..c1])
//! ```
//!
//! one product per piece, each writing the piece's own tensor (named as the
//! Split's output, so readers and graph outputs are unchanged). The pieces
//! are computed exactly as the fused product computes those columns, so the
//! rewrite is bit-exact under the reference interpreter.
//!
//! Legal when `W` is a rank-2 constant, `b` (if any) a constant of `N`
//! elements broadcast along the last axis, every intermediate has no other
//! reader and is not a graph output, and the Split is along the last axis.

use lpu_graph::{Graph, Node, Tensor};

use super::{constant, Names, Parts};
use crate::CompileError;

/// A constant's elements as f32 slices of columns `c0..c1` of a `[rows,
/// cols]` matrix (or of a vector, `rows = 1`), in the constant's own type.
fn columns(t: &Tensor, rows: usize, cols: usize, c0: usize, c1: usize) -> Option<Tensor> {
    let idx: Vec<usize> = (0..rows)
        .flat_map(|r| (c0..c1).map(move |c| r * cols + c))
        .collect();
    let mut shape = t.shape.clone();
    let last = shape.last_mut()?;
    *last = c1 - c0;
    Tensor::new(shape, t.values.gather(&idx)).ok()
}

/// The only reader of `t`, if `t` has exactly one reader and is not a graph
/// output.
fn sole_reader(g: &Graph, t: &str) -> Option<usize> {
    let readers = g.consumers(t);
    (readers.len() == 1 && !g.outputs.iter().any(|o| o == t)).then(|| readers[0])
}

/// One rewrite: the nodes it removes and the nodes and initializers it adds.
struct Rewrite {
    remove: Vec<usize>,
    nodes: Vec<Node>,
    inits: Vec<(String, Tensor)>,
}

fn plan(g: &Graph, names: &mut Names, split_idx: usize) -> Option<Rewrite> {
    let split = &g.nodes[split_idx];
    let x = split.input(0)?;
    let rank = g.info(x)?.shape.len() as i64;
    let axis = split.attr_int("axis", 0).ok()?;
    if rank < 2 || (axis != -1 && axis != rank - 1) {
        return None;
    }
    // Producer chain: an optional bias Add, then the MatMul.
    let producer = |t: &str| {
        g.nodes
            .iter()
            .position(|n| n.outputs.iter().any(|o| o == t))
    };
    let p = producer(x)?;
    if sole_reader(g, x) != Some(split_idx) {
        return None;
    }
    let (mm_idx, bias) = match g.nodes[p].op_type.as_str() {
        "MatMul" => (p, None),
        "Add" => {
            let add = &g.nodes[p];
            let (a, b) = (add.input(0)?, add.input(1)?);
            let (m, b) = if constant(g, b).is_some() {
                (a, b)
            } else {
                (b, a)
            };
            let mi = producer(m)?;
            if g.nodes[mi].op_type != "MatMul" || sole_reader(g, m) != Some(p) {
                return None;
            }
            (mi, Some(b.to_string()))
        }
        _ => return None,
    };
    let mm = &g.nodes[mm_idx];
    let w_name = mm.input(1)?;
    let w = constant(g, w_name)?;
    if w.shape.len() != 2 {
        return None;
    }
    let (k, n) = (w.shape[0], w.shape[1]);
    let b = match &bias {
        Some(b) => {
            let t = constant(g, b)?;
            // Broadcast along the last axis only: [N] or [1, .., 1, N].
            let ok = t.shape.last() == Some(&n) && t.shape.iter().rev().skip(1).all(|&d| d == 1);
            if !ok {
                return None;
            }
            Some(t)
        }
        None => None,
    };
    // The pieces' column ranges, from the outputs' inferred shapes.
    let mut c0 = 0;
    let mut ranges = Vec::new();
    for o in &split.outputs {
        let w = *g.info(o)?.shape.last()?;
        ranges.push((o.clone(), c0, c0 + w));
        c0 += w;
    }
    if c0 != n || ranges.is_empty() {
        return None;
    }
    let a = mm.input(0)?.to_string();
    let mut rw = Rewrite {
        remove: vec![split_idx, mm_idx],
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    if p != mm_idx {
        rw.remove.push(p);
    }
    for (k_piece, (out, c0, c1)) in ranges.into_iter().enumerate() {
        let wn = names.fresh(&format!("{w_name}/cols_{c0}_{c1}"));
        rw.inits.push((wn.clone(), columns(w, k, n, c0, c1)?));
        let piece_mm = names.fresh(&format!("{}/part{k_piece}", mm.name));
        let mm_out = if b.is_some() {
            names.fresh(&piece_mm)
        } else {
            out.clone()
        };
        rw.nodes.push(Node {
            name: piece_mm.clone(),
            op_type: "MatMul".into(),
            inputs: vec![a.clone(), wn],
            outputs: vec![mm_out.clone()],
            attributes: Default::default(),
        });
        if let (Some(bt), Some(bname)) = (b, &bias) {
            let bn = names.fresh(&format!("{bname}/cols_{c0}_{c1}"));
            rw.inits.push((bn.clone(), columns(bt, 1, n, c0, c1)?));
            rw.nodes.push(Node {
                name: names.fresh(&format!("{}/part{k_piece}", g.nodes[p].name)),
                op_type: "Add".into(),
                inputs: vec![mm_out, bn],
                outputs: vec![out],
                attributes: Default::default(),
            });
        }
    }
    Some(rw)
}

/// Rewrites every `Split` of a constant-weight product along the last axis
/// into one product per piece (see the module doc); returns the graph and
/// the number of Splits removed.
pub fn split_products(g: Graph) -> Result<(Graph, usize), CompileError> {
    let mut names = Names::of(&g);
    let mut rewrites: Vec<Rewrite> = Vec::new();
    let mut taken = std::collections::BTreeSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "Split" {
            continue;
        }
        if let Some(rw) = plan(&g, &mut names, i) {
            if rw.remove.iter().all(|r| !taken.contains(r)) {
                taken.extend(rw.remove.iter().copied());
                rewrites.push(rw);
            }
        }
    }
    if rewrites.is_empty() {
        return Ok((g, 0));
    }
    let count = rewrites.len();
    let mut parts = Parts::of(g);
    // Each rewrite's nodes take the place of its Split (a valid topological
    // position: after the product's inputs, before the Split's readers).
    let mut at_split: std::collections::BTreeMap<usize, Vec<Node>> = Default::default();
    for rw in rewrites {
        let split = rw.remove[0];
        at_split.insert(split, rw.nodes);
        for (name, t) in rw.inits {
            parts.initializers.insert(name, t);
        }
    }
    let nodes = std::mem::take(&mut parts.nodes);
    for (i, n) in nodes.into_iter().enumerate() {
        if let Some(new) = at_split.remove(&i) {
            parts.nodes.extend(new);
        } else if !taken.contains(&i) {
            parts.nodes.push(n);
        }
    }
    Ok((parts.rebuild("split")?, count))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const FUSED_QKV: &str = r#"Graph(
      name: "qkv",
      inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 3, 8])],
      outputs: [ValueInfo(name: "q"), ValueInfo(name: "k"), ValueInfo(name: "v")],
      initializers: [
        Initializer(name: "w", dtype: F32, shape: [8, 15], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.3))),
        Initializer(name: "b", dtype: F32, shape: [15], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))),
        Initializer(name: "sizes", dtype: I32, shape: [3], data: Inline([5, 4, 6])),
      ],
      nodes: [
        Node(name: "proj", op_type: "MatMul", inputs: ["x", "w"], outputs: ["p"]),
        Node(name: "bias", op_type: "Add", inputs: ["p", "b"], outputs: ["pb"]),
        Node(name: "split", op_type: "Split", inputs: ["pb", "sizes"], outputs: ["q", "k", "v"], attributes: {"axis": Int(-1)}),
      ],
    )"#;

    #[test]
    fn a_split_of_a_biased_product_becomes_one_product_per_piece() {
        let g = parse(FUSED_QKV);
        let (h, n) = split_products(g.clone()).expect("rewrite");
        assert_eq!(n, 1);
        let ops: Vec<&str> = h.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Add", "MatMul", "Add", "MatMul", "Add"]);
        assert_same_outputs(&g, &h, 0.0);
    }

    #[test]
    fn a_split_along_another_axis_or_of_a_shared_product_stays() {
        let g = parse(
            &FUSED_QKV
                .replace(r#""axis": Int(-1)"#, r#""axis": Int(1)"#)
                .replace(r#"Inline([5, 4, 6])"#, r#"Inline([1, 1, 1])"#),
        );
        assert_eq!(split_products(g).expect("runs").1, 0);
        // The biased result is also a graph output: it must stay.
        let g = parse(&FUSED_QKV.replace(
            r#"ValueInfo(name: "v")],"#,
            r#"ValueInfo(name: "v"), ValueInfo(name: "pb")],"#,
        ));
        assert_eq!(split_products(g).expect("runs").1, 0);
    }
}
