//! Multi-head attention on row-major `[S, H]` storage: the head split and
//! merge are views, the scores and the context are MXM products whose
//! weights are computed tensors already in SRAM.
//!
//! Q, K and V come out of their projections as `[S, H]` tensors (one row per
//! token, the hidden axis across the lanes). `Reshape [1, S, H] -> [1, S,
//! heads, d]` and `Transpose [0, 2, 1, 3]` move no data: they record a
//! *head view* of the same storage (head `h` is columns `h*d .. (h+1)*d`),
//! and the attention products pick each head's lanes themselves.
//!
//! | op | lowering | cost |
//! |---|---|---|
//! | Reshape `[1,S,H] -> [1,S,heads,d]`, Transpose `[0,2,1,3]` (either way), Reshape back to `[1,S,H]` | views of the `[S, H]` storage | none |
//! | Transpose `[0,2,3,1]` (K to K^T) | a real transpose to `K^T [H, S]` in fp16 (the MXM weight type), see below | `log2 p` passes over K, then (when `p < lanes`) one relocation pass |
//! | MatMul `Q . K^T` (scores) | per head, a product whose weights are K^T's rows of that head (installed at the staging rows of the head's lanes in Q's vectors: rows not loaded are zero, so a full Q row contracts with that head only), one K-tile per vector the head touches; `Div` by the constant `sqrt(d)` fuses as a `muli` | per head `S x pieces` `mm`, `d` weight rows loaded |
//! | MatMul `P . V` (context) | `y = x . W` with W's rows = V's rows contracts over the key index, which is exactly `P . V`: V is installed from its own storage (converted to fp16, and masked to head `h`'s lanes when a vector holds several heads); each output vector accumulates, over the heads it holds and the key tiles, `P_h . V_h`, so the context is written directly in the merged `[S, H]` layout. After a Softmax left unnormalized (see below), `P = E r r` is never made: the product takes `E`'s halves and its epilogue multiplies each result vector twice by one holding each head's `r` on that head's lanes | `S x heads_in_vector x ceil(S/lanes)` `mm` per output vector; one conversion pass over V |
//!
//! **The transpose.** The MXM cannot move an element to another lane (an
//! output lane is a column of the installed weights), so `K^T` is built with
//! the SXM and VXM: Eklundh's recursive block transpose on `p x p` blocks
//! (`p` the largest power of two dividing `lanes`, at most `lanes`: 16 on
//! `tiny`, 64 on `tsp`). For `s = p/2, ..., 1`, rows `a` and `a + s` (bit
//! `s` of `a` clear) exchange their off-diagonal `s x s` sub-blocks:
//! `A' = (A - A m) + rot(B, s) m` and `B' = (B - B m') + rot(A, -s) m'`,
//! with `m` the constant row that is 1 on lanes whose bit `s` is set and
//! `m' = 1 - m` (products by 0 and 1, and differences with 0 or with
//! themselves, are exact, so the transpose is exact). One pass writes every
//! row once: 5 reads, 1 `rot`, 2 `mul`, 1 `sub`, 1 `add`, 1 write per
//! vector. Afterwards block `(R, C)` holds the transpose
//! of K's block `(R, C)` in place; when `p = lanes` that *is* `K^T`'s
//! vector `(C-th row block, R)` and no data moves; otherwise a relocation
//! pass rotates each block into its lanes (`rot`, `mul` by a block mask,
//! `add`, per block of a `K^T` vector). A last pass splits an f32 `K^T`
//! into fp16 high and low halves (see "fp32-accurate products" below).
//!
//! **fp32-accurate products.** Both operands of the scores and the context
//! are computed f32 tensors, which the reference multiplies in f32. The MXM
//! multiplies fp16, so each f32 operand is split into fp16 halves,
//! `x = x_hi + x_lo` (`x_hi = fp16(x)`, `x_lo = fp16(x - x_hi)`: about 22
//! significant bits, fewer where `x_lo` is subnormal, below 2^-14 * 2^11
//! in magnitude), and the product runs as three passes into the same
//! fp32 accumulators: `x_hi . W_hi + x_lo . W_hi` (weights `W_hi`
//! installed) then `x_hi . W_lo` (`W_lo` installed); `x_lo . W_lo` (below
//! 2^-22 relative) is dropped. The halves of `K^T` and `V` are made once
//! (`split_halves` in their conversion passes), those of `Q` and `P` on the
//! way into each `mm` (`cvt`, `cvt`, `sub`, `cvt` on the VXM). This costs 3x
//! the `mm` and 2x the weight loads of a plain fp16 product, and keeps an
//! int8 model's attention close enough to the reference that its int8
//! requantization rounds the same way (a plain fp16 product differs from the
//! f32 reference by about 2^-11 relative, which flips many int8 roundings
//! downstream).
//!
//! **The Softmax before the context.** A Softmax whose only reader is such
//! a split context product (one-vector rows, f32 values) stops before its
//! last step ([`Deferred`]): `P = E r r`, `E = exp(x - max)`, `r =
//! rsqrt(sum E)` per row, and `P . V = (E . V) r r` row by row. Its rows'
//! sums were already made from `E`'s fp16 halves, so the product takes those
//! halves as its activations, and neither `P` nor `P`'s halves are made (two
//! VXM groups of normalization and split per row of `P`, about 50 stream
//! slots at the VXM, against one group per result vector that gathers the
//! heads' `r` on their lanes, [`Lowerer::head_scales`], and two `mul`s in
//! the epilogue). Rounding differs from the reference's `(E r r) . V` by
//! about one f32 ulp of the products.

