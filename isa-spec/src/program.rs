//! The program format: the contract between compiler and simulator.
//!
//! A [`Program`] holds the chip it was compiled for, per-queue instruction
//! lists, the initial memory image (weights and constants), where each graph
//! input and output lives in SRAM, the provenance of every instruction (the
//! graph node it came from) and the dependence edges the compiler scheduled
//! against. Its binary form is a magic header, a version and a
//! [postcard](https://docs.rs/postcard) body; its text form is `.lpa`
//! assembly ([`crate::asm`]). Both are checked by [`Program::validate`] on
//! load, so the simulator never meets a malformed program.

use crate::config::{ChipConfig, SliceKind};
use crate::isa::{Opcode, Operand, Typing, Unit};
use crate::{DType, Instr, Values};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Version of the program format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 5;

/// Largest REPEAT count.
pub const MAX_REPEAT: i64 = 1 << 16;

/// Largest number of instruction issues (REPEATs expanded) a program may
/// make; [`Program::issue_times`] refuses longer programs rather than
/// allocating without bound.
pub const MAX_ISSUES: usize = 1 << 26;

/// Magic bytes opening a binary program (`.lpb`).
pub const MAGIC: &[u8; 8] = b"LPUPROG\0";

/// Identifies one instruction queue: the ICU's own queue, or queue `index`
/// of the slice at `slice`. Printed `icu`, `mem@3`, `vxm@47.2`, `mxm@0.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueId {
    /// Unit kind of the slice ([`Unit::Icu`] for the ICU queue).
    pub unit: Unit,
    /// Slice position (0 for the ICU queue).
    pub slice: u16,
    /// Queue within the slice.
    pub index: u8,
}

impl QueueId {
    /// The ICU's own queue, which issues NOTIFY.
    pub const ICU: QueueId = QueueId {
        unit: Unit::Icu,
        slice: 0,
        index: 0,
    };

    /// Parses the printed form.
    pub fn parse(s: &str) -> Option<QueueId> {
        if s == "icu" {
            return Some(QueueId::ICU);
        }
        let (unit, rest) = s.split_once('@')?;
        let unit = match unit {
            "mem" => Unit::Mem,
            "vxm" => Unit::Vxm,
            "mxm" => Unit::Mxm,
            "sxm" => Unit::Sxm,
            _ => return None,
        };
        let (slice, index) = match rest.split_once('.') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => (rest.parse().ok()?, 0),
        };
        Some(QueueId { unit, slice, index })
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Unit::Icu => f.write_str("icu"),
            Unit::Mem => write!(f, "mem@{}", self.slice),
            u => write!(f, "{}@{}.{}", u, self.slice, self.index),
        }
    }
}

/// What a dependence edge orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepKind {
    /// The consumer's first source stream carries the producer's result: the
    /// value must arrive exactly when the consumer issues.
    Src,
    /// The same for the second source stream.
    Src2,
    /// The consumer issues at least `gap` cycles after the producer issued
    /// (gap may be negative). Used for SRAM, accumulator and weight-buffer
    /// ordering.
    Order(i32),
}

/// A dependence edge into an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dep {
    /// The producer's instruction id.
    pub on: u32,
    /// What it orders.
    pub kind: DepKind,
    /// For a stream dependence, which of the producer's output stream groups
    /// is read (0 except for `trn`, which writes several).
    pub group: u8,
}

/// A slot's dependence edges: a vector that holds one edge inline (most
/// slots have none or one), encoded as a `Vec<Dep>` is.
pub type Deps = smallvec::SmallVec<[Dep; 1]>;

/// One entry of a queue: an instruction with its id, provenance and
/// dependence edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Program-wide unique id, printed `i17`.
    pub id: u32,
    /// The instruction.
    pub instr: Instr,
    /// Index into [`Program::nodes`] of the graph node it came from.
    pub node: Option<u32>,
    /// Edges from the instructions it depends on (held inline up to one).
    pub deps: Deps,
}

/// The instruction list of one queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueProgram {
    /// Which queue.
    pub queue: QueueId,
    /// Its instructions in issue order.
    pub slots: Vec<Slot>,
}

/// A graph node, for provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op: String,
}

/// Where one vector lives in SRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VecLoc {
    /// MEM slice position.
    pub slice: u16,
    /// First address (the vector spans `dtype.bytes()` addresses).
    pub addr: u32,
}

