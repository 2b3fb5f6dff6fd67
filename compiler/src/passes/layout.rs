//! Reshape and transpose elimination.
//!
//! One sweep in node order:
//!
//! - **Aliases are removed.** A node whose single output has exactly the
//!   type and shape of its data input and holds the same elements in the
//!   same order is dropped and its readers read the input instead: `Identity`,
//!   a `Cast` to the same type, `Reshape` / `Flatten` / `Squeeze` /
//!   `Unsqueeze` / `Expand` that leave the shape unchanged, a `Transpose`
//!   that only moves size-1 dimensions (the identity permutation included),
//!   and a one-input `Concat` / `Sum` / `Max` / `Min`. When the output is a
//!   graph output, the producer of the input is renamed instead (if the input
//!   is a node output that is not itself a graph output); otherwise the node
//!   stays.
//! - **Reshape chains collapse.** A `Reshape`, `Flatten`, `Squeeze` or
//!   `Unsqueeze` of the output of another one becomes one `Reshape` of the
//!   first one's input to the final shape (a new shape initializer
//!   `<node>/shape`, of the type the chain's `Reshape` used, `i32` if none).
//!   A chain that ends in its starting shape disappears.
//! - **Transpose chains compose.** `Transpose(Transpose(x, p), q)` becomes
//!   `Transpose(x, p∘q)`, or nothing when that is the identity.
//! - **Order-preserving transposes become reshapes.** A `Transpose` that only
//!   moves size-1 dimensions keeps the row-major element order; it becomes a
//!   `Reshape`.
//!
//! The first node of a collapsed chain is left for [`super::dce`] when
//! nothing else reads it. Every rewritten node is checked with shape
//! inference before it replaces the original; one that would not infer to
//! the same type and shape is left alone.
//!
//! Which of the remaining reshapes cost nothing is a question of the SRAM
//! layout, answered by [`is_layout_alias`].

use std::collections::BTreeMap;

use lpu_graph::{AttrValue, DType, Graph, Node, Tensor, TensorInfo, Values};

use super::{attr_ints, infer, Names, Parts};
use crate::CompileError;

/// Ops that change only the shape, never the row-major element order.
fn is_reshape_like(op: &str) -> bool {
    matches!(op, "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze")
}

/// The permutation of a `Transpose` node for input rank `rank`: the `perm`
/// attribute, or the reversal when absent. `None` if `perm` is not a
/// permutation of `0..rank`.
fn perm_of(n: &Node, rank: usize) -> Option<Vec<usize>> {
    let p: Vec<usize> = match attr_ints(n, "perm") {
        Some(v) => v
            .iter()
            .map(|&a| usize::try_from(a).ok())
            .collect::<Option<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    for &a in &p {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return None;
        }
    }
    (p.len() == rank).then_some(p)
}

/// Whether transposing a tensor of `shape` by `perm` keeps the row-major
/// element order: the dimensions larger than 1 stay in increasing order.
fn order_preserving(shape: &[usize], perm: &[usize]) -> bool {
    let big: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&a| shape.get(a).copied().unwrap_or(1) > 1)
        .collect();
    big.windows(2).all(|w| w[0] < w[1])
}

/// Whether `node` can share its input's storage under the lowering's SRAM
/// layout, where a tensor is stored as rows of its last dimension (the 2-D
/// view `[product of the leading dims, last dim]`, each row padded to whole
/// lane vectors): `Identity`, a `Cast` to the same type, and `Reshape`,
/// `Flatten`, `Squeeze`, `Unsqueeze` or an order-preserving `Transpose`
/// whose output keeps the input's element type and last dimension. Other
/// reshapes move elements between rows and need a copy.
pub fn is_layout_alias(g: &Graph, node: &Node) -> bool {
    let (Some(i), Some(o)) = (
        node.input(0).and_then(|t| g.info(t)),
        node.outputs.first().and_then(|t| g.info(t)),
    ) else {
        return false;
    };
    if i.dtype != o.dtype || i.len() != o.len() {
        return false;
    }
    let last = |s: &[usize]| s.last().copied().unwrap_or(1);
    match node.op_type.as_str() {
        "Identity" | "Cast" => i.shape == o.shape,
        op if is_reshape_like(op) => last(&i.shape) == last(&o.shape),
        "Transpose" => {
            perm_of(node, i.shape.len()).is_some_and(|p| order_preserving(&i.shape, &p))
                && last(&i.shape) == last(&o.shape)
        }
        _ => false,
    }
}

