//! Lowering: graph nodes to groups of slice instructions ([`crate::group`]),
//! with every tensor placed in SRAM ([`crate::alloc`]).
//!
//! | op | lowering |
//! |---|---|
//! | MatMul, Gemm, MatMulInteger | weights (a constant `[K, N]`, transposed at compile time for `transB`) are cut into `lanes x lanes` tiles; each tile's rows are read from SRAM and loaded (`lw`) into an MXM plane's staging buffer, installed (`iw`), and every activation row's K-slice is streamed through (`mm`), accumulating over K-tiles; each result vector is emitted (`emit`), scaled by `alpha`, added to `beta*C` on the VXM, and written to SRAM. fp32 operands run on the MXM in fp16 with fp32 accumulation (weights converted at compile time, activations by a VXM `cvt`). N-tiles go round-robin to the planes. |
//! | Add, Sub, Mul | per output vector: read both operands, VXM op, write. Operands may be the same shape as the output, a row broadcast (`[N]`, `[1, N]`), or a constant scalar (materialised as a row). |
//! | Relu, Cast, QuantizeLinear, DequantizeLinear | per vector: read, VXM op (`relu`, `cvt`, `qnt`, `dqnt`), write. Quantization parameters must be constant scalars; they become immediates. |
//! | Identity | no instructions: the output shares the input's storage. |
//!
//! **Fusion.** An elementwise node (Relu, Cast, QuantizeLinear,
//! DequantizeLinear, or Add/Sub/Mul whose other operand is already
//! available) that is the only consumer of a chain's result is appended to
//! that chain instead of round-tripping through SRAM: a MatMul's emit flows
//! through dequantize, bias add, ReLU and quantize on the VXM before one
//! write. Its instructions keep the fused node's provenance.
//!
//! **Retiming.** When two members of one group would need the same MEM queue
//! or bank on overlapping cycles (two operands in one slice, say), a VXM
//! `mov` is inserted after one read so it issues earlier
//! ([`crate::group::retime_reads`]).

use crate::alloc::{view2d, SramAlloc, TensorLoc};
use crate::group::{retime_reads, Floorplan, Group, Link, Member, MemberRef, Place};
use crate::CompileError;
use half::f16;
use lpu_graph::{Graph, Node, Tensor};
use lpu_isa::program::{Binding, MemInit, VecLoc};
use lpu_isa::{ChipConfig, DType, Instr, Opcode, SliceKind, Values};
use std::collections::{BTreeMap, HashMap};

/// The lowered program before scheduling.
pub struct Lowered {
    /// Groups in a topological order.
    pub groups: Vec<Group>,
    /// Input bindings.
    pub inputs: Vec<Binding>,
    /// Output bindings.
    pub outputs: Vec<Binding>,
    /// Initial memory image.
    pub memory: Vec<MemInit>,
    /// Peak of live SRAM bytes.
    pub sram_bytes: u64,
}

/// Per-accumulator ordering state.
#[derive(Clone, Default)]
struct AccState {
    last_mm: Option<MemberRef>,
    last_emit: Option<MemberRef>,
}

/// Per-MXM-plane ordering state.
struct Plane {
    slice: u16,
    last_iw: Option<MemberRef>,
    lw_since_iw: Vec<MemberRef>,
    mm_since_iw: Vec<MemberRef>,
    accs: Vec<AccState>,
    next_acc: usize,
}

struct Lowerer<'a> {
    g: &'a Graph,
    chip: &'a ChipConfig,
    lanes: usize,
    alloc: SramAlloc,
    locs: BTreeMap<String, TensorLoc>,
    writer: HashMap<(u16, u32), MemberRef>,
    /// Reads of each vector since its last write (for write-after-read
    /// ordering when freed storage is reused).
    readers: HashMap<(u16, u32), Vec<MemberRef>>,
    groups: Vec<Group>,
    planes: Vec<Plane>,
    next_plane: usize,
    node: u32,
    fp: Floorplan,
    /// Per node, the elementwise nodes fused into its groups.
    tails: Vec<Vec<usize>>,
    /// Nodes lowered as part of another node's groups.
    absorbed: Vec<bool>,
}

/// One fused elementwise step after a chain's last result.
struct TailOp {
    node: u32,
    kind: TailKind,
}

enum TailKind {
    /// A one-operand VXM instruction.
    Unary(Instr),
    /// A two-operand VXM instruction whose other operand is read from SRAM;
    /// `chain_first` says whether the chain's value is the first operand.
    Binary {
        instr: Instr,
        other: TensorLoc,
        chain_first: bool,
    },
}

/// A group under construction.
struct Gb {
    g: Group,
    index: u32,
}

/// What follows `emit` in a matrix product's epilogue (before any fused
/// tail).
struct Epilogue {
    alpha: Option<f32>,
    bias: Option<TensorLoc>,
}

