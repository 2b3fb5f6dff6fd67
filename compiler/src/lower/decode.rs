//! Attention of one new token over a KV cache (the decode step of GPT-2 and
//! friends), with the cache stored **token-major**: no lane moves at all.
//!
//! The pattern (per layer, after the graph passes), with `T = T0 + 1`:
//!
//! ```text
//! Qh = Reshape(q [1,1,H]) -> [1,heads,1,d]       (likewise Kh, Vh = present_key/value)
//! keys = Concat(past_key [1,heads,T0,d] (graph input), Kh, axis 2)   (values likewise)
//! scores = MatMul(Qh, Transpose(keys, [0,1,3,2]))  -> [1,heads,1,T]
//! [Div or Mul by a constant scalar] ; probs = Softmax(-1)
//! context = MatMul(probs, values) -> [1,heads,1,d] ; Reshape -> [1,1,H]
//! ```
//!
//! Every `[1, heads, T, d]` tensor of the cache is stored as `T` rows of
//! `H = heads * d` lanes (storage permutation `[0, 2, 1, 3]`, in the binding
//! of `past_key.i` and `present_key.i`, so the host delivers and receives the
//! declared layout): token `t`'s keys sit exactly as the new token's `k`
//! (`[1, 1, H]`) does. Then:
//!
//! | op | lowering | cost per layer (`V` vectors per row) |
//! |---|---|---|
//! | Reshape `[1,1,H] -> [1,heads,1,d]`, `Reshape` of the context back to `[1,1,H]` | views of the `[1, H]` row (`present_key.i` is `k` itself) | none |
//! | Concat of the past and the new row (axis 2), Transpose `[0,1,3,2]` | a list of row vectors: the past rows, then the new one | none |
//! | MatMul `Q . K^T` | `P_t = K_t * q` (VXM, f32, rounded as the reference's products; `q` read from 8 copies on distinct slices), written as fp16 halves; per-head lane sums on the MXM with a block-diagonal ones matrix (`W[k, n] = 1` when lanes `k` and `n` hold the same head), so every lane of a head holds the head's score for token `t`; a fused `Div` by `sqrt(d)` is a `muli`. When `d` divides the lanes every vector meets the same `lanes x lanes` block, and all `TV` vectors are the rows of one product with one weight set; otherwise a `[H, H]` matrix, one K-tile per vector | `2TV` VXM groups (8 ops per vector), `2TV` `mm`, `TV` `emit`; one block installed per row chunk |
//! | Softmax (over the tokens) | lane-parallel across the `T` row vectors: running `max` (exact), `e_t = exp(s_t - m)`, running sum in token order (as the reference adds), `r = rsqrt(sum)`, `p_t = e_t (r r)`; `m` and `r r` read from 8 copies | `~4TV` VXM ops; `2TV` groups and two chains of `T` steps per vector |
//! | MatMul `P . V` | `c = sum_t p_t * V_t` in token order (VXM `mul`, `add`), landing in the merged `[1, H]` layout | `TV` `mul` + `TV` `add`, one chain of `T` steps per vector |
//!
//! A running fold (max, sum, product sum) is one group per vector: a chain
//! whose reads arrive as each step needs them. On a chip whose streams
//! cannot carry the first step's two rows at once (`tiny`, f32 products),
//! each step is its own group, the running value written between them.
//!
//! GPT-2 small int8 on `tsp` with a 128-token cache (`T = 129`, `V = 3`):
//! about 2,500 cycles of attention per layer (scores ~1,000, softmax ~1,000,
//! context ~350), 71,322 cycles for the whole step (lower bound 44,331).
//!
//! Errors against the reference: the cache copies and the context's
//! products and sums are bit-exact (the reference accumulates `acc + a*b`
//! in order, as here); the score's lane sum sees each product to about
//! 2^-22 (hi/lo split) and adds in fp32 in another order; the softmax's
//! `1/sum` is `rsqrt(sum)^2` (2 ulp). On the test graphs the context is
//! within 1e-7 of the reference.

