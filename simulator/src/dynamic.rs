//! Dynamic (interlocked) execution of a program's dependence DAG on the
//! same chip model as the static engine: `lpsim run --schedule dynamic`.
//!
//! The static program's NOPs and SYNC/NOTIFY are dropped; what remains is
//! each queue's instructions and the dependence edges the compiler emitted
//! ([`lpu_isa::program::Dep`]). Each queue issues at most one instruction a
//! cycle, chosen among the first `window` not-yet-issued instructions of the
//! queue (oldest first) that are ready:
//!
//! - operands: every stream producer issued at `tp` with delay `d` at
//!   position `x`, and its result has reached this slice `y`:
//!   `tp + d + |x - y| <= t` (the consumer latches it; streams do not have
//!   to be read on the exact cycle); every order edge `Order(gap)` has its
//!   producer issued and `tp + max(gap, 0) <= t` (a dynamic machine cannot
//!   issue before an instruction it must follow, so negative gaps count as 0);
//! - structure: its queue has not issued this cycle;
//! - arbitration: the SRAM bank port is free (as in the static model: busy
//!   for `dtype.bytes()` cycles from issue) and the result's stream
//!   wavefront is free on the segment from the producer to its farthest
//!   consumer (no value in flight is overwritten);
//! - memory: with HBM-backed memory ([`lpu_isa::MemoryModel::Hbm`]) a read's
//!   result and a write's landing come `latency + jitter` cycles later on a
//!   miss in the on-chip buffer; an order edge from a write waits for that
//!   too. The jitter is drawn from ChaCha8 seeded by [`DynamicOptions::seed`].
//!
//! The queue order is the static order, except that an instruction never
//! comes after one that depends on it (a topological order of the DAG with
//! the static issue cycle as tie-break): the static schedule may place an
//! instruction a few cycles before a producer it only must not overtake by
//! more than a negative gap, which an interlocked machine cannot honour.
//!
//! Values are computed by the static engine's own execution code
//! ([`crate::engine`]) with stream results latched by producer, so they are
//! exactly the static mode's. Stalls are counted per instruction and cycle
//! while it is in its queue's window and does not issue, by the first cause
//! that holds it: operand wait, memory (waiting only for memory latency),
//! arbitration (bank port or stream), structural (its queue issued another
//! instruction). Parameters, sources and measured figures: `simulator/DYNAMIC.md`.

use crate::bound::edge_latency;
use crate::engine::{instr_text, Engine, Outcome, SimError, Stats, TraceEvent};
use crate::hazard::Hazard;
use lpu_graph::Tensor;
use lpu_isa::program::{DepKind, Issue};
use lpu_isa::{ChipConfig, Dir, DynamicConfig, MemoryModel, Opcode, Program, Unit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// Options of one dynamic run.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicOptions {
    /// Issue window per queue (at least 1).
    pub window: usize,
    /// The memory behind the MEM slices.
    pub memory: MemoryModel,
    /// Seed of the memory jitter.
    pub seed: u64,
    /// Operand latches are the window: a producer issues only while every
    /// consumer of its stream result is in its queue's window (reservation
    /// stations). Off: results wait at their consumers without bound.
    pub latch_in_window: bool,
    /// Record a trace event per issued instruction.
    pub trace: bool,
}

impl DynamicOptions {
    /// The chip's `dynamic` section (or its defaults) with this seed.
    pub fn for_chip(chip: &ChipConfig, seed: u64) -> DynamicOptions {
        let d = chip.dynamic.clone().unwrap_or_default();
        DynamicOptions {
            window: d.window.max(1) as usize,
            memory: d.memory,
            seed,
            latch_in_window: d.latch_in_window,
            trace: false,
        }
    }

    /// `sram`, or `hbm(latency L, jitter J, buffer B KiB)`.
    pub fn memory_name(&self) -> String {
        match &self.memory {
            MemoryModel::Sram => "sram".into(),
            MemoryModel::Hbm {
                latency,
                jitter,
                buffer_kib,
            } => format!("hbm(latency {latency}, jitter {jitter}, buffer {buffer_kib} KiB)"),
        }
    }
}