use super::{Epilogue, Gb, KTile, Lowerer, MatmulPlan, Place, TailKind};
use crate::alloc::TensorLoc;
use crate::passes::float_values;
use crate::CompileError;
use lpu_graph::Node;
use lpu_isa::program::VecLoc;
use lpu_isa::{DType, Instr, Opcode};
use std::collections::BTreeMap;

/// Attention state of the lowering.
#[derive(Default)]
pub(super) struct State {
    /// Staging-row offset of each K-tile of the product being emitted by
    /// [`Lowerer::matmul`] (empty: all 0).
    pub(super) lane0: Vec<usize>,
    /// Head views, by tensor name.
    views: BTreeMap<String, View>,
    /// Softmax outputs left unnormalized for the context product that reads
    /// them ([`Deferred`]), by tensor name.
    pub(super) deferred: BTreeMap<String, Deferred>,
}

/// A Softmax whose only reader is an fp32-accurate context product `P . V`
/// ([`Lowerer::softmax_feeds_context`]), lowered without its last step:
/// `P = E r r` with `E = exp(x - max)` and `r = rsqrt(sum E)` per row. The
/// context product takes `E`'s fp16 halves (those the row sums were made
/// from) and scales each head's lanes of its result by `r r` instead, so
/// neither the normalization nor `P`'s own halves are made.
pub(super) struct Deferred {
    /// `E`'s fp16 high halves, `[heads * S, S]`.
    pub(super) hi: TensorLoc,
    /// `E`'s fp16 low halves.
    pub(super) lo: TensorLoc,
    /// `r` per row of `E`, on every lane, `[heads * S, lanes]` (f32).
    pub(super) r: TensorLoc,
}

/// How a 4-D tensor sees its 2-D base storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `[1, S, heads, d]` over `[S, H]`.
    Split,
    /// `[1, heads, S, d]` over `[S, H]`.
    Heads,
    /// `[1, heads, d, S]` over the materialized `K^T [H, S]` (fp16).
    HeadsT,
}

/// A head view.
#[derive(Clone, Debug)]
struct View {
    /// The tensor whose storage `base` is, when the view owns it (see
    /// [`Lowerer::release`]); empty for storage made here.
    src: String,
    base: TensorLoc,
    /// The low fp16 halves of a materialized fp16 `base` (`K^T`), when its
    /// source was f32: `base + lo` is the f32 value to about 22 bits.
    lo: Option<TensorLoc>,
    heads: usize,
    d: usize,
    kind: Kind,
}

/// Rows `r0 .. r0 + n` of `t`.
fn rows_of(t: &TensorLoc, r0: usize, n: usize) -> TensorLoc {
    TensorLoc {
        rows: n,
        vectors: t.vectors[r0 * t.vpr..(r0 + n) * t.vpr].to_vec(),
        ..t.clone()
    }
}

/// Whether `n` splits a `[1, S, H]` tensor into heads (`Reshape` to `[1, S,
/// heads, d]` read only by transposes): lowered as a view, so the source's
/// storage must outlive the split (see [`Lowerer::release`]).
pub(super) fn is_head_split(g: &lpu_graph::Graph, n: &Node) -> bool {
    let (Some(x), Some(y)) = (n.input(0), n.outputs.first()) else {
        return false;
    };
    let (Some(xi), Some(yi)) = (g.info(x), g.info(y)) else {
        return false;
    };
    let (xs, ys) = (&xi.shape, &yi.shape);
    n.op_type == "Reshape"
        && xs.len() == 3
        && ys.len() == 4
        && xs[0] == 1
        && ys[..2] == xs[..2]
        && ys[2] * ys[3] == xs[2]
        && ys[2] > 1
        && g.consumers(y)
            .iter()
            .all(|&c| g.nodes[c].op_type == "Transpose")
}

