//! The cycle engine: executes a [`Program`] cycle-accurately with real values.
//!
//! Issue cycles follow from the queue lists alone ([`Program::issue_times`]),
//! so the engine walks the issues in cycle order. Results that land later
//! (SRAM writes, weight-buffer loads and installs, accumulator updates) are
//! queued as effects and applied at the start of the cycle they land on,
//! before that cycle's issues read anything.
//!
//! Streams are exact wavefronts: a value written at position `x` on cycle
//! `t` flowing east passes position `p` on cycle `t + (p - x)`, so each write
//! is stored once under its *diagonal* `t - x` (west: `t + x`). A read at
//! position `y` on cycle `r` looks up diagonal `r - y` and takes the write
//! nearest upstream of `y` (a later write on the same diagonal overwrote the
//! earlier value from its position on). Nothing is shifted per cycle.

use crate::hazard::{Hazard, HazardKind};
use crate::vxm;
use lpu_graph::Tensor;
use lpu_isa::asm::format_instr;
use lpu_isa::program::{Binding, DepKind, IdMap, Issue, Probe, VecLoc};
use lpu_isa::{
    ChipConfig, DType, Dir, Instr, Opcode, Program, QueueId, SliceKind, StreamRef, Unit, Values,
};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// Record a trace event per issued instruction.
    pub trace: bool,
    /// Timing only: compute no values (no SRAM contents, no arithmetic, no
    /// outputs). Cycles, counters, traces and every hazard that does not
    /// depend on values (bank conflicts, stream collisions, wrong or absent
    /// producers and types, uninitialized reads, MXM state, missing outputs)
    /// are exactly those of a full run; `outputs` stays empty.
    pub timing_only: bool,
    /// Computed tensors to capture as they are written
    /// (see [`Probe`]); each one that
    /// is fully written by its writer node appears in [`Outcome::probed`].
    pub probes: Vec<Probe>,
}

/// One issued instruction, for traces.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// Issue cycle.
    pub cycle: u64,
    /// Queue that issued it.
    pub queue: QueueId,
    /// Index of the queue in the program.
    pub queue_index: u32,
    /// Instruction id.
    pub id: u32,
    /// Assembly text.
    pub asm: String,
    /// Graph node index.
    pub node: Option<u32>,
    /// Functional delay: its result lands at `cycle + delay`.
    pub delay: u64,
    /// 0, or k for the k-th REPEAT of it.
    pub repeat: u32,
}

/// Counters gathered during a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Instructions issued per queue (NOTIFY included, NOP and SYNC not).
    pub issued: BTreeMap<QueueId, u64>,
    /// Per graph node: first issue cycle and last landing cycle.
    pub node_spans: Vec<Option<(u64, u64)>>,
    /// Per graph node: instructions issued.
    pub node_instructions: Vec<u64>,
    /// SRAM bytes holding data at the end (image, inputs and writes).
    pub sram_bytes: u64,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Cycles from the start-up NOTIFY until the last result lands, plus the
    /// superlane skew.
    pub cycles: u64,
    /// Graph outputs by name (empty when a hazard stopped the run).
    pub outputs: BTreeMap<String, Tensor>,
    /// The first hazard, if one stopped the run.
    pub hazard: Option<Hazard>,
    /// Counters.
    pub stats: Stats,
    /// Trace events, when asked for.
    pub trace: Vec<TraceEvent>,
    /// The probed tensors ([`SimOptions::probes`]) by name, each as its
    /// writer node last wrote it; a probe with a vector its writer never
    /// wrote is left out.
    pub probed: BTreeMap<String, Tensor>,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The inputs do not match the program's bindings.
    #[error("{0}")]
    Input(String),
    /// The program cannot be timed (a SYNC with no NOTIFY).
    #[error("{0}")]
    Program(String),
}

struct SliceMem {
    bytes: Vec<u8>,
    written: Vec<bool>,
}

#[derive(Default)]
struct Plane {
    staging: Vec<Option<Values>>,
    active: Option<Vec<Values>>,
    /// `active` widened to f32 when it is fp16 (values runs only).
    wide: Option<vxm::WideWeights>,
    /// The type of every row of `active`, `None` when they differ.
    active_type: Option<DType>,
    accs: Vec<Option<Values>>,
}

enum Effect {
    Sram {
        slice: u16,
        addr: u32,
        values: Values,
        node: Option<u32>,
    },
    Staging {
        plane: u16,
        row: usize,
        v: Values,
    },
    Install {
        plane: u16,
        rows: Vec<Values>,
    },
    Acc {
        plane: u16,
        acc: usize,
        v: Values,
        add: bool,
    },
}

/// Effects waiting for the cycle they land on: slot `k` of `slots` holds
/// those of cycle `first + k`, in the order they were queued (a ring of
/// reused vectors instead of a map entry and a fresh vector per cycle).
#[derive(Default)]
struct Pending {
    first: u64,
    slots: std::collections::VecDeque<Vec<Effect>>,
    /// Emptied slot vectors, kept for reuse.
    spare: Vec<Vec<Effect>>,
}

impl Pending {
    /// Queues `effect` to land on `cycle`.
    fn push(&mut self, cycle: u64, effect: Effect) {
        if self.slots.is_empty() {
            self.first = cycle;
        }
        // Only an effect that lands on the cycle just applied (a zero
        // delay) comes before `first`.
        while cycle < self.first {
            let v = self.spare.pop().unwrap_or_default();
            self.slots.push_front(v);
            self.first -= 1;
        }
        let k = (cycle - self.first) as usize;
        while self.slots.len() <= k {
            let v = self.spare.pop().unwrap_or_default();
            self.slots.push_back(v);
        }
        self.slots[k].push(effect);
    }

    /// The effects of the earliest cycle not after `upto` that has any, in
    /// queue order; hand the vector back with [`Pending::recycle`].
    fn pop_due(&mut self, upto: u64) -> Option<Vec<Effect>> {
        while self.first <= upto {
            let v = self.slots.pop_front()?;
            self.first += 1;
            if !v.is_empty() {
                return Some(v);
            }
            self.spare.push(v);
        }
        None
    }

    /// Returns an emptied vector from [`Pending::pop_due`].
    fn recycle(&mut self, v: Vec<Effect>) {
        if v.is_empty() {
            self.spare.push(v);
        }
    }
}

struct StreamRec {
    x: u16,
    write: u64,
    part: u8,
}

/// The writes on one stream diagonal: almost always one, kept inline (a
/// vector per diagonal was a tenth of a run in the allocator).
enum Recs {
    One(StreamRec),
    Many(Vec<StreamRec>),
}

impl Recs {
    fn as_slice(&self) -> &[StreamRec] {
        match self {
            Recs::One(r) => std::slice::from_ref(r),
            Recs::Many(v) => v,
        }
    }

    fn push(&mut self, rec: StreamRec) {
        match self {
            Recs::Many(v) => v.push(rec),
            Recs::One(_) => {
                let Recs::One(first) = std::mem::replace(self, Recs::Many(Vec::new())) else {
                    return;
                };
                *self = Recs::Many(vec![first, rec]);
            }
        }
    }
}

struct Written {
    values: Values,
    producer: u32,
    /// Which of the producer's output stream groups this is.
    group: u8,
}

/// The stream writes still readable, by write id: ids are handed out in
/// order, so a ring from the oldest one kept (a pruned one is `None`)
/// instead of a map insert and lookup per stream value.
#[derive(Default)]
struct Writes {
    first: u64,
    list: std::collections::VecDeque<Option<Written>>,
}