/// Ops whose lowering ends in a VXM/MXM chain that fused ops can extend.
fn is_chain_producer(g: &Graph, n: &Node) -> bool {
    match n.op_type.as_str() {
        "MatMul" | "Gemm" | "MatMulInteger" | "Add" | "Sub" | "Mul" | "Relu" | "QuantizeLinear"
        | "DequantizeLinear" => true,
        "Cast" => is_real_cast(g, n),
        _ => false,
    }
}

fn is_real_cast(g: &Graph, n: &Node) -> bool {
    let from = n.inputs.first().and_then(|x| g.info(x)).map(|i| i.dtype);
    let to = n.outputs.first().and_then(|x| g.info(x)).map(|i| i.dtype);
    from.is_some() && from != to
}

/// Whether `c` can be fused after the node `producer` whose result is `t`:
/// elementwise, same shape as `t`, and any other operand already available
/// when `producer` is lowered.
fn fusible(g: &Graph, c: &Node, t: &str, producer: usize) -> bool {
    let out_info = c.outputs.first().and_then(|o| g.info(o));
    let t_info = g.info(t);
    let (Some(oi), Some(ti)) = (out_info, t_info) else {
        return false;
    };
    if oi.shape != ti.shape {
        return false;
    }
    let scalar_const = |name: &str| g.initializers.get(name).is_some_and(|x| x.len() == 1);
    match c.op_type.as_str() {
        "Relu" => true,
        "Cast" => is_real_cast(g, c),
        "QuantizeLinear" | "DequantizeLinear" => {
            c.input(0) == Some(t)
                && c.input(1).is_some_and(scalar_const)
                && c.input(2).is_none_or(scalar_const)
        }
        "Add" | "Sub" | "Mul" => {
            let other = if c.input(0) == Some(t) {
                c.input(1)
            } else {
                c.input(0)
            };
            let Some(other) = other else { return false };
            let (tr, tc) = view2d(&ti.shape);
            let ready = g.producer(other).is_none_or(|p| p < producer);
            broadcast_of(g, other, tr, tc) != Broadcast::Unsupported && ready
        }
        _ => false,
    }
}

/// How an elementwise operand reaches a `rows x cols` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broadcast {
    /// Its own storage: the same 2-D view, or a row (`[N]`, `[1, N]`)
    /// reread for every result row.
    Direct,
    /// A constant scalar, materialised as a row of copies.
    ScalarRow,
    /// Any other broadcast, which the lowering does not support.
    Unsupported,
}

fn broadcast_of(g: &Graph, name: &str, rows: usize, cols: usize) -> Broadcast {
    let Some(info) = g.info(name) else {
        return Broadcast::Unsupported;
    };
    let (r, c) = view2d(&info.shape);
    if (r == rows || r == 1) && c == cols {
        Broadcast::Direct
    } else if r * c == 1 && g.initializers.contains_key(name) {
        Broadcast::ScalarRow
    } else {
        Broadcast::Unsupported
    }
}

/// For each lowering step (node index), the computed tensors whose last
/// reader is lowered in that step and whose storage can then be reused:
/// not graph outputs, and not shared through an alias (Identity, or a Cast
/// to the same type).
fn free_points(g: &Graph, tails: &[Vec<usize>]) -> Vec<Vec<String>> {
    let n = g.nodes.len();
    let mut owner: Vec<usize> = (0..n).collect();
    for (i, t) in tails.iter().enumerate() {
        for &c in t {
            owner[c] = i;
        }
    }
    let aliasing = |node: &Node| {
        node.op_type == "Identity" || (node.op_type == "Cast" && !is_real_cast(g, node))
    };
    let mut pinned: std::collections::BTreeSet<&str> =
        g.outputs.iter().map(String::as_str).collect();
    for node in g.nodes.iter().filter(|x| aliasing(x)) {
        pinned.extend(node.inputs.iter().map(String::as_str));
        pinned.extend(node.outputs.iter().map(String::as_str));
    }
    let mut out = vec![Vec::new(); n];
    for (i, node) in g.nodes.iter().enumerate() {
        // A fused node's output (the end of a chain) is written by its
        // owner's step; intermediate chain values have no storage and are
        // skipped when freed.
        let step = owner[i];
        for t in &node.outputs {
            if pinned.contains(t.as_str()) {
                continue;
            }
            let last = g
                .consumers(t)
                .into_iter()
                .map(|c| owner[c])
                .max()
                .unwrap_or(step)
                .max(step);
            out[last].push(t.clone());
        }
    }
    out
}

/// Decides which elementwise nodes fuse into their producer's groups.
fn plan_fusion(g: &Graph) -> (Vec<Vec<usize>>, Vec<bool>) {
    let n = g.nodes.len();
    let mut tails = vec![Vec::new(); n];
    let mut absorbed = vec![false; n];
    for i in 0..n {
        if absorbed[i] || !is_chain_producer(g, &g.nodes[i]) {
            continue;
        }
        let Some(mut t) = g.nodes[i].outputs.first().cloned() else {
            continue;
        };
        loop {
            if g.outputs.contains(&t) {
                break;
            }
            let cons = g.consumers(&t);
            let [c] = cons.as_slice() else { break };
            let node = &g.nodes[*c];
            if node.inputs.iter().filter(|x| **x == t).count() != 1 || !fusible(g, node, &t, i) {
                break;
            }
            tails[i].push(*c);
            absorbed[*c] = true;
            match node.outputs.first() {
                Some(o) => t = o.clone(),
                None => break,
            }
        }
    }
    (tails, absorbed)
}