/// Whether `n` merges attention heads back (`Reshape [1, S, heads, d] ->
/// [1, S, heads*d]` of a `Transpose` of a `MatMul`): its output is the
/// context's own storage, not an alias of another tensor's, so it is freed
/// like any computed tensor.
pub(super) fn is_head_merge(g: &lpu_graph::Graph, n: &Node) -> bool {
    let (Some(x), Some(y)) = (n.input(0), n.outputs.first()) else {
        return false;
    };
    let (Some(xi), Some(yi)) = (g.info(x), g.info(y)) else {
        return false;
    };
    let from = |t: &str, op: &str| g.producer(t).is_some_and(|p| g.nodes[p].op_type == op);
    n.op_type == "Reshape"
        && xi.shape.len() == 4
        && yi.shape.len() == 3
        && xi.shape[0] == 1
        && yi.shape[..2] == xi.shape[..2]
        && yi.shape[2] == xi.shape[2] * xi.shape[3]
        && xi.shape[2] > 1
        && from(x, "Transpose")
        && g.producer(x)
            .is_some_and(|p| g.nodes[p].input(0).is_some_and(|t| from(t, "MatMul")))
}

impl<'a> Lowerer<'a> {
    /// Whether `n` is a head split/merge, a head transpose or an attention
    /// product, lowered here.
    pub(super) fn is_head_op(&self, n: &Node) -> bool {
        let view = |k: usize| n.input(k).is_some_and(|x| self.attn.views.contains_key(x));
        match n.op_type.as_str() {
            "MatMul" => view(0) || view(1),
            "Transpose" => view(0),
            "Reshape" => {
                view(0)
                    || (is_head_split(self.g, n)
                        && !n.input(0).is_some_and(|x| self.cl.contains(x)))
            }
            _ => false,
        }
    }

    /// Whether Softmax node `n` (input `x`) can leave its rows
    /// unnormalized for the context product that is its only reader
    /// ([`Deferred`]): one-vector f32 rows, no fused tail, and the reader
    /// a `P . V` whose `V` head view is f32 (an fp32-accurate product of
    /// split halves).
    pub(super) fn softmax_feeds_context(&self, n: &Node, x: &TensorLoc) -> bool {
        let Some(y) = n.outputs.first() else {
            return false;
        };
        let cons = self.g.consumers(y);
        let [ci] = cons.as_slice() else {
            return false;
        };
        let c = &self.g.nodes[*ci];
        x.dtype == DType::F32
            && x.vpr == 1
            && !self.g.outputs.contains(y)
            && self
                .tails
                .get(self.node as usize)
                .is_some_and(Vec::is_empty)
            && c.op_type == "MatMul"
            && c.input(0) == Some(y.as_str())
            && c.input(1)
                .and_then(|v| self.attn.views.get(v))
                .is_some_and(|v| v.kind == Kind::Heads && v.base.dtype == DType::F32)
            && self.tails.get(*ci).is_some_and(Vec::is_empty)
    }

    /// Lowers a node accepted by [`Lowerer::is_head_op`].
    pub(super) fn lower_head_op(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let ys = self.shape_vec(&yn)?;
        match n.op_type.as_str() {
            "Reshape" => {
                if let Some(v) = self.attn.views.get(&xn).cloned() {
                    if v.kind == Kind::Split && ys.len() == 3 && ys[2] == v.heads * v.d {
                        self.locs.insert(yn, v.base);
                        return Ok(());
                    }
                    return self.unsupported(
                        "only the merge of a head split back to [1, S, H] is lowered",
                    );
                }
                let base = self.operand(&xn)?;
                let view = View {
                    src: xn.clone(),
                    base,
                    lo: None,
                    heads: ys[2],
                    d: ys[3],
                    kind: Kind::Split,
                };
                self.attn.views.insert(yn, view);
                Ok(())
            }
            "Transpose" => {
                let Some(v) = self.attn.views.get(&xn).cloned() else {
                    return self.unsupported(&format!(
                        "'{xn}' is not an attention head view, so this transpose is not lowered"
                    ));
                };
                let perm = n
                    .attr_ints("perm")?
                    .map(<[i64]>::to_vec)
                    .unwrap_or_default();
                let kind = match (v.kind, perm.as_slice()) {
                    (Kind::Split, [0, 2, 1, 3]) => Kind::Heads,
                    (Kind::Heads, [0, 2, 1, 3]) => Kind::Split,
                    (Kind::Split, [0, 2, 3, 1]) => {
                        let (kt, lo) = self.transpose_to_f16(&v.base)?;
                        self.release(&v.src, &v.base);
                        self.attn.views.insert(
                            yn,
                            View {
                                src: String::new(),
                                base: kt,
                                lo,
                                kind: Kind::HeadsT,
                                ..v
                            },
                        );
                        return Ok(());
                    }
                    _ => {
                        return self.unsupported(&format!(
                            "transpose {perm:?} of a {:?} head view is not lowered",
                            v.kind
                        ))
                    }
                };
                self.attn.views.insert(yn, View { kind, ..v });
                Ok(())
            }
            _ => {
                let bn = self.input_name(n, 1)?;
                let a = self.attn.views.get(&xn).cloned();
                let b = self.attn.views.get(&bn).cloned();
                match (a, b) {
                    (Some(q), Some(kt)) if q.kind == Kind::Heads && kt.kind == Kind::HeadsT => {
                        self.lower_scores(&q, &kt)
                    }
                    (None, Some(v)) if v.kind == Kind::Heads => {
                        if let Some(e) = self.attn.deferred.remove(&xn) {
                            let hi = e.hi.clone();
                            return self.lower_context(n, &hi, &v, Some(e));
                        }
                        let p = self.operand(&xn)?;
                        self.lower_context(n, &p, &v, None)
                    }
                    _ => self.unsupported(
                        "a product of head views is lowered only as Q . K^T (scores) or P . V (context)",
                    ),
                }
            }
        }
    }