/// Stall cycles by cause, summed over instructions: one per instruction and
/// cycle it waits in its queue's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stalls {
    /// Waiting for a producer to issue or its result to arrive.
    pub operand: u64,
    /// Ready, but its queue issued another instruction that cycle.
    pub structural: u64,
    /// Ready, but an SRAM bank port or the result's stream was taken.
    pub arbitration: u64,
    /// Waiting only for memory latency (HBM misses) of a producer.
    pub memory: u64,
}

impl Stalls {
    /// All causes together.
    pub fn total(&self) -> u64 {
        self.operand + self.structural + self.arbitration + self.memory
    }
}

/// The result of one dynamic run.
#[derive(Clone, Debug)]
pub struct DynamicOutcome {
    /// Cycles, outputs, hazard, counters and trace, as in static mode.
    pub outcome: Outcome,
    /// Stall cycles by cause.
    pub stalls: Stalls,
    /// SRAM accesses that paid memory latency (HBM buffer misses).
    pub memory_misses: u64,
}

/// Mean stall cycles per run, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MeanStalls {
    /// See [`Stalls::operand`].
    pub operand: f64,
    /// See [`Stalls::structural`].
    pub structural: f64,
    /// See [`Stalls::arbitration`].
    pub arbitration: f64,
    /// See [`Stalls::memory`].
    pub memory: f64,
}

/// Latency distribution of seeded dynamic runs, in cycles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    /// Runs made.
    pub runs: u64,
    /// Seed of the first run; run k uses `first_seed + k`.
    pub first_seed: u64,
    /// Fastest run.
    pub min: u64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 90th percentile (nearest rank).
    pub p90: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Slowest run.
    pub max: u64,
    /// Mean stall cycles per run.
    pub mean_stalls: MeanStalls,
    /// Runs that stopped on a hazard.
    pub hazards: u64,
}

/// The `dynamic` block of the report (absent in static mode).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DynamicReport {
    /// Issue window per queue.
    pub window: usize,
    /// Whether operands latch only into the window (see
    /// [`DynamicOptions::latch_in_window`]).
    pub latch_in_window: bool,
    /// Memory model, in words (`sram`, `hbm(...)`).
    pub memory: String,
    /// Seed of this run's memory jitter.
    pub seed: u64,
    /// This run's cycles (also the report's `cycles`).
    pub cycles: u64,
    /// The static schedule's cycles for the same program, when known.
    pub static_cycles: Option<u64>,
    /// This run's stall cycles by cause.
    pub stalls: Stalls,
    /// SRAM accesses that paid memory latency.
    pub memory_misses: u64,
    /// The distribution over `--seeds N` runs, when asked for.
    pub distribution: Option<Distribution>,
}

impl DynamicReport {
    /// The report block of one run.
    pub fn new(opts: &DynamicOptions, o: &DynamicOutcome) -> DynamicReport {
        DynamicReport {
            window: opts.window,
            latch_in_window: opts.latch_in_window,
            memory: opts.memory_name(),
            seed: opts.seed,
            cycles: o.outcome.cycles,
            static_cycles: None,
            stalls: o.stalls,
            memory_misses: o.memory_misses,
            distribution: None,
        }
    }
}

/// One instruction of the DAG.
struct Node {
    queue: u32,
    slot: u32,
    x: u16,
    delay: u64,
    /// Producer node and edge kind.
    deps: Vec<(usize, DepKind)>,
    /// Stream result: direction, first stream, streams, segment lo..=hi.
    stream: Option<(Dir, u8, u8, u16, u16)>,
    /// SRAM access: slice, address, width (addresses).
    mem: Option<(u16, u32, u64)>,
    write: bool,
    consumers: usize,
    /// Consumers of the stream result (node indices).
    readers: Vec<usize>,
    groups: u8,
}

/// The on-chip buffer in front of HBM: least recently used vectors.
struct MemSim {
    model: MemoryModel,
    rng: ChaCha8Rng,
    cap: u64,
    used: u64,
    stamp: u64,
    lines: HashMap<(u16, u32), (u64, u64)>,
    by_stamp: BTreeMap<u64, (u16, u32)>,
}