/// Lowers a validated graph for `chip`.
pub fn lower(graph: &Graph, chip: &ChipConfig) -> Result<Lowered, CompileError> {
    let planes = chip
        .positions_of(SliceKind::Mxm)
        .into_iter()
        .map(|slice| Plane {
            slice,
            last_iw: None,
            lw_since_iw: vec![],
            mm_since_iw: vec![],
            accs: vec![AccState::default(); chip.mxm.accumulators as usize],
            next_acc: 0,
        })
        .collect();
    let mut l = Lowerer {
        g: graph,
        chip,
        lanes: chip.lanes() as usize,
        alloc: SramAlloc::new(chip),
        locs: BTreeMap::new(),
        writer: HashMap::new(),
        readers: HashMap::new(),
        groups: Vec::new(),
        planes,
        next_plane: 0,
        node: 0,
        fp: Floorplan::new(chip),
        tails: Vec::new(),
        absorbed: Vec::new(),
    };
    (l.tails, l.absorbed) = plan_fusion(graph);
    for (name, info) in &graph.inputs {
        let loc = l.alloc.tensor(name, &info.shape, info.dtype);
        l.locs.insert(name.clone(), loc);
    }
    let frees = free_points(graph, &l.tails);
    for (i, node) in graph.nodes.iter().enumerate() {
        if l.absorbed[i] {
            continue;
        }
        l.node = i as u32;
        l.lower_node(node)?;
        for t in &frees[i] {
            if let Some(loc) = l.locs.remove(t) {
                l.alloc.free(&loc);
            }
        }
    }
    let bind = |l: &mut Lowerer, name: &str| -> Result<Binding, CompileError> {
        let info = graph
            .info(name)
            .cloned()
            .ok_or_else(|| l.unsupported_msg(&format!("tensor '{name}' has no inferred type")))?;
        let loc = l.operand(name)?;
        Ok(Binding {
            name: name.to_string(),
            dtype: loc.dtype,
            shape: info.shape.clone(),
            rows: loc.rows,
            cols: loc.cols,
            vectors: loc.vectors.clone(),
        })
    };
    let inputs = graph
        .inputs
        .iter()
        .map(|(n, _)| bind(&mut l, n))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .outputs
        .iter()
        .map(|n| bind(&mut l, n))
        .collect::<Result<Vec<_>, _>>()?;
    let sram_bytes = l.alloc.peak_bytes();
    let memory = l.alloc.finish(&graph.name, chip)?;
    Ok(Lowered {
        groups: l.groups,
        inputs,
        outputs,
        memory,
        sram_bytes,
    })
}

fn binary_opcode(op_type: &str) -> Opcode {
    match op_type {
        "Add" => Opcode::Add,
        "Sub" => Opcode::Sub,
        _ => Opcode::Mul,
    }
}

fn f32_of(v: &Values) -> Vec<f32> {
    (0..v.len()).map(|i| v.get_f64(i) as f32).collect()
}