    /// Scores `Q . K^T` per head, with any fused tail (the `1/sqrt(d)`).
    fn lower_scores(&mut self, q: &View, kt: &View) -> Result<(), CompileError> {
        let tail = self.prepare_tail()?;
        if tail
            .iter()
            .any(|t| matches!(&t.kind, TailKind::Binary { other, .. } if other.rows != 1 && !other.replicated))
        {
            return self.unsupported("only row-broadcast operands can be fused after the scores");
        }
        let out = self.chain_output()?;
        // The scores' own type (a fused tail may end in another).
        let emit_ty = self.out_dtype(self.cur())?;
        let (heads, d, lanes) = (q.heads, q.d, self.lanes);
        let s = q.base.rows;
        if out.rows != heads * s
            || out.vpr != kt.base.vpr
            || q.base.dtype != DType::F32 && q.base.dtype != DType::F16
        {
            return self.unsupported("scores storage does not match the heads");
        }
        // An f32 Q against split K^T: Q's halves too (fp32-accurate scores).
        let q_halves = (kt.lo.is_some() && q.base.dtype == DType::F32)
            .then(|| self.split_tensor(&format!("{} (Q)", self.cur().name), &q.base));
        for h in 0..heads {
            let (c0, c1) = (h * d, (h + 1) * d);
            let mut ktiles = Vec::new();
            let mut lane0 = Vec::new();
            let mut vecs = Vec::new();
            for t in c0 / lanes..=(c1 - 1) / lanes {
                let (a, e) = (c0.max(t * lanes), c1.min((t + 1) * lanes));
                ktiles.push(KTile {
                    w_row0: a,
                    rows: e - a,
                });
                lane0.push(a - t * lanes);
                vecs.push(t);
            }
            let qb = q_halves.as_ref().map_or(&q.base, |(hi, _)| hi);
            let act = |i: usize, kt: usize| Some(qb.at(i, vecs[kt]));
            let ql = q_halves.as_ref().map(|(_, lo)| lo);
            let act_lo = |i: usize, kt: usize| ql.map(|l| l.at(i, vecs[kt]));
            let used = |_: usize, _: usize| true;
            let plan = MatmulPlan {
                rows: s,
                ktiles: &ktiles,
                act: &act,
                used: &used,
                act_ty: qb.dtype,
                w_lo: kt.lo.as_ref(),
                act_lo: ql
                    .is_some()
                    .then_some(&act_lo as &dyn Fn(usize, usize) -> Option<VecLoc>),
            };
            let out_h = rows_of(&out, h * s, s);
            self.attn.lane0 = lane0;
            let epi = Epilogue {
                alpha: None,
                bias: None,
            };
            let r = self.matmul(&plan, &kt.base, &out_h, DType::F16, emit_ty, &epi, &tail);
            self.attn.lane0.clear();
            r?;
        }
        if let Some((hi, lo)) = &q_halves {
            self.alloc.free(hi);
            self.alloc.free(lo);
        }
        self.release(&q.src, &q.base);
        if self.single_use(self.cur().input(1).unwrap_or_default(), 0) {
            self.alloc.free(&kt.base);
            if let Some(lo) = &kt.lo {
                self.alloc.free(lo);
            }
        }
        Ok(())
    }

