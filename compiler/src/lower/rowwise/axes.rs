//! Reductions along axes that are not the last: folds of whole rows.
//!
//! A tensor is stored as `rows x cols` with `cols` its last axis, so a
//! reduction over any other axes combines whole rows: for each result row,
//! the input rows that reduce into it are folded lane by lane on the VXM
//! (`add` or `max` between row vectors, in the interpreter's order), with no
//! lane moves. A group reads at most [`FOLD_CHUNK`] vectors, each from
//! another MEM slice (a second read on a slice would need a retiming `mov`,
//! and many of them more streams than a small chip has); longer folds
//! carry their partial result through SRAM (the result vector itself, or a
//! scratch vector when a fused tail changes the type). When the last axis is
//! reduced as well, the rows are folded first and the folded rows then go
//! through the lane reductions of the parent module (the ones-matmul sum or
//! the rotation tree).
//!
//! | op | lowering | cost per result vector (`k` rows folded) |
//! |---|---|---|
//! | ReduceSum, ReduceMax (other axes) | fold with `add` / `max` | `k` reads, `k - 1` VXM ops, `ceil((k - 1) / 15)` groups or more (one read per MEM slice per group), a write and a read between groups |
//! | ReduceMean (other axes) | the sum's fold, then `muli 1/n` | as the sum, plus 1 VXM op |
//! | Reduce* (the last axis and others) | the fold into a scratch row, then the last-axis lowering | the fold, then the lane reduction of one row per result |
//! | Softmax (`axis` not the last) | `m` = fold `max` over the axis; `e = exp(x - m)`; `r = rsqrt(fold add of e)`; `y = e r r` | `2` folds, ~`6` VXM ops per input vector |
//! | LayerNormalization, RMSNormalization (`axis` not the last) | the statistics of each group of `g` rows: its rows are folded with `add`, then summed across lanes (ones-matmul) | two (one for RMS) `g`-row folds per group on top of the last-axis cost |
//!
//! `keepdims = 0` changes nothing when the last axis is kept (dropping other
//! axes keeps the `rows x cols` tiling), nor when the result keeps one value
//! per row (a scalar, or a last kept axis of size 1); otherwise the kept
//! values would have to move into lanes, which is refused. Integer inputs
//! fold exactly as the interpreter does (int8 saturating, int32 wrapping):
//! ReduceMax over any axes (the rotation tree's lane cap is then an integer
//! row), ReduceSum over axes other than the last.

use super::super::layout::{gather_rows, row_targets};
use super::super::unary::{apart, Ex, B};
use super::super::{Lowerer, TailKind, TailOp};
use crate::alloc::TensorLoc;
use crate::group::Place;
use crate::CompileError;
use lpu_graph::Node;
use lpu_isa::program::VecLoc;
use lpu_isa::{Instr, Opcode};

/// Reads per group of a fold, at most (the first group reads this many
/// input rows, later ones the partial result and one fewer row).
const FOLD_CHUNK: usize = 16;

/// The input rows of each of the `n` result rows, ascending.
fn groups_of(targets: &[usize], n: usize) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); n];
    for (r, &o) in targets.iter().enumerate() {
        groups[o].push(r);
    }
    groups
}

impl<'a> Lowerer<'a> {
    /// The axes a Reduce* node reduces over a rank-`rank` input, as a mask;
    /// `None` when it reduces nothing (`noop_with_empty_axes` with no axes).
    fn reduce_mask(&self, n: &Node, rank: usize) -> Result<Option<Vec<bool>>, CompileError> {
        let axes: Vec<i64> = match n.input(1).filter(|s| !s.is_empty()) {
            Some(a) => match self.constant(a) {
                Some(t) => (0..t.len()).map(|i| t.values.get_f64(i) as i64).collect(),
                None => return self.unsupported("axes must be a constant"),
            },
            None => n
                .attr_ints("axes")?
                .map(<[i64]>::to_vec)
                .unwrap_or_default(),
        };
        if axes.is_empty() {
            let noop = n.attr_int("noop_with_empty_axes", 0)? != 0;
            return Ok((!noop).then(|| vec![true; rank]));
        }
        let mut mask = vec![false; rank];
        for a in axes {
            mask[self.norm_axis(a, rank)?] = true;
        }
        Ok(Some(mask))
    }