use super::{Epilogue, Gb, KTile, Lowerer, MatmulPlan, Place, TailKind, TailOp};
use crate::alloc::TensorLoc;
use crate::CompileError;
use half::f16;
use lpu_graph::{Graph, Node};
use lpu_isa::program::VecLoc;
use lpu_isa::{DType, Instr, Opcode, Values};
use std::collections::{BTreeMap, BTreeSet};

/// The storage permutation of a token-major `[1, heads, T, d]` tensor.
const TOKEN_MAJOR: [usize; 4] = [0, 2, 1, 3];

/// Rows folded by one group of a running max, sum or product sum, at most
/// (fewer where the chip has few streams: see [`Lowerer::fold_rows`]).
const CHUNK: usize = 256;

/// How [`Lowerer::fold_rows`] makes a row's term.
#[derive(Clone, Copy)]
enum Term<'t> {
    /// The row itself.
    Row,
    /// The row times the same row of another tensor (`p_t * V_t`).
    Times(&'t TensorLoc),
}

/// Copies of a row that every token's step reads ([`Lowerer::replicate`]).
const COPIES: usize = 8;

/// Decode-attention state of the lowering.
#[derive(Default)]
pub(super) struct State {
    /// Nodes lowered here, by name.
    nodes: BTreeSet<String>,
    /// Planned storage `(rows, cols, layout)` of tensors allocated
    /// token-major.
    storage: BTreeMap<String, (usize, usize, Vec<usize>)>,
    /// The keys and values (and the keys' transpose) as lists of row
    /// vectors, by tensor name.
    rows: BTreeMap<String, TensorLoc>,
}

/// The producer node of `t`.
fn producer<'g>(g: &'g Graph, t: &str) -> Option<&'g Node> {
    g.producer(t).map(|p| &g.nodes[p])
}

/// The only consumer of `t` (not a graph output), if any.
fn only_consumer<'g>(g: &'g Graph, t: &str) -> Option<&'g Node> {
    match g.consumers(t).as_slice() {
        [c] if !g.outputs.iter().any(|o| o == t) => Some(&g.nodes[*c]),
        _ => None,
    }
}

fn shape<'g>(g: &'g Graph, t: &str) -> Option<&'g [usize]> {
    g.info(t).map(|i| i.shape.as_slice())
}

fn is_f32(g: &Graph, t: &str) -> bool {
    g.info(t).is_some_and(|i| i.dtype == DType::F32)
}

/// Whether `shape` is a single row of `h` elements (`[1, .., 1, h]`).
fn is_row(shape: &[usize], h: usize) -> bool {
    shape.last() == Some(&h) && shape[..shape.len() - 1].iter().all(|&x| x == 1)
}

/// The Reshape node making head view `t` (`[1, heads, 1, d]`) from a row of
/// `heads * d` elements.
fn head_view<'g>(g: &'g Graph, t: &str, heads: usize, d: usize) -> Option<&'g Node> {
    let n = producer(g, t)?;
    let x = n.input(0)?;
    (n.op_type == "Reshape"
        && shape(g, t)? == [1, heads, 1, d]
        && is_row(shape(g, x)?, heads * d)
        && is_f32(g, x))
    .then_some(n)
}

/// A Concat along axis 2 of a past graph input `[1, heads, T0, d]` (read by
/// nothing else) and a new head view that is a graph output: `(concat,
/// past, view node)`.
fn kv_concat<'g>(
    g: &'g Graph,
    t: &str,
    heads: usize,
    d: usize,
) -> Option<(&'g Node, &'g str, &'g Node)> {
    let n = producer(g, t)?;
    let axis = n.attr_int("axis", 0).ok()?;
    let (past, new) = (n.input(0)?, n.input(1)?);
    let ps = shape(g, past)?;
    let ok = n.op_type == "Concat"
        && n.inputs.len() == 2
        && (axis == 2 || axis == -2)
        && g.inputs.iter().any(|(i, _)| i == past)
        && g.consumers(past).len() == 1
        && !g.outputs.iter().any(|o| o == past)
        && ps.len() == 4
        && ps[0] == 1
        && ps[1] == heads
        && ps[2] >= 1
        && ps[3] == d
        && is_f32(g, past)
        // The new row is a graph output (`present_key.i`), so its storage
        // outlives the attention that reads it through the keys' rows, and
        // the Concat is its only reader.
        && g.outputs.iter().any(|o| o == new)
        && g.consumers(new).len() == 1;
    if !ok {
        return None;
    }
    Some((n, past, head_view(g, new, heads, d)?))
}