impl MemSim {
    fn new(model: MemoryModel, seed: u64, lanes: u64) -> MemSim {
        let cap = match &model {
            MemoryModel::Hbm { buffer_kib, .. } => *buffer_kib as u64 * 1024 / lanes.max(1),
            MemoryModel::Sram => 0,
        };
        MemSim {
            model,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cap,
            used: 0,
            stamp: 0,
            lines: HashMap::new(),
            by_stamp: BTreeMap::new(),
        }
    }

    /// Extra cycles of an access of `width` addresses at (slice, addr).
    fn access(&mut self, slice: u16, addr: u32, width: u64) -> u64 {
        let MemoryModel::Hbm {
            latency, jitter, ..
        } = self.model
        else {
            return 0;
        };
        self.stamp += 1;
        let key = (slice, addr);
        if let Some((st, w)) = self.lines.get(&key).copied() {
            self.by_stamp.remove(&st);
            self.by_stamp.insert(self.stamp, key);
            self.lines.insert(key, (self.stamp, w));
            return 0;
        }
        if width <= self.cap {
            while self.used + width > self.cap {
                let Some((_, old)) = self.by_stamp.pop_first() else {
                    break;
                };
                if let Some((_, w)) = self.lines.remove(&old) {
                    self.used -= w;
                }
            }
            self.lines.insert(key, (self.stamp, width));
            self.by_stamp.insert(self.stamp, key);
            self.used += width;
        }
        latency as u64 + self.rng.gen_range(0..=jitter as u64)
    }
}

/// Why a candidate did not issue, with the cycle it may next (if known).
enum Block {
    Operand(Option<u64>),
    Memory(u64),
    Arbitration(u64),
    Structural,
    /// A consumer of its result is outside its queue's window: no
    /// reservation slot to latch the value (counted as structural).
    Buffer,
}

fn diag(dir: Dir, t: u64, x: u16) -> i64 {
    match dir {
        Dir::East => t as i64 - x as i64,
        Dir::West => t as i64 + x as i64,
    }
}

/// Builds the DAG's nodes, each queue's dynamic order and each node's rank
/// in the global topological order.
type Dag = (Vec<Node>, Vec<Vec<usize>>, Vec<usize>);