    /// Context `P . V`, written in the merged `[S, H]` layout; the node's
    /// `[1, heads, S, d]` output becomes a head view of it.
    ///
    /// With `deferred`, `p` is the high halves of the unnormalized `E` and
    /// the product's epilogue multiplies each result vector twice by the
    /// vector that holds, on each head's lanes, that head's `r` for the
    /// row ([`Lowerer::head_scales`]).
    fn lower_context(
        &mut self,
        n: &Node,
        p: &TensorLoc,
        v: &View,
        deferred: Option<Deferred>,
    ) -> Result<(), CompileError> {
        if !self.tails[self.node as usize].is_empty() {
            return self.unsupported("nothing can be fused after the attention context");
        }
        let (heads, d, lanes) = (v.heads, v.d, self.lanes);
        let vb = &v.base;
        let sk = vb.rows;
        let s = p.rows / heads.max(1);
        if p.rows != heads * s || p.cols != sk {
            return self.unsupported("attention weights and values do not agree");
        }
        let hidden = heads * d;
        let name = n.name.clone();
        let yn = n.outputs.first().cloned().unwrap_or_default();
        // Stored in the context's own type (f32, or f16 under fp16 and
        // mixed), which the graph's readers of it expect.
        let out_ty = self.out_dtype(n)?;
        let out = self
            .alloc
            .tensor(&format!("{name} (heads merged)"), &[s, hidden], out_ty);
        // V in fp16, per (head, vector) masked to the head's lanes when the
        // vector holds others too.
        let zero = self.zero_vector(DType::F16);
        let split = vb.dtype == DType::F32;
        let mut staged = Vec::new();
        let mut wvec = vec![zero; heads * sk * vb.vpr];
        let mut lovec = vec![zero; heads * sk * vb.vpr];
        for h in 0..heads {
            let (c0, c1) = (h * d, (h + 1) * d);
            for t in c0 / lanes..=(c1 - 1) / lanes {
                let mask = self.head_lanes(h, d, t, hidden, vb.dtype);
                let dst = self.alloc.tensor(
                    &format!("{name} (V head {h}, fp16)"),
                    &[sk, lanes],
                    DType::F16,
                );
                staged.push(dst.clone());
                let dst_lo = split.then(|| {
                    self.alloc.tensor(
                        &format!("{name} (V head {h}, fp16 low halves)"),
                        &[sk, lanes],
                        DType::F16,
                    )
                });
                staged.extend(dst_lo.clone());
                for j in 0..sk {
                    if let Some(dl) = &dst_lo {
                        let src = [vb.at(j, t).slice];
                        let m = mask.as_ref().map(|m| m.for_row_avoiding(j, 0, &src));
                        self.split_halves(vb.at(j, t), m, dst.at(j, 0), dl.at(j, 0));
                        wvec[(h * sk + j) * vb.vpr + t] = dst.at(j, 0);
                        lovec[(h * sk + j) * vb.vpr + t] = dl.at(j, 0);
                        continue;
                    }
                    let mut gb = self.begin();
                    let mut x = self.read(&mut gb, vb.at(j, t), vb.dtype);
                    if let Some(m) = &mask {
                        let mv = Self::row_copy(&gb, m, j, 0);
                        let mv = self.read(&mut gb, mv, vb.dtype);
                        x = self.op(
                            &mut gb,
                            Instr::new(Opcode::Mul).typed(vb.dtype),
                            Place::Vxm,
                            &[x, mv],
                            vec![],
                        );
                    }
                    if vb.dtype != DType::F16 {
                        let mut cvt = Instr::new(Opcode::Convert).typed(vb.dtype);
                        cvt.to = DType::F16;
                        x = self.op(&mut gb, cvt, Place::Vxm, &[x], vec![]);
                    }
                    self.write(&mut gb, x, dst.at(j, 0), DType::F16);
                    self.fin(gb);
                    wvec[(h * sk + j) * vb.vpr + t] = dst.at(j, 0);
                }
            }
        }
        self.release(&v.src, &v.base);
        let w = TensorLoc {
            dtype: DType::F16,
            rows: heads * sk,
            cols: hidden,
            vpr: vb.vpr,
            vectors: wvec,
            layout: vec![],
            view: vec![],
            replicated: false,
        };
        let w_lo = split.then(|| TensorLoc {
            vectors: lovec,
            ..w.clone()
        });
        let kts = sk.div_ceil(lanes);
        let ktiles: Vec<KTile> = (0..heads * kts)
            .map(|k| {
                let (h, st) = (k / kts, k % kts);
                KTile {
                    w_row0: h * sk + st * lanes,
                    rows: lanes.min(sk - st * lanes),
                }
            })
            .collect();
        // An f32 P against split V: P's halves too (an fp32-accurate context).
        let mut tail = Vec::new();
        let mut scales = None;
        let p_halves = match deferred {
            Some(e) => {
                if !split {
                    return self.unsupported("an unnormalized Softmax needs split values");
                }
                let r = self.head_scales(&name, &e.r, heads, d, s, hidden);
                self.alloc.free(&e.r);
                for _ in 0..2 {
                    tail.push(super::TailOp {
                        node: self.node,
                        kind: TailKind::Binary {
                            instr: Instr::new(Opcode::Mul).typed(DType::F32),
                            other: r.clone(),
                            chain_first: true,
                        },
                    });
                }
                scales = Some(r);
                Some((e.hi, e.lo))
            }
            None => (split && p.dtype == DType::F32)
                .then(|| self.split_tensor(&format!("{name} (P)"), p)),
        };
        let pb = p_halves.as_ref().map_or(p, |(hi, _)| hi);
        let pl = p_halves.as_ref().map(|(_, lo)| lo);
        let act = |i: usize, k: usize| Some(pb.at((k / kts) * s + i, k % kts));
        let act_lo = |i: usize, k: usize| pl.map(|l| l.at((k / kts) * s + i, k % kts));
        let used = |k: usize, j: usize| {
            let h = k / kts;
            h * d < (j + 1) * lanes && (h + 1) * d > j * lanes
        };
        let plan = MatmulPlan {
            rows: s,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: pb.dtype,
            w_lo: w_lo.as_ref(),
            act_lo: pl
                .is_some()
                .then_some(&act_lo as &dyn Fn(usize, usize) -> Option<VecLoc>),
        };
        self.attn.lane0.clear();
        let epi = Epilogue {
            alpha: None,
            bias: None,
        };
        self.matmul(&plan, &w, &out, DType::F16, out_ty, &epi, &tail)?;
        for t in staged
            .iter()
            .chain(p_halves.iter().flat_map(|(h, l)| [h, l]))
            .chain(scales.iter())
        {
            self.alloc.free(t);
        }
        self.attn.views.insert(
            yn,
            View {
                src: String::new(),
                base: out,
                lo: None,
                heads,
                d,
                kind: Kind::Heads,
            },
        );
        Ok(())
    }

