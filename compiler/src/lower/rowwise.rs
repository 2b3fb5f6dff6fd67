//! Reductions along the last (lane) axis: the normalizations, Softmax and
//! ReduceSum/ReduceMean/ReduceMax over the last axis. Reductions over other
//! axes fold whole rows on the VXM first (the `axes` submodule), then use
//! these when the last axis is reduced too.
//!
//! The VXM works lane by lane, so a sum *across* lanes goes through the MXM:
//! a row multiplied by an installed all-ones matrix (`y = x . 1`, weights
//! `lanes x lanes` of fp16 ones) gives the row's sum in *every* output lane,
//! already broadcast for the elementwise steps that follow. A row of several
//! vectors accumulates its vectors as K-tiles; only the row's real lanes are
//! installed (rows of the weights that are not loaded are zero), so whatever
//! the padding lanes hold is ignored. An f32 row enters the MXM as two fp16
//! rows, `hi = f16(x)` and `lo = f16(x - hi)` (two K-tiles per vector, fp32
//! accumulation), so the sum sees `x` to about 2^-22 relative: two extra
//! VXM groups and one extra `mm` per vector buy f32-like sums.
//!
//! A maximum across lanes has no MXM form. It is a tree of SXM rotations:
//! `m = max(m, rot(m, 2^k))` for `k = 0, 1, ...` until `2^k >= lanes`, after
//! which every lane holds the row maximum (windows of `2^k` consecutive lanes,
//! cyclically, cover the vector). A group cannot use a value twice, so each
//! step rereads `m` from SRAM (two reads, `rot`, `max`, write). Padding lanes
//! are first replaced by `-f32::MAX` with a `min` against a constant row
//! (`f32::MAX` on real lanes; an integer type's smallest and largest values
//! for an integer ReduceMax). A Softmax row of one vector with at most `P`
//! columns, `P` a power of two below the lanes, folds with a butterfly of
//! `perm`s instead (`m = max(m, m[i ^ 2^k])`, `k < log2 P`): BERT-base's
//! 128-token rows take 7 steps instead of 9 on `tsp`'s 320 lanes.
//!
//! | op | lowering | cost per row of `v` vectors (`L` = lanes) |
//! |---|---|---|
//! | ReduceSum, ReduceMean (last axis) | ones-matmul, `alpha = 1/n` for the mean | `v` `mm`, 1 `emit` |
//! | ReduceMax (last axis) | masked `min`, then the rotation tree | `1 + log2 L` groups, `log2 L` `rot` |
//! | LayerNormalization (last axis; with its optional Mean and InvStdDev outputs, which are the per-row vectors below) | `mean = x.1 / n` (MXM); `q = (x - mean)^2` (VXM, `x - mean` computed twice from rereads); `r = rsqrt(q.1 / n + eps)` (MXM, then `addi`, `rsqrt`); `y = (x - mean) r scale + B` | `2v` `mm`, `2` `emit`, ~`7v + 3` VXM ops, `2v + 2` groups |
//! | RMSNormalization (last axis) | `r = rsqrt((x x).1 / n + eps)`; `y = x r scale` | `v` `mm`, `1` `emit`, ~`4v + 2` VXM ops |
//! | Softmax (axis -1) | `m` = row max (rotation tree or butterfly, exact); `e = exp(x - m)` (VXM, written); `r = rsqrt(e.1)` (MXM); `y = e r r` (left to the context product when it is an f32 attention's only reader: `attention.rs`) | `v` `mm`, `1 + log2 L` rotation steps (`1 + log2 P` for a row of `P` or fewer columns, `P` a power of two below `L`), ~`5v + 2` VXM ops |
//!
//! Errors against the reference: the sums see each operand to about 2^-22
//! (hi/lo split) and add in fp32 in a different order; Softmax's maximum is
//! exact and its `1/s` is `rsqrt(s)^2` (2 ulp). The `mm` counts in the table
//! are per fp16 part (doubled for f32 rows).

mod axes;

use super::layout::{gather_rows, row_targets};
use super::unary::{Ex, B};
use super::{Epilogue, KTile, Lowerer, MatmulPlan, Place, TailOp};
use crate::alloc::TensorLoc;
use crate::CompileError;
use half::f16;
use lpu_graph::Node;
use lpu_isa::{DType, Instr, Opcode, Values};