/// Where a graph input or output lives: the tensor viewed as `rows` x `cols`
/// (cols = the last dimension), each row split into vectors of `lanes`
/// elements (the last one zero-padded), vector `(r, j)` at
/// `vectors[r * vectors_per_row + j]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type in SRAM.
    pub dtype: DType,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Rows of the 2-D view.
    pub rows: usize,
    /// Columns of the 2-D view.
    pub cols: usize,
    /// Vector locations, row-major.
    pub vectors: Vec<VecLoc>,
    /// Storage order of the axes: the tensor is stored as its transpose by
    /// this permutation (`[0, 2, 3, 1]`: an NCHW tensor stored channels-last,
    /// NHWC), and `rows x cols` is the 2-D view of the permuted shape. Empty
    /// means the identity (row-major in the declared shape). The host
    /// delivers and receives tensors in the declared shape; the permutation
    /// is the host's layout conversion, as a deployment's input pipeline
    /// would do it.
    pub layout: Vec<usize>,
    /// The shape the declared row-major tensor is viewed as before `layout`
    /// permutes it (same element count); empty means `shape`. With
    /// `[N, C, H/2, 2, W/2, 2]` and layout `[0, 2, 4, 3, 5, 1]` an image is
    /// stored space-to-depth: one row per 2x2 pixel block, its 4C values
    /// across the lanes.
    pub view: Vec<usize>,
}

impl Binding {
    /// The shape the layout permutes: `view`, or `shape` when it is empty.
    pub fn base_shape(&self) -> &[usize] {
        if self.view.is_empty() {
            &self.shape
        } else {
            &self.view
        }
    }

    /// The shape as stored: the base shape permuted by `layout`.
    pub fn storage_shape(&self) -> Vec<usize> {
        let base = self.base_shape();
        if self.layout.is_empty() {
            base.to_vec()
        } else {
            self.layout.iter().map(|&a| base[a]).collect()
        }
    }

    /// For each element of the stored tensor (row-major in
    /// [`Binding::storage_shape`]), its index in the declared row-major
    /// tensor; `None` for the identity layout.
    pub fn storage_gather(&self) -> Option<Vec<usize>> {
        if self.layout.is_empty() || self.layout.iter().enumerate().all(|(i, &a)| i == a) {
            return None;
        }
        let base = self.base_shape();
        let n = base.len();
        let mut strides = vec![1usize; n];
        for i in (0..n.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * base[i + 1];
        }
        let st = self.storage_shape();
        let total: usize = st.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0usize; n];
        for _ in 0..total {
            out.push(
                idx.iter()
                    .zip(&self.layout)
                    .map(|(i, &a)| i * strides[a])
                    .sum(),
            );
            for d in (0..n).rev() {
                idx[d] += 1;
                if idx[d] < st[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Some(out)
    }

    /// Vectors per row for a vector length of `lanes`.
    pub fn vectors_per_row(&self, lanes: usize) -> usize {
        self.cols.div_ceil(lanes).max(1)
    }
}

/// A computed tensor the simulator can capture as it is written, for
/// `--check`'s node-by-node comparison: where the tensor lives and which
/// graph node's instructions write it. It is not part of the program format:
/// the compiler hands probes to an in-process simulation only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Where the tensor lives (its name, type, shape and vectors).
    pub binding: Binding,
    /// Index into [`Program::nodes`] of the node whose writes hold the
    /// tensor's final value (the producer, or for an alias such as a Reshape
    /// the node that computed the storage it shares).
    pub writer: u32,
}

/// One vector of the initial memory image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemInit {
    /// Where it goes.
    pub at: VecLoc,
    /// Its elements (exactly `lanes` of them); one byte string in the
    /// binary form.
    #[serde(with = "crate::le_bytes")]
    pub values: Values,
}

/// A compiled program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Name of the model it was compiled from.
    pub model: String,
    /// The chip it was compiled for.
    pub chip: ChipConfig,
    /// Graph nodes, for provenance.
    pub nodes: Vec<NodeInfo>,
    /// Permutation tables used by `perm`.
    pub perm_tables: Vec<Vec<u16>>,
    /// Graph inputs.
    pub inputs: Vec<Binding>,
    /// Graph outputs.
    pub outputs: Vec<Binding>,
    /// Instruction queues, in a canonical order (ICU first, then by slice and
    /// queue index).
    #[serde(
        serialize_with = "crate::chunked::serialize::<_, _, 1>",
        deserialize_with = "crate::chunked::deserialize_queues"
    )]
    pub queues: Vec<QueueProgram>,
    /// Initial SRAM contents.
    #[serde(
        serialize_with = "crate::chunked::serialize::<_, _, 4096>",
        deserialize_with = "crate::chunked::deserialize"
    )]
    pub memory: Vec<MemInit>,
}

