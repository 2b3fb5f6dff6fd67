//! Row selection: Gather and Slice (and anything computed from constants
//! alone).
//!
//! | op | lowering | cost |
//! |---|---|---|
//! | any node whose inputs are all constants (a Slice of a weight table, ...) | evaluated at compile time (constant folding, as the reference interpreter computes it) and placed as a constant | none at run time |
//! | Gather / Slice of a computed tensor along a row axis with constant indices | a copy of the selected rows (read, write) | 1 read + 1 write per vector |
//! | Gather of a constant table by runtime indices (embedding lookup) | a static schedule cannot address SRAM by a runtime value, so the lookup is a one-hot matrix product: each index (plus V when negative: `id + V min(relu(-id), 1)`) is broadcast to every lane exactly (split as `hi * 2048 + lo`, both exact in fp16; each part masked to its token's lane and summed across lanes by the ones-matmul), then split into its K-tile `q = trunc((id + 0.5) / lanes)` (exact below 2^22) in every lane and its lane's one-hot row `A = relu(1 - abs(id - q*lanes - i))` (on integers, exactly 1 at the index's lane and 0 elsewhere); vector `u` of its one-hot row is `relu(A - abs(q - u))` (fp16, exact; in int8 for an int8 table of at most 128 K-tiles, where the saturating int8 ops are exact too), and the one-hot rows are multiplied by the table installed in K-tiles (fp16 weights, fp32 accumulation: one nonzero product per output, so the result is the table entry rounded to fp16); an int8 table (a large one, quantized per column by the int8 precision rewrite) runs the same product in int8 with int32 accumulation (exact), converted back to int8 for the `DequantizeLinear` that follows | per index 3 groups (q, A and q in fp16: 7 reads, 17 VXM ops) and `min(4, ceil(V/lanes)) - 1` copies of q and of A, then `ceil(V/lanes)` one-hot vectors made K-tile by K-tile (2 reads, 4 VXM ops (3 for u = 0; one more to convert fp16 rows to int8 for an int8 table of more than 128 K-tiles), 1 write each), and `ceil(V/lanes) x ceil(H/lanes)` `mm`; the whole table is loaded into the MXM (`V x ceil(H/lanes)` weight rows) |

use super::{Epilogue, KTile, Lowerer, MatmulPlan, Place};
use crate::alloc::TensorLoc;
use crate::CompileError;
use half::f16;
use lpu_graph::{Node, Tensor};
use lpu_isa::{DType, Instr, Opcode, Values};

/// Copies of each index's K-tile and lane rows that the one-hot vectors
/// read ([`Lowerer::lower_gather`]): the reads of each spread over that
/// many bank ports, but every copy is one more group the index's rows wait
/// for. On `tsp` (BERT-base int8 / mixed, GPT-2 decode-128): 8 copies
/// 252,634 / 217,470 / 65,748 cycles, 4 copies 252,119 / 216,124 /
/// 65,732, 2 copies 251,659 / 216,468 / 65,838.
const INDEX_COPIES: usize = 4;

/// Indices below this are exact in fp16 (the one-hot broadcast's digit).
const DIGIT: f64 = 2048.0;

/// An int8 table of at most this many K-tiles builds its one-hot rows in
/// int8 ([`Lowerer::lower_gather`]): `q - u` then lies in [-127, 127], so
/// the saturating int8 ops are exact, and each row is one byte per lane
/// (one stream, one bank-port cycle) instead of fp16's two, with no
/// conversion before the product.
const INT8_ONE_HOT_KTILES: usize = 128;