impl<'a> Lowerer<'a> {
    /// The inferred shape of `t`.
    pub(super) fn shape_vec(&self, t: &str) -> Result<Vec<usize>, CompileError> {
        match self.g.info(t) {
            Some(i) => Ok(i.shape.clone()),
            None => self.unsupported(&format!("tensor '{t}' has no inferred shape")),
        }
    }

    /// Softmax, the normalizations and the reductions.
    pub(super) fn lower_rowwise(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let xs = self.shape_vec(&xn)?;
        if !x.layout.is_empty() || x.cols != *xs.last().unwrap_or(&1) {
            return self.unsupported("a row-major input is expected");
        }
        if n.op_type != "LayerNormalization"
            && n.outputs.len() > 1
            && n.outputs[1..].iter().any(|o| !o.is_empty())
        {
            return self.unsupported("only LayerNormalization has optional outputs");
        }
        let op = n.op_type.as_str();
        if !matches!(op, "Softmax" | "LayerNormalization" | "RMSNormalization") {
            return self.lower_reduce(n, &x, &xs);
        }
        if !x.dtype.is_float() {
            return self.unsupported("a float input is expected");
        }
        let axis = self.norm_axis(n.attr_int("axis", -1)?, xs.len())?;
        match op {
            "Softmax" if axis + 1 == xs.len() => self.lower_softmax(n, &x),
            "Softmax" => self.lower_softmax_rows(n, &x, &xs, axis),
            _ => self.lower_norm(n, &x, &xs, axis),
        }
    }