/// Matches the decode attention whose scores are computed by `m1` and
/// records it in `st`.
fn match_attention(g: &Graph, m1: &Node, st: &mut State) -> Option<()> {
    if m1.op_type != "MatMul" {
        return None;
    }
    let (qh, kt) = (m1.input(0)?, m1.input(1)?);
    let qs = shape(g, qh)?;
    let [1, heads, 1, d] = *qs else { return None };
    let h = heads * d;
    let qv = head_view(g, qh, heads, d)?;
    only_consumer(g, qh)?;
    let tr = producer(g, kt)?;
    let perm = tr.attr_ints("perm").ok()??.to_vec();
    if tr.op_type != "Transpose" || perm != [0, 1, 3, 2] {
        return None;
    }
    let keys = tr.input(0)?;
    only_consumer(g, keys)?;
    only_consumer(g, kt)?;
    let (kc, kpast, kv) = kv_concat(g, keys, heads, d)?;
    let t = shape(g, keys)?[2];
    let scores = m1.outputs.first()?;
    // An optional scaling by a constant scalar, then the Softmax.
    let mut x = scores.as_str();
    let mut c = only_consumer(g, x)?;
    let mut scale = None;
    if matches!(c.op_type.as_str(), "Div" | "Mul")
        && c.input(0) == Some(x)
        && c.input(1)
            .and_then(|s| g.initializers.get(s))
            .is_some_and(|s| s.len() == 1)
    {
        scale = Some(c);
        x = c.outputs.first()?;
        c = only_consumer(g, x)?;
    }
    let sm = c;
    let axis = sm.attr_int("axis", -1).ok()?;
    if sm.op_type != "Softmax" || !(axis == -1 || axis == 3) {
        return None;
    }
    let probs = sm.outputs.first()?;
    let m2 = only_consumer(g, probs)?;
    if m2.op_type != "MatMul" || m2.input(0) != Some(probs.as_str()) {
        return None;
    }
    let values = m2.input(1)?;
    only_consumer(g, values)?;
    let (vc, vpast, vv) = kv_concat(g, values, heads, d)?;
    if shape(g, values)?[2] != t {
        return None;
    }
    let ctx = m2.outputs.first()?;
    let merge = only_consumer(g, ctx)?;
    let merged = merge.outputs.first()?;
    if merge.op_type != "Reshape" || !is_row(shape(g, merged)?, h) {
        return None;
    }
    for n in [qv, kv, vv, kc, vc, tr, m1, sm, m2, merge]
        .into_iter()
        .chain(scale)
    {
        st.nodes.insert(n.name.clone());
    }
    for p in [kpast, vpast] {
        st.storage
            .insert(p.to_string(), (t - 1, h, TOKEN_MAJOR.to_vec()));
    }
    for s in [scores.as_str(), x, probs.as_str()] {
        st.storage.insert(s.to_string(), (t, h, vec![]));
    }
    st.storage
        .insert(ctx.to_string(), (1, h, TOKEN_MAJOR.to_vec()));
    Some(())
}

/// Finds every decode attention of `g` (see the module doc).
pub(super) fn plan(g: &Graph) -> State {
    let mut st = State::default();
    for n in &g.nodes {
        let _ = match_attention(g, n, &mut st);
    }
    st
}

impl<'a> Lowerer<'a> {
    /// Whether node `n` is part of a decode attention lowered here.
    pub(super) fn is_decode_op(&self, n: &Node) -> bool {
        self.dec.nodes.contains(&n.name)
    }

    /// The token-major storage of `name`, when planned (see [`plan`]).
    pub(super) fn decode_alloc(&mut self, name: &str, dtype: DType) -> Option<TensorLoc> {
        let (rows, cols, layout) = self.dec.storage.get(name)?.clone();
        let mut loc = self.alloc.tensor(name, &[rows, cols], dtype);
        loc.layout = layout;
        Some(loc)
    }