fn build(p: &Program) -> Result<Dag, SimError> {
    let chip = &p.chip;
    let mut nodes = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    let mut key: Vec<(u64, u32, u32)> = Vec::new();
    let static_t: HashMap<(u32, u32), u64> = p
        .issue_times()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.repeat == 0)
        .map(|i| ((i.queue, i.slot), i.cycle))
        .collect();
    for (qi, q) in p.queues.iter().enumerate() {
        for (si, s) in q.slots.iter().enumerate() {
            let op = s.instr.op;
            if op == Opcode::Repeat {
                return Err(SimError::Program(format!(
                    "dynamic mode does not run REPEAT (queue {}, instruction i{})",
                    q.queue, s.id
                )));
            }
            if op.info().unit == Unit::Icu {
                continue;
            }
            index.insert(s.id, nodes.len());
            key.push((
                static_t.get(&(qi as u32, si as u32)).copied().unwrap_or(0),
                qi as u32,
                si as u32,
            ));
            let i = &s.instr;
            let x = q.queue.slice;
            nodes.push(Node {
                queue: qi as u32,
                slot: si as u32,
                x,
                delay: chip.delay(op) as u64,
                deps: Vec::new(),
                stream: None,
                mem: matches!(op, Opcode::Read | Opcode::Write | Opcode::Gather).then(|| {
                    let w = i.ty.bytes() as u64;
                    (x, i.arg as u32, w)
                }),
                write: op == Opcode::Write,
                consumers: 0,
                readers: Vec::new(),
                groups: if op.writes_stream() {
                    i.dst_groups() as u8
                } else {
                    0
                },
            });
        }
    }
    // Edges, consumers and each result's stream segment.
    let mut seg: Vec<Option<(u16, u16)>> = nodes.iter().map(|n| Some((n.x, n.x))).collect();
    for c in 0..nodes.len() {
        let s = &p.queues[nodes[c].queue as usize].slots[nodes[c].slot as usize];
        for d in &s.deps {
            let Some(&pn) = index.get(&d.on) else {
                continue;
            };
            nodes[c].deps.push((pn, d.kind));
            if matches!(d.kind, DepKind::Src | DepKind::Src2) {
                nodes[pn].consumers += 1;
                nodes[pn].readers.push(c);
                let y = nodes[c].x;
                if let Some((lo, hi)) = &mut seg[pn] {
                    *lo = (*lo).min(y);
                    *hi = (*hi).max(y);
                }
            }
        }
    }
    for (n, sg) in nodes.iter_mut().zip(seg) {
        let s = &p.queues[n.queue as usize].slots[n.slot as usize];
        let i = &s.instr;
        if let (Some(dst), true, Some((lo, hi))) = (i.dst, i.op.writes_stream(), sg) {
            let count = (i.dst_width() * i.dst_groups()) as u8;
            n.stream = Some((dst.dir, dst.id, count, lo, hi));
        }
    }
    // Topological order, static issue cycle first.
    let mut indeg: Vec<usize> = nodes.iter().map(|n| n.deps.len()).collect();
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (c, n) in nodes.iter().enumerate() {
        for (pn, _) in &n.deps {
            succ[*pn].push(c);
        }
    }
    type Ready = std::cmp::Reverse<((u64, u32, u32), usize)>;
    let mut heap: BinaryHeap<Ready> = (0..nodes.len())
        .filter(|&n| indeg[n] == 0)
        .map(|n| std::cmp::Reverse((key[n], n)))
        .collect();
    let mut orders: Vec<Vec<usize>> = vec![Vec::new(); p.queues.len()];
    let mut done = 0;
    let mut rank = vec![0usize; nodes.len()];
    while let Some(std::cmp::Reverse((_, n))) = heap.pop() {
        rank[n] = done;
        done += 1;
        orders[nodes[n].queue as usize].push(n);
        for &c in &succ[n] {
            indeg[c] -= 1;
            if indeg[c] == 0 {
                heap.push(std::cmp::Reverse((key[c], c)));
            }
        }
    }
    if done != nodes.len() {
        return Err(SimError::Program(
            "dynamic mode: the program's dependence edges form a cycle".into(),
        ));
    }
    Ok((nodes, orders, rank))
}