/// A writer that keeps the first error of the one it wraps
/// ([`Program::write_to`]).
struct KeepError<W> {
    w: W,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> std::io::Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf).map_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            self.error.get_or_insert(e);
            copy
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// A program that is malformed or inconsistent with its chip.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// Not a binary program, or a damaged one.
    #[error("{0}")]
    Decode(String),
    /// Decodes but breaks a rule of the format.
    #[error("invalid program: {0}")]
    Invalid(String),
}

/// Values by instruction id. `lpc` numbers a program's instructions about
/// `0..n`, so a table indexed by id serves them with no hashing; a program
/// whose ids spread far wider than their count (written by hand) gets a map
/// instead, so memory stays proportional to the instructions. The table
/// holds the values bare, with one presence bit per id beside them: an
/// `Option<u64>` table is twice the size, and with it the simulator's
/// timing-only run of ResNet-50, which looks up each order dependence's
/// producer by id, took 245-252 ms instead of 226-231 ms.
#[derive(Clone, Debug)]
pub struct IdMap<T> {
    dense: Vec<T>,
    /// Bit `id % 64` of word `id / 64`: whether `dense[id]` is set.
    present: Vec<u64>,
    sparse: BTreeMap<u32, T>,
    /// Ids below this go in `dense`, which grows to hold them
    /// ([`IdMap::growing`]); for a presized map, its length.
    limit: usize,
}

impl<T: Copy + Default> IdMap<T> {
    /// An empty map sized for `count` ids, the largest `max_id`.
    pub fn with_ids(count: usize, max_id: u32) -> IdMap<T> {
        let len = if max_id as usize <= 2 * count + 1024 {
            max_id as usize + 1
        } else {
            0
        };
        IdMap {
            dense: vec![T::default(); len],
            present: vec![0; len.div_ceil(64)],
            sparse: BTreeMap::new(),
            limit: len,
        }
    }

    /// An empty map that grows as ids arrive: a table for ids below
    /// `limit`, a map above (for a caller that does not know the largest
    /// id ahead, such as one filling it as instructions issue).
    pub fn growing(limit: usize) -> IdMap<T> {
        IdMap {
            dense: Vec::new(),
            present: Vec::new(),
            sparse: BTreeMap::new(),
            limit,
        }
    }

    /// A map of the `(id, value)` pairs (a later pair for the same id wins).
    pub fn from_pairs(pairs: impl Iterator<Item = (u32, T)> + Clone) -> IdMap<T> {
        let (count, max_id) = pairs
            .clone()
            .fold((0, 0), |(n, m), (id, _)| (n + 1, m.max(id)));
        let mut map = IdMap::with_ids(count, max_id);
        for (id, v) in pairs {
            map.insert(id, v);
        }
        map
    }

    /// Sets `id`'s value; `false` if `id` already had one (now replaced).
    pub fn insert(&mut self, id: u32, v: T) -> bool {
        let i = id as usize;
        if i >= self.limit {
            return self.sparse.insert(id, v).is_none();
        }
        if i >= self.dense.len() {
            self.dense.resize(i + 1, T::default());
            self.present.resize((i + 1).div_ceil(64), 0);
        }
        self.dense[i] = v;
        let (word, bit) = (&mut self.present[i / 64], 1u64 << (i % 64));
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    /// `id`'s value.
    pub fn get(&self, id: u32) -> Option<T> {
        let i = id as usize;
        if i >= self.limit {
            return self.sparse.get(&id).copied();
        }
        let word = self.present.get(i / 64)?;
        (word & (1u64 << (i % 64)) != 0).then(|| self.dense[i])
    }
}

/// When one instruction issues (from [`Program::issue_times`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    /// Cycle of issue.
    pub cycle: u64,
    /// Index into [`Program::queues`].
    pub queue: u32,
    /// Index into that queue's slots.
    pub slot: u32,
    /// 0 for the instruction itself, k for its k-th REPEAT.
    pub repeat: u32,
}