impl Writes {
    fn get(&self, id: u64) -> Option<&Written> {
        let k = id.checked_sub(self.first)?;
        self.list.get(k as usize)?.as_ref()
    }

    /// Records write `id`, a later id than any pushed before (an id taken
    /// by a write that failed is left empty).
    fn push(&mut self, id: u64, w: Written) {
        while self.first + (self.list.len() as u64) < id {
            self.list.push_back(None);
        }
        self.list.push_back(Some(w));
    }

    /// Drops every write but those in `live`.
    fn keep(&mut self, live: impl Iterator<Item = u64>) {
        let mut keep = vec![false; self.list.len()];
        for id in live {
            if let Some(k) = id
                .checked_sub(self.first)
                .and_then(|k| keep.get_mut(k as usize))
            {
                *k = true;
            }
        }
        for (w, k) in self.list.iter_mut().zip(keep) {
            if !k {
                *w = None;
            }
        }
        while self.list.front().is_some_and(Option::is_none) {
            self.list.pop_front();
            self.first += 1;
        }
    }
}

pub(crate) type Fail = (HazardKind, String, Option<StreamRef>);

/// The stream records of every (direction, stream, wavefront diagonal),
/// in a ring of `len` diagonals per stream: a diagonal's slot holds the
/// diagonal it was last written for, and a slot of another diagonal reads
/// as empty. At cycle `t` a read touches diagonals within one chip width
/// of `t` (east `t - x`, west `t + x`) and a write, which lands its
/// functional delay later, within one chip width of `t + delay`; so with
/// more diagonals than two chip widths plus the longest delay, a slot is
/// only reused once its old diagonal can no longer be read: a fixed table
/// instead of a map insert per stream byte (which was a tenth of a
/// timing-only run).
struct StreamRing {
    len: usize,
    streams: usize,
    slots: Vec<(i64, Option<Recs>)>,
}

impl StreamRing {
    fn new(streams: usize, positions: usize, max_delay: usize) -> StreamRing {
        let len = (2 * positions + 2 + max_delay).next_power_of_two();
        StreamRing {
            len,
            streams,
            slots: (0..2 * streams * len).map(|_| (i64::MIN, None)).collect(),
        }
    }

    /// By direction, then diagonal, then stream: the streams of one
    /// multi-byte value (consecutive ids, one diagonal) share cache lines.
    /// `None` for a stream the chip does not have.
    fn index(&self, dir: Dir, id: u8, diag: i64) -> Option<usize> {
        let d = usize::from(dir == Dir::West);
        let diag = diag.rem_euclid(self.len as i64) as usize;
        ((id as usize) < self.streams).then(|| (d * self.len + diag) * self.streams + id as usize)
    }

    fn get(&self, dir: Dir, id: u8, diag: i64) -> Option<&Recs> {
        match self.slots.get(self.index(dir, id, diag)?) {
            Some((d, recs)) if *d == diag => recs.as_ref(),
            _ => None,
        }
    }

    /// The slot of `(dir, id, diag)`, emptied first when it held another
    /// diagonal.
    fn slot(&mut self, dir: Dir, id: u8, diag: i64) -> Option<&mut Option<Recs>> {
        let i = self.index(dir, id, diag)?;
        let (d, recs) = self.slots.get_mut(i)?;
        if *d != diag {
            *d = diag;
            *recs = None;
        }
        Some(recs)
    }

    /// Records still readable at cycle `now` (see [`Engine::prune`]);
    /// drops the others.
    fn live(&mut self, now: i64, last: i64) -> impl Iterator<Item = &Recs> {
        let half = self.streams * self.len;
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, (d, recs))| {
                let alive = if i < half {
                    *d + last >= now
                } else {
                    *d >= now
                };
                if !alive {
                    *recs = None;
                }
                recs.as_ref()
            })
    }
}

/// The machine state and per-instruction execution, shared by the static
/// engine and the dynamic mode ([`crate::dynamic`]).
pub(crate) struct Engine<'p> {
    p: &'p Program,
    chip: &'p ChipConfig,
    lanes: usize,
    slices: Vec<SliceKind>,
    mem: Vec<Option<SliceMem>>,
    planes: BTreeMap<u16, Plane>,
    effects: Pending,
    streams: StreamRing,
    writes: Writes,
    next_write: u64,
    /// Per (slice, bank), `slice * banks + bank`: the cycle its port is free
    /// again and the instruction holding it.
    banks: Vec<(u64, u32)>,
    /// Functional delay of each opcode (by `Opcode as usize`).
    delays: Vec<u64>,
    /// Dynamic mode: stream results latched by (producer id, output group)
    /// instead of flowing as wavefronts; `None` in static mode.
    pub(crate) latched: Option<HashMap<(u32, u8), Values>>,
    /// Dynamic mode: extra cycles before the issuing `write` lands (memory
    /// latency); 0 in static mode.
    pub(crate) extra: u64,
    /// Timing only ([`SimOptions::timing_only`]): values are empty vectors
    /// that keep only their type, SRAM keeps only which addresses hold data.
    timing: bool,
    /// The probes being captured, when asked for.
    capture: Option<Capture>,
}

/// Captures probed tensors vector by vector as their writer node writes
/// them: the last write wins, so a tensor whose storage is later reused
/// keeps the value its own node left.
struct Capture {
    /// Probe and vector indices of each vector start address.
    at: HashMap<(u16, u32), Vec<(usize, usize)>>,
    /// Writer node of each probe.
    writer: Vec<u32>,
    /// Bytes per element of each probe (planes per vector write).
    width: Vec<usize>,
    /// Captured byte planes of each probe's vectors.
    got: Vec<Vec<Option<Vec<Vec<u8>>>>>,
}

impl Capture {
    fn new(probes: &[Probe]) -> Capture {
        let mut at: HashMap<(u16, u32), Vec<(usize, usize)>> = HashMap::default();
        for (p, probe) in probes.iter().enumerate() {
            for (v, loc) in probe.binding.vectors.iter().enumerate() {
                at.entry((loc.slice, loc.addr)).or_default().push((p, v));
            }
        }
        Capture {
            at,
            writer: probes.iter().map(|p| p.writer).collect(),
            width: probes.iter().map(|p| p.binding.dtype.bytes()).collect(),
            got: probes
                .iter()
                .map(|p| vec![None; p.binding.vectors.len()])
                .collect(),
        }
    }

    /// A write by `node` of `values` at `(slice, addr)` landed.
    fn record(&mut self, slice: u16, addr: u32, node: u32, values: &Values) {
        let Some(hits) = self.at.get(&(slice, addr)) else {
            return;
        };
        let width = values.dtype().bytes();
        for &(p, v) in hits {
            if self.writer[p] == node && self.width[p] == width {
                self.got[p][v] = Some(values.to_byte_planes());
            }
        }
    }
}

/// Runs a program on the given inputs (one tensor per input binding).
///
/// Order dependences (`DepKind::Order`) are checked as their consumers
/// issue ([`DepCheck::AsIssued`]); a program that violates one, or meets
/// another hazard that a violation might precede, runs again with every
/// edge checked first ([`DepCheck::Upfront`]), so the report is the same
/// either way: the run stops at the earliest violation.
pub fn simulate(
    p: &Program,
    inputs: &BTreeMap<String, Tensor>,
    opts: &SimOptions,
) -> Result<Outcome, SimError> {
    simulate_beside(p, inputs, opts, || ()).0
}