/// Runs a program dynamically on the given inputs.
pub fn simulate_dynamic(
    p: &Program,
    inputs: &BTreeMap<String, Tensor>,
    opts: &DynamicOptions,
) -> Result<DynamicOutcome, SimError> {
    let chip = &p.chip;
    let (nodes, orders, rank) = build(p)?;
    let mut pos_in_queue = vec![0usize; nodes.len()];
    for order in &orders {
        for (k, &c) in order.iter().enumerate() {
            pos_in_queue[c] = k;
        }
    }
    let mut win_end = vec![0usize; orders.len()];
    let mut force: Option<usize> = None;
    let mut e = Engine::new(p, inputs, false)?;
    e.latched = Some(Default::default());
    let window = opts.window.max(1);
    let mut memsim = MemSim::new(opts.memory.clone(), opts.seed, chip.lanes() as u64);
    let per_bank = chip.mem.addresses_per_bank;
    let n = nodes.len();
    let mut issue_t: Vec<Option<u64>> = vec![None; n];
    let mut extra: Vec<Option<u64>> = vec![None; n];
    let mut remaining: Vec<usize> = nodes.iter().map(|x| x.consumers).collect();
    let mut heads = vec![0usize; orders.len()];
    let mut streams: HashMap<(Dir, u8, i64), Vec<(u16, u16)>> = HashMap::new();
    let mut stalls = Stalls::default();
    let mut misses = 0u64;
    let mut stats = Stats {
        node_spans: vec![None; p.nodes.len()],
        node_instructions: vec![0; p.nodes.len()],
        ..Stats::default()
    };
    let mut trace = Vec::new();
    let has_notify = p
        .queues
        .iter()
        .flat_map(|q| &q.slots)
        .any(|s| s.instr.op == Opcode::Notify);
    let mut t: u64 = if has_notify {
        chip.delay(Opcode::Notify) as u64
    } else {
        0
    };
    let mut end = 0u64;
    let mut left = n;
    let mut hazard: Option<Hazard> = None;
    let mut blocked: Vec<(usize, Block)> = Vec::new();
    'run: while left > 0 {
        e.apply_effects(t);
        let mut issued_any = false;
        blocked.clear();
        // Each queue's window at the start of the cycle: positions below
        // win_end hold its first `window` unissued instructions.
        for (qi, order) in orders.iter().enumerate() {
            while heads[qi] < order.len() && issue_t[order[heads[qi]]].is_some() {
                heads[qi] += 1;
            }
            let (mut pos, mut seen) = (heads[qi], 0);
            while pos < order.len() && seen < window {
                if issue_t[order[pos]].is_none() {
                    seen += 1;
                }
                pos += 1;
            }
            win_end[qi] = pos;
        }
        for (qi, order) in orders.iter().enumerate() {
            let mut busy = false;
            let mut seen = 0;
            let mut pos = heads[qi];
            while pos < order.len() && seen < window {
                let c = order[pos];
                pos += 1;
                if issue_t[c].is_some() {
                    continue;
                }
                seen += 1;
                let node = &nodes[c];
                // Operands.
                let mut need = 0u64;
                let mut need_wo = 0u64;
                let mut unissued = false;
                for &(pn, kind) in &node.deps {
                    let Some(tp) = issue_t[pn] else {
                        unissued = true;
                        break;
                    };
                    let ex = extra[pn].unwrap_or(0);
                    // The bound's edge rule; a dynamic machine cannot issue
                    // before an instruction it must follow (gap at least 0).
                    let lat = edge_latency(kind, nodes[pn].delay, nodes[pn].x, node.x).max(0);
                    let r_wo = tp + lat as u64;
                    // Memory latency delays a read's result and a write's
                    // landing.
                    let stream = matches!(kind, DepKind::Src | DepKind::Src2);
                    let r = if stream || nodes[pn].write {
                        r_wo + ex
                    } else {
                        r_wo
                    };
                    need = need.max(r);
                    need_wo = need_wo.max(r_wo);
                }
                if unissued {
                    blocked.push((c, Block::Operand(None)));
                    continue;
                }
                if need_wo > t {
                    blocked.push((c, Block::Operand(Some(need_wo))));
                    continue;
                }
                if need > t {
                    blocked.push((c, Block::Memory(need)));
                    continue;
                }
                if busy {
                    blocked.push((c, Block::Structural));
                    continue;
                }
                // A slot to latch the result at every consumer.
                if opts.latch_in_window
                    && force != Some(c)
                    && node
                        .readers
                        .iter()
                        .any(|&r| pos_in_queue[r] >= win_end[nodes[r].queue as usize])
                {
                    blocked.push((c, Block::Buffer));
                    continue;
                }
                // Bank port.
                if let Some((slice, addr, _)) = node.mem {
                    let until = e.bank_free_at(slice, addr / per_bank);
                    if until > t {
                        blocked.push((c, Block::Arbitration(until)));
                        continue;
                    }
                }
                let ex = match (extra[c], node.mem) {
                    (Some(x), _) => x,
                    (None, Some((slice, addr, w))) => {
                        let x = memsim.access(slice, addr, w);
                        if x > 0 {
                            misses += 1;
                        }
                        extra[c] = Some(x);
                        x
                    }
                    (None, None) => {
                        extra[c] = Some(0);
                        0
                    }
                };
                let stream_land = t + node.delay + if node.write { 0 } else { ex };
                // Stream wavefront.
                if let Some((dir, first, count, lo, hi)) = node.stream {
                    let dg = diag(dir, stream_land, node.x);
                    let taken = (first..first.saturating_add(count)).any(|k| {
                        streams
                            .get(&(dir, k, dg))
                            .is_some_and(|v| v.iter().any(|&(a, b)| a <= hi && lo <= b))
                    });
                    if taken {
                        blocked.push((c, Block::Arbitration(t + 1)));
                        continue;
                    }
                    for k in first..first.saturating_add(count) {
                        streams.entry((dir, k, dg)).or_default().push((lo, hi));
                    }
                }
                // Issue.
                busy = true;
                issued_any = true;
                left -= 1;
                issue_t[c] = Some(t);
                let done = t + node.delay + ex;
                end = end.max(done);
                let q = &p.queues[node.queue as usize];
                let slot = &q.slots[node.slot as usize];
                *stats.issued.entry(q.queue).or_insert(0) += 1;
                if let Some(nd) = slot.node {
                    let span = &mut stats.node_spans[nd as usize];
                    *span = Some(match span {
                        Some((a, b)) => ((*a).min(t), (*b).max(done)),
                        None => (t, done),
                    });
                    stats.node_instructions[nd as usize] += 1;
                }
                if opts.trace {
                    trace.push(TraceEvent {
                        cycle: t,
                        queue: q.queue,
                        queue_index: node.queue,
                        id: slot.id,
                        asm: instr_text(slot),
                        node: slot.node,
                        delay: done - t,
                        repeat: 0,
                    });
                }
                let iss = Issue {
                    cycle: t,
                    queue: node.queue,
                    slot: node.slot,
                    repeat: 0,
                };
                e.extra = if node.write { ex } else { 0 };
                let r = e.execute(&iss, t);
                e.extra = 0;
                if let Err((kind, message, stream)) = r {
                    hazard = Some(e.hazard(&iss, t, kind, message, stream));
                    break 'run;
                }
                for &(pn, kind) in &node.deps {
                    if matches!(kind, DepKind::Src | DepKind::Src2) {
                        remaining[pn] -= 1;
                        if remaining[pn] == 0 {
                            if let Some(l) = &mut e.latched {
                                for g in 0..nodes[pn].groups {
                                    l.remove(&(slot_id(p, &nodes[pn]), g));
                                }
                            }
                        }
                    }
                }
            }
        }
        let next = if issued_any {
            t + 1
        } else {
            let wake = blocked
                .iter()
                .filter_map(|(_, b)| match b {
                    Block::Operand(w) => *w,
                    Block::Memory(w) | Block::Arbitration(w) => Some(*w),
                    Block::Structural => Some(t + 1),
                    Block::Buffer => None,
                })
                .min();
            match wake {
                Some(w) => w.max(t + 1),
                None => {
                    // Producers wait for consumers that wait for them: let
                    // the first in dependence order latch its result early.
                    let first = blocked
                        .iter()
                        .filter(|(_, b)| matches!(b, Block::Buffer))
                        .map(|(c, _)| *c)
                        .min_by_key(|c| rank[*c]);
                    match first {
                        Some(c) if force != Some(c) => {
                            force = Some(c);
                            continue 'run;
                        }
                        _ => {
                            return Err(SimError::Program(format!(
                                "dynamic mode: no instruction can ever issue at cycle {t} ({left} left)"
                            )))
                        }
                    }
                }
            }
        };
        if next / 4096 != t / 4096 {
            // Wavefronts that have passed the last slice can no longer
            // collide with a new result (results land at or after `next`).
            let last = chip.slices().len() as i64;
            let now = next as i64;
            streams.retain(|(dir, _, dg), _| match dir {
                Dir::East => dg + last >= now,
                Dir::West => *dg >= now,
            });
        }
        let dt = next - t;
        for (_, b) in &blocked {
            match b {
                Block::Operand(_) => stalls.operand += dt,
                Block::Memory(_) => stalls.memory += dt,
                Block::Arbitration(_) => stalls.arbitration += dt,
                Block::Structural | Block::Buffer => stalls.structural += dt,
            }
        }
        t = next;
    }
    let mut outputs = BTreeMap::new();
    if hazard.is_none() {
        e.apply_effects(u64::MAX);
        match e.fetch_outputs(p, end) {
            Ok(o) => outputs = o,
            Err(h) => hazard = Some(*h),
        }
    }
    stats.sram_bytes = e.sram_bytes();
    Ok(DynamicOutcome {
        outcome: Outcome {
            cycles: end + chip.superlane_skew() as u64,
            outputs,
            hazard,
            stats,
            trace,
            probed: BTreeMap::new(),
        },
        stalls,
        memory_misses: misses,
    })
}