    /// The 0/1 row of type `ty` that keeps head `h`'s lanes (`h * d ..
    /// (h + 1) * d`) of vector `t` of a row of `hidden` columns, placed once
    /// per program and type; `None` when the head covers every real lane of
    /// that vector. The values' staging and [`Lowerer::head_scales`] of every
    /// layer read the same rows.
    fn head_lanes(
        &mut self,
        h: usize,
        d: usize,
        t: usize,
        hidden: usize,
        ty: DType,
    ) -> Option<TensorLoc> {
        let lanes = self.lanes;
        let (c0, c1) = (h * d, (h + 1) * d);
        let (vs, ve) = (t * lanes, ((t + 1) * lanes).min(hidden));
        if c0 <= vs && c1 >= ve {
            return None;
        }
        let key = format!("#head-lanes {c0}..{c1} in vector {t} ({ty})");
        if let Some(l) = self.locs.get(&key) {
            return Some(l.clone());
        }
        let m: Vec<f32> = (0..lanes)
            .map(|i| f32::from(u8::from((c0..c1).contains(&(vs + i)))))
            .collect();
        let l = self.const_row(&format!("head {h} lane mask ({ty})"), &float_values(ty, m));
        self.locs.insert(key, l.clone());
        Some(l)
    }

    /// `[S, hidden]` f32: on head `h`'s lanes of row `i`, `r[h * S + i]`
    /// (a per-row vector of `[heads * S, lanes]`, every lane equal), and 0
    /// on other heads' lanes (a vector's padding lanes may hold its last
    /// head's `r`: the product is 0 there). One group per result vector:
    /// each head's `r` times the 0/1 row of its lanes in that vector,
    /// summed (the lanes are disjoint, so every step is exact).
    fn head_scales(
        &mut self,
        name: &str,
        r: &TensorLoc,
        heads: usize,
        d: usize,
        s: usize,
        hidden: usize,
    ) -> TensorLoc {
        let lanes = self.lanes;
        let out = self.alloc.tensor(
            &format!("{name} (row scales by head)"),
            &[s, hidden],
            DType::F32,
        );
        let vpr = out.vpr;
        // Per vector: its heads, and each one's lane mask (None: all lanes).
        let mut per_vector: Vec<Vec<(usize, Option<TensorLoc>)>> = Vec::with_capacity(vpr);
        for t in 0..vpr {
            let (vs, ve) = (t * lanes, ((t + 1) * lanes).min(hidden));
            let hs = ((vs / d)..(ve.div_ceil(d)).min(heads))
                .map(|h| (h, self.head_lanes(h, d, t, hidden, DType::F32)))
                .collect();
            per_vector.push(hs);
        }
        for i in 0..s {
            for (t, hs) in per_vector.iter().enumerate() {
                let mut gb = self.begin();
                let mut acc: Option<u32> = None;
                for (h, mask) in hs {
                    let mut x = self.read(&mut gb, r.at(h * s + i, 0), DType::F32);
                    if let Some(m) = mask {
                        let mv = Self::row_copy(&gb, m, i, 0);
                        let mv = self.read(&mut gb, mv, DType::F32);
                        let mul = Instr::new(Opcode::Mul).typed(DType::F32);
                        x = self.op(&mut gb, mul, Place::Vxm, &[x, mv], vec![]);
                    }
                    acc = Some(match acc {
                        None => x,
                        Some(a) => {
                            let add = Instr::new(Opcode::Add).typed(DType::F32);
                            self.op(&mut gb, add, Place::Vxm, &[a, x], vec![])
                        }
                    });
                }
                match acc {
                    Some(a) => {
                        self.write(&mut gb, a, out.at(i, t), DType::F32);
                        self.fin(gb);
                    }
                    None => {
                        let z = self.zero_vector(DType::F32);
                        let x = self.read(&mut gb, z, DType::F32);
                        self.write(&mut gb, x, out.at(i, t), DType::F32);
                        self.fin(gb);
                    }
                }
            }
        }
        out
    }