/// [`simulate`], running `beside` on another core while the engine walks
/// the issues (`lpsim` works out the lower bound and the energy's counts
/// there: they depend on the program alone); `beside` runs once, also
/// when the run fails.
///
/// With values, the walk is much the longer, so the issue times and the
/// engine's initial state (the memory image stored, the inputs loaded) are
/// made first, on both cores, and `beside` runs during the walk. A
/// timing-only walk takes about as long as `beside` is expected to, so
/// `beside` starts at once, beside all of the run.
pub fn simulate_beside<R: Send>(
    p: &Program,
    inputs: &BTreeMap<String, Tensor>,
    opts: &SimOptions,
    beside: impl FnOnce() -> R + Send,
) -> (Result<Outcome, SimError>, R) {
    let new = || Engine::new(p, inputs, opts.timing_only);
    let issue_times = || p.issue_times().map_err(SimError::Program);
    // The issue times and the engine's initial state, on both cores or
    // one after the other.
    let setup = |both: bool| -> Result<(Vec<Issue>, Engine<'_>), SimError> {
        let (issues, engine) = if both {
            rayon::join(issue_times, new)
        } else {
            (issue_times(), new())
        };
        Ok((issues?, engine?))
    };
    let first_run = |(issues, e): (Vec<Issue>, Engine<'_>)| {
        run(p, &issues, e, opts, DepCheck::AsIssued).map(|o| (o, issues))
    };
    let (first, r) = if opts.timing_only {
        rayon::join(|| setup(false).and_then(first_run), beside)
    } else {
        match setup(true) {
            Ok(ready) => rayon::join(|| first_run(ready), beside),
            Err(e) => (Err(e), beside()),
        }
    };
    // A run whose order dependences must be checked first runs again (its
    // partial outcome, a trace perhaps, dropped first).
    let outcome = match first {
        Ok(((partial, true), issues)) => {
            drop(partial);
            new().and_then(|e| run(p, &issues, e, opts, DepCheck::Upfront).map(|(o, _)| o))
        }
        other => other.map(|((o, _), _)| o),
    };
    (outcome, r)
}

/// How [`run`] checks the order dependences.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DepCheck {
    /// Every edge before the run ([`Engine::check_deps`]): the run stops
    /// before the cycle of the earliest violation.
    Upfront,
    /// Each edge as its consumer first issues, against its producer's first
    /// issue (a producer that has not issued yet, behind a negative gap, is
    /// checked after the run). A correct program's slots are then read once,
    /// in issue order, while they are in cache; a violation, or any other
    /// hazard, asks for the run to be repeated [`DepCheck::Upfront`].
    AsIssued,
}

/// One run of [`simulate`], and whether it must be repeated
/// [`DepCheck::Upfront`] (never with `Upfront`; the outcome is then a
/// partial one, to be discarded).
fn run(
    p: &Program,
    issues: &[Issue],
    mut e: Engine<'_>,
    opts: &SimOptions,
    check: DepCheck,
) -> Result<(Outcome, bool), SimError> {
    if !opts.probes.is_empty() && !opts.timing_only {
        e.capture = Some(Capture::new(&opts.probes));
    }
    let mut stats = Stats {
        node_spans: vec![None; p.nodes.len()],
        node_instructions: vec![0; p.nodes.len()],
        ..Stats::default()
    };
    let mut trace = Vec::new();
    let dep_violation = match check {
        DepCheck::Upfront => e.check_deps(issues),
        DepCheck::AsIssued => None,
    };
    // Each instruction's first issue cycle, as it issues (`lpc` numbers
    // instructions about in issue order, from 0; ids are unique, as
    // `Program::validate` requires).
    let mut first: IdMap<u64> = IdMap::growing(2 * issues.len() + 1024);
    // Order edges whose producer had not issued when the consumer did:
    // (producer, consumer's cycle, gap).
    let mut later: Vec<(u32, u64, i32)> = Vec::new();
    let mut recheck = false;
    let mut end = 0u64;
    let mut hazard = None;
    let mut next_prune = 512u64;
    // Issues per queue index, gathered into `stats.issued` at the end.
    let mut issued = vec![0u64; p.queues.len()];
    for (k, iss) in issues.iter().enumerate() {
        if k % WARM_BATCH == 0 {
            let batch = &issues[k..(k + WARM_BATCH).min(issues.len())];
            warm_slots(p, batch);
            if !opts.timing_only {
                e.warm_sram(batch);
            }
        }
        let t = iss.cycle;
        e.apply_effects(t);
        if let Some((c, h)) = &dep_violation {
            if *c <= t {
                hazard = Some(h.clone());
                break;
            }
        }
        if t >= next_prune {
            e.prune(t);
            next_prune = t + 512;
        }
        let q = &p.queues[iss.queue as usize];
        let slot = &q.slots[iss.slot as usize];
        if check == DepCheck::AsIssued && iss.repeat == 0 {
            first.insert(slot.id, t);
            for d in &slot.deps {
                let DepKind::Order(gap) = d.kind else {
                    continue;
                };
                match first.get(d.on) {
                    Some(tp) if (t as i64) < tp as i64 + gap as i64 => recheck = true,
                    Some(_) => {}
                    None => later.push((d.on, t, gap)),
                }
            }
            if recheck {
                break;
            }
        }
        let delay = e.delays[slot.instr.op as usize];
        end = end.max(t + delay);
        issued[iss.queue as usize] += 1;
        if let Some(n) = slot.node {
            let span = &mut stats.node_spans[n as usize];
            *span = Some(match span {
                Some((a, b)) => ((*a).min(t), (*b).max(t + delay)),
                None => (t, t + delay),
            });
            stats.node_instructions[n as usize] += 1;
        }
        if opts.trace {
            trace.push(TraceEvent {
                cycle: t,
                queue: q.queue,
                queue_index: iss.queue,
                id: slot.id,
                asm: instr_text(slot),
                node: slot.node,
                delay,
                repeat: iss.repeat,
            });
        }
        if let Err((kind, message, stream)) = e.execute(iss, t) {
            hazard = Some(e.hazard(iss, t, kind, message, stream));
            break;
        }
    }
    if check == DepCheck::AsIssued {
        // A producer that issued after its consumer (or never: no edge).
        recheck |= hazard.is_some()
            || later.iter().any(|&(on, t, gap)| {
                first
                    .get(on)
                    .is_some_and(|tp| (t as i64) < tp as i64 + gap as i64)
            });
        if recheck {
            // Discarded by `simulate`: no outputs to fetch.
            return Ok((
                Outcome {
                    cycles: 0,
                    outputs: BTreeMap::new(),
                    hazard,
                    stats,
                    trace,
                    probed: BTreeMap::new(),
                },
                true,
            ));
        }
    }
    for (q, n) in p.queues.iter().zip(issued) {
        if n > 0 {
            *stats.issued.entry(q.queue).or_insert(0) += n;
        }
    }
    if hazard.is_none() {
        e.apply_effects(u64::MAX);
        if let Some((_, h)) = dep_violation {
            hazard = Some(h);
        }
    }
    let mut outputs = BTreeMap::new();
    if hazard.is_none() {
        match e.fetch_outputs(p, end) {
            Ok(o) => outputs = o,
            Err(h) => hazard = Some(*h),
        }
    }
    stats.sram_bytes = e.sram_bytes();
    let probed = match (&e.capture, &hazard) {
        (Some(c), None) => e.probed(&opts.probes, c),
        _ => BTreeMap::new(),
    };
    Ok((
        Outcome {
            cycles: end + e.chip.superlane_skew() as u64,
            outputs,
            hazard,
            stats,
            trace,
            probed,
        },
        false,
    ))
}