struct Sweep<'g> {
    g: &'g Graph,
    names: Names,
    nodes: Vec<Node>,
    /// Producer (index into `nodes`) of each tensor written so far.
    producer: BTreeMap<String, usize>,
    /// Tensors replaced by another name (resolved transitively).
    subst: BTreeMap<String, String>,
    new_inits: BTreeMap<String, Tensor>,
    changes: usize,
}

impl Sweep<'_> {
    fn resolve(&self, t: &str) -> String {
        let mut t = t.to_string();
        for _ in 0..=self.subst.len() {
            match self.subst.get(&t) {
                Some(s) => t = s.clone(),
                None => break,
            }
        }
        t
    }

    fn info(&self, t: &str) -> Option<TensorInfo> {
        self.g
            .info(t)
            .cloned()
            .or_else(|| self.new_inits.get(t).map(Tensor::info))
    }

    fn constant(&self, t: &str) -> Option<&Tensor> {
        self.new_inits.get(t).or_else(|| super::constant(self.g, t))
    }

    /// Whether `n` infers to exactly `want` (its original single output).
    fn infers_to(&self, n: &Node, want: &TensorInfo) -> bool {
        let infos: Vec<Option<TensorInfo>> = n.inputs.iter().map(|t| self.info(t)).collect();
        let ins: Vec<Option<&TensorInfo>> = infos.iter().map(Option::as_ref).collect();
        let consts: Vec<Option<&Tensor>> = n.inputs.iter().map(|t| self.constant(t)).collect();
        matches!(infer(n, &ins, &consts).as_deref(), Ok([o]) if o == want)
    }

    /// `n` as `Reshape(src, <n>/shape)` producing `out`'s shape, if that
    /// infers correctly; `dtype` is the type of the shape tensor.
    fn as_reshape(&mut self, n: &Node, src: &str, out: &TensorInfo, dtype: DType) -> Option<Node> {
        let dims: Vec<i64> = out.shape.iter().map(|&d| d as i64).collect();
        let values = match dtype {
            DType::I32 => Values::I32(dims.iter().map(|&d| d as i32).collect()),
            _ => return None,
        };
        let shape = Tensor::new(vec![dims.len()], values).ok()?;
        let name = self.names.fresh(&format!("{}/shape", n.name));
        self.new_inits.insert(name.clone(), shape);
        let r = Node {
            name: n.name.clone(),
            op_type: "Reshape".into(),
            inputs: vec![src.to_string(), name.clone()],
            outputs: n.outputs.clone(),
            attributes: BTreeMap::new(),
        };
        if self.infers_to(&r, out) {
            Some(r)
        } else {
            self.new_inits.remove(&name);
            None
        }
    }

    /// Merges `n` with the reshape or transpose producing its input.
    fn merge(&mut self, n: Node) -> Node {
        let (Some(x), Some(out)) = (
            n.input(0).map(str::to_string),
            n.outputs.first().and_then(|o| self.info(o)),
        ) else {
            return n;
        };
        let Some(m) = self
            .producer
            .get(&x)
            .and_then(|&p| self.nodes.get(p))
            .cloned()
        else {
            return n;
        };
        let Some(src) = m.input(0).map(str::to_string) else {
            return n;
        };
        let Some(src_info) = self.info(&src) else {
            return n;
        };
        if is_reshape_like(&n.op_type) && is_reshape_like(&m.op_type) {
            let dtype = [&n, &m]
                .iter()
                .find(|k| k.op_type == "Reshape")
                .and_then(|k| k.input(1))
                .and_then(|s| self.info(s))
                .map_or(DType::I32, |i| i.dtype);
            if let Some(r) = self.as_reshape(&n, &src, &out, dtype) {
                self.changes += 1;
                return r;
            }
        }
        if n.op_type == "Transpose" && m.op_type == "Transpose" {
            let rank = src_info.shape.len();
            if let (Some(pm), Some(pn)) = (perm_of(&m, rank), perm_of(&n, rank)) {
                let q: Vec<i64> = pn.iter().map(|&j| pm[j] as i64).collect();
                let mut t = n.clone();
                t.inputs[0] = src.clone();
                t.attributes.insert("perm".into(), AttrValue::Ints(q));
                if self.infers_to(&t, &out) {
                    self.changes += 1;
                    return t;
                }
            }
        }
        n
    }

    /// The tensor `n` is an alias of, if it is one (see the module doc).
    fn alias_source(&self, n: &Node) -> Option<String> {
        let [out] = n.outputs.as_slice() else {
            return None;
        };
        let x = n.input(0)?;
        let (xi, oi) = (self.info(x)?, self.info(out)?);
        if xi != oi {
            return None;
        }
        let ok = match n.op_type.as_str() {
            "Identity" | "Cast" | "Expand" => true,
            op if is_reshape_like(op) => true,
            "Transpose" => {
                perm_of(n, xi.shape.len()).is_some_and(|p| order_preserving(&xi.shape, &p))
            }
            "Concat" | "Sum" | "Max" | "Min" => n.inputs.len() == 1,
            _ => false,
        };
        ok.then(|| x.to_string())
    }

    fn push(&mut self, n: Node) {
        for o in &n.outputs {
            self.producer.insert(o.clone(), self.nodes.len());
        }
        self.nodes.push(n);
    }

    fn visit(&mut self, n: &Node) {
        let mut n = n.clone();
        for i in n.inputs.iter_mut().filter(|i| !i.is_empty()) {
            *i = self.resolve(i);
        }
        if is_reshape_like(&n.op_type) || n.op_type == "Transpose" {
            n = self.merge(n);
        }
        if let Some(src) = self.alias_source(&n) {
            let out = n.outputs[0].clone();
            if !self.g.outputs.contains(&out) {
                self.subst.insert(out, src);
                self.changes += 1;
                return;
            }
            // A graph output: rename the input's producer instead.
            if let Some(&p) = self.producer.get(&src) {
                if !self.g.outputs.contains(&src) {
                    for o in self.nodes[p].outputs.iter_mut().filter(|o| **o == src) {
                        *o = out.clone();
                    }
                    super::rename_inputs(&mut self.nodes, &src, &out);
                    self.producer.remove(&src);
                    self.producer.insert(out.clone(), p);
                    self.subst.insert(src, out);
                    self.changes += 1;
                    return;
                }
            }
        }
        if n.op_type == "Transpose" {
            let shapes = n
                .input(0)
                .and_then(|x| self.info(x))
                .zip(n.outputs.first().and_then(|o| self.info(o)));
            if let Some((xi, oi)) = shapes {
                let keeps_order =
                    perm_of(&n, xi.shape.len()).is_some_and(|p| order_preserving(&xi.shape, &p));
                if keeps_order {
                    let src = n.inputs[0].clone();
                    if let Some(r) = self.as_reshape(&n, &src, &oi, DType::I32) {
                        self.changes += 1;
                        n = r;
                    }
                }
            }
        }
        self.push(n);
    }
}