    /// Whether tensor `t` and the `depth` view tensors after it (each the
    /// output of its only consumer) are used once and are not graph
    /// outputs.
    fn single_use(&self, t: &str, depth: usize) -> bool {
        let mut t = t.to_string();
        for k in 0..=depth {
            let cons = self.g.consumers(&t);
            if self.g.outputs.contains(&t) || cons.len() != 1 {
                return false;
            }
            if k < depth {
                match self.g.nodes[cons[0]].outputs.first() {
                    Some(o) => t = o.clone(),
                    None => return false,
                }
            }
        }
        true
    }

    /// Frees the storage of tensor `src` (seen through a head view) once
    /// the view's only reader has been lowered: `src` feeds only the head
    /// split, and the split only its transpose. (The split's aliasing
    /// keeps `src` out of the lowering's own freeing.)
    fn release(&mut self, src: &str, base: &TensorLoc) {
        if src.is_empty() || !self.single_use(src, 2) {
            return;
        }
        if self.locs.remove(src).is_some() {
            self.alloc.free(base);
        }
    }

    /// A constant `[lanes]` f32 row with `f(lane)`, placed once under `key`
    /// and replicated ([`Lowerer::const_row`]): every group of a transpose
    /// pass reads one, so group `k` reads copy `k % copies` (or the next one
    /// on a slice the group does not read otherwise).
    fn lane_row(&mut self, key: &str, ty: DType, f: impl Fn(usize) -> f32) -> TensorLoc {
        let key = format!("{key} ({ty})");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let v = float_values(ty, (0..self.lanes).map(f).collect());
        let l = self.const_row(&key, &v);
        self.locs.insert(key, l.clone());
        l
    }