    /// Lowers a node accepted by [`Lowerer::is_decode_op`].
    pub(super) fn lower_decode(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        match n.op_type.as_str() {
            "Reshape" => {
                let mut loc = self.operand(&xn)?;
                if loc.rows != 1 {
                    return self.unsupported("a head view of one row is expected");
                }
                // Into heads: the row seen token-major; back: row-major.
                loc.layout = if self.dec.storage.contains_key(&xn) {
                    vec![]
                } else {
                    TOKEN_MAJOR.to_vec()
                };
                self.locs.insert(yn, loc);
                Ok(())
            }
            "Concat" => {
                let past = self.operand(&xn)?;
                let new = self.operand(&self.input_name(n, 1)?)?;
                if past.cols != new.cols || new.rows != 1 || past.dtype != new.dtype {
                    return self.unsupported("the cache and the new row do not agree");
                }
                let mut rows = past.clone();
                rows.rows += 1;
                rows.vectors.extend(new.vectors.iter().copied());
                self.dec.rows.insert(yn, rows);
                Ok(())
            }
            "Transpose" => {
                let Some(rows) = self.dec.rows.get(&xn).cloned() else {
                    return self.unsupported("the keys were not lowered as rows");
                };
                self.dec.rows.insert(yn, rows);
                Ok(())
            }
            "MatMul" => {
                let bn = self.input_name(n, 1)?;
                let Some(kv) = self.dec.rows.get(&bn).cloned() else {
                    return self.unsupported("the keys/values were not lowered as rows");
                };
                if self.dec.storage.contains_key(&xn) {
                    self.decode_context(&xn, &kv)
                } else {
                    self.decode_scores(n, &xn, &kv)
                }
            }
            "Softmax" => self.decode_softmax(&xn),
            _ => self.decode_scale(n, &xn),
        }
    }

    /// The fused tail of the current node, which must be one-operand steps
    /// (a binary step would read its operand in the declared layout).
    fn decode_tail(&mut self) -> Result<Vec<TailOp>, CompileError> {
        let mut tail = self.prepare_tail()?;
        for t in &mut tail {
            let TailKind::Binary {
                instr, chain_first, ..
            } = &t.kind
            else {
                continue;
            };
            // A scalar constant operand (a `Mul` by `1/sqrt(d)`) becomes an
            // immediate: its broadcast row has the declared layout's width.
            let n = &self.g.nodes[t.node as usize];
            let c = n
                .inputs
                .iter()
                .filter_map(|i| self.g.initializers.get(i))
                .find(|c| c.len() == 1)
                .map(|c| c.values.get_f64(0));
            let (op, imm) = match (instr.op, c, chain_first) {
                (Opcode::Mul, Some(c), _) => (Opcode::MulImm, c),
                (Opcode::Add, Some(c), _) => (Opcode::AddImm, c),
                (Opcode::Sub, Some(c), true) => (Opcode::AddImm, -c),
                _ => {
                    return self.unsupported(
                        "only one-operand steps and scalar constants fuse after a decode attention step",
                    )
                }
            };
            let ty = instr.ty;
            t.kind = TailKind::Unary(Instr {
                imm,
                ..Instr::new(op).typed(ty)
            });
        }
        Ok(tail)
    }