/// Removes aliases and merges reshape and transpose chains (see the module
/// doc); returns the graph and the number of nodes removed or rewritten
/// (0: `g` is returned as it was).
pub fn eliminate_layout(g: Graph) -> Result<(Graph, usize), CompileError> {
    let mut s = Sweep {
        g: &g,
        names: Names::of(&g),
        nodes: Vec::with_capacity(g.nodes.len()),
        producer: BTreeMap::new(),
        subst: BTreeMap::new(),
        new_inits: BTreeMap::new(),
        changes: 0,
    };
    for n in &g.nodes {
        s.visit(n);
    }
    if s.changes == 0 {
        return Ok((g, 0));
    }
    let (changes, nodes, new_inits) = (s.changes, s.nodes, s.new_inits);
    let mut p = Parts::of(g);
    p.nodes = nodes;
    p.initializers.extend(new_inits);
    Ok((p.rebuild("layout")?, changes))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn identity_and_same_type_cast_are_removed() {
        let g = parse(
            r#"Graph(
              name: "id",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3])],
              outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")],
              nodes: [
                Node(name: "i1", op_type: "Identity", inputs: ["x"], outputs: ["a"]),
                Node(name: "c", op_type: "Cast", inputs: ["a"], outputs: ["b"], attributes: {"to": Int(1)}),
                Node(name: "r", op_type: "Relu", inputs: ["b"], outputs: ["r_out"]),
                Node(name: "i2", op_type: "Identity", inputs: ["r_out"], outputs: ["y"]),
                Node(name: "i3", op_type: "Identity", inputs: ["x"], outputs: ["z"]),
              ],
            )"#,
        );
        let (o, n) = eliminate_layout(g.clone()).unwrap();
        assert_eq!(n, 3, "i1, c, and i2 by renaming r's output");
        assert_eq!(
            ops(&o),
            ["Relu", "Identity"],
            "i3 copies a graph input to an output"
        );
        assert_eq!(o.nodes[0].inputs, ["x"]);
        assert_eq!(o.nodes[0].outputs, ["y"]);
        assert_same_outputs(&g, &o, 0.0);
    }

    const CHAIN: &str = r#"Graph(
      name: "chain",
      inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 4])],
      outputs: [ValueInfo(name: "y"), ValueInfo(name: "t")],
      initializers: [
        Initializer(name: "s1", dtype: I32, shape: [2], data: Inline([6, 4])),
        Initializer(name: "s2", dtype: I32, shape: [3], data: Inline([3, 2, 4])),
        Initializer(name: "s3", dtype: I32, shape: [3], data: Inline([2, 3, 4])),
      ],
      nodes: [
        Node(name: "r1", op_type: "Reshape", inputs: ["x", "s1"], outputs: ["a"]),
        Node(name: "r2", op_type: "Reshape", inputs: ["a", "s2"], outputs: ["b"]),
        Node(name: "e", op_type: "Relu", inputs: ["b"], outputs: ["y"]),
        Node(name: "r3", op_type: "Reshape", inputs: ["b", "s3"], outputs: ["c"]),
        Node(name: "t1", op_type: "Transpose", inputs: ["c"], outputs: ["d"], attributes: {"perm": Ints([1, 2, 0])}),
        Node(name: "t2", op_type: "Transpose", inputs: ["d"], outputs: ["f"], attributes: {"perm": Ints([2, 0, 1])}),
        Node(name: "t3", op_type: "Transpose", inputs: ["f"], outputs: ["t"], attributes: {"perm": Ints([0, 2, 1])}),
      ],
    )"#;

    #[test]
    fn reshape_and_transpose_chains_collapse() {
        let g = parse(CHAIN);
        let (o, n) = super::super::optimize_with_stats(&g)
            .map(|(o, s)| (o, s.layout))
            .unwrap();
        assert!(n >= 3, "{n}");
        // r1 -> r2 becomes one Reshape of x; r3 returns to x's shape; t1 -> t2
        // is the identity; only t3 remains of the transposes.
        assert_eq!(ops(&o), ["Reshape", "Relu", "Transpose"]);
        assert_eq!(o.nodes[0].inputs[0], "x");
        assert_eq!(o.nodes[2].inputs[0], "x");
        assert_same_outputs(&g, &o, 0.0);
    }

    #[test]
    fn order_preserving_transpose_becomes_reshape() {
        let g = parse(
            r#"Graph(
              name: "t",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 3, 1, 4])],
              outputs: [ValueInfo(name: "y")],
              nodes: [
                Node(name: "t", op_type: "Transpose", inputs: ["x"], outputs: ["a"], attributes: {"perm": Ints([1, 0, 2, 3])}),
                Node(name: "r", op_type: "Relu", inputs: ["a"], outputs: ["y"]),
              ],
            )"#,
        );
        let (o, n) = eliminate_layout(g.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&o), ["Reshape", "Relu"]);
        assert!(is_layout_alias(&o, &o.nodes[0]));
        assert_same_outputs(&g, &o, 0.0);
    }

    #[test]
    fn layout_alias_needs_the_same_last_dimension() {
        let g = parse(
            r#"Graph(
              name: "alias",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 8, 1, 1])],
              outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")],
              nodes: [
                Node(name: "f", op_type: "Flatten", inputs: ["x"], outputs: ["y"], attributes: {"axis": Int(1)}),
                Node(name: "u", op_type: "Unsqueeze", inputs: ["y", "ax"], outputs: ["z"]),
              ],
              initializers: [Initializer(name: "ax", dtype: I32, shape: [1], data: Inline([0]))],
            )"#,
        );
        assert!(
            !is_layout_alias(&g, &g.nodes[0]),
            "[1,8,1,1] -> [1,8] moves elements between rows"
        );
        assert!(
            is_layout_alias(&g, &g.nodes[1]),
            "[1,8] -> [1,1,8] keeps rows"
        );
    }
}