    /// `axis` (negative counts from the end) as an index below `rank`.
    pub(super) fn norm_axis(&self, axis: i64, rank: usize) -> Result<usize, CompileError> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        if (0..rank as i64).contains(&a) {
            Ok(a as usize)
        } else {
            self.unsupported(&format!("axis {axis} is out of range for rank {rank}"))
        }
    }

    /// The `lanes x lanes` fp16 all-ones weights (placed once).
    fn ones_weights(&mut self) -> TensorLoc {
        let key = "#ones-weights".to_string();
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let n = self.lanes;
        let l = self.alloc.constant_columns_first(
            "all-ones weights (row sums)",
            &[n, n],
            &Values::F16(vec![f16::ONE; n * n]),
        );
        self.locs.insert(key, l.clone());
        l
    }

    /// `out[r]` (one vector per row, every lane) = `alpha *` the sum of the
    /// real lanes of row `r` of `src`, then `tail`.
    pub(super) fn row_sum(
        &mut self,
        src: &TensorLoc,
        alpha: Option<f32>,
        tail: &[TailOp],
        out: &TensorLoc,
    ) -> Result<(), CompileError> {
        // An f32 row is summed as two fp16 rows, hi = f16(x) and
        // lo = f16(x - hi), so the sum sees x to about 2^-22 (relative)
        // instead of fp16's 2^-11.
        let parts: Vec<TensorLoc> = if src.dtype == DType::F32 {
            let name = self.cur().name.clone();
            let (hi, lo) = self.split_tensor(&format!("{name} (sum operand)"), src);
            vec![hi, lo]
        } else {
            vec![src.clone()]
        };
        let r = self.row_sum_parts(src, &parts, alpha, tail, out);
        if parts.len() > 1 {
            for p in &parts {
                self.alloc.free(p);
            }
        }
        r
    }

    /// [`Lowerer::row_sum`] of `src` given as `parts` of its shape (its
    /// fp16 halves, or itself), which stay allocated.
    fn row_sum_parts(
        &mut self,
        src: &TensorLoc,
        parts: &[TensorLoc],
        alpha: Option<f32>,
        tail: &[TailOp],
        out: &TensorLoc,
    ) -> Result<(), CompileError> {
        let w = self.ones_weights();
        let lanes = self.lanes;
        let np = parts.len();
        let ktiles: Vec<KTile> = (0..src.vpr * np)
            .map(|k| KTile {
                w_row0: 0,
                rows: lanes.min(src.cols - (k / np) * lanes),
            })
            .collect();
        let act = |r: usize, k: usize| Some(parts[k % np].at(r, k / np));
        let used = |_: usize, _: usize| true;
        let plan = MatmulPlan {
            rows: src.rows,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: parts[0].dtype,
            w_lo: None,
            act_lo: None,
        };
        self.attn.lane0.clear();
        let epi = Epilogue { alpha, bias: None };
        self.matmul(&plan, &w, out, DType::F16, DType::F32, &epi, tail)
    }

    /// The constant row that keeps real lanes (`f32::MAX`) and sets padding
    /// lanes to `-f32::MAX` under `min`, for rows of `cols` columns. Every
    /// row of a Softmax or ReduceMax reads it (twice for Softmax), so it is a
    /// replicated [`Lowerer::const_row`]: row `r` reads copy `r % copies`
    /// through [`TensorLoc::for_row`] instead of all rows queueing on one
    /// bank port.
    ///
    /// An integer or f16 `ty` gets its own row, its type's largest value on
    /// real lanes and its smallest on padding lanes (a VXM operand is read
    /// as its instruction's type).
    fn cap_row(&mut self, cols: usize, ty: DType) -> TensorLoc {
        self.cap_row_upto(cols, usize::MAX, ty)
    }

    /// [`Lowerer::cap_row`] whose lanes from `wide` on keep their value
    /// too (the type's largest value): the butterfly maximum of
    /// [`Lowerer::row_max`] leaves those lanes out, and a zero there (the
    /// padding) keeps `exp(-MAX - 0)` at 0 in the Softmax.
    fn cap_row_upto(&mut self, cols: usize, wide: usize, ty: DType) -> TensorLoc {
        let int = ty != DType::F32;
        let mut key = if int {
            format!("#cap{cols}{ty}")
        } else {
            format!("#cap{cols}")
        };
        if wide != usize::MAX {
            key.push_str(&format!("<{wide}"));
        }
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let padded = cols.div_ceil(self.lanes) * self.lanes;
        let real = |i: usize| i < cols || i >= wide;
        let v = match ty {
            DType::I8 => Values::I8(
                (0..padded)
                    .map(|i| if real(i) { i8::MAX } else { i8::MIN })
                    .collect(),
            ),
            DType::I32 => Values::I32(
                (0..padded)
                    .map(|i| if real(i) { i32::MAX } else { i32::MIN })
                    .collect(),
            ),
            DType::F16 => Values::F16(
                (0..padded)
                    .map(|i| if real(i) { f16::MAX } else { -f16::MAX })
                    .collect(),
            ),
            _ => Values::F32(
                (0..padded)
                    .map(|i| if real(i) { f32::MAX } else { -f32::MAX })
                    .collect(),
            ),
        };
        let what = if int { format!(" {ty}") } else { String::new() };
        let upto = if wide == usize::MAX {
            String::new()
        } else {
            format!(", lanes from {wide} kept")
        };
        let l = self.const_row(&format!("lane cap ({cols} columns{what}{upto})"), &v);
        self.locs.insert(key, l.clone());
        l
    }

    /// `out[r]` (every lane) = the maximum of the real lanes of row `r` of
    /// `x`, then `tail`; the rotation tree of the module doc, in place in
    /// `out` (one vector per row).
    ///
    /// With `narrow`, a one-vector row of `cols <= P` columns, `P` a power
    /// of two below the lanes' (`P = 128` of `tsp`'s 320 lanes), needs only
    /// `log2 P` steps instead of `log2` of the lanes: a butterfly of `perm`s
    /// (`m = max(m, m[i ^ 2^k])` on lanes below `P`, lanes from `P` on
    /// mapped to themselves) leaves the row maximum on every lane below
    /// `P`, and the lanes from `P` on keep `min(x, MAX)`, `x`'s own value
    /// (zero in the padding). Only a caller that reads lanes below `P`
    /// alone (the Softmax, whose padding lanes come out as `exp(-MAX - 0)
    /// = 0`) asks for it. Same maxima, same bits: `max` is exact.
    fn row_max(&mut self, x: &TensorLoc, out: &TensorLoc, tail: &[TailOp], narrow: bool) {
        let ty = x.dtype;
        let b = B(ty);
        let rot_steps = self.lanes.next_power_of_two().trailing_zeros() as usize;
        let wide = x.cols.next_power_of_two();
        let fly = narrow
            && x.vpr == 1
            && (wide.trailing_zeros() as usize) < rot_steps
            && wide < self.lanes;
        let (cap, steps) = if fly {
            let cap = self.cap_row_upto(x.cols, wide, ty);
            (cap, wide.trailing_zeros() as usize)
        } else {
            (self.cap_row(x.cols, ty), rot_steps)
        };
        let tables: Vec<i64> = if fly {
            (0..steps)
                .map(|k| {
                    let t = (0..self.lanes)
                        .map(|i| {
                            if i < wide {
                                (i ^ (1 << k)) as u16
                            } else {
                                i as u16
                            }
                        })
                        .collect();
                    self.perm_table(t)
                })
                .collect()
        } else {
            Vec::new()
        };
        for r in 0..x.rows {
            // Only the last vector has padding lanes: cap it, then fold in
            // the others one read at a time.
            let last = x.vpr - 1;
            let e = b.bin(Opcode::Min, Ex::In(0), Ex::Row(cap.clone()));
            let mut gb = self.begin();
            let mut m = self.eval(&mut gb, &e, std::slice::from_ref(x), &[], r, last);
            for t in 0..last {
                let v = self.read(&mut gb, x.at(r, t), ty);
                m = self.op(
                    &mut gb,
                    Instr::new(Opcode::Max).typed(ty),
                    Place::Vxm,
                    &[m, v],
                    vec![],
                );
            }
            let no_tail: &[TailOp] = if steps == 0 { tail } else { &[] };
            let m = self.apply_tail(&mut gb, m, r, 0, no_tail);
            self.write_end(&mut gb, m, out.at(r, 0), out.dtype, no_tail);
            self.fin(gb);
            for k in 0..steps {
                let mut gb = self.begin();
                let a = self.read(&mut gb, out.at(r, 0), ty);
                let mv = match tables.get(k) {
                    Some(&tab) => Instr {
                        arg: tab,
                        ..Instr::new(Opcode::Permute).typed(ty)
                    },
                    None => Instr {
                        arg: 1 << k,
                        ..Instr::new(Opcode::Rotate).typed(ty)
                    },
                };
                let sxm = self.sxm_near(&gb, a);
                let a = self.op(&mut gb, mv, sxm, &[a], vec![]);
                let c = self.read(&mut gb, out.at(r, 0), ty);
                let m = self.op(
                    &mut gb,
                    Instr::new(Opcode::Max).typed(ty),
                    Place::Vxm,
                    &[c, a],
                    vec![],
                );
                let t: &[TailOp] = if k + 1 == steps { tail } else { &[] };
                let m = self.apply_tail(&mut gb, m, r, 0, t);
                self.write_end(&mut gb, m, out.at(r, 0), out.dtype, t);
                self.fin(gb);
            }
        }
    }

    /// The type per-row statistics of a `ty` row are stored in, and the
    /// steps that bring a row sum (which the MXM emits in f32) to it: f16
    /// for an f16 row, whose instructions read their operands as f16 (one
    /// `cvt`), else f32 (none).
    fn stat_type(&mut self, ty: DType) -> (DType, Vec<TailOp>) {
        if ty != DType::F16 {
            return (DType::F32, Vec::new());
        }
        let mut cvt = Instr::new(Opcode::Convert).typed(DType::F32);
        cvt.to = ty;
        (ty, vec![self.step(cvt)])
    }

    /// Softmax along the last axis (see the module doc).
    fn lower_softmax(&mut self, n: &Node, x: &TensorLoc) -> Result<(), CompileError> {
        let ty = x.dtype;
        let b = B(ty);
        let name = n.name.clone();
        let mx = self
            .alloc
            .tensor(&format!("{name} (row max)"), &[x.rows, self.lanes], ty);
        self.row_max(x, &mx, &[], true);
        let cap = self.cap_row(x.cols, ty);
        let e = self
            .alloc
            .tensor(&format!("{name} (exp)"), &[x.rows, x.cols], ty);
        let e = super::unary::apart(e, &[x]);
        let ex = b.un(
            Opcode::Exp,
            b.bin(
                Opcode::Sub,
                b.bin(Opcode::Min, Ex::In(0), Ex::Row(cap)),
                Ex::PerRow(0),
            ),
        );
        let (ins, rows) = ([x.clone()], [mx.clone()]);
        // `e` has `x`'s rows and vectors.
        self.emit_vectors(&e, &[], |l, gb, r, t| l.eval(gb, &ex, &ins, &rows, r, t));
        self.alloc.free(&mx);
        let (rs_ty, to_stat) = self.stat_type(ty);
        let rs = self.alloc.tensor(
            &format!("{name} (rsqrt of sum)"),
            &[x.rows, self.lanes],
            rs_ty,
        );
        let mut rsqrt = vec![self.step(Instr::new(Opcode::Rsqrt).typed(DType::F32))];
        rsqrt.extend(to_stat);
        if self.softmax_feeds_context(n, x) {
            // Rows left unnormalized: the context product takes E's halves
            // and r (see `attention::Deferred`).
            let (hi, lo) = self.split_tensor(&format!("{name} (exp)"), &e);
            self.alloc.free(&e);
            self.row_sum_parts(x, &[hi.clone(), lo.clone()], None, &rsqrt, &rs)?;
            let y = n.outputs.first().cloned().unwrap_or_default();
            let deferred = super::attention::Deferred { hi, lo, r: rs };
            self.attn.deferred.insert(y, deferred);
            return Ok(());
        }
        self.row_sum(&e, None, &rsqrt, &rs)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let y = b.mul(Ex::In(0), b.mul(Ex::PerRow(0), Ex::PerRow(0)));
        let ins = [e.clone()];
        let rows = [rs.clone()];
        self.emit_vectors(&out, &tail, |l, gb, r, t| l.eval(gb, &y, &ins, &rows, r, t));
        self.alloc.free(&e);
        self.alloc.free(&rs);
        Ok(())
    }

    /// [`Lowerer::eval`] of vector `(r, t)` with `PerRow(0)` the per-row
    /// vectors of `per_row`.
    fn eval_with_row(
        &mut self,
        gb: &mut super::Gb,
        e: &Ex,
        ins: &[TensorLoc],
        per_row: &TensorLoc,
        r: usize,
        t: usize,
    ) -> u32 {
        self.eval(gb, e, ins, std::slice::from_ref(per_row), r, t)
    }

    /// LayerNormalization and RMSNormalization over the axes from `axis`
    /// to the last. Each normalized group is `g` consecutive rows (`g = 1`
    /// for the last axis alone); with `g > 1` its rows are first added
    /// elementwise on the VXM ([`Lowerer::fold_row_groups`]) into one row per
    /// group, whose lane sum gives the group's statistics, and every row
    /// of the group reads its group's per-row vectors through a view.
    fn lower_norm(
        &mut self,
        n: &Node,
        x: &TensorLoc,
        xs: &[usize],
        axis: usize,
    ) -> Result<(), CompileError> {
        let ty = x.dtype;
        let b = B(ty);
        let rms = n.op_type == "RMSNormalization";
        let eps = n.attr_float("epsilon", 1e-5)? as f64;
        let name = n.name.clone();
        let rank = xs.len();
        let mask: Vec<bool> = (0..rank - 1).map(|k| k >= axis).collect();
        let (targets, groups) = row_targets(&xs[..rank - 1], &mask);
        let w = (x.rows / groups * x.cols) as f32;
        let scale_n = self.input_name(n, 1)?;
        let scale = self.norm_operand(&scale_n, xs, axis)?;
        let bias = match n.input(2).filter(|s| !s.is_empty() && !rms) {
            Some(bn) => Some(self.norm_operand(bn, xs, axis)?),
            None => None,
        };
        let lanes = self.lanes;
        let (stat_ty, to_stat) = self.stat_type(ty);
        let mean = if rms {
            None
        } else {
            let m = self
                .alloc
                .tensor(&format!("{name} (mean)"), &[groups, lanes], stat_ty);
            let folded = self.group_sums(&format!("{name} (row sums)"), x, &targets, groups);
            self.row_sum(folded.as_ref().unwrap_or(x), Some(1.0 / w), &to_stat, &m)?;
            if let Some(f) = folded {
                self.alloc.free(&f);
            }
            Some(m)
        };
        let mean_v = mean.as_ref().map(|m| gather_rows(m, &targets));
        // Squares (of the deviations).
        let q = self
            .alloc
            .tensor(&format!("{name} (squares)"), &[x.rows, x.cols], ty);
        let q = super::unary::apart(q, &[x]);
        let dev = || b.bin(Opcode::Sub, Ex::In(0), Ex::PerRow(0));
        let sq = if rms {
            b.mul(Ex::In(0), Ex::In(0))
        } else {
            b.mul(dev(), dev())
        };
        let ins = [x.clone()];
        let rows: Vec<TensorLoc> = mean_v.iter().cloned().collect();
        // `q` has `x`'s rows and vectors.
        self.emit_vectors(&q, &[], |l, gb, r, t| l.eval(gb, &sq, &ins, &rows, r, t));
        let rs = self.alloc.tensor(
            &format!("{name} (rsqrt of variance)"),
            &[groups, lanes],
            stat_ty,
        );
        let mut steps = vec![
            self.step(Instr {
                imm: eps,
                ..Instr::new(Opcode::AddImm).typed(DType::F32)
            }),
            self.step(Instr::new(Opcode::Rsqrt).typed(DType::F32)),
        ];
        steps.extend(to_stat);
        let folded = self.group_sums(&format!("{name} (square sums)"), &q, &targets, groups);
        self.row_sum(folded.as_ref().unwrap_or(&q), Some(1.0 / w), &steps, &rs)?;
        self.alloc.free(&q);
        if let Some(f) = folded {
            self.alloc.free(&f);
        }
        let rs_v = gather_rows(&rs, &targets);
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        // y = (x - mean) * r * scale (+ B); the per-row vectors (mean, r)
        // are read as `Tmp` through two views.
        let mut ins = vec![x.clone(), scale];
        if let Some(bl) = &bias {
            ins.push(bl.clone());
        }
        for r in 0..out.rows {
            for t in 0..out.vpr {
                let mut gb = self.begin();
                let centred = match &mean_v {
                    Some(m) => {
                        let e = b.bin(Opcode::Sub, Ex::In(0), Ex::PerRow(0));
                        self.eval_with_row(&mut gb, &e, &ins, m, r, t)
                    }
                    None => self.eval(&mut gb, &Ex::In(0), &ins, &[], r, t),
                };
                let rv = self.eval_with_row(&mut gb, &Ex::PerRow(0), &ins, &rs_v, r, t);
                let v = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    Place::Vxm,
                    &[centred, rv],
                    vec![],
                );
                let s = self.eval(&mut gb, &Ex::In(1), &ins, &[], r, t);
                let mut v = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    Place::Vxm,
                    &[v, s],
                    vec![],
                );
                if bias.is_some() {
                    let c = self.eval(&mut gb, &Ex::In(2), &ins, &[], r, t);
                    v = self.op(
                        &mut gb,
                        Instr::new(Opcode::Add).typed(ty),
                        Place::Vxm,
                        &[v, c],
                        vec![],
                    );
                }
                let v = self.apply_tail(&mut gb, v, r, t, &tail);
                self.write_end(&mut gb, v, out.at(r, t), out.dtype, &tail);
                self.fin(gb);
            }
        }
        // LayerNormalization's optional outputs, Mean and InvStdDev
        // (`[.., 1]`: one vector per group, the value in lane 0), are the
        // per-group vectors themselves, which hold it in every lane.
        let stats = [mean, Some(rs)];
        for (k, t) in stats.into_iter().enumerate() {
            let Some(t) = t else { continue };
            match n.outputs.get(k + 1).filter(|o| !o.is_empty()) {
                Some(o) => {
                    let view = TensorLoc {
                        cols: 1,
                        vpr: 1,
                        ..t
                    };
                    self.locs.insert(o.clone(), view);
                }
                None => self.alloc.free(&t),
            }
        }
        Ok(())
    }
}