impl Program {
    /// Encodes the binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Serialising plain data into a Vec cannot fail; serialised in
        // place (a second copy of a ResNet-50 program is 118 MB).
        postcard::to_extend(self, out).unwrap_or_default()
    }

    /// Writes the binary form ([`Program::to_bytes`]'s bytes) to `w`
    /// without holding it in memory.
    pub fn write_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        // postcard reports a failed write as "the serialize buffer is
        // full"; the writer's own error (a full disk) is the one to show.
        let mut kept = KeepError { w, error: None };
        match postcard::to_io(self, &mut kept) {
            Ok(_) => std::io::Write::flush(&mut kept),
            Err(e) => Err(kept
                .error
                .take()
                .unwrap_or_else(|| std::io::Error::other(e))),
        }
    }

    /// Decodes and validates the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ProgramError> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| ProgramError::Decode("not an lpu binary program (bad magic)".into()))?;
        if body.len() < 4 {
            return Err(ProgramError::Decode("truncated program header".into()));
        }
        let version = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        if version != FORMAT_VERSION {
            return Err(ProgramError::Decode(format!(
                "program format version {version}, this build reads version {FORMAT_VERSION}"
            )));
        }
        let (p, rest): (Program, &[u8]) = postcard::take_from_bytes(&body[4..])
            .map_err(|e| ProgramError::Decode(format!("damaged program body: {e}")))?;
        if !rest.is_empty() {
            return Err(ProgramError::Decode(format!(
                "{} trailing bytes after the program",
                rest.len()
            )));
        }
        p.validate()?;
        Ok(p)
    }

    /// Number of instructions other than NOP, SYNC and NOTIFY.
    pub fn instruction_count(&self) -> usize {
        self.queues
            .iter()
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op.info().unit != Unit::Icu)
            .count()
    }

    /// Checks every rule of the format against the embedded chip.
    pub fn validate(&self) -> Result<(), ProgramError> {
        let chip = &self.chip;
        chip.validate()
            .map_err(|e| ProgramError::Invalid(e.to_string()))?;
        let slices = chip.slices();
        let lanes = chip.lanes() as usize;
        let err = |m: String| Err(ProgramError::Invalid(m));
        let mut seen_queues = BTreeSet::new();
        // (As u16, saturating: a stream group index is a u8, and a small
        // table stays in cache.)
        let groups_of = |s: &Slot| -> u16 {
            if s.instr.op.writes_stream() {
                s.instr.dst_groups().try_into().unwrap_or(u16::MAX)
            } else {
                0
            }
        };
        // The slots' own rules, queue by queue on all cores: the first
        // broken one of each queue (its index and message), and each
        // slot's id and output stream groups, in a compact list the
        // sequential pass below reads instead of the slots.
        type Checked = (Option<(usize, String)>, Vec<(u32, u16)>);
        let checked_queues: Vec<Checked> = self
            .queues
            .par_iter()
            .map(|q| {
                let error = q.slots.iter().enumerate().find_map(|(k, s)| {
                    let prev = k.checked_sub(1).map(|p| &q.slots[p].instr);
                    self.check_slot(q.queue, s, prev, lanes)
                        .err()
                        .map(|m| (k, format!("queue {}, instruction i{}: {m}", q.queue, s.id)))
                });
                let ids = q.slots.iter().map(|s| (s.id, groups_of(s))).collect();
                (error, ids)
            })
            .collect();
        // Output stream groups by instruction id, filled in as the ids are
        // checked (an id met twice is an error).
        let (count, max_id) = checked_queues
            .iter()
            .flat_map(|(_, ids)| ids)
            .fold((0, 0), |(n, m), &(id, _)| (n + 1, m.max(id)));
        let mut outputs = IdMap::with_ids(count, max_id);
        // Reported as a walk in queue order would meet them: a queue's own
        // rules, then per slot a reused id before the slot's rules.
        for (q, (slot_error, ids)) in self.queues.iter().zip(checked_queues) {
            if !seen_queues.insert(q.queue) {
                return err(format!("queue {} appears twice", q.queue));
            }
            if q.queue.unit != Unit::Icu {
                let Some(kind) = slices.get(q.queue.slice as usize) else {
                    return err(format!(
                        "queue {}: no slice at position {}",
                        q.queue, q.queue.slice
                    ));
                };
                if kind.unit() != q.queue.unit {
                    return err(format!(
                        "queue {}: the slice at position {} is a {kind} slice",
                        q.queue, q.queue.slice
                    ));
                }
                if q.queue.index >= chip.queues_per_slice(*kind) {
                    return err(format!(
                        "queue {}: a {kind} slice has {} queues",
                        q.queue,
                        chip.queues_per_slice(*kind)
                    ));
                }
            } else if q.queue != QueueId::ICU {
                return err(format!("queue {}: malformed ICU queue id", q.queue));
            }
            let checked = slot_error.as_ref().map_or(ids.len(), |e| e.0 + 1);
            for &(id, groups) in &ids[..checked] {
                if !outputs.insert(id, groups) {
                    return err(format!("instruction id i{id} is used twice"));
                }
            }
            if let Some((_, m)) = slot_error {
                return err(m);
            }
        }
        // Every edge names an instruction and one of its output groups (the
        // first broken edge in queue order; queues checked on all cores).
        let edge_error = |q: &QueueProgram| {
            q.slots.iter().find_map(|s| {
                s.deps.iter().find_map(|d| {
                    let Some(groups) = outputs.get(d.on) else {
                        return Some(format!(
                            "queue {}, instruction i{}: depends on unknown instruction i{}",
                            q.queue, s.id, d.on
                        ));
                    };
                    let stream = matches!(d.kind, DepKind::Src | DepKind::Src2);
                    ((stream && u16::from(d.group) >= groups) || (!stream && d.group != 0)).then(|| {
                        format!(
                            "queue {}, instruction i{}: reads stream group {} of i{}, which writes {groups}",
                            q.queue, s.id, d.group, d.on
                        )
                    })
                })
            })
        };
        let edge_errors: Vec<Option<String>> = self.queues.par_iter().map(edge_error).collect();
        if let Some(m) = edge_errors.into_iter().flatten().next() {
            return err(m);
        }
        let mem = |at: &VecLoc, width: usize, what: &str| -> Result<(), ProgramError> {
            if slices.get(at.slice as usize) != Some(&SliceKind::Mem) {
                return err(format!("{what}: position {} is not a MEM slice", at.slice));
            }
            check_addr(chip, at.addr as i64, width)
                .map_err(|m| ProgramError::Invalid(format!("{what}: {m}")))
        };
        for m in &self.memory {
            mem(&m.at, m.values.dtype().bytes(), "memory image")?;
            if m.values.len() != lanes {
                return err(format!(
                    "memory image at mem@{}:{:#x} has {} elements, expected {lanes}",
                    m.at.slice,
                    m.at.addr,
                    m.values.len()
                ));
            }
        }
        let elements = |dims: &[usize]| dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        for b in self.inputs.iter().chain(&self.outputs) {
            let Some(n) = elements(&b.shape) else {
                return err(format!(
                    "binding '{}': shape {:?} has more elements than fit a usize",
                    b.name, b.shape
                ));
            };
            if !b.view.is_empty() && elements(&b.view) != Some(n) {
                return err(format!(
                    "binding '{}': view {:?} does not hold the {:?} tensor's elements",
                    b.name, b.view, b.shape
                ));
            }
            if !b.layout.is_empty() {
                let rank = b.base_shape().len();
                let mut seen = vec![false; rank];
                let ok = b.layout.len() == rank
                    && b.layout
                        .iter()
                        .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
                if !ok {
                    return err(format!(
                        "binding '{}': layout {:?} is not a permutation of the {} axes",
                        b.name, b.layout, rank
                    ));
                }
            }
            if b.rows.checked_mul(b.cols) != Some(n) {
                return err(format!(
                    "binding '{}': rows x cols does not match shape {:?}",
                    b.name, b.shape
                ));
            }
            if b.vectors.len() != b.rows * b.vectors_per_row(lanes) {
                return err(format!("binding '{}': wrong number of vectors", b.name));
            }
            for v in &b.vectors {
                mem(v, b.dtype.bytes(), &format!("binding '{}'", b.name))?;
            }
        }
        for (i, t) in self.perm_tables.iter().enumerate() {
            if t.len() != lanes || t.iter().any(|x| *x as usize >= lanes) {
                return err(format!(
                    "permutation table {i} must list {lanes} lanes below {lanes}"
                ));
            }
        }
        Ok(())
    }

    fn check_slot(
        &self,
        q: QueueId,
        s: &Slot,
        prev: Option<&Instr>,
        lanes: usize,
    ) -> Result<(), String> {
        let chip = &self.chip;
        let i = &s.instr;
        i.check_shape()?;
        let info = i.op.info();
        if i.op == Opcode::Transpose && i.arg2 != chip.lanes_per_superlane as i64 {
            return Err(format!(
                "trn transposes {0} x {0} blocks: rows must be {0}, the lanes per superlane",
                chip.lanes_per_superlane
            ));
        }
        let srcs = s.deps.iter().filter(|d| d.kind == DepKind::Src).count();
        let srcs2 = s.deps.iter().filter(|d| d.kind == DepKind::Src2).count();
        if (srcs != 0 && srcs != i.src_groups()) || srcs2 > 1 {
            return Err(format!(
                "{} names {srcs} producer(s) for a source of {} stream group(s)",
                info.mnemonic,
                i.src_groups()
            ));
        }
        if q.unit == Unit::Icu && !matches!(i.op, Opcode::Nop | Opcode::Notify) {
            return Err(format!("{} cannot run on the ICU queue", info.mnemonic));
        }
        if q.unit != Unit::Icu && i.op == Opcode::Notify {
            return Err("notify runs only on the ICU queue".into());
        }
        if info.unit != Unit::Icu && info.unit != q.unit {
            return Err(format!("{} is a {} instruction", info.mnemonic, info.unit));
        }
        if info.unit == Unit::Mxm && info.queue != q.index {
            return Err(format!(
                "{} runs on MXM queue {} of its plane",
                info.mnemonic, info.queue
            ));
        }
        if let Some(n) = s.node {
            if n as usize >= self.nodes.len() {
                return Err(format!("node index {n} out of range"));
            }
        }
        let streams = chip.streams_per_direction as usize;
        for (st, w) in [
            (i.src, i.src_width()),
            (i.src2, i.src_width()),
            (i.dst, i.dst_width() * i.dst_groups()),
        ] {
            if let Some(st) = st {
                if st.id as usize + w > streams {
                    return Err(format!(
                        "stream {st} with width {w} passes the last stream s{}",
                        streams - 1
                    ));
                }
            }
        }
        let ty_ok = match i.op {
            Opcode::Exp | Opcode::Tanh | Opcode::Rsqrt => i.ty.is_float(),
            Opcode::Quantize => i.ty.is_float() && !i.to.is_float(),
            Opcode::Dequantize => !i.ty.is_float() && i.to == DType::F32,
            Opcode::Matmul | Opcode::LoadWeights => chip.mxm.dtypes.contains(&i.ty),
            Opcode::Emit => i.ty != DType::I8,
            Opcode::NarrowConvert => {
                crate::narrow::Format::from_code(i.arg).is_some_and(|f| f.container() == i.to)
            }
            _ => true,
        };
        if !ty_ok || (info.typing == Typing::Two && i.op == Opcode::Convert && i.ty == i.to) {
            return Err(format!(
                "types {}/{} not allowed for {}",
                i.ty, i.to, info.mnemonic
            ));
        }
        for o in info.operands {
            let bad = match o {
                Operand::Count if i.op == Opcode::Repeat => !(1..=MAX_REPEAT).contains(&i.arg),
                Operand::Count => !(1..=1 << 40).contains(&i.arg),
                Operand::Stride => !(1..=1 << 20).contains(&i.arg2),
                Operand::Addr => {
                    // A gather may read any vector of its window.
                    let vectors = i.gather_window().map_or(1, |(_, n)| n.max(1) as usize);
                    check_addr(chip, i.arg, vectors * i.ty.bytes())?;
                    false
                }
                Operand::Lo => i32::try_from(i.arg2).is_err(),
                Operand::Window => i.gather_window().is_none_or(|(_, n)| n == 0),
                Operand::Row => !(0..chip.mxm.size as i64).contains(&i.arg),
                Operand::Rows if i.op == Opcode::Transpose => {
                    i.arg2 != chip.lanes_per_superlane as i64
                }
                Operand::Rows => !(1..=chip.mxm.size as i64 - i.arg).contains(&i.arg2),
                Operand::Acc => !(0..chip.mxm.accumulators as i64).contains(&i.arg),
                Operand::Shift => i.arg.unsigned_abs() as usize > lanes,
                Operand::Table => !(0..self.perm_tables.len() as i64).contains(&i.arg),
                Operand::Zp => i32::try_from(i.arg2).is_err(),
                Operand::Sat => !(0..=1).contains(&i.arg2),
                Operand::Format => crate::narrow::Format::from_code(i.arg).is_none(),
                Operand::Scale => !(i.imm.is_finite() && i.imm > 0.0),
                _ => false,
            };
            if bad {
                return Err(format!("operand {o:?} out of range in {}", info.mnemonic));
            }
        }
        if i.op == Opcode::Repeat {
            match prev {
                Some(p) if p.op.info().unit != Unit::Icu => {}
                _ => return Err("repeat must follow a non-control instruction".into()),
            }
        }
        Ok(())
    }

    /// The cycle each instruction issues at, in (cycle, queue, slot) order,
    /// derived from the queue lists alone: NOPs, SYNC/NOTIFY and REPEAT.
    pub fn issue_times(&self) -> Result<Vec<Issue>, String> {
        let notify_delay = self.chip.delay(Opcode::Notify) as u64;
        // The ICU queue runs first: its NOTIFYs release the parked queues.
        let mut notifies = Vec::new();
        let mut out = Vec::new();
        let order: Vec<usize> = (0..self.queues.len())
            .filter(|&k| self.queues[k].queue == QueueId::ICU)
            .chain((0..self.queues.len()).filter(|&k| self.queues[k].queue != QueueId::ICU))
            .collect();
        // Where each queue's issues start in `out`.
        let mut runs = vec![0..0; self.queues.len()];
        for &k in &order {
            let start = out.len();
            let q = &self.queues[k];
            let mut t: u64 = 0;
            let mut last_issue = 0u64;
            for (j, s) in q.slots.iter().enumerate() {
                let i = &s.instr;
                match i.op {
                    Opcode::Sync => {
                        let n = notifies.iter().find(|&&n| n >= t).copied().ok_or_else(|| {
                            format!("queue {}: instruction i{} (sync) waits for a notify that never comes", q.queue, s.id)
                        })?;
                        t = n + notify_delay;
                    }
                    Opcode::Nop => t += i.issue_cycles(),
                    Opcode::Repeat => {
                        let (n, d) = (i.arg as u64, i.arg2 as u64);
                        if out.len() as u64 + n > MAX_ISSUES as u64 {
                            return Err(format!("program makes more than {MAX_ISSUES} issues"));
                        }
                        for r in 1..=n {
                            out.push(Issue {
                                cycle: last_issue + r * d,
                                queue: k as u32,
                                slot: j as u32 - 1,
                                repeat: r as u32,
                            });
                        }
                        last_issue += n * d;
                        t = last_issue + 1;
                    }
                    _ => {
                        if i.op == Opcode::Notify {
                            notifies.push(t);
                        }
                        out.push(Issue {
                            cycle: t,
                            queue: k as u32,
                            slot: j as u32,
                            repeat: 0,
                        });
                        last_issue = t;
                        t += 1;
                    }
                }
            }
            runs[k] = start..out.len();
        }
        Ok(sort_issues(out, &runs))
    }

    /// Index from instruction id to (queue index, slot index).
    pub fn slot_index(&self) -> BTreeMap<u32, (usize, usize)> {
        let mut m = BTreeMap::new();
        for (qi, q) in self.queues.iter().enumerate() {
            for (si, s) in q.slots.iter().enumerate() {
                m.insert(s.id, (qi, si));
            }
        }
        m
    }
}