    /// `K^T [H, S]` in fp16 from `K [S, H]` (see the module doc), with the
    /// low fp16 halves of an f32 `K` (see [`Lowerer::split_halves`]).
    fn transpose_to_f16(
        &mut self,
        k: &TensorLoc,
    ) -> Result<(TensorLoc, Option<TensorLoc>), CompileError> {
        let lanes = self.lanes;
        let p = 1usize << lanes.trailing_zeros().min(usize::BITS - 1);
        let p = p.min(lanes);
        if p < 2 {
            return self.unsupported("the transpose needs an even number of lanes");
        }
        if k.dtype != DType::F32 && k.dtype != DType::F16 {
            return self.unsupported("the transpose is lowered for f32 and f16 tensors");
        }
        let (s, hidden, vz) = (k.rows, k.cols, k.vpr);
        let sp = s.div_ceil(p) * p;
        let name = self.cur().name.clone();
        let ty = k.dtype;
        let zero = self.zero_vector(ty);
        let synthetic = p == lanes;
        let mut stages = Vec::new();
        let mut s_half = p / 2;
        while s_half >= 1 {
            stages.push(s_half);
            s_half /= 2;
        }
        // Source of row `a`, vector `t` before the first pass.
        let mut cur: Option<TensorLoc> = None;
        let mut freed: Vec<TensorLoc> = Vec::new();
        for (si, &sh) in stages.iter().enumerate() {
            let dst =
                self.alloc
                    .tensor(&format!("{name} (transpose pass {si})"), &[sp, hidden], ty);
            let m = self.lane_row(&format!("transpose mask bit {sh} of {p}"), ty, |i| {
                if (i % p) & sh != 0 {
                    1.0
                } else {
                    0.0
                }
            });
            let nm = self.lane_row(&format!("transpose mask not bit {sh} of {p}"), ty, |i| {
                if (i % p) & sh != 0 {
                    0.0
                } else {
                    1.0
                }
            });
            let src_at = |a: usize, t: usize| -> VecLoc {
                match &cur {
                    Some(c) => c.at(a, t),
                    None if a < s => k.at(a, t),
                    None => zero,
                }
            };
            for (pair, a) in (0..sp).filter(|a| a % (2 * sh) < sh).enumerate() {
                let b = a + sh;
                for t in 0..vz {
                    // Consecutive groups read different copies of the masks.
                    let copy = pair * vz + t;
                    for (row, keep_first) in [(a, true), (b, false)] {
                        // A' = A m' + rot(B, s) m ; B' = B m + rot(A, -s) m'.
                        // Products by 0/1 are exact and one of the two
                        // terms is zero, so the sum is exact. Each of the
                        // four operands is read once: reading a vector
                        // twice in one group would hold its bank port for
                        // both reads and cost retiming `mov`s.
                        let (keep, other, keep_mask, other_mask, shift) = if keep_first {
                            (src_at(a, t), src_at(b, t), &nm, &m, sh as i64)
                        } else {
                            (src_at(b, t), src_at(a, t), &m, &nm, -(sh as i64))
                        };
                        let mut gb = self.begin();
                        let k = self.read(&mut gb, keep, ty);
                        let o = self.read(&mut gb, other, ty);
                        let rot = Instr {
                            arg: shift,
                            ..Instr::new(Opcode::Rotate).typed(ty)
                        };
                        let sxm = self.sxm_near(&gb, o);
                        let o = self.op(&mut gb, rot, sxm, &[o], vec![]);
                        // `v` times a copy of `mask` not on a slice the
                        // group reads already.
                        let masked = |l: &mut Self, gb: &mut Gb, v: u32, mask: &TensorLoc| {
                            let at = Self::row_copy(gb, mask, copy, 0);
                            let mv = l.read(gb, at, ty);
                            let mul = Instr::new(Opcode::Mul).typed(ty);
                            l.op(gb, mul, Place::Vxm, &[v, mv], vec![])
                        };
                        let x = masked(self, &mut gb, k, keep_mask);
                        let y = masked(self, &mut gb, o, other_mask);
                        let v = self.op(
                            &mut gb,
                            Instr::new(Opcode::Add).typed(ty),
                            Place::Vxm,
                            &[x, y],
                            vec![],
                        );
                        self.write(&mut gb, v, dst.at(row, t), ty);
                        self.fin(gb);
                    }
                }
            }
            if let Some(c) = cur.take() {
                freed.push(c);
            }
            cur = Some(dst);
        }
        for f in freed {
            self.alloc.free(&f);
        }
        let Some(z) = cur else {
            return self.unsupported("the key transpose needs at least one pass (empty key)");
        };
        let vk = s.div_ceil(lanes);
        if synthetic {
            // Block (R, C) of Z is K^T's vector (row C*p + a, vector R).
            let vectors = (0..hidden)
                .flat_map(|c| (0..vk).map(move |u| (c, u)))
                .map(|(c, u)| z.at(u * p + c % p, c / p))
                .collect();
            let kt = TensorLoc {
                dtype: ty,
                rows: hidden,
                cols: s,
                vpr: vk,
                vectors,
                layout: vec![],
                view: vec![],
                replicated: false,
            };
            return Ok(self.halves_of(&name, kt, &z));
        }
        // Relocation: K^T[c, R p + b] = Z[R p + c % p, lane (C p % lanes) + b].
        let kt = self
            .alloc
            .tensor(&format!("{name} (K transposed)"), &[hidden, s], ty);
        for c in 0..hidden {
            for u in 0..vk {
                let mut gb = self.begin();
                let mut acc: Option<u32> = None;
                let r_end = ((u + 1) * lanes / p).min(sp / p);
                for rb in u * lanes / p..r_end {
                    let off = rb * p % lanes;
                    let mask = self.lane_row(&format!("transpose block mask {off}+{p}"), ty, |i| {
                        if (off..off + p).contains(&i) {
                            1.0
                        } else {
                            0.0
                        }
                    });
                    let mut x = self.read(&mut gb, z.at(rb * p + c % p, c / lanes), ty);
                    let shift = off as i64 - ((c / p) * p % lanes) as i64;
                    if shift != 0 {
                        let rot = Instr {
                            arg: shift,
                            ..Instr::new(Opcode::Rotate).typed(ty)
                        };
                        let sxm = self.sxm_near(&gb, x);
                        x = self.op(&mut gb, rot, sxm, &[x], vec![]);
                    }
                    let mv = Self::row_copy(&gb, &mask, c * vk + u, 0);
                    let mv = self.read(&mut gb, mv, ty);
                    x = self.op(
                        &mut gb,
                        Instr::new(Opcode::Mul).typed(ty),
                        Place::Vxm,
                        &[x, mv],
                        vec![],
                    );
                    acc = Some(match acc {
                        None => x,
                        Some(a) => self.op(
                            &mut gb,
                            Instr::new(Opcode::Add).typed(ty),
                            Place::Vxm,
                            &[a, x],
                            vec![],
                        ),
                    });
                }
                let Some(v) = acc else { continue };
                self.write(&mut gb, v, kt.at(c, u), ty);
                self.fin(gb);
            }
        }
        self.alloc.free(&z);
        let halves = self.halves_of(&name, kt.clone(), &kt);
        Ok(halves)
    }

    /// `K^T` as the MXM's fp16 weights: an f16 `kt` as it is; an f32 one
    /// split into high and low fp16 halves (one pass: read, split, two
    /// writes per vector), after which `storage` (what `kt`'s vectors live
    /// in) is freed.
    fn halves_of(
        &mut self,
        name: &str,
        kt: TensorLoc,
        storage: &TensorLoc,
    ) -> (TensorLoc, Option<TensorLoc>) {
        if kt.dtype == DType::F16 {
            return (kt, None);
        }
        let (hi, lo) = self.split_tensor(&format!("{name} (K transposed)"), &kt);
        self.alloc.free(storage);
        (hi, Some(lo))
    }
}