impl<'a> Lowerer<'a> {
    /// A constant known at compile time: an initializer or a value folded
    /// when the graph was loaded.
    fn known(&self, name: &str) -> Option<&'a Tensor> {
        self.g
            .initializers
            .get(name)
            .or_else(|| self.g.constants.get(name))
    }

    /// Gather, Slice, Concat and Split.
    pub(super) fn lower_select(&mut self, n: &Node) -> Result<(), CompileError> {
        let known: Option<Vec<&Tensor>> = n.outputs.iter().map(|o| self.known(o)).collect();
        if let Some(known) = known {
            for (o, t) in n.outputs.iter().zip(known) {
                let loc = self.alloc.constant(o, &t.shape, &t.values);
                self.locs.insert(o.clone(), loc);
            }
            return Ok(());
        }
        let ins: Vec<Option<&Tensor>> = n
            .inputs
            .iter()
            .map(|i| if i.is_empty() { None } else { self.known(i) })
            .collect();
        if n.inputs
            .iter()
            .zip(&ins)
            .all(|(i, t)| i.is_empty() || t.is_some())
        {
            // Constant folding at compile time.
            let outs: Vec<lpu_graph::TensorInfo> = n
                .outputs
                .iter()
                .filter_map(|o| self.g.info(o).cloned())
                .collect();
            let vals = match lpu_graph::interp::eval_node(n, &ins, &outs) {
                Ok(v) => v,
                Err(e) => return self.unsupported(&format!("folding constants: {e}")),
            };
            for (o, t) in n.outputs.iter().zip(vals) {
                let loc = self.alloc.constant(o, &t.shape, &t.values);
                self.locs.insert(o.clone(), loc);
            }
            return Ok(());
        }
        match n.op_type.as_str() {
            "Gather" => self.lower_gather(n),
            "Slice" => self.lower_slice(n),
            "Concat" => self.lower_concat(n),
            "Split" => self.lower_split(n),
            other => self.unsupported(&format!(
                "{other} of computed tensors is not lowered yet (only of constants)"
            )),
        }
    }

    /// Copies rows `rows` of `x` (in order) to a new output 0.
    fn copy_rows(&mut self, x: &TensorLoc, rows: &[usize]) -> Result<(), CompileError> {
        let tail = self.prepare_tail()?;
        if !tail.is_empty() {
            return self.unsupported("nothing can be fused after a row selection");
        }
        let out = self.chain_output()?;
        if out.rows != rows.len() || out.vpr != x.vpr || out.dtype != x.dtype {
            return self.unsupported("the selection changes how rows are tiled into vectors");
        }
        self.copy_row_pairs(x, &out, rows.iter().copied().zip(0..));
        Ok(())
    }

    /// Copies row `from` of `x` to row `to` of `out` (same tiling and type),
    /// for every `(from, to)`: one read and one write per vector.
    fn copy_row_pairs(
        &mut self,
        x: &TensorLoc,
        out: &TensorLoc,
        pairs: impl IntoIterator<Item = (usize, usize)>,
    ) {
        for (from, to) in pairs {
            for j in 0..x.vpr {
                let mut gb = self.begin();
                let v = self.read(&mut gb, x.at(from, j), x.dtype);
                self.write(&mut gb, v, out.at(to, j), out.dtype);
                self.fin(gb);
            }
        }
    }

    /// The storage rows of `shape` (not the last axis) selected by `idx`
    /// along `axis` (`< rank - 1`), in order.
    fn rows_selected(shape: &[usize], axis: usize, idx: &[usize]) -> Vec<usize> {
        let lead = &shape[..shape.len() - 1];
        let outer: usize = lead[..axis].iter().product();
        let inner: usize = lead[axis + 1..].iter().product();
        let mut rows = Vec::new();
        for o in 0..outer {
            for &i in idx {
                for k in 0..inner {
                    rows.push((o * lead[axis] + i) * inner + k);
                }
            }
        }
        rows
    }

    /// Slice of a computed tensor: a copy of the selected rows.
    fn lower_slice(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let xs = self.shape_vec(&xn)?;
        let ints = |k: usize| -> Option<Vec<i64>> {
            let t = self.known(n.input(k)?)?;
            Some((0..t.len()).map(|i| t.values.get_f64(i) as i64).collect())
        };
        let (Some(starts), Some(ends)) = (ints(1), ints(2)) else {
            return self.unsupported("starts and ends must be constants");
        };
        let rank = xs.len() as i64;
        let axes = ints(3).unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(4).unwrap_or_else(|| vec![1; starts.len()]);
        let axis = axes
            .first()
            .map(|&a| if a < 0 { a + rank } else { a } as usize);
        if axes.len() != 1
            || steps != [1]
            || !x.layout.is_empty()
            || axis >= Some(xs.len().saturating_sub(1))
        {
            // Lanes move (see `lanes.rs`).
            return self.lower_slice_lanes(n, &starts, &axes, &steps);
        }
        let axis = axis.unwrap_or(0);
        let dim = xs[axis] as i64;
        let clamp = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) } as usize;
        let (s, e) = (clamp(starts[0]), clamp(ends[0]));
        let idx: Vec<usize> = (s..e.max(s)).collect();
        let rows = Self::rows_selected(&xs, axis, &idx);
        self.copy_rows(&x, &rows)
    }

    /// Gather: a copy of rows for constant indices, the one-hot product of
    /// the module doc for runtime indices into a constant table.
    fn lower_gather(&mut self, n: &Node) -> Result<(), CompileError> {
        let dn = self.input_name(n, 0)?;
        let in_ = self.input_name(n, 1)?;
        let ds = self.shape_vec(&dn)?;
        let rank = ds.len() as i64;
        let axis = n.attr_int("axis", 0)?;
        let axis = if axis < 0 { axis + rank } else { axis } as usize;
        if let Some(it) = self.known(&in_) {
            // Constant indices: a copy of the selected rows.
            let x = self.operand(&dn)?;
            if axis + 1 >= ds.len() || !x.layout.is_empty() {
                return self.unsupported(
                    "a gather along the last (lane) axis needs lane moves (not lowered)",
                );
            }
            let idx: Vec<usize> = (0..it.len())
                .map(|i| {
                    let v = it.values.get_f64(i) as i64;
                    (if v < 0 { v + ds[axis] as i64 } else { v }) as usize
                })
                .collect();
            let rows = Self::rows_selected(&ds, axis, &idx);
            return self.copy_rows(&x, &rows);
        }
        let Some(table) = self.known(&dn) else {
            return self.unsupported("a gather with runtime indices needs a constant table");
        };
        if axis != 0 || ds.len() != 2 {
            return self.unsupported(
                "a gather with runtime indices is lowered for a 2-D table along axis 0",
            );
        }
        let ids = self.operand(&in_)?;
        if ids.dtype != DType::I32 && ids.dtype != DType::I8 {
            return self.unsupported("indices must be integers");
        }
        // An int8 table (see `passes::precision::int8_tables`) multiplies
        // int8 one-hot rows with int32 accumulation: exact.
        let int8 = table.dtype() == DType::I8;
        let mm_ty = if int8 { DType::I8 } else { DType::F16 };
        if !self.chip.mxm.dtypes.contains(&mm_ty) {
            return self.unsupported(&format!("the one-hot product needs a {mm_ty} MXM"));
        }
        let (vocab, hidden) = (ds[0], ds[1]);
        if vocab as f64 > DIGIT * DIGIT {
            return self.unsupported("tables of more than 2^22 rows are not lowered");
        }
        let lanes = self.lanes;
        let count = ids.rows * ids.cols;
        let name = n.name.clone();
        // 1. Each index as f32: ids are stored one row of tokens, so index
        //    k is lane k % lanes of vector (k / cols, (k % cols) / lanes).
        let at = |k: usize| (k / ids.cols, (k % ids.cols) / lanes, (k % ids.cols) % lanes);
        let f32i = |op: Opcode, imm: f64| Instr {
            imm,
            ..Instr::new(op).typed(DType::F32)
        };
        let mut to_f32 = Instr::new(Opcode::Convert).typed(ids.dtype);
        to_f32.to = DType::F32;
        // F = id + V * min(relu(-id), 1): negative indices count from the end.
        let fid = self.alloc.tensor(
            &format!("{name} (indices as f32)"),
            &[ids.rows, ids.cols],
            DType::F32,
        );
        for r in 0..ids.rows {
            for j in 0..ids.vpr {
                let mut gb = self.begin();
                let v = self.read(&mut gb, ids.at(r, j), ids.dtype);
                let f = self.op(&mut gb, to_f32.clone(), Place::Vxm, &[v], vec![]);
                let f = self.op(
                    &mut gb,
                    Instr::new(Opcode::Neg).typed(DType::F32),
                    Place::Vxm,
                    &[f],
                    vec![],
                );
                let f = self.op(
                    &mut gb,
                    Instr::new(Opcode::Relu).typed(DType::F32),
                    Place::Vxm,
                    &[f],
                    vec![],
                );
                let one = self.fill_row(1.0, lanes, DType::F32);
                let o = self.read(&mut gb, one.at(0, 0), DType::F32);
                let f = self.op(
                    &mut gb,
                    Instr::new(Opcode::Min).typed(DType::F32),
                    Place::Vxm,
                    &[f, o],
                    vec![],
                );
                let f = self.op(
                    &mut gb,
                    f32i(Opcode::MulImm, vocab as f64),
                    Place::Vxm,
                    &[f],
                    vec![],
                );
                let v2 = self.read(&mut gb, ids.at(r, j), ids.dtype);
                let f2 = self.op(&mut gb, to_f32.clone(), Place::Vxm, &[v2], vec![]);
                let f = self.op(
                    &mut gb,
                    Instr::new(Opcode::Add).typed(DType::F32),
                    Place::Vxm,
                    &[f2, f],
                    vec![],
                );
                self.write(&mut gb, f, fid.at(r, j), DType::F32);
                self.fin(gb);
            }
        }
        // hi = trunc(F / 2048) ; lo = F - 2048 hi, rows 2r and 2r + 1.
        let idf = self.alloc.tensor(
            &format!("{name} (indices hi, lo)"),
            &[2 * ids.rows, ids.cols],
            DType::F32,
        );
        for r in 0..ids.rows {
            for j in 0..ids.vpr {
                for part in 0..2 {
                    let mut gb = self.begin();
                    let f = self.read(&mut gb, fid.at(r, j), DType::F32);
                    let q = self.op(
                        &mut gb,
                        f32i(Opcode::MulImm, 1.0 / DIGIT),
                        Place::Vxm,
                        &[f],
                        vec![],
                    );
                    let mut t = Instr::new(Opcode::Convert).typed(DType::F32);
                    t.to = DType::I32;
                    let q = self.op(&mut gb, t, Place::Vxm, &[q], vec![]);
                    let mut b = Instr::new(Opcode::Convert).typed(DType::I32);
                    b.to = DType::F32;
                    let mut hi = self.op(&mut gb, b, Place::Vxm, &[q], vec![]);
                    if part == 1 {
                        hi = self.op(
                            &mut gb,
                            f32i(Opcode::MulImm, -DIGIT),
                            Place::Vxm,
                            &[hi],
                            vec![],
                        );
                        let f2 = self.read(&mut gb, fid.at(r, j), DType::F32);
                        hi = self.op(
                            &mut gb,
                            Instr::new(Opcode::Add).typed(DType::F32),
                            Place::Vxm,
                            &[f2, hi],
                            vec![],
                        );
                    }
                    self.write(&mut gb, hi, idf.at(2 * r + part, j), DType::F32);
                    self.fin(gb);
                }
            }
        }
        self.alloc.free(&fid);
        // 2. Per index and part, its lane alone (a one-hot constant row),
        //    then summed across lanes (the ones-matmul): every lane holds it.
        let masked = self.alloc.tensor(
            &format!("{name} (index lanes)"),
            &[2 * count, lanes],
            DType::F32,
        );
        for k in 0..count {
            let (r, j, lane) = at(k);
            let onehot = self.onehot_row(lane);
            for part in 0..2 {
                let mut gb = self.begin();
                let v = self.read(&mut gb, idf.at(2 * r + part, j), DType::F32);
                let m = self.read(&mut gb, onehot.at(0, 0), DType::F32);
                let p = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(DType::F32),
                    Place::Vxm,
                    &[v, m],
                    vec![],
                );
                self.write(&mut gb, p, masked.at(2 * k + part, 0), DType::F32);
                self.fin(gb);
            }
        }
        self.alloc.free(&idf);
        let bcast = self.alloc.tensor(
            &format!("{name} (indices broadcast)"),
            &[2 * count, lanes],
            DType::F32,
        );
        self.row_sum(&masked, None, &[], &bcast)?;
        self.alloc.free(&masked);
        // 3. One-hot rows. Index `id` is 1 in lane `a` of vector `q` of
        //    its row, for `id = q*lanes + a`. First, per index (three
        //    groups), its K-tile `q` in every lane and its lane `A = [i ==
        //    a]` in lane `i` (f32, every step exact: the test
        //    `one_hot_parts_are_exact_for_every_index_below_2_pow_22`);
        //    then vector u of its one-hot row is relu(A - |q - u|): 1 at
        //    lane `a` when q = u, else 0 (|q - u| >= 1 >= A). That is two
        //    reads and 4 VXM ops (3 for u = 0), in the arithmetic type
        //    `aty` (int8 for an int8 table of at most
        //    `INT8_ONE_HOT_KTILES` K-tiles, else fp16, exact for K-tiles
        //    below 2048), so the one-hot
        //    vectors, made K-tile by K-tile (all indices' vector u, then
        //    u + 1, the order the product reads them in), take few of the
        //    VXM's ALUs and streams while the product runs beside them.
        let vt = vocab.div_ceil(lanes);
        let aty = if int8 && vt <= INT8_ONE_HOT_KTILES {
            DType::I8
        } else if vt <= 2048 {
            DType::F16
        } else {
            DType::F32
        };
        let oh = self
            .alloc
            .tensor(&format!("{name} (one-hot)"), &[count, vocab], mm_ty);
        // `copies` of each index's `q` and `A` on different slices (row
        // `k * copies + c`): the `vt` reads of each spread over that many
        // bank ports. Copy 0 is computed, the others are copied from it.
        let copies = INDEX_COPIES.min(vt).max(1);
        let parts = |l: &mut Self, what: &str| {
            l.alloc.tensor(
                &format!("{name} (index {what})"),
                &[count * copies, lanes],
                aty,
            )
        };
        let (qs, lane_of) = (parts(self, "K-tile"), parts(self, "lane"));
        let iota = self.iota_row(0);
        let to = |from: DType, to: DType| {
            let mut c = Instr::new(Opcode::Convert).typed(from);
            c.to = to;
            c
        };
        let f32op = |op| Instr::new(op).typed(DType::F32);
        // `id`, from its two broadcast parts.
        let index = |l: &mut Self, gb: &mut super::Gb, k: usize| {
            let h = l.read(gb, bcast.at(2 * k, 0), DType::F32);
            let h = l.op(gb, f32i(Opcode::MulImm, DIGIT), Place::Vxm, &[h], vec![]);
            let lo = l.read(gb, bcast.at(2 * k + 1, 0), DType::F32);
            l.op(gb, f32op(Opcode::Add), Place::Vxm, &[h, lo], vec![])
        };
        // Each stream value has one consumer in a group, so `q` goes
        // through SRAM (as f32) to its two uses.
        let qf = self.alloc.tensor(
            &format!("{name} (index K-tile)"),
            &[count, lanes],
            DType::F32,
        );
        for k in 0..count {
            // q = trunc((id + 0.5) / lanes), exact for id < 2^22
            // (`one_hot_parts_are_exact_for_every_index_below_2_pow_22`).
            let mut gb = self.begin();
            let mut q = index(self, &mut gb, k);
            for step in [
                f32i(Opcode::AddImm, 0.5),
                f32i(Opcode::MulImm, (1.0 / lanes as f32) as f64),
                to(DType::F32, DType::I32),
                to(DType::I32, DType::F32),
            ] {
                q = self.op(&mut gb, step, Place::Vxm, &[q], vec![]);
            }
            self.write(&mut gb, q, qf.at(k, 0), DType::F32);
            self.fin(gb);
        }
        for k in 0..count {
            // A = relu(1 - |id - lane - q*lanes|).
            let mut gb = self.begin();
            let id = index(self, &mut gb, k);
            let io = self.read(&mut gb, iota.at(0, 0), DType::F32);
            let d = self.op(&mut gb, f32op(Opcode::Sub), Place::Vxm, &[id, io], vec![]);
            let q = self.read(&mut gb, qf.at(k, 0), DType::F32);
            let ql = self.op(
                &mut gb,
                f32i(Opcode::MulImm, lanes as f64),
                Place::Vxm,
                &[q],
                vec![],
            );
            let mut a = self.op(&mut gb, f32op(Opcode::Sub), Place::Vxm, &[d, ql], vec![]);
            for step in [
                f32op(Opcode::Abs),
                f32op(Opcode::Neg),
                f32i(Opcode::AddImm, 1.0),
                f32op(Opcode::Relu),
            ] {
                a = self.op(&mut gb, step, Place::Vxm, &[a], vec![]);
            }
            if aty != DType::F32 {
                a = self.op(&mut gb, to(DType::F32, aty), Place::Vxm, &[a], vec![]);
            }
            self.write(&mut gb, a, lane_of.at(k * copies, 0), aty);
            self.fin(gb);
            // q in the arithmetic type.
            let mut gb = self.begin();
            let mut q = self.read(&mut gb, qf.at(k, 0), DType::F32);
            if aty != DType::F32 {
                q = self.op(&mut gb, to(DType::F32, aty), Place::Vxm, &[q], vec![]);
            }
            self.write(&mut gb, q, qs.at(k * copies, 0), aty);
            self.fin(gb);
        }
        self.alloc.free(&qf);
        self.alloc.free(&bcast);
        let replicas =
            || (0..count).flat_map(|k| (1..copies).map(move |c| (k * copies, k * copies + c)));
        self.copy_row_pairs(&qs, &qs, replicas());
        self.copy_row_pairs(&lane_of, &lane_of, replicas());
        let aop = |op| Instr::new(op).typed(aty);
        for u in 0..vt {
            for k in 0..count {
                let mut gb = self.begin();
                let c = k * copies + u % copies;
                let mut e = self.read(&mut gb, qs.at(c, 0), aty);
                if u > 0 {
                    let shift = Instr {
                        imm: -(u as f64),
                        ..aop(Opcode::AddImm)
                    };
                    e = self.op(&mut gb, shift, Place::Vxm, &[e], vec![]);
                }
                e = self.op(&mut gb, aop(Opcode::Abs), Place::Vxm, &[e], vec![]);
                let a = self.read(&mut gb, lane_of.at(c, 0), aty);
                e = self.op(&mut gb, aop(Opcode::Sub), Place::Vxm, &[a, e], vec![]);
                e = self.op(&mut gb, aop(Opcode::Relu), Place::Vxm, &[e], vec![]);
                if aty != mm_ty {
                    e = self.op(&mut gb, to(aty, mm_ty), Place::Vxm, &[e], vec![]);
                }
                self.write(&mut gb, e, oh.at(k, u), mm_ty);
                self.fin(gb);
            }
        }
        self.alloc.free(&qs);
        self.alloc.free(&lane_of);
        // 4. One-hot rows times the table.
        let key = format!("{dn}#onehot-table");
        let w = match self.locs.get(&key) {
            Some(l) => l.clone(),
            None => {
                let vals = if int8 {
                    table.values.clone()
                } else {
                    Values::F16(
                        (0..table.len())
                            .map(|i| f16::from_f64(table.values.get_f64(i)))
                            .collect(),
                    )
                };
                // Each K-tile on the side of the planes that load it (the
                // product below plans its items the same way).
                let homes = self.weight_homes(count, vocab, hidden.div_ceil(lanes), mm_ty);
                let l = self.alloc.constant_weights(
                    &format!("{dn} (as {mm_ty} lookup weights)"),
                    &[vocab, hidden],
                    &vals,
                    &homes,
                );
                self.locs.insert(key, l.clone());
                l
            }
        };
        let ktiles: Vec<KTile> = (0..vt)
            .map(|u| KTile {
                w_row0: u * lanes,
                rows: lanes.min(vocab - u * lanes),
            })
            .collect();
        let act = |k: usize, u: usize| Some(oh.at(k, u));
        let used = |_: usize, _: usize| true;
        let plan = MatmulPlan {
            rows: count,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: mm_ty,
            w_lo: None,
            act_lo: None,
        };
        let mut tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if out.rows != count || out.cols != hidden {
            return self.unsupported("the gather's output storage is not one row per index");
        }
        self.attn.lane0.clear();
        let epi = Epilogue {
            alpha: None,
            bias: None,
        };
        let emit_ty = if int8 {
            DType::I32
        } else if out.dtype == DType::F16 {
            DType::F16
        } else {
            DType::F32
        };
        if int8 && out.dtype != DType::I32 {
            // The int32 sums are the table's int8 entries: convert back.
            let mut c = Instr::new(Opcode::Convert).typed(DType::I32);
            c.to = out.dtype;
            tail.insert(
                0,
                super::TailOp {
                    node: self.node,
                    kind: super::TailKind::Unary(c),
                },
            );
        }
        self.matmul(&plan, &w, &out, mm_ty, emit_ty, &epi, &tail)?;
        self.alloc.free(&oh);
        Ok(())
    }

    /// The constant row that is 1 at `lane` and 0 elsewhere.
    fn onehot_row(&mut self, lane: usize) -> TensorLoc {
        let key = format!("#onehot{lane}");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let v: Vec<f32> = (0..self.lanes)
            .map(|i| if i == lane { 1.0 } else { 0.0 })
            .collect();
        let l = self.alloc.constant(
            &format!("lane {lane} one-hot"),
            &[self.lanes],
            &Values::F32(v),
        );
        self.locs.insert(key, l.clone());
        l
    }

    /// The constant row `base + i` for lane `i`.
    fn iota_row(&mut self, base: usize) -> TensorLoc {
        let key = format!("#iota{base}");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let v: Vec<f32> = (0..self.lanes).map(|i| (base + i) as f32).collect();
        let l = self
            .alloc
            .constant(&format!("iota from {base}"), &[self.lanes], &Values::F32(v));
        self.locs.insert(key, l.clone());
        l
    }
}

#[cfg(test)]
mod tests {
    /// The one-hot rows' K-tile of index `id`, as the VXM computes it in
    /// f32: `trunc((id + 0.5) * fl(1 / lanes))`.
    fn ktile_on_vxm(id: u32, lanes: u32) -> u32 {
        ((id as f32 + 0.5) * (1.0 / lanes as f32)) as u32
    }

    #[test]
    fn one_hot_parts_are_exact_for_every_index_below_2_pow_22() {
        // The lowering's limit is 2^22 rows (`DIGIT * DIGIT`); every index
        // below it, on `tsp`'s and `tiny`'s lane counts and a few others.
        for lanes in [16u32, 64, 100, 320, 1000] {
            for id in 0..(1u32 << 22) {
                let q = ktile_on_vxm(id, lanes);
                assert_eq!(q, id / lanes, "id {id}, {lanes} lanes");
                // The lane: exact in f32 (integers below 2^24).
                let a = (id as f32 - (q as f32) * lanes as f32) as u32;
                assert_eq!(a, id % lanes);
            }
        }
    }
}