/// Issues whose slots [`warm_slots`] brings into cache at a time.
const WARM_BATCH: usize = 512;

/// Reads the slots of `issues` (both ends of each, which may span two cache
/// lines, and the first dependence edge, which is on the heap) and throws
/// the reads away. Consecutive issues come from about a hundred queues in
/// turn, so the walk met a cache miss at every slot, one at a time behind
/// the long work of each issue; in this short loop the loads are
/// independent and overlap, and the walk then finds the slots in cache
/// (ResNet-50 timing-only: the walk 310 ms to 156 ms). Safe Rust has no
/// prefetch instruction; this is the portable equivalent.
fn warm_slots(p: &Program, issues: &[Issue]) {
    let mut sum = 0u32;
    for iss in issues {
        let slot = &p.queues[iss.queue as usize].slots[iss.slot as usize];
        let dep = slot.deps.first().map_or(0, |d| d.on);
        sum = sum.wrapping_add(slot.id ^ slot.node.unwrap_or(0) ^ slot.instr.op as u32 ^ dep);
    }
    std::hint::black_box(sum);
}

/// The assembly text of a slot, with producer ids on its sources.
pub fn instr_text(slot: &lpu_isa::program::Slot) -> String {
    format!("i{} {}", slot.id, lpu_isa::asm::format_slot(slot))
}

impl<'p> Engine<'p> {
    /// Reads one byte per cache line of the SRAM rows that the MEM `read`s
    /// among `issues` will load, and throws the reads away, as
    /// [`warm_slots`] does for the slots: the weights are read once each,
    /// so every row met a cache miss, one at a time behind the work of
    /// each issue. (The rows' contents may still change before the reads
    /// issue; this only brings their lines into cache.)
    fn warm_sram(&self, issues: &[Issue]) {
        let lanes = self.lanes;
        let mut sum = 0u8;
        for iss in issues {
            let q = &self.p.queues[iss.queue as usize];
            if q.queue.unit != Unit::Mem {
                continue;
            }
            let i = &q.slots[iss.slot as usize].instr;
            if i.op != Opcode::Read {
                continue;
            }
            let Some(m) = self
                .mem
                .get(q.queue.slice as usize)
                .and_then(Option::as_ref)
            else {
                continue;
            };
            let a = i.arg as usize;
            let rows = m.bytes.get(a * lanes..(a + i.ty.bytes()) * lanes);
            for b in rows.unwrap_or_default().iter().step_by(64) {
                sum ^= *b;
            }
        }
        std::hint::black_box(sum);
    }

