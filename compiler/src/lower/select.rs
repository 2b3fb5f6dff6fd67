//! Row selection: Gather and Slice (and anything computed from constants
//! alone).
//!
//! | op | lowering | cost |
//! |---|---|---|
//! | any node whose inputs are all constants (a Slice of a weight table, ...) | evaluated at compile time (constant folding, as the reference interpreter computes it) and placed as a constant | none at run time |
//! | Gather / Slice of a computed tensor along a row axis with constant indices | a copy of the selected rows (read, write) | 1 read + 1 write per vector |
//! | Gather of a constant table by runtime indices (embedding lookup) | the table is stored in runs of whole rows, one bank of one MEM slice each (`SramAlloc::constant_table`: vector `j` of row `r` of a run at `addr + (j * rows + r - lo) * w`); each index (plus V when negative: `id + V min(relu(-id), 1)`) is broadcast to every lane exactly (split as `hi * 2048 + lo`, both exact in fp16; each part masked to its token's lane and summed across lanes by the ones-matmul) and converted to an int32 map, in one copy per run (in at most 4 MiB) spread over the MEM slices; then per index and column tile, one `gather` per run (the TSP's `Gather s,map`: each lane reads the address its map selects, 0 outside the run's rows) and a tree of VXM adds of the runs' results (all but one are 0, so the sum is the table entry, exact for every type), then the fused tail | per index 2 reads, 5 VXM ops and 1 write for the f32 index, 2 masked parts, 1 map group (2 reads, 3 VXM ops, 1 write) and one map copy per run, less one (fewer when they would pass 4 MiB); per index and column tile `runs` map reads, `runs` gathers and `runs - 1` VXM adds (BERT-base's int8 30,522 x 768 table: 23 runs) |

use super::{Lowerer, Place};
use crate::alloc::TensorLoc;
use crate::CompileError;
use half::f16;
use lpu_graph::{Node, Tensor};
use lpu_isa::program::VecLoc;
use lpu_isa::{DType, Instr, Opcode, Values};

/// Indices below this are exact in fp16 (the index broadcast's digit).
const DIGIT: f64 = 2048.0;