    /// The per-head lane-sum weights: `W[k, n] = 1` where lanes `k` and `n`
    /// of a `[hidden]` row hold the same head (`d` lanes per head). When
    /// `d` divides the lanes every vector holds whole heads and one
    /// `lanes x lanes` block serves every diagonal tile (the others are
    /// never used); otherwise the whole `hidden x hidden` matrix is stored.
    fn head_sum_weights(&mut self, d: usize, hidden: usize) -> TensorLoc {
        let key = format!("#head-sum {d} of {hidden}");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let lanes = self.lanes;
        let vpr = hidden.div_ceil(lanes);
        let ones = |k: usize, n: usize| {
            if k / d == n / d {
                f16::ONE
            } else {
                f16::ZERO
            }
        };
        let loc = if lanes.is_multiple_of(d) {
            let b: Vec<f16> = (0..lanes * lanes)
                .map(|i| ones(i / lanes, i % lanes))
                .collect();
            let base = self.alloc.constant_columns_first(
                &format!("head-sum weights (heads of {d} lanes)"),
                &[lanes, lanes],
                &Values::F16(b),
            );
            TensorLoc {
                dtype: DType::F16,
                rows: hidden,
                cols: hidden,
                vpr,
                vectors: (0..hidden * vpr)
                    .map(|i| base.at((i / vpr) % lanes, 0))
                    .collect(),
                layout: vec![],
                view: vec![],
                replicated: false,
            }
        } else {
            let w: Vec<f16> = (0..hidden * hidden)
                .map(|i| ones(i / hidden, i % hidden))
                .collect();
            self.alloc.constant_columns_first(
                &format!("head-sum weights ({hidden} lanes, heads of {d})"),
                &[hidden, hidden],
                &Values::F16(w),
            )
        };
        self.locs.insert(key, loc.clone());
        loc
    }

    /// [`COPIES`] copies of the one-row f32 tensor `x` on different MEM
    /// slices (a copy group each), read through [`TensorLoc::for_row`]: a
    /// row every token reads would otherwise queue `T` reads on one port.
    fn replicate(&mut self, what: &str, x: &TensorLoc) -> TensorLoc {
        let mut c = self.alloc.tensor(what, &[COPIES, x.cols], x.dtype);
        for k in 0..COPIES {
            for j in 0..x.vpr {
                let mut gb = self.begin();
                let v = self.read(&mut gb, x.at(0, j), x.dtype);
                self.write(&mut gb, v, c.at(k, j), x.dtype);
                self.fin(gb);
            }
        }
        c.replicated = true;
        c
    }