fn slot_id(p: &Program, n: &Node) -> u32 {
    p.queues[n.queue as usize].slots[n.slot as usize].id
}

/// `runs` dynamic runs with seeds `opts.seed + k`, in parallel on rayon's
/// pool; the distribution is the same for any thread count (results are
/// collected in run order, then sorted).
pub fn run_seeds(
    p: &Program,
    inputs: &BTreeMap<String, Tensor>,
    opts: &DynamicOptions,
    runs: u64,
) -> Result<Distribution, SimError> {
    run_seeds_with(p, inputs, opts, runs, &|| {})
}

/// [`run_seeds`], calling `done` (from whichever worker thread) after each
/// run finishes, e.g. to advance a progress bar. The result does not depend
/// on `done`.
pub fn run_seeds_with(
    p: &Program,
    inputs: &BTreeMap<String, Tensor>,
    opts: &DynamicOptions,
    runs: u64,
    done: &(dyn Fn() + Sync),
) -> Result<Distribution, SimError> {
    let results: Vec<(u64, Stalls, bool)> = (0..runs.max(1))
        .into_par_iter()
        .map(|k| {
            let o = DynamicOptions {
                seed: opts.seed.wrapping_add(k),
                trace: false,
                ..opts.clone()
            };
            let r = simulate_dynamic(p, inputs, &o)
                .map(|d| (d.outcome.cycles, d.stalls, d.outcome.hazard.is_some()));
            done();
            r
        })
        .collect::<Result<_, _>>()?;
    Ok(distribution(&results, opts.seed))
}