    /// ReduceSum, ReduceMean and ReduceMax over any axes (see the module
    /// doc); `x` is the row-major input of shape `xs`.
    pub(super) fn lower_reduce(
        &mut self,
        n: &Node,
        x: &TensorLoc,
        xs: &[usize],
    ) -> Result<(), CompileError> {
        let Some(mask) = self.reduce_mask(n, xs.len())? else {
            return self.alias(n, &self.input_name(n, 0)?);
        };
        let (row_mask, lane_axis) = match mask.split_last() {
            Some((&l, rest)) => (rest, l),
            None => (&mask[..], false),
        };
        let across = lane_axis && x.cols > 1;
        let (targets, n_out) = row_targets(&xs[..row_mask.len()], row_mask);
        let count: usize = xs
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(d, _)| d)
            .product();
        let op = n.op_type.as_str();
        let ty = x.dtype;
        if !ty.is_float() && (op == "ReduceMean" || (across && op == "ReduceSum")) {
            return self.unsupported(&format!(
                "{ty} input: integers are lowered for ReduceMax and for ReduceSum over axes other than the last"
            ));
        }
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if (out.rows, out.cols) != (n_out, if lane_axis { 1 } else { x.cols }) {
            return self.unsupported(
                "keepdims = 0 with the last axis reduced puts the kept values across lanes, which needs lane moves (not lowered)",
            );
        }
        let red = if op == "ReduceMax" {
            Opcode::Max
        } else {
            Opcode::Add
        };
        let mean = (op == "ReduceMean" && count > 1).then(|| 1.0 / count as f64);
        let groups = groups_of(&targets, n_out);
        if !across {
            let mut steps: Vec<TailOp> = mean
                .map(|a| TailOp {
                    node: self.node,
                    kind: TailKind::Unary(Instr {
                        imm: a,
                        ..Instr::new(Opcode::MulImm).typed(ty)
                    }),
                })
                .into_iter()
                .collect();
            steps.extend(tail);
            self.fold_row_groups(x, &groups, red, &steps, &out);
            return Ok(());
        }
        let folded = (n_out < x.rows).then(|| {
            let t = self
                .alloc
                .tensor(&format!("{} (folded rows)", n.name), &[n_out, x.cols], ty);
            self.fold_row_groups(x, &groups, red, &[], &t);
            t
        });
        let src = folded.as_ref().unwrap_or(x);
        if red == Opcode::Max {
            self.row_max(src, &out, &tail, false);
        } else {
            self.row_sum(src, mean.map(|a| a as f32), &tail, &out)?;
        }
        if let Some(f) = folded {
            self.alloc.free(&f);
        }
        Ok(())
    }

    /// For each result row `o` and vector `j`: folds vector `j` of the rows
    /// `groups[o]` of `src` left to right with the VXM `op`, applies `steps`
    /// (the node's own last steps, then its fused tail) and writes the
    /// result to `out` (`groups.len()` rows of `src`'s columns).
    fn fold_row_groups(
        &mut self,
        src: &TensorLoc,
        groups: &[Vec<usize>],
        op: Opcode,
        steps: &[TailOp],
        out: &TensorLoc,
    ) {
        let ty = src.dtype;
        let long = groups.iter().any(|g| g.len() > 2);
        let scratch = (out.dtype != ty && long).then(|| {
            let name = format!("{} (partial folds)", self.cur().name);
            self.alloc.tensor(&name, &[groups.len(), src.cols], ty)
        });
        for (o, rows) in groups.iter().enumerate() {
            for j in 0..src.vpr {
                let partial = scratch.as_ref().unwrap_or(out).at(o, j);
                let mut carried: Option<VecLoc> = None;
                let mut next = 0;
                loop {
                    let mut gb = self.begin();
                    let first = carried.unwrap_or_else(|| src.at(rows[0], j));
                    next += usize::from(carried.is_none());
                    let mut acc = self.read(&mut gb, first, ty);
                    let mut slices = vec![first.slice];
                    while next < rows.len() && slices.len() < FOLD_CHUNK {
                        let at = src.at(rows[next], j);
                        if slices.contains(&at.slice) && slices.len() > 1 {
                            break;
                        }
                        slices.push(at.slice);
                        next += 1;
                        let v = self.read(&mut gb, at, ty);
                        acc = self.op(
                            &mut gb,
                            Instr::new(op).typed(ty),
                            Place::Vxm,
                            &[acc, v],
                            vec![],
                        );
                    }
                    if next < rows.len() {
                        self.write(&mut gb, acc, partial, ty);
                        self.fin(gb);
                        carried = Some(partial);
                        continue;
                    }
                    let v = self.apply_tail(&mut gb, acc, o, j, steps);
                    self.write_end(&mut gb, v, out.at(o, j), out.dtype, steps);
                    self.fin(gb);
                    break;
                }
            }
        }
        if let Some(s) = scratch {
            self.alloc.free(&s);
        }
    }

    /// The rows of `src` added elementwise into one row per result row
    /// (`targets[r]` is row `r`'s), in a new tensor named after `what`;
    /// `None` when every result row has one input row (nothing to add).
    pub(super) fn group_sums(
        &mut self,
        what: &str,
        src: &TensorLoc,
        targets: &[usize],
        n_out: usize,
    ) -> Option<TensorLoc> {
        if n_out == src.rows {
            return None;
        }
        let t = self.alloc.tensor(what, &[n_out, src.cols], src.dtype);
        self.fold_row_groups(src, &groups_of(targets, n_out), Opcode::Add, &[], &t);
        Some(t)
    }

    /// Softmax along `axis`, not the last: the maximum and the sum over the
    /// axis are folds of rows, and every input row reads its fold's row
    /// through a view (see the module doc).
    pub(super) fn lower_softmax_rows(
        &mut self,
        n: &Node,
        x: &TensorLoc,
        xs: &[usize],
        axis: usize,
    ) -> Result<(), CompileError> {
        let ty = x.dtype;
        let b = B(ty);
        let name = n.name.clone();
        let rank = xs.len();
        let mask: Vec<bool> = (0..rank - 1).map(|k| k == axis).collect();
        let (targets, n_out) = row_targets(&xs[..rank - 1], &mask);
        let groups = groups_of(&targets, n_out);
        let mx = self.alloc.tensor(
            &format!("{name} (max over axis {axis})"),
            &[n_out, x.cols],
            ty,
        );
        self.fold_row_groups(x, &groups, Opcode::Max, &[], &mx);
        let e = self
            .alloc
            .tensor(&format!("{name} (exp)"), &[x.rows, x.cols], ty);
        let e = apart(e, &[x]);
        let ex = b.un(Opcode::Exp, b.bin(Opcode::Sub, Ex::In(0), Ex::Tmp(0)));
        let (ins, m) = ([x.clone()], [gather_rows(&mx, &targets)]);
        // `e` has `x`'s rows and vectors.
        self.emit_vectors(&e, &[], |l, gb, r, t| l.eval(gb, &ex, &ins, &m, r, t));
        self.alloc.free(&mx);
        let rs = self.alloc.tensor(
            &format!("{name} (rsqrt of sum over axis {axis})"),
            &[n_out, x.cols],
            ty,
        );
        let rsqrt = [self.step(Instr::new(Opcode::Rsqrt).typed(ty))];
        self.fold_row_groups(&e, &groups, Opcode::Add, &rsqrt, &rs);
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let y = b.mul(Ex::In(0), b.mul(Ex::Tmp(0), Ex::Tmp(0)));
        let (ins, rv) = ([e.clone()], [gather_rows(&rs, &targets)]);
        self.emit_vectors(&out, &tail, |l, gb, r, t| l.eval(gb, &y, &ins, &rv, r, t));
        self.alloc.free(&e);
        self.alloc.free(&rs);
        Ok(())
    }

    /// The scale or bias `name` of a normalization from `axis` over `x` of
    /// shape `xs`, as an operand of every row: a row broadcast
    /// ([`Lowerer::broadcast_operand`]) when it varies along the last axis
    /// only; otherwise, when it has the last axis and broadcasts to the
    /// normalized shape `xs[axis..]`, a view in which every row of `x`
    /// reads the stored row of its place in its group.
    pub(super) fn norm_operand(
        &mut self,
        name: &str,
        xs: &[usize],
        axis: usize,
    ) -> Result<TensorLoc, CompileError> {
        let shape = self.shape_vec(name)?;
        if shape.iter().rev().skip(1).product::<usize>() <= 1 {
            return self.broadcast_operand(name, xs, false);
        }
        let rank = xs.len();
        let norm = &xs[axis..rank - 1];
        let lead = (norm.len() + 1).checked_sub(shape.len());
        let Some(lead) = lead.filter(|_| shape.last() == xs.last()) else {
            return self.unsupported(&format!(
                "operand '{name}' of shape {shape:?} does not broadcast to the normalized shape {:?} with its last axis",
                &xs[axis..]
            ));
        };
        let aligned: Vec<usize> = std::iter::repeat_n(1, lead)
            .chain(shape[..shape.len() - 1].iter().copied())
            .collect();
        if aligned.iter().zip(norm).any(|(&s, &d)| s != d && s != 1) {
            return self.unsupported(&format!(
                "operand '{name}' of shape {shape:?} does not broadcast to the normalized shape {:?}",
                &xs[axis..]
            ));
        }
        let t = self.operand(name)?;
        if !t.layout.is_empty() || t.replicated {
            return self.unsupported(&format!("operand '{name}' must be stored row-major"));
        }
        let mask: Vec<bool> = aligned.iter().map(|&s| s == 1).collect();
        let (within, _) = row_targets(norm, &mask);
        let rows: usize = xs[..rank - 1].iter().product();
        let map: Vec<usize> = (0..rows).map(|r| within[r % within.len()]).collect();
        Ok(gather_rows(&t, &map))
    }
}