    /// Scores: `P_t = K_t * q` split into fp16 halves, then per-head lane
    /// sums on the MXM, then the fused tail (the `1/sqrt(d)`).
    fn decode_scores(&mut self, n: &Node, qn: &str, keys: &TensorLoc) -> Result<(), CompileError> {
        let q = self.operand(qn)?;
        let qs = self.shape_vec(qn)?;
        let d = qs[3];
        let tail = self.decode_tail()?;
        let out = self.chain_output()?;
        let (t, hidden, vpr) = (keys.rows, keys.cols, keys.vpr);
        if q.rows != 1
            || q.cols != hidden
            || q.dtype != DType::F32
            || keys.dtype != DType::F32
            || (out.rows, out.cols) != (t, hidden)
        {
            return self.unsupported("decode scores: storage does not match the heads");
        }
        let name = n.name.clone();
        let hi = self
            .alloc
            .tensor(&format!("{name} (products hi)"), &[t, hidden], DType::F16);
        let lo = self
            .alloc
            .tensor(&format!("{name} (products lo)"), &[t, hidden], DType::F16);
        let lo = super::unary::apart(lo, &[&hi]);
        let mut to16 = Instr::new(Opcode::Convert).typed(DType::F32);
        to16.to = DType::F16;
        let mut to32 = Instr::new(Opcode::Convert).typed(DType::F16);
        to32.to = DType::F32;
        let mul = Instr::new(Opcode::Mul).typed(DType::F32);
        // q is read by every token's products: copies on several slices.
        let qc = self.replicate(&format!("{name} (q copies)"), &q);
        for r in 0..t {
            for j in 0..vpr {
                let ka = keys.at(r, j);
                let product = |s: &mut Self, gb: &mut super::Gb, copy: usize| {
                    let k = s.read(gb, ka, DType::F32);
                    let x = s.read(gb, qc.for_row(3 * r + copy, j), DType::F32);
                    s.op(gb, mul.clone(), Place::Vxm, &[k, x], vec![])
                };
                let mut gb = self.begin();
                let p = product(self, &mut gb, 0);
                let h = self.op(&mut gb, to16.clone(), Place::Vxm, &[p], vec![]);
                self.write(&mut gb, h, hi.at(r, j), DType::F16);
                self.fin(gb);
                let mut gb = self.begin();
                let p = product(self, &mut gb, 1);
                let h = self.op(&mut gb, to16.clone(), Place::Vxm, &[p], vec![]);
                let h = self.op(&mut gb, to32.clone(), Place::Vxm, &[h], vec![]);
                let p = product(self, &mut gb, 2);
                let sub = Instr::new(Opcode::Sub).typed(DType::F32);
                let x = self.op(&mut gb, sub, Place::Vxm, &[p, h], vec![]);
                let x = self.op(&mut gb, to16.clone(), Place::Vxm, &[x], vec![]);
                self.write(&mut gb, x, lo.at(r, j), DType::F16);
                self.fin(gb);
            }
        }
        self.alloc.free(&qc);
        let w = self.head_sum_weights(d, hidden);
        let lanes = self.lanes;
        self.attn.lane0.clear();
        let epi = Epilogue {
            alpha: None,
            bias: None,
        };
        if lanes.is_multiple_of(d) {
            // Every vector holds whole heads and meets the same block: one
            // product whose rows are all `T x V` vectors, one weight set.
            let r = self.scores_by_vector(&w, &hi, &lo, &out, &tail);
            self.alloc.free(&hi);
            self.alloc.free(&lo);
            return r;
        }
        let ktiles: Vec<KTile> = (0..vpr)
            .map(|k| KTile {
                w_row0: k * lanes,
                rows: lanes.min(hidden - k * lanes),
            })
            .collect();
        // Heads of vector k: lanes k*lanes .. min((k+1)*lanes, hidden).
        let heads_of = |k: usize| (k * lanes / d, (((k + 1) * lanes).min(hidden) - 1) / d);
        let used = |k: usize, j: usize| {
            let (a, b) = heads_of(k);
            let (c, e) = heads_of(j);
            a <= e && c <= b
        };
        let act = |r: usize, k: usize| Some(hi.at(r, k));
        let act_lo = |r: usize, k: usize| Some(lo.at(r, k));
        let plan = MatmulPlan {
            rows: t,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: DType::F16,
            w_lo: None,
            act_lo: Some(&act_lo as &dyn Fn(usize, usize) -> Option<VecLoc>),
        };
        let r = self.matmul(&plan, &w, &out, DType::F16, DType::F32, &epi, &tail);
        self.alloc.free(&hi);
        self.alloc.free(&lo);
        r
    }

    /// The scores' lane sums when `d` divides the lanes: the product of
    /// every vector `(t, j)` of the halves `hi`/`lo` with the diagonal block
    /// of `w` (the same for every vector), as one matrix product of `T x V`
    /// rows and one column tile. A last vector with padding lanes uses only
    /// its real weight rows (a second K-tile), so the padding never meets
    /// the MXM.
    fn scores_by_vector(
        &mut self,
        w: &TensorLoc,
        hi: &TensorLoc,
        lo: &TensorLoc,
        out: &TensorLoc,
        tail: &[TailOp],
    ) -> Result<(), CompileError> {
        let (lanes, hidden, vpr) = (self.lanes, hi.cols, hi.vpr);
        let block_rows = lanes.min(hidden);
        let block = TensorLoc {
            dtype: DType::F16,
            rows: block_rows,
            cols: lanes,
            vpr: 1,
            vectors: (0..block_rows).map(|r| w.at(r, 0)).collect(),
            layout: vec![],
            view: vec![],
            replicated: false,
        };
        let partial = hidden % lanes;
        let mut ktiles = vec![KTile {
            w_row0: 0,
            rows: block_rows,
        }];
        let split_last = hidden > lanes && partial != 0;
        if split_last {
            ktiles.push(KTile {
                w_row0: 0,
                rows: partial,
            });
        }
        // K-tile 1 serves the last vector of each row when it is partial.
        let pick = |r: usize, k: usize, t: &TensorLoc| {
            let j = r % vpr;
            let last = split_last && j + 1 == vpr;
            (usize::from(last) == k).then(|| t.at(r / vpr, j))
        };
        let act = |r: usize, k: usize| pick(r, k, hi);
        let act_lo = |r: usize, k: usize| pick(r, k, lo);
        let used = |_: usize, _: usize| true;
        let plan = MatmulPlan {
            rows: hi.rows * vpr,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: DType::F16,
            w_lo: None,
            act_lo: Some(&act_lo as &dyn Fn(usize, usize) -> Option<VecLoc>),
        };
        let flat = TensorLoc {
            rows: out.rows * out.vpr,
            cols: lanes,
            vpr: 1,
            ..out.clone()
        };
        let epi = Epilogue {
            alpha: None,
            bias: None,
        };
        self.matmul(&plan, &block, &flat, DType::F16, DType::F32, &epi, tail)
    }