/// `issues`, which hold queue `k`'s issues as the run `issues[runs[k]]`
/// (the runs in any order), in (cycle, queue, slot, repeat) order.
///
/// A queue's own issues never go back in time and share a cycle only as
/// the REPEATs of one slot, already in repeat order; so scattering the runs
/// queue by queue in index order into per-cycle buckets (a stable counting
/// sort on the cycle) gives the sorted order in linear time. The scatter
/// goes in two passes: first into blocks of cycles (a few dozen write
/// streams, each sequential), then each block, small enough to stay in
/// cache, into its cycles. One pass straight to the cycles wrote every
/// issue to another cache line, half of the whole sort's time. A program
/// whose last cycle is far beyond its issue count (long NOPs) is sorted
/// by comparison instead, so the buckets stay small.
fn sort_issues(issues: Vec<Issue>, runs: &[std::ops::Range<usize>]) -> Vec<Issue> {
    sort_issues_with(issues, runs, SORT_BLOCK_ISSUES)
}

/// [`sort_issues`] with blocks of about `block_issues` issues (small in
/// tests, for many blocks).
fn sort_issues_with(
    mut issues: Vec<Issue>,
    runs: &[std::ops::Range<usize>],
    block_issues: usize,
) -> Vec<Issue> {
    let n = issues.len();
    let last = issues.iter().map(|i| i.cycle).max().unwrap_or(0);
    if last > 4 * n as u64 + (1 << 16) {
        issues.sort_unstable();
        return issues;
    }
    // `first[c]`: where cycle c's issues begin in the output.
    let mut first = vec![0usize; last as usize + 2];
    for iss in &issues {
        first[iss.cycle as usize + 1] += 1;
    }
    for c in 1..first.len() {
        first[c] += first[c - 1];
    }
    // Blocks of `1 << shift` cycles holding at most `block_issues`
    // issues on average (at least one cycle each).
    let cycles = last as usize + 1;
    let mut shift = 0;
    while 1usize << (shift + 1) <= cycles
        && (n as u128) << (shift + 1) <= block_issues as u128 * cycles as u128
    {
        shift += 1;
    }
    let blocks = (cycles >> shift) + 1;
    // Pass 1: each block's issues, in queue order, where the block's
    // cycles begin in the output.
    let mut next: Vec<usize> = (0..blocks)
        .map(|b| first[(b << shift).min(cycles)])
        .collect();
    let empty = Issue {
        cycle: 0,
        queue: 0,
        slot: 0,
        repeat: 0,
    };
    let mut blocked = vec![empty; n];
    for run in runs {
        for iss in &issues[run.clone()] {
            let at = &mut next[iss.cycle as usize >> shift];
            blocked[*at] = *iss;
            *at += 1;
        }
    }
    // Pass 2: within each block, by cycle (stable: the queue order holds).
    for iss in &blocked {
        let at = &mut first[iss.cycle as usize];
        issues[*at] = *iss;
        *at += 1;
    }
    issues
}