    /// A machine holding the program's memory image and the inputs.
    pub(crate) fn new(
        p: &'p Program,
        inputs: &BTreeMap<String, Tensor>,
        timing: bool,
    ) -> Result<Engine<'p>, SimError> {
        let mut e = Engine {
            p,
            chip: &p.chip,
            lanes: p.chip.lanes() as usize,
            slices: p.chip.slices(),
            mem: (0..p.chip.slices().len()).map(|_| None).collect(),
            planes: BTreeMap::new(),
            effects: Pending::default(),
            streams: StreamRing::new(
                p.chip.streams_per_direction as usize,
                p.chip.slices().len(),
                lpu_isa::isa::OPCODES
                    .iter()
                    .map(|o| p.chip.delay(o.op) as usize)
                    .max()
                    .unwrap_or(0),
            ),
            writes: Writes::default(),
            next_write: 0,
            banks: vec![(0, 0); p.chip.slices().len() * p.chip.mem.banks as usize],
            delays: lpu_isa::isa::OPCODES
                .iter()
                .map(|o| p.chip.delay(o.op) as u64)
                .collect(),
            latched: None,
            extra: 0,
            timing,
            capture: None,
        };
        for m in &p.memory {
            if timing {
                e.mark_written(m.at, m.values.dtype().bytes());
            } else {
                e.store(m.at, &m.values);
            }
        }
        e.load_inputs(inputs)?;
        Ok(e)
    }

    /// Bytes of SRAM holding data (image, inputs and writes).
    pub(crate) fn sram_bytes(&self) -> u64 {
        self.mem
            .iter()
            .flatten()
            .map(|m| m.written.iter().filter(|w| **w).count() as u64)
            .sum::<u64>()
            * self.lanes as u64
    }

    pub(crate) fn hazard(
        &self,
        iss: &Issue,
        t: u64,
        kind: HazardKind,
        message: String,
        stream: Option<StreamRef>,
    ) -> Hazard {
        let q = &self.p.queues[iss.queue as usize];
        let slot = &q.slots[iss.slot as usize];
        Hazard {
            kind,
            cycle: t,
            queue: q.queue.to_string(),
            slice: q.queue.slice,
            instr: format!("i{}", slot.id),
            asm: format_instr(&slot.instr, &[], &[]),
            node: slot
                .node
                .and_then(|n| self.p.nodes.get(n as usize))
                .map(|n| n.name.clone()),
            stream: stream.map(|s| s.to_string()),
            message,
        }
    }

    /// Finds the earliest issue that breaks an order dependence (the first
    /// in issue order among those of the earliest cycle).
    fn check_deps(&self, issues: &[Issue]) -> Option<(u64, Hazard)> {
        let queues = &self.p.queues;
        // Each slot's first issue cycle (`u64::MAX`: never issued), flat in
        // queue order: written from the issue list without touching the
        // slots, then read queue by queue.
        let mut offset = Vec::with_capacity(queues.len() + 1);
        offset.push(0usize);
        for q in queues {
            offset.push(offset[offset.len() - 1] + q.slots.len());
        }
        let mut first = vec![u64::MAX; offset[queues.len()]];
        for iss in issues.iter().filter(|i| i.repeat == 0) {
            first[offset[iss.queue as usize] + iss.slot as usize] = iss.cycle;
        }
        // Instruction id -> first issue cycle, for the instructions issued.
        let cycle_of = IdMap::from_pairs(
            queues
                .iter()
                .flat_map(|q| &q.slots)
                .zip(&first)
                .filter(|(_, &c)| c != u64::MAX)
                .map(|(s, &c)| (s.id, c)),
        );
        // The earliest violation as (cycle, queue, slot, producer id, gap).
        let mut worst: Option<(u64, usize, usize, u32, i32)> = None;
        for (k, q) in queues.iter().enumerate() {
            for (j, slot) in q.slots.iter().enumerate() {
                let t = first[offset[k] + j];
                if t == u64::MAX || worst.is_some_and(|w| (w.0, w.1) <= (t, k)) {
                    continue;
                }
                for d in &slot.deps {
                    let DepKind::Order(gap) = d.kind else {
                        continue;
                    };
                    let Some(tp) = cycle_of.get(d.on) else {
                        continue;
                    };
                    if (t as i64) < tp as i64 + gap as i64 {
                        worst = Some((t, k, j, d.on, gap));
                        break;
                    }
                }
            }
        }
        let (t, k, j, on, gap) = worst?;
        let tp = cycle_of.get(on)?;
        let producer = queues.iter().flat_map(|q| &q.slots).find(|s| s.id == on)?;
        let need = tp as i64 + gap as i64;
        let msg = format!(
            "issued at cycle {t} but depends on i{on} `{}` (issued at cycle {tp}) with a gap of {gap}: it may issue at cycle {need} at the earliest",
            format_instr(&producer.instr, &[], &[])
        );
        let iss = Issue {
            cycle: t,
            queue: k as u32,
            slot: j as u32,
            repeat: 0,
        };
        Some((
            t,
            self.hazard(&iss, t, HazardKind::DependenceViolated, msg, None),
        ))
    }

    fn slice_mem(&mut self, slice: u16) -> &mut SliceMem {
        let n = self.chip.addresses_per_slice() as usize;
        let bytes = if self.timing { 0 } else { n * self.lanes };
        self.mem[slice as usize].get_or_insert_with(|| SliceMem {
            bytes: vec![0; bytes],
            written: vec![false; n],
        })
    }

    /// Stores `v` (one vector of `lanes` elements) at `at`: byte plane `k`
    /// at address `at.addr + k`.
    fn store(&mut self, at: VecLoc, v: &Values) {
        let w = v.dtype().bytes();
        if self.timing {
            self.mark_written(at, w);
            return;
        }
        let lanes = self.lanes;
        let a = at.addr as usize;
        let m = self.slice_mem(at.slice);
        let stored = v.write_byte_planes(&mut m.bytes[a * lanes..(a + w) * lanes]);
        assert!(stored, "a stored vector holds one element per lane");
        m.written[a..a + w].fill(true);
    }

    /// Timing only: records that `width` addresses from `at` hold data.
    fn mark_written(&mut self, at: VecLoc, width: usize) {
        let m = self.slice_mem(at.slice);
        m.written[at.addr as usize..at.addr as usize + width].fill(true);
    }

    fn load(&mut self, at: VecLoc, ty: DType) -> Option<Values> {
        let lanes = self.lanes;
        let m = self.mem[at.slice as usize].as_ref()?;
        let w = ty.bytes();
        let a = at.addr as usize;
        if !m.written[a..a + w].iter().all(|x| *x) {
            return None;
        }
        if self.timing {
            return Some(Values::zeros(ty, 0));
        }
        let planes: [&[u8]; 4] = std::array::from_fn(|k| {
            m.bytes
                .get((a + k) * lanes..(a + k + 1) * lanes)
                .unwrap_or_default()
        });
        Values::from_byte_planes(ty, &planes[..w])
    }

    /// The result of gather `i` on MEM slice `x` for the int32 `map`
    /// (empty in a timing-only run): every vector of the window must hold
    /// data, whichever lanes the map selects, so that a timing-only run
    /// finds the same hazards as a run with values.
    fn gather(&self, x: u16, i: &Instr, map: &Values) -> Result<Values, Fail> {
        let (lo, n) = i.gather_window().unwrap_or((0, 0));
        let w = i.ty.bytes();
        let a = i.arg as usize;
        let end = a + n as usize * w;
        let mem = self.mem.get(x as usize).and_then(Option::as_ref);
        let Some(m) = mem.filter(|m| m.written.get(a..end).is_some_and(|s| s.iter().all(|b| *b)))
        else {
            return Err((
                HazardKind::UninitializedRead,
                format!(
                    "gather of mem@{x}:{a:#x} ({n} vectors of {w} addresses), which does not all hold data yet"
                ),
                None,
            ));
        };
        if self.timing {
            return Ok(Values::zeros(i.ty, 0));
        }
        let lanes = self.lanes;
        let Values::I32(map) = map else {
            return Err((
                HazardKind::WrongProducer,
                format!("gather: the map is {}, not i32", map.dtype()),
                None,
            ));
        };
        let mut planes = vec![vec![0u8; lanes]; w];
        for (l, &v) in map.iter().enumerate().take(lanes) {
            let k = v as i64 - lo;
            if (0..n as i64).contains(&k) {
                let addr = a + k as usize * w;
                for (b, plane) in planes.iter_mut().enumerate() {
                    plane[l] = m.bytes.get((addr + b) * lanes + l).copied().unwrap_or(0);
                }
            }
        }
        let planes: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
        Values::from_byte_planes(i.ty, &planes).ok_or_else(|| {
            (
                HazardKind::WrongProducer,
                "gather: malformed vector".to_string(),
                None,
            )
        })
    }

    fn load_inputs(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<(), SimError> {
        for name in inputs.keys() {
            if !self.p.inputs.iter().any(|b| &b.name == name) {
                return Err(SimError::Input(format!(
                    "input '{name}' is not an input of model '{}'",
                    self.p.model
                )));
            }
        }
        for b in &self.p.inputs {
            let t = inputs.get(&b.name).ok_or_else(|| {
                SimError::Input(format!(
                    "missing input '{}' ({} {:?})",
                    b.name, b.dtype, b.shape
                ))
            })?;
            if t.dtype() != b.dtype || t.shape != b.shape {
                return Err(SimError::Input(format!(
                    "input '{}': expected {} {:?}, found {} {:?}",
                    b.name,
                    b.dtype,
                    b.shape,
                    t.dtype(),
                    t.shape
                )));
            }
            let vpr = b.vectors_per_row(self.lanes);
            if self.timing {
                for v in &b.vectors {
                    self.mark_written(*v, b.dtype.bytes());
                }
                continue;
            }
            let stored = match b.storage_gather() {
                Some(idx) => std::borrow::Cow::Owned(t.values.gather(&idx)),
                None => std::borrow::Cow::Borrowed(&t.values),
            };
            for r in 0..b.rows {
                for j in 0..vpr {
                    let start = r * b.cols + j * self.lanes;
                    let len = self.lanes.min(b.cols - j * self.lanes);
                    let v = stored.slice_padded_to(start, len, self.lanes);
                    self.store(b.vectors[r * vpr + j], &v);
                }
            }
        }
        Ok(())
    }

    /// Reads every graph output after the run; one that was never written
    /// is the `MissingOutput` hazard at cycle `end`.
    pub(crate) fn fetch_outputs(
        &mut self,
        p: &Program,
        end: u64,
    ) -> Result<BTreeMap<String, Tensor>, Box<Hazard>> {
        let mut outputs = BTreeMap::new();
        for b in &p.outputs {
            let t = self.fetch(b).map_err(|message| {
                Box::new(Hazard {
                    kind: HazardKind::MissingOutput,
                    cycle: end,
                    queue: "-".into(),
                    slice: 0,
                    instr: "-".into(),
                    asm: "-".into(),
                    node: None,
                    stream: None,
                    message,
                })
            })?;
            if let Some(t) = t {
                outputs.insert(b.name.clone(), t);
            }
        }
        Ok(outputs)
    }

    /// One output tensor (`None` in timing-only mode, once every vector is
    /// known to be written).
    pub(crate) fn fetch(&mut self, b: &Binding) -> Result<Option<Tensor>, String> {
        let vpr = b.vectors_per_row(self.lanes);
        if self.timing {
            // Only whether every vector was written.
            for (k, at) in b.vectors.iter().enumerate() {
                if self.load(*at, b.dtype).is_none() {
                    return Err(format!(
                        "output '{}' row {} vector {} at mem@{}:{:#x} was never written",
                        b.name,
                        k / vpr,
                        k % vpr,
                        at.slice,
                        at.addr
                    ));
                }
            }
            return Ok(None);
        }
        let mut parts: Vec<Values> = Vec::with_capacity(b.rows * vpr);
        for r in 0..b.rows {
            for j in 0..vpr {
                let at = b.vectors[r * vpr + j];
                let v = self.load(at, b.dtype).ok_or_else(|| {
                    format!(
                        "output '{}' row {r} vector {j} at mem@{}:{:#x} was never written",
                        b.name, at.slice, at.addr
                    )
                })?;
                parts.push(v);
            }
        }
        self.assemble(b, parts).map(Some)
    }

    /// The captured probes that were written whole, as tensors.
    fn probed(&self, probes: &[Probe], c: &Capture) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (probe, got) in probes.iter().zip(&c.got) {
            let b = &probe.binding;
            let vectors: Option<Vec<Values>> = got
                .iter()
                .map(|g| {
                    let planes: Vec<&[u8]> = g.as_ref()?.iter().map(Vec::as_slice).collect();
                    Values::from_byte_planes(b.dtype, &planes)
                })
                .collect();
            if let Some(t) = vectors.and_then(|v| self.assemble(b, v).ok()) {
                out.insert(b.name.clone(), t);
            }
        }
        out
    }

    /// A binding's tensor from its vectors (row-major, each `lanes` wide):
    /// drops the padding lanes and undoes the storage layout.
    fn assemble(&self, b: &Binding, vectors: Vec<Values>) -> Result<Tensor, String> {
        let vpr = b.vectors_per_row(self.lanes);
        if vectors.len() != b.rows * vpr {
            return Err(format!(
                "'{}': {} vectors for {} rows",
                b.name,
                vectors.len(),
                b.rows
            ));
        }
        let parts: Vec<Values> = vectors
            .iter()
            .enumerate()
            .map(|(k, v)| v.slice_padded(0, self.lanes.min(b.cols - (k % vpr) * self.lanes)))
            .collect();
        let bytes: Vec<u8> = parts.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut values = Values::from_le_bytes(b.dtype, &bytes).ok_or("output bytes")?;
        if let Some(idx) = b.storage_gather() {
            // Scatter the stored order back to the declared row-major order.
            let mut inverse = vec![0usize; idx.len()];
            for (k, &i) in idx.iter().enumerate() {
                inverse[i] = k;
            }
            values = values.gather(&inverse);
        }
        Tensor::new(b.shape.clone(), values).map_err(|e| e.to_string())
    }

    pub(crate) fn apply_effects(&mut self, upto: u64) {
        while let Some(mut due) = self.effects.pop_due(upto) {
            for eff in due.drain(..) {
                match eff {
                    Effect::Sram {
                        slice,
                        addr,
                        values,
                        node,
                    } => {
                        if let (Some(c), Some(n)) = (&mut self.capture, node) {
                            c.record(slice, addr, n, &values);
                        }
                        self.store(VecLoc { slice, addr }, &values)
                    }
                    Effect::Staging { plane, row, v } => {
                        let size = self.chip.mxm.size as usize;
                        let pl = self.planes.entry(plane).or_default();
                        pl.staging.resize(size, None);
                        pl.staging[row] = Some(v);
                    }
                    Effect::Install { plane, rows } => {
                        let pl = self.planes.entry(plane).or_default();
                        pl.wide = if self.timing {
                            None
                        } else {
                            vxm::WideWeights::new(&rows)
                        };
                        pl.active_type = vxm::uniform_dtype(&rows);
                        pl.active = Some(rows);
                    }
                    Effect::Acc { plane, acc, v, add } => {
                        let n = self.chip.mxm.accumulators as usize;
                        let pl = self.planes.entry(plane).or_default();
                        pl.accs.resize(n, None);
                        let slot = &mut pl.accs[acc];
                        match slot {
                            Some(old) if add => vxm::accumulate(old, v),
                            _ => *slot = Some(v),
                        }
                    }
                }
            }
            self.effects.recycle(due);
        }
    }

    fn prune(&mut self, now: u64) {
        let last = self.slices.len() as i64 - 1;
        let now = now as i64;
        let live = self
            .streams
            .live(now, last)
            .flat_map(Recs::as_slice)
            .map(|r| r.write);
        self.writes.keep(live);
    }

    /// The cycle the port of bank `bank` of MEM slice `slice` is free again.
    pub(crate) fn bank_free_at(&self, slice: u16, bank: u32) -> u64 {
        let banks = self.chip.mem.banks as usize;
        self.banks
            .get(slice as usize * banks + bank as usize)
            .map_or(0, |b| b.0)
    }

    fn diag(dir: Dir, t: u64, x: u16) -> i64 {
        match dir {
            Dir::East => t as i64 - x as i64,
            Dir::West => t as i64 + x as i64,
        }
    }

    fn write_stream(
        &mut self,
        s: StreamRef,
        x: u16,
        t: u64,
        values: Values,
        producer: (u32, u8),
    ) -> Result<(), Fail> {
        if let Some(l) = &mut self.latched {
            l.insert(producer, values);
            return Ok(());
        }
        let id = self.next_write;
        self.next_write += 1;
        let w = values.dtype().bytes();
        let diag = Self::diag(s.dir, t, x);
        for k in 0..w {
            let key = (s.dir, s.id + k as u8, diag);
            let rec = StreamRec {
                x,
                write: id,
                part: k as u8,
            };
            let Some(slot) = self.streams.slot(key.0, key.1, key.2) else {
                return Err((
                    HazardKind::StreamCollision,
                    format!("stream s{} does not exist", key.1),
                    Some(s),
                ));
            };
            let recs = match slot {
                None => {
                    *slot = Some(Recs::One(rec));
                    continue;
                }
                Some(r) => r,
            };
            if let Some(other) = recs.as_slice().iter().find(|r| r.x == x) {
                let prev = self
                    .writes
                    .get(other.write)
                    .map(|w| w.producer)
                    .unwrap_or(0);
                return Err((
                    HazardKind::StreamCollision,
                    format!("i{prev} wrote the same stream at the same position and cycle {t}"),
                    Some(s),
                ));
            }
            recs.push(rec);
        }
        self.writes.push(
            id,
            Written {
                values,
                producer: producer.0,
                group: producer.1,
            },
        );
        Ok(())
    }

    fn read_stream(
        &self,
        s: StreamRef,
        ty: DType,
        y: u16,
        r: u64,
        expect: Option<(u32, u8)>,
    ) -> Result<&Values, Fail> {
        if let Some(l) = &self.latched {
            let v = expect.and_then(|e| l.get(&e)).ok_or_else(|| {
                (
                    HazardKind::EmptyStream,
                    "dynamic mode: the operand has no producer edge, or its value was not latched"
                        .to_string(),
                    Some(s),
                )
            })?;
            if v.dtype() != ty {
                return Err((
                    HazardKind::WrongProducer,
                    format!("read a {} value as {ty}", v.dtype()),
                    Some(s),
                ));
            }
            return Ok(v);
        }
        let diag = Self::diag(s.dir, r, y);
        let mut found: Option<u64> = None;
        for k in 0..ty.bytes() {
            let recs = self.streams.get(s.dir, s.id + k as u8, diag);
            let best = recs.and_then(|v| {
                v.as_slice()
                    .iter()
                    .filter(|rec| match s.dir {
                        Dir::East => rec.x <= y,
                        Dir::West => rec.x >= y,
                    })
                    .max_by_key(|rec| match s.dir {
                        Dir::East => rec.x as i64,
                        Dir::West => -(rec.x as i64),
                    })
            });
            let Some(rec) = best else {
                return Err((
                    HazardKind::EmptyStream,
                    format!(
                        "stream s{}{} carries no value at position {y} on cycle {r}",
                        s.id + k as u8,
                        dir_char(s.dir)
                    ),
                    Some(s),
                ));
            };
            if rec.part != k as u8 || found.is_some_and(|f| f != rec.write) {
                let who = self.writes.get(rec.write).map(|w| w.producer).unwrap_or(0);
                return Err((
                    HazardKind::WrongProducer,
                    format!("the {ty} operand spans streams carrying parts of different values (i{who} among them)"),
                    Some(s),
                ));
            }
            found = Some(rec.write);
        }
        let w = found.and_then(|f| self.writes.get(f)).ok_or_else(|| {
            (
                HazardKind::EmptyStream,
                "stream value was lost".to_string(),
                Some(s),
            )
        })?;
        if let Some((e, g)) = expect {
            if (w.producer, w.group) != (e, g) {
                let name = |p: u32, g: u8| {
                    if g == 0 {
                        format!("i{p}")
                    } else {
                        format!("group {g} of i{p}")
                    }
                };
                return Err((
                    HazardKind::WrongProducer,
                    format!(
                        "read the value of {} where the value of {} was expected",
                        name(w.producer, w.group),
                        name(e, g)
                    ),
                    Some(s),
                ));
            }
        }
        if w.values.dtype() != ty {
            return Err((
                HazardKind::WrongProducer,
                format!("read a {} value as {ty}", w.values.dtype()),
                Some(s),
            ));
        }
        Ok(&w.values)
    }

    /// The value of the first (`DepKind::Src`) or second (`DepKind::Src2`)
    /// source stream of `slot`, read at position `x` on cycle `t` and
    /// checked against the producer its edge names.
    fn operand(
        &self,
        slot: &lpu_isa::program::Slot,
        which: DepKind,
        x: u16,
        t: u64,
    ) -> Result<&Values, Fail> {
        let i = &slot.instr;
        let s = if which == DepKind::Src { i.src } else { i.src2 }
            .ok_or_else(|| (HazardKind::EmptyStream, "missing source".into(), None))?;
        let expect = slot
            .deps
            .iter()
            .find(|dp| dp.kind == which)
            .map(|dp| (dp.on, dp.group));
        self.read_stream(s, i.src_type(), x, t, expect)
    }

    /// Reads the `src_groups()` vectors of a multi-group source (`lw`,
    /// `trn`): vector k on the k-th group of `src_width()` streams, checked
    /// against the k-th named producer.
    fn read_groups(
        &self,
        slot: &lpu_isa::program::Slot,
        x: u16,
        t: u64,
    ) -> Result<Vec<Values>, Fail> {
        let i = &slot.instr;
        let s = i
            .src
            .ok_or_else(|| (HazardKind::EmptyStream, "missing source".into(), None))?;
        let producers: Vec<(u32, u8)> = slot
            .deps
            .iter()
            .filter(|dp| dp.kind == DepKind::Src)
            .map(|dp| (dp.on, dp.group))
            .collect();
        let w = i.src_width();
        (0..i.src_groups())
            .map(|k| {
                let sk = StreamRef {
                    id: s.id + (k * w) as u8,
                    dir: s.dir,
                };
                self.read_stream(sk, i.ty, x, t, producers.get(k).copied())
                    .cloned()
            })
            .collect()
    }

    fn bank(&mut self, slice: u16, addr: u32, t: u64, w: u64, id: u32) -> Result<(), Fail> {
        let bank = addr / self.chip.mem.addresses_per_bank;
        let banks = self.chip.mem.banks as usize;
        let Some(e) = self.banks.get_mut(slice as usize * banks + bank as usize) else {
            return Err((
                HazardKind::BankConflict,
                format!("bank {bank} of mem@{slice} does not exist"),
                None,
            ));
        };
        if e.0 > t {
            return Err((
                HazardKind::BankConflict,
                format!(
                    "bank {bank} of mem@{slice} is busy with i{} until cycle {}",
                    e.1, e.0
                ),
                None,
            ));
        }
        *e = (t + w, id);
        Ok(())
    }

    pub(crate) fn execute(&mut self, iss: &Issue, t: u64) -> Result<(), Fail> {
        let q = &self.p.queues[iss.queue as usize];
        let slot = &q.slots[iss.slot as usize];
        let i: &Instr = &slot.instr;
        let x = q.queue.slice;
        let d = self.delays[i.op as usize];
        let dst = i.dst;
        let out = |e: &mut Self, v: Values| -> Result<(), Fail> {
            match dst {
                Some(s) => e.write_stream(s, x, t + d, v, (slot.id, 0)),
                None => Ok(()),
            }
        };
        match i.op {
            Opcode::Nop | Opcode::Sync | Opcode::Notify | Opcode::Repeat => Ok(()),
            Opcode::Read => {
                let at = VecLoc {
                    slice: x,
                    addr: i.arg as u32,
                };
                self.bank(x, at.addr, t, i.ty.bytes() as u64, slot.id)?;
                let v = self.load(at, i.ty).ok_or_else(|| {
                    (
                        HazardKind::UninitializedRead,
                        format!(
                            "read of mem@{x}:{:#x} ({} addresses), which holds no data yet",
                            at.addr,
                            i.ty.bytes()
                        ),
                        None,
                    )
                })?;
                out(self, v)
            }
            Opcode::Gather => {
                self.bank(x, i.arg as u32, t, i.ty.bytes() as u64, slot.id)?;
                let map = self.operand(slot, DepKind::Src, x, t)?;
                let v = self.gather(x, i, map)?;
                out(self, v)
            }
            Opcode::Write => {
                self.bank(x, i.arg as u32, t, i.ty.bytes() as u64, slot.id)?;
                let v = self.operand(slot, DepKind::Src, x, t)?.clone();
                self.effects.push(
                    t + d + self.extra,
                    Effect::Sram {
                        slice: x,
                        addr: i.arg as u32,
                        values: v,
                        node: slot.node,
                    },
                );
                Ok(())
            }
            Opcode::Add | Opcode::Sub | Opcode::Mul | Opcode::Max | Opcode::Min => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                let b = self.operand(slot, DepKind::Src2, x, t)?;
                let v =
                    vxm::binary(i.op, a, b).map_err(|m| (HazardKind::WrongProducer, m, None))?;
                out(self, v)
            }
            Opcode::AddImm | Opcode::MulImm => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                out(self, vxm::binary_imm(i.op, a, i.imm))
            }
            Opcode::Mov => {
                let a = self.operand(slot, DepKind::Src, x, t)?.clone();
                out(self, a)
            }
            Opcode::Relu
            | Opcode::Neg
            | Opcode::Abs
            | Opcode::Exp
            | Opcode::Tanh
            | Opcode::Rsqrt => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                out(self, vxm::unary(i.op, a))
            }
            Opcode::Convert => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                out(self, vxm::convert(a, i.to))
            }
            Opcode::NarrowConvert => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                let f = lpu_isa::narrow::Format::from_code(i.arg).ok_or_else(|| {
                    (
                        HazardKind::WrongProducer,
                        format!("unknown narrow format {}", i.arg),
                        None,
                    )
                })?;
                out(self, vxm::narrow_convert(a, f, i.arg2 != 0))
            }
            Opcode::Quantize => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                out(self, vxm::quantize(a, i.imm, i.arg2, i.to))
            }
            Opcode::Dequantize => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                out(self, vxm::dequantize(a, i.imm, i.arg2))
            }
            Opcode::LoadWeights => {
                // Row k arrives on the k-th stream group from `src` on.
                let rows = self.read_groups(slot, x, t)?;
                for (k, v) in rows.into_iter().enumerate() {
                    self.effects.push(
                        t + d,
                        Effect::Staging {
                            plane: x,
                            row: i.arg as usize + k,
                            v,
                        },
                    );
                }
                Ok(())
            }
            Opcode::InstallWeights => {
                let size = self.chip.mxm.size as usize;
                let pl = self.planes.entry(x).or_default();
                let mut staged = std::mem::take(&mut pl.staging);
                let ty = staged
                    .iter()
                    .flatten()
                    .next()
                    .map(|v| v.dtype())
                    .unwrap_or(DType::I8);
                staged.resize(size, None);
                let rows = staged
                    .into_iter()
                    .map(|r| {
                        r.unwrap_or_else(|| Values::zeros(ty, if self.timing { 0 } else { size }))
                    })
                    .collect();
                self.effects.push(t + d, Effect::Install { plane: x, rows });
                Ok(())
            }
            Opcode::Matmul => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                let lanes = self.lanes;
                let pl = self.planes.get(&x);
                let rows = pl.and_then(|pl| pl.active.as_ref()).ok_or_else(|| {
                    (
                        HazardKind::MxmState,
                        format!("mm on plane mxm@{x} before any weights were installed"),
                        None,
                    )
                })?;
                let wide = match pl.and_then(|pl| pl.wide.as_ref()) {
                    Some(w) if !self.timing => vxm::matvec_wide(a, w, lanes),
                    _ => None,
                };
                let v = match wide {
                    Some(v) => Ok(v),
                    None if self.timing => {
                        vxm::product_type(a.dtype(), pl.and_then(|pl| pl.active_type))
                            .map(|acc| Values::zeros(acc, 0))
                    }
                    None => vxm::matvec(a, rows, lanes),
                }
                .map_err(|m| (HazardKind::MxmState, m, None))?;
                self.effects.push(
                    t + d,
                    Effect::Acc {
                        plane: x,
                        acc: i.arg as usize,
                        v,
                        add: i.accumulate,
                    },
                );
                Ok(())
            }
            Opcode::Emit => {
                let pl = self.planes.entry(x).or_default();
                let acc = pl
                    .accs
                    .get(i.arg as usize)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| {
                        (
                            HazardKind::MxmState,
                            format!(
                                "emit of accumulator {} on mxm@{x}, which holds no result yet",
                                i.arg
                            ),
                            None,
                        )
                    })?;
                let v = match (acc.dtype(), i.ty) {
                    (DType::I32, DType::I32) | (DType::F32, DType::F32) => acc,
                    (DType::F32, DType::F16) => vxm::convert(&acc, DType::F16),
                    (a, b) => {
                        return Err((
                            HazardKind::MxmState,
                            format!("emit.{b} of a {a} accumulator"),
                            None,
                        ));
                    }
                };
                out(self, v)
            }
            Opcode::Shift | Opcode::Rotate => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                let v = if i.op == Opcode::Shift {
                    vxm::shift_lanes(a, i.arg)
                } else {
                    vxm::rotate_lanes(a, i.arg)
                };
                out(self, v)
            }
            Opcode::Transpose => {
                let ins = self.read_groups(slot, x, t)?;
                let n = ins.len();
                let lanes = self.lanes;
                let dst = i
                    .dst
                    .ok_or_else(|| (HazardKind::EmptyStream, "missing destination".into(), None))?;
                let w = i.dst_width();
                for k in 0..n {
                    let sk = StreamRef {
                        id: dst.id + (k * w) as u8,
                        dir: dst.dir,
                    };
                    if self.timing {
                        let v = Values::zeros(i.ty, 0);
                        self.write_stream(sk, x, t + d, v, (slot.id, k as u8))?;
                        continue;
                    }
                    // out[k][s*n + l] = in[l][s*n + k], superlane by superlane.
                    let bytes: Vec<u8> = (0..lanes)
                        .flat_map(|lane| {
                            let (sl, l) = (lane / n, lane % n);
                            let v = &ins[l];
                            v.slice_padded(sl * n + k, 1).to_le_bytes()
                        })
                        .collect();
                    let v = Values::from_le_bytes(i.ty, &bytes)
                        .ok_or_else(|| (HazardKind::WrongProducer, "transpose".into(), None))?;
                    self.write_stream(sk, x, t + d, v, (slot.id, k as u8))?;
                }
                Ok(())
            }
            Opcode::Permute => {
                let a = self.operand(slot, DepKind::Src, x, t)?;
                let table = &self.p.perm_tables[i.arg as usize];
                let v = vxm::move_lanes(a, |l| Some(table[l] as usize));
                out(self, v)
            }
        }
    }
}