/// The most SRAM the copies of a lookup's gather maps may take
/// ([`Lowerer::lower_gather`]): one copy per run up to it.
const MAP_BYTES: usize = 4 << 20;

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

    /// Gather: a copy of rows for constant indices, the per-bank gathers of
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
        // 3. The table, in runs of whole rows, one bank of one MEM slice
        //    each (`SramAlloc::constant_table`).
        //    An f32 table whose entries are all fp16 values (int8 and mixed
        //    round lookup tables to fp16, `passes::precision`) is stored in
        //    fp16, half the bytes, and its entries converted back exactly.
        let tty = table.dtype();
        let as_f16: Option<Vec<f16>> = match &table.values {
            Values::F32(v) => v
                .iter()
                .map(|x| {
                    let h = f16::from_f32(*x);
                    (h.to_f32().to_bits() == x.to_bits()).then_some(h)
                })
                .collect(),
            _ => None,
        };
        let sty = if as_f16.is_some() { DType::F16 } else { tty };
        let key = format!("{dn}#gather-table-{sty}");
        let chunks = match self.tables.get(&key) {
            Some(c) => c.clone(),
            None => {
                let stored = match as_f16 {
                    Some(h) => Values::F16(h),
                    None => table.values.clone(),
                };
                let c = self.alloc.constant_table(
                    &format!("{dn} (lookup table)"),
                    &[vocab, hidden],
                    &stored,
                    self.fp.vxm,
                );
                self.tables.insert(key, c.clone());
                c
            }
        };
        if chunks.is_empty() {
            // The allocator has overflowed: the capacity error follows.
            self.alloc.free(&bcast);
            return Ok(());
        }
        // 4. Each index as an int32 map in every lane, in one copy per run
        //    (the allocator spreads them over the MEM slices): an int32 map
        //    read holds its bank's port for 4 cycles, so one copy for all
        //    the gathers of an index would make them wait on one port.
        //    Copy 0 is computed; copy c is copied from copy (c - 1) / 2, so
        //    that no copy is read more than twice for the copies. On the
        //    2-layer BERT-base (int8, `tsp`, 23 runs): maps on the runs' own
        //    slices 46,827 cycles, spread 43,449; 4, 8, 16, 46 or 69 copies
        //    43,540, 43,490, 43,473, 43,818, 44,067. Within `MAP_BYTES`:
        //    an f32 table of BERT-base's size takes 90 runs, and 90 copies
        //    of 128 maps would take 14 MiB (runs then share copies; GPT-2
        //    decode's one index in 24 copies for 37 runs: 63,601 cycles
        //    against 62,349).
        let runs = chunks.len();
        let copies = runs.min((MAP_BYTES / (count * lanes * 4).max(1)).max(1));
        let vpr = hidden.div_ceil(lanes);
        let maps = self.alloc.tensor(
            &format!("{name} (gather maps)"),
            &[copies * count, lanes],
            DType::I32,
        );
        let mut to_i32 = Instr::new(Opcode::Convert).typed(DType::F32);
        to_i32.to = DType::I32;
        for k in 0..count {
            let mut gb = self.begin();
            let h = self.read(&mut gb, bcast.at(2 * k, 0), DType::F32);
            let h = self.op(
                &mut gb,
                f32i(Opcode::MulImm, DIGIT),
                Place::Vxm,
                &[h],
                vec![],
            );
            let lo = self.read(&mut gb, bcast.at(2 * k + 1, 0), DType::F32);
            let id = self.op(
                &mut gb,
                Instr::new(Opcode::Add).typed(DType::F32),
                Place::Vxm,
                &[h, lo],
                vec![],
            );
            let m = self.op(&mut gb, to_i32.clone(), Place::Vxm, &[id], vec![]);
            self.write(&mut gb, m, maps.at(k, 0), DType::I32);
            self.fin(gb);
        }
        self.alloc.free(&bcast);
        self.copy_row_pairs(
            &maps,
            &maps,
            (1..copies)
                .flat_map(|c| (0..count).map(move |k| (((c - 1) / 2) * count + k, c * count + k))),
        );
        // 5. Per index and column tile, one gather per run (each 0 outside
        //    its run's rows) summed on the VXM: exactly the table's entry
        //    (x + 0 is x for every type, saturating int8 included), then
        //    the fused tail.
        let w = sty.bytes();
        let mut tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if out.rows != count || out.cols != hidden {
            return self.unsupported("the gather's output storage is not one row per index");
        }
        let fused = !tail.is_empty();
        if sty != tty {
            let mut c = Instr::new(Opcode::Convert).typed(sty);
            c.to = tty;
            tail.insert(
                0,
                super::TailOp {
                    node: self.node,
                    kind: super::TailKind::Unary(c),
                },
            );
        }
        if !fused && out.dtype != tty {
            let mut c = Instr::new(Opcode::Convert).typed(tty);
            c.to = out.dtype;
            tail.push(super::TailOp {
                node: self.node,
                kind: super::TailKind::Unary(c),
            });
        }
        // Runs summed per group: as many results as the streams into the
        // VXM carry (a wider group does not place on a small chip); a
        // partial sum goes through SRAM to the next group.
        let batch = (self.chip.streams_per_direction as usize / w).clamp(2, 16);
        let partial = (runs > batch).then(|| {
            self.alloc
                .tensor(&format!("{name} (partial sums)"), &[count, hidden], sty)
        });
        for k in 0..count {
            for j in 0..vpr {
                for (b, batch_runs) in chunks.chunks(batch).enumerate() {
                    let mut gb = self.begin();
                    let mut parts = Vec::with_capacity(batch + 1);
                    if let (Some(p), true) = (&partial, b > 0) {
                        parts.push(self.read(&mut gb, p.at(k, j), sty));
                    }
                    for (c, ch) in batch_runs.iter().enumerate() {
                        let c = b * batch + c;
                        let m = self.read(
                            &mut gb,
                            maps.at(((c * vpr + j) % copies) * count + k, 0),
                            DType::I32,
                        );
                        let at = VecLoc {
                            slice: ch.slice,
                            addr: ch.addr + (j * ch.rows * w) as u32,
                        };
                        let g = Instr {
                            arg: at.addr as i64,
                            arg2: ch.lo as i64,
                            imm: ch.rows as f64,
                            ..Instr::new(Opcode::Gather).typed(sty)
                        };
                        parts.push(self.op(&mut gb, g, Place::Mem(at), &[m], vec![]));
                    }
                    while parts.len() > 1 {
                        let mut next = Vec::with_capacity(parts.len().div_ceil(2));
                        for pair in parts.chunks(2) {
                            next.push(match *pair {
                                [a, b] => self.op(
                                    &mut gb,
                                    Instr::new(Opcode::Add).typed(sty),
                                    Place::Vxm,
                                    &[a, b],
                                    vec![],
                                ),
                                _ => pair[0],
                            });
                        }
                        parts = next;
                    }
                    match &partial {
                        Some(p) if (b + 1) * batch < runs => {
                            self.write(&mut gb, parts[0], p.at(k, j), sty);
                        }
                        _ => {
                            let v = self.apply_tail(&mut gb, parts[0], k, j, &tail);
                            self.write(&mut gb, v, out.at(k, j), out.dtype);
                        }
                    }
                    self.fin(gb);
                }
            }
        }
        if let Some(p) = &partial {
            self.alloc.free(p);
        }
        self.alloc.free(&maps);
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
}