/// Issues per block of cycles in [`sort_issues`]' first pass (about
/// 0.75 MiB of issues: a block's cycles stay in the L2 cache).
const SORT_BLOCK_ISSUES: usize = 1 << 15;

/// Checks that a `width`-address access at `addr` stays inside one bank.
pub fn check_addr(chip: &ChipConfig, addr: i64, width: usize) -> Result<(), String> {
    let per_bank = chip.mem.addresses_per_bank as i64;
    let total = chip.addresses_per_slice() as i64;
    if addr < 0 || addr + width as i64 > total {
        return Err(format!(
            "address {addr:#x} + {width} passes the slice's {total:#x} addresses (SRAM overflow)"
        ));
    }
    if addr / per_bank != (addr + width as i64 - 1) / per_bank {
        return Err(format!(
            "access at {addr:#x} of {width} addresses crosses a bank boundary"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_map_dense_and_sparse() {
        // Ids about 0..n: a table; ids far apart: a map. Both behave alike.
        for ids in [vec![0u32, 1, 2, 5], vec![7, 1 << 30, 3, u32::MAX]] {
            let mut m = IdMap::with_ids(ids.len(), ids.iter().copied().max().unwrap_or(0));
            for (k, &id) in ids.iter().enumerate() {
                assert!(m.insert(id, k));
            }
            assert!(!m.insert(ids[1], 9), "a reused id");
            assert_eq!(m.get(ids[1]), Some(9));
            assert_eq!(m.get(ids[2]), Some(2));
            assert_eq!(m.get(4), None);
            let pairs = IdMap::from_pairs(ids.iter().map(|&id| (id, id)));
            assert!(ids.iter().all(|&id| pairs.get(id) == Some(id)));
        }
    }

    /// A growing map answers like a presized one, its table growing for
    /// ids below the limit (past a 64-id word of presence bits) and a map
    /// taking the rest; a value of 0 (the table's filler) is still "set".
    #[test]
    fn id_map_grows_as_ids_arrive() {
        let mut m: IdMap<u64> = IdMap::growing(200);
        for (id, v) in [
            (3, 30),
            (130, 0),
            (1, 10),
            (199, 7),
            (200, 8),
            (u32::MAX, 9),
        ] {
            assert!(m.insert(id, v), "{id}");
        }
        assert!(!m.insert(130, 5), "a reused id");
        let got: Vec<_> = [0, 1, 2, 3, 64, 130, 198, 199, 200, 201, u32::MAX]
            .iter()
            .map(|&id| m.get(id))
            .collect();
        assert_eq!(
            got,
            [
                None,
                Some(10),
                None,
                Some(30),
                None,
                Some(5),
                None,
                Some(7),
                Some(8),
                None,
                Some(9)
            ]
        );
    }

    proptest! {
        /// The counting sort (in blocks of any size) agrees with a
        /// comparison sort for queues whose issues never go back in time,
        /// whatever order the runs were made in.
        #[test]
        fn sort_issues_matches_a_comparison_sort(
            steps in proptest::collection::vec(proptest::collection::vec((0u64..4, 0u32..3), 0..40), 1..6),
            icu_at in 0usize..6,
            block_issues in 0usize..64,
        ) {
            let mut issues = Vec::new();
            let mut runs = vec![0..0; steps.len()];
            let first = icu_at.min(steps.len() - 1);
            let order: Vec<usize> = std::iter::once(first)
                .chain((0..steps.len()).filter(|&k| k != first))
                .collect();
            for &k in &order {
                let start = issues.len();
                let (mut t, mut slot) = (0u64, 0u32);
                for &(gap, repeats) in &steps[k] {
                    t += gap;
                    issues.push(Issue { cycle: t, queue: k as u32, slot, repeat: 0 });
                    // REPEATs of this slot at the same cycle (a stride of 0).
                    for r in 1..=repeats {
                        issues.push(Issue { cycle: t, queue: k as u32, slot, repeat: r });
                    }
                    slot += 2;
                }
                runs[k] = start..issues.len();
            }
            let mut expected = issues.clone();
            expected.sort_unstable();
            prop_assert_eq!(sort_issues_with(issues.clone(), &runs, block_issues), expected.clone());
            prop_assert_eq!(sort_issues(issues, &runs), expected);
        }
    }
}