impl<'a> Lowerer<'a> {
    fn cur(&self) -> &'a Node {
        &self.g.nodes[self.node as usize]
    }

    fn unsupported_msg(&self, message: &str) -> CompileError {
        let n = self.cur();
        CompileError::Unsupported {
            model: self.g.name.clone(),
            node: n.name.clone(),
            op: n.op_type.clone(),
            message: message.to_string(),
        }
    }

    fn unsupported<T>(&self, message: &str) -> Result<T, CompileError> {
        Err(self.unsupported_msg(message))
    }

    fn d(&self, op: Opcode) -> i32 {
        self.chip.delay(op) as i32
    }

    /// The storage of a tensor: a runtime tensor, or a constant placed on
    /// first use.
    fn operand(&mut self, name: &str) -> Result<TensorLoc, CompileError> {
        if let Some(l) = self.locs.get(name) {
            return Ok(l.clone());
        }
        let Some(t) = self.g.initializers.get(name) else {
            return self.unsupported(&format!(
                "tensor '{name}' is neither computed nor an initializer"
            ));
        };
        let loc = self.alloc.constant(name, &t.shape, &t.values);
        self.locs.insert(name.to_string(), loc.clone());
        Ok(loc)
    }

    fn constant(&self, name: &str) -> Option<&'a Tensor> {
        self.g.initializers.get(name)
    }

    fn scalar_const(&self, name: Option<&str>, what: &str) -> Result<Option<f64>, CompileError> {
        let Some(name) = name else { return Ok(None) };
        match self.constant(name) {
            Some(t) if t.len() == 1 => Ok(Some(t.values.get_f64(0))),
            Some(_) => self.unsupported(&format!("{what} '{name}' must be a scalar")),
            None => self.unsupported(&format!(
                "{what} '{name}' must be a constant (initializer) to become an immediate"
            )),
        }
    }

    fn output(&mut self, k: usize) -> Result<(String, TensorLoc), CompileError> {
        let n = self.cur();
        let name = n.outputs.get(k).cloned().unwrap_or_default();
        let Some(info) = self.g.info(&name).cloned() else {
            return self.unsupported(&format!("output '{name}' has no inferred type"));
        };
        let loc = self.alloc.tensor(&name, &info.shape, info.dtype);
        self.locs.insert(name.clone(), loc.clone());
        Ok((name, loc))
    }

    fn begin(&self) -> Gb {
        Gb {
            g: Group::default(),
            index: self.groups.len() as u32,
        }
    }

    fn member(&self, gb: &mut Gb, instr: Instr, place: Place, after: Vec<(MemberRef, i32)>) -> u32 {
        gb.g.members.push(Member {
            instr,
            place,
            node: self.node,
            after,
        });
        gb.g.members.len() as u32 - 1
    }

    fn read(&mut self, gb: &mut Gb, at: VecLoc, ty: DType) -> u32 {
        let mut after = vec![];
        if let Some(w) = self.writer.get(&(at.slice, at.addr)) {
            after.push((*w, self.d(Opcode::Write)));
        }
        let instr = Instr {
            arg: at.addr as i64,
            ..Instr::new(Opcode::Read).typed(ty)
        };
        let m = self.member(gb, instr, Place::Mem(at), after);
        self.readers
            .entry((at.slice, at.addr))
            .or_default()
            .push(MemberRef {
                group: gb.index,
                member: m,
            });
        m
    }

    /// Adds a member fed by `inputs`, input `k` as operand `k`.
    fn op(
        &mut self,
        gb: &mut Gb,
        instr: Instr,
        place: Place,
        inputs: &[u32],
        after: Vec<(MemberRef, i32)>,
    ) -> u32 {
        let links: Vec<(u8, u8)> = (0..inputs.len()).map(|k| (k as u8, 0)).collect();
        self.linked(gb, instr, place, inputs, &links, after)
    }

    /// Adds a member and links `inputs[k]` to its (operand, group) `links[k]`.
    fn linked(
        &mut self,
        gb: &mut Gb,
        instr: Instr,
        place: Place,
        inputs: &[u32],
        links: &[(u8, u8)],
        after: Vec<(MemberRef, i32)>,
    ) -> u32 {
        let m = self.member(gb, instr, place, after);
        for (from, (operand, group)) in inputs.iter().zip(links) {
            gb.g.links.push(Link {
                from: *from,
                to: m,
                operand: *operand,
                group: *group,
            });
        }
        m
    }

    fn write(&mut self, gb: &mut Gb, from: u32, at: VecLoc, ty: DType) -> u32 {
        let instr = Instr {
            arg: at.addr as i64,
            ..Instr::new(Opcode::Write).typed(ty)
        };
        // Reused storage: land after the old value's last read and write.
        let d_write = self.d(Opcode::Write);
        let mut after: Vec<(MemberRef, i32)> = self
            .readers
            .remove(&(at.slice, at.addr))
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r, 1 - d_write))
            .collect();
        after.extend(self.writer.get(&(at.slice, at.addr)).map(|w| (*w, 1)));
        let m = self.op(gb, instr, Place::Mem(at), &[from], after);
        self.writer.insert(
            (at.slice, at.addr),
            MemberRef {
                group: gb.index,
                member: m,
            },
        );
        m
    }

    /// Writes a chain's result; the write belongs to the last fused node,
    /// whose output it stores.
    fn write_end(&mut self, gb: &mut Gb, from: u32, at: VecLoc, ty: DType, tail: &[TailOp]) -> u32 {
        let own = self.node;
        if let Some(last) = tail.last() {
            self.node = last.node;
        }
        let m = self.write(gb, from, at, ty);
        self.node = own;
        m
    }

    fn finish(&mut self, mut gb: Gb) -> u32 {
        retime_reads(&mut gb.g, self.chip, &self.fp);
        self.groups.push(gb.g);
        gb.index
    }

    /// The output of the current node's chain: its own output, or the last
    /// fused node's.
    fn chain_output(&mut self) -> Result<TensorLoc, CompileError> {
        let own = self.node;
        let last = self.tails[own as usize].last().copied();
        if let Some(l) = last {
            self.node = l as u32;
        }
        let r = self.output(0).map(|(_, loc)| loc);
        self.node = own;
        r
    }

    /// Prepares the fused tail of the current node.
    fn prepare_tail(&mut self) -> Result<Vec<TailOp>, CompileError> {
        let own = self.node;
        let tail = self.tails[own as usize].clone();
        let mut ops = Vec::new();
        let mut t = self.cur().outputs.first().cloned().unwrap_or_default();
        for c in tail {
            self.node = c as u32;
            let n = self.cur();
            let ty = |l: &Self, name: &str| l.g.info(name).map(|i| i.dtype).unwrap_or(DType::F32);
            let out_ty = self.out_dtype(n)?;
            let kind = match n.op_type.as_str() {
                "Relu" => TailKind::Unary(Instr::new(Opcode::Relu).typed(ty(self, &t))),
                "Cast" => {
                    let mut i = Instr::new(Opcode::Convert).typed(ty(self, &t));
                    i.to = out_ty;
                    TailKind::Unary(i)
                }
                "QuantizeLinear" | "DequantizeLinear" => {
                    TailKind::Unary(self.quant_instr(n, ty(self, &t))?)
                }
                _ => {
                    let chain_first = n.input(0) == Some(t.as_str());
                    let other = n
                        .input(if chain_first { 1 } else { 0 })
                        .unwrap_or_default()
                        .to_string();
                    let (rows, cols) = match self.g.info(&t) {
                        Some(i) => view2d(&i.shape),
                        None => (1, 1),
                    };
                    let other = self.broadcast_operand(&other, rows, cols)?;
                    TailKind::Binary {
                        instr: Instr::new(binary_opcode(&n.op_type)).typed(out_ty),
                        other,
                        chain_first,
                    }
                }
            };
            ops.push(TailOp {
                node: c as u32,
                kind,
            });
            t = n.outputs.first().cloned().unwrap_or_default();
        }
        self.node = own;
        Ok(ops)
    }

    /// Appends the fused tail to a chain ending in member `last`, for output
    /// vector `(r, j)`; returns the new last member.
    fn apply_tail(
        &mut self,
        gb: &mut Gb,
        mut last: u32,
        r: usize,
        j: usize,
        tail: &[TailOp],
    ) -> u32 {
        let own = self.node;
        for op in tail {
            self.node = op.node;
            last = match &op.kind {
                TailKind::Unary(i) => self.op(gb, i.clone(), Place::Vxm, &[last], vec![]),
                TailKind::Binary {
                    instr,
                    other,
                    chain_first,
                } => {
                    let at = other.at(if other.rows == 1 { 0 } else { r }, j);
                    let x = self.read(gb, at, other.dtype);
                    let ins = if *chain_first { [last, x] } else { [x, last] };
                    self.op(gb, instr.clone(), Place::Vxm, &ins, vec![])
                }
            };
        }
        self.node = own;
        last
    }

    fn lower_node(&mut self, n: &'a Node) -> Result<(), CompileError> {
        match n.op_type.as_str() {
            "MatMul" | "MatMulInteger" | "Gemm" => self.lower_matmul(n),
            "Add" | "Sub" | "Mul" => self.lower_binary(n),
            "Relu" => self.lower_unary(n, Instr::new(Opcode::Relu)),
            "Cast" => {
                let x = self.input_name(n, 0)?;
                let from = self.operand(&x)?.dtype;
                let to = self.out_dtype(n)?;
                if from == to {
                    return self.alias(n, &x);
                }
                let mut i = Instr::new(Opcode::Convert).typed(from);
                i.to = to;
                self.lower_unary(n, i)
            }
            "Identity" => {
                let x = self.input_name(n, 0)?;
                self.alias(n, &x)
            }
            "QuantizeLinear" | "DequantizeLinear" => {
                let x = self.input_name(n, 0)?;
                let ty = self.operand(&x)?.dtype;
                let i = self.quant_instr(n, ty)?;
                self.lower_unary(n, i)
            }
            other => self.unsupported(&format!(
                "operator '{other}' has no lowering yet (lowered: MatMul, Gemm, MatMulInteger, Add, Sub, Mul, Relu, Cast, Identity, QuantizeLinear, DequantizeLinear)"
            )),
        }
    }

    /// The `qnt`/`dqnt` instruction of a QuantizeLinear/DequantizeLinear
    /// node whose input has type `ty`.
    fn quant_instr(&self, n: &Node, ty: DType) -> Result<Instr, CompileError> {
        let scale = self.scale(n)?;
        let zp = self.scalar_const(n.input(2), "zero point")?.unwrap_or(0.0);
        let quantize = n.op_type == "QuantizeLinear";
        let mut i = Instr::new(if quantize {
            Opcode::Quantize
        } else {
            Opcode::Dequantize
        })
        .typed(ty);
        i.to = if quantize {
            self.out_dtype(n)?
        } else {
            DType::F32
        };
        i.imm = scale;
        i.arg2 = zp as i64;
        Ok(i)
    }

    fn scale(&self, n: &Node) -> Result<f64, CompileError> {
        let s = self.scalar_const(n.input(1), "scale")?.unwrap_or(0.0);
        if !(s.is_finite() && s > 0.0) {
            return self.unsupported(&format!(
                "scale must be a positive finite constant, found {s}"
            ));
        }
        Ok(s)
    }

    fn input_name(&self, n: &Node, k: usize) -> Result<String, CompileError> {
        match n.input(k) {
            Some(x) => Ok(x.to_string()),
            None => self.unsupported(&format!("input {k} is missing")),
        }
    }

    fn out_dtype(&self, n: &Node) -> Result<DType, CompileError> {
        let name = n.outputs.first().map(String::as_str).unwrap_or_default();
        match self.g.info(name) {
            Some(i) => Ok(i.dtype),
            None => self.unsupported(&format!("output '{name}' has no inferred type")),
        }
    }

    fn alias(&mut self, n: &Node, x: &str) -> Result<(), CompileError> {
        let loc = self.operand(x)?;
        let out = n.outputs.first().cloned().unwrap_or_default();
        self.locs.insert(out, loc);
        Ok(())
    }

    fn lower_unary(&mut self, n: &Node, instr: Instr) -> Result<(), CompileError> {
        let x = self.operand(&self.input_name(n, 0)?)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if (x.rows, x.cols) != (out.rows, out.cols) {
            return self.unsupported("input and output shapes differ");
        }
        let instr = if instr.op.info().typing == lpu_isa::isa::Typing::Two {
            instr
        } else {
            instr.typed(x.dtype)
        };
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let a = self.read(&mut gb, x.at(r, j), x.dtype);
                let o = self.op(&mut gb, instr.clone(), Place::Vxm, &[a], vec![]);
                let o = self.apply_tail(&mut gb, o, r, j, &tail);
                self.write_end(&mut gb, o, out.at(r, j), out.dtype, &tail);
                self.finish(gb);
            }
        }
        Ok(())
    }

    /// The storage of a binary operand, broadcast to `rows x cols`.
    fn broadcast_operand(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<TensorLoc, CompileError> {
        let info = match self.g.info(name) {
            Some(i) => i.clone(),
            None => return self.unsupported(&format!("operand '{name}' has no inferred type")),
        };
        match broadcast_of(self.g, name, rows, cols) {
            Broadcast::Direct => return self.operand(name),
            Broadcast::ScalarRow => {
                if let Some(t) = self.constant(name) {
                    // A constant scalar becomes a row of `cols` copies.
                    let v = t.values.get_f64(0);
                    let row: Vec<f64> = vec![v; cols];
                    let values = match t.dtype() {
                        DType::F32 => Values::F32(row.iter().map(|x| *x as f32).collect()),
                        DType::F16 => Values::F16(row.iter().map(|x| f16::from_f64(*x)).collect()),
                        DType::I8 => Values::I8(row.iter().map(|x| *x as i8).collect()),
                        DType::I32 => Values::I32(row.iter().map(|x| *x as i32).collect()),
                    };
                    let key = format!("{name}#row{cols}");
                    if let Some(l) = self.locs.get(&key) {
                        return Ok(l.clone());
                    }
                    let loc =
                        self.alloc
                            .constant(&format!("{name} (broadcast row)"), &[cols], &values);
                    self.locs.insert(key, loc.clone());
                    return Ok(loc);
                }
            }
            Broadcast::Unsupported => {}
        }
        self.unsupported(&format!(
            "operand '{name}' of shape {:?} broadcasts along a dimension other than rows; only equal shapes, row vectors [N] / [1, N] and constant scalars are lowered",
            info.shape
        ))
    }

    fn lower_binary(&mut self, n: &Node) -> Result<(), CompileError> {
        let op = binary_opcode(&n.op_type);
        let (an, bn) = (self.input_name(n, 0)?, self.input_name(n, 1)?);
        let Some(info) = n.outputs.first().and_then(|o| self.g.info(o)).cloned() else {
            return self.unsupported("output has no inferred type");
        };
        let ((rows, cols), ty) = (view2d(&info.shape), info.dtype);
        let a = self.broadcast_operand(&an, rows, cols)?;
        let b = self.broadcast_operand(&bn, rows, cols)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let pick = |t: &TensorLoc, r: usize, j: usize| t.at(if t.rows == 1 { 0 } else { r }, j);
        for r in 0..rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let x = self.read(&mut gb, pick(&a, r, j), a.dtype);
                let y = self.read(&mut gb, pick(&b, r, j), b.dtype);
                let o = self.op(
                    &mut gb,
                    Instr::new(op).typed(ty),
                    Place::Vxm,
                    &[x, y],
                    vec![],
                );
                let o = self.apply_tail(&mut gb, o, r, j, &tail);
                self.write_end(&mut gb, o, out.at(r, j), out.dtype, &tail);
                self.finish(gb);
            }
        }
        Ok(())
    }

    fn lower_matmul(&mut self, n: &Node) -> Result<(), CompileError> {
        let an = self.input_name(n, 0)?;
        let bn = self.input_name(n, 1)?;
        let a = self.operand(&an)?;
        let Some(b) = self.constant(&bn) else {
            return self.unsupported(&format!(
                "the right operand '{bn}' must be a constant (weights); products of two computed tensors are not lowered yet"
            ));
        };
        if b.shape.len() != 2 || a.cols == 0 {
            return self.unsupported("only 2-D weights are lowered");
        }
        let gemm = n.op_type == "Gemm";
        let (trans_a, trans_b) = if gemm {
            (n.attr_int("transA", 0)?, n.attr_int("transB", 0)?)
        } else {
            (0, 0)
        };
        if trans_a != 0 {
            return self.unsupported("transA=1 is not lowered (transpose the left operand first)");
        }
        let (k, nn) = if trans_b != 0 {
            (b.shape[1], b.shape[0])
        } else {
            (b.shape[0], b.shape[1])
        };
        if a.cols != k {
            return self.unsupported(&format!(
                "left operand has {} columns, weights have {k} rows",
                a.cols
            ));
        }
        // Weights as K x N row-major, in the MXM's input type.
        let bv = f32_of(&b.values);
        let at = |kk: usize, j: usize| {
            if trans_b != 0 {
                bv[j * k + kk]
            } else {
                bv[kk * nn + j]
            }
        };
        let integer = n.op_type == "MatMulInteger";
        let (mm_ty, emit_ty) = if integer {
            for (idx, what) in [(2, "a_zero_point"), (3, "b_zero_point")] {
                if self.scalar_const(n.input(idx), what)?.unwrap_or(0.0) != 0.0 {
                    return self.unsupported(&format!("{what} must be 0 (symmetric quantization)"));
                }
            }
            (DType::I8, DType::I32)
        } else {
            let out_ty = self.out_dtype(n)?;
            (DType::F16, out_ty)
        };
        if !self.chip.mxm.dtypes.contains(&mm_ty) {
            return self.unsupported(&format!("chip '{}' has no {mm_ty} MXM", self.chip.name));
        }
        let wvals = match mm_ty {
            DType::I8 => Values::I8((0..k * nn).map(|i| at(i / nn, i % nn) as i8).collect()),
            _ => Values::F16(
                (0..k * nn)
                    .map(|i| f16::from_f32(at(i / nn, i % nn)))
                    .collect(),
            ),
        };
        let wname = format!("{bn}#{mm_ty}");
        let w = match self.locs.get(&wname) {
            Some(l) => l.clone(),
            None => {
                let l = self.alloc.constant_columns_first(
                    &format!("{bn} (as {mm_ty} weights)"),
                    &[k, nn],
                    &wvals,
                );
                self.locs.insert(wname, l.clone());
                l
            }
        };
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let mut epi = Epilogue {
            alpha: None,
            bias: None,
        };
        if gemm {
            let alpha = n.attr_float("alpha", 1.0)?;
            let beta = n.attr_float("beta", 1.0)?;
            if alpha != 1.0 {
                epi.alpha = Some(alpha);
            }
            if let Some(cn) = n.input(2) {
                let Some(c) = self.constant(cn) else {
                    return self.unsupported(&format!("bias '{cn}' must be a constant"));
                };
                let cv = f32_of(&c.values);
                let (cr, cc) = view2d(&c.shape);
                // beta * C broadcast to M x N, exactly as the reference computes it.
                let mut full = Vec::with_capacity(out.rows * nn);
                for r in 0..out.rows {
                    for j in 0..nn {
                        let v =
                            cv[(if cr == 1 { 0 } else { r }) * cc + if cc == 1 { 0 } else { j }];
                        full.push(if beta == 1.0 { v } else { beta * v });
                    }
                }
                let values = match emit_ty {
                    DType::F16 => Values::F16(full.iter().map(|x| f16::from_f32(*x)).collect()),
                    _ => Values::F32(full),
                };
                let loc = self.alloc.constant(
                    &format!("{cn} (beta x C, broadcast)"),
                    &[out.rows, nn],
                    &values,
                );
                epi.bias = Some(loc);
            }
        }
        self.matmul(&a, &w, &out, k, mm_ty, emit_ty, &epi, &tail)
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        a: &TensorLoc,
        w: &TensorLoc,
        out: &TensorLoc,
        k: usize,
        mm_ty: DType,
        emit_ty: DType,
        epi: &Epilogue,
        tail: &[TailOp],
    ) -> Result<(), CompileError> {
        let lanes = self.lanes;
        let kt_count = k.div_ceil(lanes);
        let (d_lw, d_iw, d_mm) = (
            self.d(Opcode::LoadWeights),
            self.d(Opcode::InstallWeights),
            self.d(Opcode::Matmul),
        );
        let chunk = self.chip.mxm.accumulators as usize;
        for j in 0..w.vpr {
            let p = self.next_plane % self.planes.len();
            self.next_plane += 1;
            let slice = self.planes[p].slice;
            let wq = Place::Mxm { slice, queue: 0 };
            let cq = Place::Mxm { slice, queue: 1 };
            let mut row0 = 0;
            while row0 < a.rows {
                let rows: Vec<usize> = (row0..a.rows.min(row0 + chunk)).collect();
                row0 += chunk;
                let accs: Vec<usize> = rows
                    .iter()
                    .map(|_| {
                        let pl = &mut self.planes[p];
                        let acc = pl.next_acc;
                        pl.next_acc = (pl.next_acc + 1) % pl.accs.len();
                        acc
                    })
                    .collect();
                for kt in 0..kt_count {
                    // Rows go to the plane `load_rows` at a time, each row on
                    // its own stream group; a bundle takes rows from distinct
                    // MEM slices on one side of the plane.
                    let per = (self.chip.mxm.load_rows as usize)
                        .min(self.chip.streams_per_direction as usize / (2 * mm_ty.bytes()))
                        .max(1);
                    let tile_rows = lanes.min(k - kt * lanes);
                    let mut r0 = 0;
                    while r0 < tile_rows {
                        let side = |at: VecLoc| at.slice > slice;
                        let first = w.at(kt * lanes + r0, j);
                        let mut rows = vec![first];
                        while rows.len() < per && r0 + rows.len() < tile_rows {
                            let next = w.at(kt * lanes + r0 + rows.len(), j);
                            if side(next) != side(first)
                                || rows.iter().any(|v| v.slice == next.slice)
                            {
                                break;
                            }
                            rows.push(next);
                        }
                        let mut gb = self.begin();
                        let reads: Vec<u32> = rows
                            .iter()
                            .map(|at| self.read(&mut gb, *at, mm_ty))
                            .collect();
                        let after: Vec<_> = self.planes[p]
                            .last_iw
                            .iter()
                            .map(|iw| (*iw, 1 - d_lw))
                            .collect();
                        let lw = Instr {
                            arg: r0 as i64,
                            arg2: rows.len() as i64,
                            ..Instr::new(Opcode::LoadWeights).typed(mm_ty)
                        };
                        // Row k of the bundle is stream group k of the first operand.
                        let groups: Vec<(u8, u8)> =
                            (0..reads.len()).map(|k| (0, k as u8)).collect();
                        let m = self.linked(&mut gb, lw, wq, &reads, &groups, after);
                        let g = self.finish(gb);
                        self.planes[p].lw_since_iw.push(MemberRef {
                            group: g,
                            member: m,
                        });
                        r0 += rows.len();
                    }
                    let mut gb = self.begin();
                    let pl = &mut self.planes[p];
                    let after: Vec<_> = pl
                        .lw_since_iw
                        .drain(..)
                        .map(|r| (r, d_lw))
                        .chain(pl.mm_since_iw.drain(..).map(|r| (r, 1 - d_iw)))
                        .collect();
                    let m = self.member(&mut gb, Instr::new(Opcode::InstallWeights), wq, after);
                    let g = self.finish(gb);
                    let iw = MemberRef {
                        group: g,
                        member: m,
                    };
                    self.planes[p].last_iw = Some(iw);
                    for (&r, &acc) in rows.iter().zip(&accs) {
                        let mut gb = self.begin();
                        let mut x = self.read(&mut gb, a.at(r, kt), a.dtype);
                        if a.dtype != mm_ty {
                            let mut cvt = Instr::new(Opcode::Convert).typed(a.dtype);
                            cvt.to = mm_ty;
                            x = self.op(&mut gb, cvt, Place::Vxm, &[x], vec![]);
                        }
                        let st = &self.planes[p].accs[acc];
                        let mut after = vec![(iw, d_iw)];
                        if kt > 0 {
                            after.extend(st.last_mm.map(|m| (m, 1)));
                        } else {
                            after.extend(st.last_emit.map(|e| (e, 1 - d_mm)));
                            after.extend(st.last_mm.map(|m| (m, 1)));
                        }
                        let mm = Instr {
                            arg: acc as i64,
                            accumulate: kt > 0,
                            ..Instr::new(Opcode::Matmul).typed(mm_ty)
                        };
                        let m = self.op(&mut gb, mm, cq, &[x], after);
                        let g = self.finish(gb);
                        let r = MemberRef {
                            group: g,
                            member: m,
                        };
                        self.planes[p].mm_since_iw.push(r);
                        self.planes[p].accs[acc].last_mm = Some(r);
                    }
                }
                for (&r, &acc) in rows.iter().zip(&accs) {
                    let mut gb = self.begin();
                    let after: Vec<_> = self.planes[p].accs[acc]
                        .last_mm
                        .iter()
                        .map(|m| (*m, d_mm))
                        .collect();
                    let emit = Instr {
                        arg: acc as i64,
                        ..Instr::new(Opcode::Emit).typed(emit_ty)
                    };
                    let e = self.op(&mut gb, emit, cq, &[], after);
                    let mut last = e;
                    if let Some(alpha) = epi.alpha {
                        let mul = Instr {
                            imm: alpha as f64,
                            ..Instr::new(Opcode::MulImm).typed(emit_ty)
                        };
                        last = self.op(&mut gb, mul, Place::Vxm, &[last], vec![]);
                    }
                    if let Some(bias) = &epi.bias {
                        let c = self.read(&mut gb, bias.at(r, j), bias.dtype);
                        last = self.op(
                            &mut gb,
                            Instr::new(Opcode::Add).typed(emit_ty),
                            Place::Vxm,
                            &[last, c],
                            vec![],
                        );
                    }
                    let last = self.apply_tail(&mut gb, last, r, j, tail);
                    self.write_end(&mut gb, last, out.at(r, j), out.dtype, tail);
                    let g = self.finish(gb);
                    self.planes[p].accs[acc].last_emit = Some(MemberRef {
                        group: g,
                        member: e,
                    });
                }
            }
        }
        Ok(())
    }
}