/// The distribution of (cycles, stalls, hazard) results, in run order.
fn distribution(results: &[(u64, Stalls, bool)], first_seed: u64) -> Distribution {
    let mut cycles: Vec<u64> = results.iter().map(|r| r.0).collect();
    cycles.sort_unstable();
    let n = cycles.len().max(1);
    let rank = |q: f64| cycles[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let sum = results.iter().fold(Stalls::default(), |a, r| Stalls {
        operand: a.operand + r.1.operand,
        structural: a.structural + r.1.structural,
        arbitration: a.arbitration + r.1.arbitration,
        memory: a.memory + r.1.memory,
    });
    let mean = |x: u64| x as f64 / n as f64;
    Distribution {
        runs: results.len() as u64,
        first_seed,
        min: cycles[0],
        p50: rank(0.5),
        p90: rank(0.9),
        p99: rank(0.99),
        max: cycles[n - 1],
        mean_stalls: MeanStalls {
            operand: mean(sum.operand),
            structural: mean(sum.structural),
            arbitration: mean(sum.arbitration),
            memory: mean(sum.memory),
        },
        hazards: results.iter().filter(|r| r.2).count() as u64,
    }
}

/// The chip's dynamic section, or the defaults.
pub fn chip_dynamic(chip: &ChipConfig) -> DynamicConfig {
    chip.dynamic.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let r: Vec<(u64, Stalls, bool)> = (1..=100)
            .rev()
            .map(|c| (c, Stalls::default(), false))
            .collect();
        let d = distribution(&r, 7);
        assert_eq!((d.min, d.p50, d.p90, d.p99, d.max), (1, 50, 90, 99, 100));
        assert_eq!(d.runs, 100);
    }

    #[test]
    fn buffer_hits_cost_nothing_and_misses_are_seeded() {
        let m = MemoryModel::Hbm {
            latency: 10,
            jitter: 5,
            buffer_kib: 1,
        };
        let mut a = MemSim::new(m.clone(), 3, 16);
        let mut b = MemSim::new(m, 3, 16);
        let xa: Vec<u64> = (0..8).map(|k| a.access(0, k, 1)).collect();
        let xb: Vec<u64> = (0..8).map(|k| b.access(0, k, 1)).collect();
        assert_eq!(xa, xb);
        assert!(xa.iter().all(|x| (10..=15).contains(x)));
        assert_eq!(a.access(0, 3, 1), 0);
    }
}