    /// `dst[j] = term(0) op term(1) op ...` in row order, `CHUNK` rows per
    /// group at most (the running value is written to `dst` between
    /// groups); `term(u)` is made from row `u`, vector `j` of `src` as
    /// [`Term`] says. `tail` follows the last step.
    fn fold_rows(
        &mut self,
        op: Opcode,
        src: &TensorLoc,
        how: Term,
        dst: &TensorLoc,
        tail: &[TailOp],
    ) {
        let ty = DType::F32;
        let streams = self.chip.streams_per_direction as usize;
        // A chain folds one row per step, its reads arriving as needed, but
        // the first step reads two rows at once: where the streams of one
        // direction cannot carry them (f32: 4 byte planes each), one row
        // per group.
        let reads = if matches!(how, Term::Row) { 1 } else { 2 };
        let chunk = if 2 * reads * ty.bytes() <= streams {
            CHUNK
        } else {
            1
        };
        let term = |s: &mut Self, gb: &mut super::Gb, u: usize, j: usize| {
            let x = s.read(gb, src.at(u, j), ty);
            match how {
                Term::Row => x,
                Term::Times(m) => {
                    let y = s.read(gb, m.at(u, j), ty);
                    s.op(
                        gb,
                        Instr::new(Opcode::Mul).typed(ty),
                        Place::Vxm,
                        &[x, y],
                        vec![],
                    )
                }
            }
        };
        for j in 0..src.vpr {
            let mut r = 0;
            while r < src.rows {
                let mut gb = self.begin();
                let end = (r + chunk).min(src.rows);
                let mut acc = if r == 0 {
                    r = 1;
                    term(self, &mut gb, 0, j)
                } else {
                    self.read(&mut gb, dst.at(0, j), ty)
                };
                for u in r..end {
                    let x = term(self, &mut gb, u, j);
                    acc = self.op(
                        &mut gb,
                        Instr::new(op).typed(ty),
                        Place::Vxm,
                        &[acc, x],
                        vec![],
                    );
                }
                r = end;
                if r == src.rows {
                    let acc = self.apply_tail(&mut gb, acc, 0, j, tail);
                    self.write_end(&mut gb, acc, dst.at(0, j), dst.dtype, tail);
                } else {
                    self.write(&mut gb, acc, dst.at(0, j), dst.dtype);
                }
                self.fin(gb);
            }
        }
    }