fn dir_char(d: Dir) -> char {
    match d {
        Dir::East => 'e',
        Dir::West => 'w',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An effect tagged `tag` (in its row field), to follow the order.
    fn tagged(tag: usize) -> Effect {
        Effect::Staging {
            plane: 0,
            row: tag,
            v: Values::zeros(DType::I8, 0),
        }
    }

    fn tag_of(e: &Effect) -> usize {
        match e {
            Effect::Staging { row, .. } => *row,
            _ => usize::MAX,
        }
    }

    proptest! {
        /// `Pending` applies effects as a map from cycle to a list would:
        /// cycle by cycle, each cycle's in the order queued, including
        /// zero-delay effects queued for the cycle just applied.
        #[test]
        fn pending_effects_apply_like_a_map_by_cycle(
            steps in prop::collection::vec((0u64..3, prop::collection::vec(0u64..6, 0..4)), 1..40),
        ) {
            let mut pending = Pending::default();
            let mut model: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            let (mut now, mut tag) = (0u64, 0usize);
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for (advance, delays) in &steps {
                now += advance;
                while let Some(mut due) = pending.pop_due(now) {
                    got.extend(due.drain(..).map(|e| tag_of(&e)));
                    pending.recycle(due);
                }
                while let Some(entry) = model.first_entry() {
                    if *entry.key() > now {
                        break;
                    }
                    want.extend(entry.remove());
                }
                prop_assert_eq!(&got, &want);
                for d in delays {
                    pending.push(now + d, tagged(tag));
                    model.entry(now + d).or_default().push(tag);
                    tag += 1;
                }
            }
            while let Some(mut due) = pending.pop_due(u64::MAX) {
                got.extend(due.drain(..).map(|e| tag_of(&e)));
                pending.recycle(due);
            }
            want.extend(model.into_values().flatten());
            prop_assert_eq!(got, want);
        }
    }

    /// Writes skipped by a failed stream write leave empty entries, so
    /// later ids still find their own write.
    #[test]
    fn writes_ring_keeps_ids_after_a_gap() {
        let mut w = Writes::default();
        let written = |producer| Written {
            values: Values::zeros(DType::I8, 0),
            producer,
            group: 0,
        };
        w.push(0, written(10));
        w.push(2, written(12));
        assert_eq!(w.get(0).map(|x| x.producer), Some(10));
        assert!(w.get(1).is_none());
        assert_eq!(w.get(2).map(|x| x.producer), Some(12));
        w.keep([2].into_iter());
        assert!(w.get(0).is_none());
        assert_eq!(w.get(2).map(|x| x.producer), Some(12));
    }
}