    /// Softmax over the tokens, lane-parallel across the row vectors.
    fn decode_softmax(&mut self, xn: &str) -> Result<(), CompileError> {
        let x = self.operand(xn)?;
        let tail = self.decode_tail()?;
        let out = self.chain_output()?;
        if x.dtype != DType::F32 || (out.rows, out.cols) != (x.rows, x.cols) {
            return self.unsupported("decode softmax: storage does not match");
        }
        let name = self.cur().name.clone();
        let ty = DType::F32;
        let (t, hidden, vpr) = (x.rows, x.cols, x.vpr);
        let row = |s: &mut Self, what: &str| {
            s.alloc
                .tensor(&format!("{name} ({what})"), &[1, hidden], DType::F32)
        };
        let m = row(self, "max over tokens");
        self.fold_rows(Opcode::Max, &x, Term::Row, &m, &[]);
        let mc = self.replicate(&format!("{name} (max copies)"), &m);
        self.alloc.free(&m);
        let e = self
            .alloc
            .tensor(&format!("{name} (exp)"), &[t, hidden], ty);
        let e = super::unary::apart(e, &[&x]);
        for r in 0..t {
            for j in 0..vpr {
                let mut gb = self.begin();
                let v = self.vxm_pair(&mut gb, Opcode::Sub, x.at(r, j), mc.for_row(r, j), ty);
                let v = self.op(
                    &mut gb,
                    Instr::new(Opcode::Exp).typed(ty),
                    Place::Vxm,
                    &[v],
                    vec![],
                );
                self.write(&mut gb, v, e.at(r, j), ty);
                self.fin(gb);
            }
        }
        self.alloc.free(&mc);
        let s = row(self, "sum over tokens");
        let rsqrt = [self.step(Instr::new(Opcode::Rsqrt).typed(ty))];
        self.fold_rows(Opcode::Add, &e, Term::Row, &s, &rsqrt);
        // rr = r * r (a stream value has one consumer: r is read twice).
        let rr = row(self, "reciprocal of sum");
        for j in 0..vpr {
            let mut gb = self.begin();
            let v = self.vxm_pair(&mut gb, Opcode::Mul, s.at(0, j), s.at(0, j), ty);
            self.write(&mut gb, v, rr.at(0, j), ty);
            self.fin(gb);
        }
        self.alloc.free(&s);
        let rc = self.replicate(&format!("{name} (reciprocal copies)"), &rr);
        self.alloc.free(&rr);
        // `out` has `x`'s storage (checked above): `t` rows of `vpr` vectors.
        self.emit_vectors(&out, &tail, |l, gb, r, j| {
            l.vxm_pair(gb, Opcode::Mul, e.at(r, j), rc.for_row(r, j), ty)
        });
        self.alloc.free(&e);
        self.alloc.free(&rc);
        Ok(())
    }

    /// Context `sum_t p_t * V_t` in token order, in the merged layout.
    /// Adds to `gb` the VXM `op` of the vectors at `a` and `b` (each read
    /// from SRAM; a stream value has one consumer, so the same vector twice
    /// is two reads); returns the result.
    fn vxm_pair(&mut self, gb: &mut Gb, op: Opcode, a: VecLoc, b: VecLoc, ty: DType) -> u32 {
        let x = self.read(gb, a, ty);
        let y = self.read(gb, b, ty);
        self.op(gb, Instr::new(op).typed(ty), Place::Vxm, &[x, y], vec![])
    }

    fn decode_context(&mut self, pn: &str, values: &TensorLoc) -> Result<(), CompileError> {
        let p = self.operand(pn)?;
        let tail = self.decode_tail()?;
        let out = self.chain_output()?;
        if p.dtype != DType::F32
            || values.dtype != DType::F32
            || (p.rows, p.cols) != (values.rows, values.cols)
            || (out.rows, out.cols) != (1, values.cols)
        {
            return self.unsupported("decode context: storage does not match");
        }
        self.fold_rows(Opcode::Add, &p, Term::Times(values), &out, &tail);
        Ok(())
    }

    /// A Div or Mul of the scores by a constant scalar that was not fused
    /// into them: a `muli` per vector.
    fn decode_scale(&mut self, n: &Node, xn: &str) -> Result<(), CompileError> {
        let x = self.operand(xn)?;
        let c = self.scalar_const(n.input(1), "scale")?.unwrap_or(1.0);
        let imm = if n.op_type == "Div" { 1.0 / c } else { c };
        let tail = self.decode_tail()?;
        let out = self.chain_output()?;
        if (out.rows, out.cols) != (x.rows, x.cols) {
            return self.unsupported("decode scaling: storage does not match");
        }
        self.emit_vectors(&out, &tail, |l, gb, r, j| {
            let a = l.read(gb, x.at(r, j), x.dtype);
            l.op(
                gb,
                Instr {
                    imm,
                    ..Instr::new(Opcode::MulImm).typed(x.dtype)
                },
                Place::Vxm,
                &[a],
                vec![],
            )
        });
        Ok(())
    }
}
