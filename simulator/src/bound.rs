//! A lower bound on a program's cycle count: no schedule of the same
//! instructions (with the same data placement and MXM planes), honouring
//! the same dependence edges and the chip's resources, can finish sooner.
//!
//! The bound is the largest of these terms, each already a whole cycle count
//! (start-up and superlane skew included, as the engine counts latency):
//!
//! - `critical-path`: the longest path of the dependence DAG with exact
//!   latencies ([`edge_latency`]: a stream operand arrives `delay + hops`
//!   cycles after its producer issued; an `Order(gap)` edge needs `gap`),
//!   from the cycle each queue may first issue (after its leading SYNC and
//!   the ICU's NOTIFY) to the last result landing (a REPEAT adds its
//!   `n x stride` cycles). Producers that share a MEM or MXM queue take
//!   distinct cycles, so a consumer of several waits for the last of them
//!   ([`fan_in_bound`]): an `iw` after the forty `lw`s of its tile and the
//!   row chunk's `mm`s counts their issues one per cycle, and the path
//!   through a plane's weight loads grows by every tile's loads, not one;
//! - `queue Q`: the busiest MEM or MXM queue's issue slots (one issue per
//!   queue per cycle; NOP, SYNC and NOTIFY are not work, a REPEAT holds its
//!   queue for `n x stride` cycles), then the cheapest landing. These
//!   queues are fixed before scheduling (by where the data lies and by the
//!   lowering's choice of plane); the scheduler picks the VXM ALU and the
//!   SXM queue, so those are pooled (`vxm`, `sxm` below) and an unbalanced
//!   choice counts as the schedule's loss, not the bound's;
//! - `bank mem@S.B`: the busiest SRAM bank port, busy `dtype.bytes()` cycles
//!   per access (the scheduler's and the engine's bank model);
//! - `streams east|west|both@P`: the stream slots that the results passing
//!   position `P` occupy there (one value per stream, position and cycle;
//!   a result holds a slot at every position from its producer to its
//!   farthest consumer), over one direction's streams, or over both
//!   directions' when the results produced and consumed at `P` (which may
//!   take either direction) are shared between them; at the busiest
//!   position, typically the VXM's, whose operands all arrive on streams;
//! - `vxm` and `sxm`: the issue slots of all VXM (SXM) instructions spread
//!   evenly over every VXM ALU (SXM queue) of the chip;
//! - `mxm`: all `mm` issues spread evenly over the MXM planes (what a
//!   lowering that balanced the planes perfectly would reach).
//!
//! Everything is an exact integer and the computation is near-linear in
//! the number of instructions and edges (the longest path is one
//! depth-first pass over each instruction's producers, sorting those on
//! fixed queues). The simulator's report
//! carries it as `lower_bound_cycles`, `bound_kind` and `bound`;
//! `lpc compile --stats` prints it.

use lpu_isa::program::DepKind;
use lpu_isa::{Dir, Opcode, Program, SliceKind, Unit};
use serde::Serialize;
use std::collections::HashMap;

/// The cycles a consumer at position `cx` must issue after its producer
/// (at position `px`, functional delay `producer_delay`) issued, for an edge
/// of kind `kind`: `delay + |px - cx|` for a stream operand (the result
/// lands, then travels one position a cycle), `gap` (possibly negative) for
/// an order edge. The dynamic mode's readiness uses the same rule
/// ([`crate::dynamic`], with negative gaps counted as 0).
pub fn edge_latency(kind: DepKind, producer_delay: u64, px: u16, cx: u16) -> i64 {
    match kind {
        DepKind::Src | DepKind::Src2 => (producer_delay + px.abs_diff(cx) as u64) as i64,
        DepKind::Order(gap) => gap as i64,
    }
}

/// One term of the bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Term {
    /// What it measures: `critical-path`, `queue mxm@0.1`, `bank mem@4.1`,
    /// `streams east`, `mxm`, `vxm`, `sxm`.
    pub resource: String,
    /// The work behind it: path length (cycles from the first issue to the
    /// last landing), issue slots, bank-busy cycles, stream slots, or
    /// instructions.
    pub work: u64,
    /// The cycle count it forces (start-up and superlane skew included).
    pub cycles: u64,
}

/// Every term of the bound (absent: no such work in the program).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoundBreakdown {
    /// The first cycle any queue may issue (after SYNC and NOTIFY).
    pub start_cycle: u64,
    /// Superlane skew added to every term.
    pub skew: u64,
    /// The dependence DAG's longest path.
    pub critical_path: Term,
    /// The busiest MEM or MXM queue (those are fixed before scheduling).
    pub queue: Option<Term>,
    /// The busiest SRAM bank port.
    pub bank: Option<Term>,
    /// The busiest stream position: one direction's slots there, or half
    /// of both directions' (the values made and used there shared), per
    /// the module doc.
    pub streams: Option<Term>,
    /// All VXM issue slots over all VXM ALU queues.
    pub vxm: Option<Term>,
    /// All SXM issue slots over all SXM queues.
    pub sxm: Option<Term>,
    /// All `mm` issues over all MXM planes.
    pub mxm: Option<Term>,
}

/// The lower bound of a program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bound {
    /// The largest term's cycles.
    pub cycles: u64,
    /// The binding term's resource (ties go to the earlier field of
    /// [`BoundBreakdown`]).
    pub kind: String,
    /// Every term.
    pub breakdown: BoundBreakdown,
}

impl BoundBreakdown {
    fn terms(&self) -> impl Iterator<Item = &Term> {
        std::iter::once(&self.critical_path).chain(
            [
                &self.queue,
                &self.bank,
                &self.streams,
                &self.vxm,
                &self.sxm,
                &self.mxm,
            ]
            .into_iter()
            .flatten(),
        )
    }
}

/// Per-instruction facts the terms need, and its consumers' use of its
/// results: one entry per instruction, read and updated through its id
/// ([`Producers`]), so that an edge costs one lookup (a table of node
/// indices and then the node, in queue order, was two cache misses per
/// edge and half the bound's time; a separate table of result extents
/// was another miss per edge).
#[derive(Clone, Copy)]
struct Producer {
    /// Its node index (queue order), or [`Producer::ABSENT`]'s.
    node: u32,
    delay: u32,
    /// The queue index if it is a MEM or MXM queue ([`fan_in_bound`]),
    /// else `u32::MAX`.
    fixed_queue: u32,
    /// Where the extents of its output groups after the first are kept.
    more_groups: u32,
    /// Its output stream groups (0: it writes no stream).
    groups: u16,
    /// Its position.
    x: u16,
    /// The positions of its first output group's consumers and its own
    /// (`lo > hi`: no consumer yet).
    lo: u16,
    hi: u16,
    /// Whether it writes westwards.
    west: bool,
    /// The width in streams of each output group.
    width: u8,
}

impl Producer {
    /// No instruction with this id (or not a node).
    const ABSENT: Producer = Producer {
        node: u32::MAX,
        delay: 0,
        fixed_queue: u32::MAX,
        more_groups: 0,
        groups: 0,
        x: 0,
        lo: 1,
        hi: 0,
        west: false,
        width: 0,
    };
}

/// Every node's [`Producer`] entry, by instruction id: a dense table when
/// the ids are dense (as `lpc` emits them), else a map from id to node and
/// the entries in node order.
struct Producers {
    entries: Vec<Producer>,
    /// Id to index in `entries` when the ids are sparse.
    sparse: Option<HashMap<u32, usize>>,
}

impl Producers {
    fn new(nodes: Vec<Producer>, ids: &[u32]) -> Producers {
        let max_id = ids.iter().copied().max().unwrap_or(0) as usize;
        if max_id > 4 * ids.len() + 1024 {
            let sparse = ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
            return Producers {
                entries: nodes,
                sparse: Some(sparse),
            };
        }
        let mut entries = vec![Producer::ABSENT; max_id + 1];
        for (node, id) in nodes.into_iter().zip(ids) {
            entries[*id as usize] = node;
        }
        Producers {
            entries,
            sparse: None,
        }
    }

    /// The entry of instruction `id`, if it is a node.
    fn get_mut(&mut self, id: u32) -> Option<&mut Producer> {
        let i = match &self.sparse {
            Some(m) => *m.get(&id)?,
            None => id as usize,
        };
        self.entries
            .get_mut(i)
            .filter(|p| p.node != Producer::ABSENT.node)
    }

    /// Every node's entry, in id order for dense ids (the DFS's roots).
    fn iter(&self) -> impl Iterator<Item = &Producer> {
        self.entries
            .iter()
            .filter(|p| p.node != Producer::ABSENT.node)
    }
}

/// The lower bound of `p` on its own chip. Deterministic, near-linear in the
/// number of instructions and edges.
pub fn lower_bound(p: &Program) -> Bound {
    lower_bound_and_hops(p).0
}

/// [`lower_bound`], and the stream hops of a completed run: the sum over
/// every `Src` and `Src2` edge of [`crate::energy::operand_hops`] (its
/// consumer's REPEATs included), which
/// [`crate::energy::completed_work_given_hops`] prices. The edge pass finds
/// each producer's position anyway, where the energy's own count looks it
/// up again by id.
pub(crate) fn lower_bound_and_hops(p: &Program) -> (Bound, u64) {
    let chip = &p.chip;
    let skew = chip.superlane_skew() as u64;
    let notify_delay = chip.delay(Opcode::Notify) as u64;
    // The ICU's first NOTIFY: a queue that opens with SYNC starts after it.
    let first_notify = p
        .queues
        .iter()
        .find(|q| q.queue.unit == Unit::Icu)
        .and_then(|q| {
            let mut t = 0u64;
            for s in &q.slots {
                if s.instr.op == Opcode::Notify {
                    return Some(t);
                }
                t += s.instr.issue_cycles();
            }
            None
        });
    let starts: Vec<u64> = p
        .queues
        .iter()
        .map(
            |q| match (q.slots.first().map(|s| s.instr.op), first_notify) {
                (Some(Opcode::Sync), Some(n)) => n + notify_delay,
                _ => 0,
            },
        )
        .collect();

    // Nodes: every instruction that is work (not NOP, SYNC, NOTIFY, REPEAT).
    let total: usize = p.queues.iter().map(|q| q.slots.len()).sum();
    let mut nodes: Vec<Producer> = Vec::with_capacity(total);
    let mut repeats: Vec<(usize, u64)> = Vec::new();
    let mut ids: Vec<u32> = Vec::with_capacity(total);
    // Each node's earliest issue: its queue's first cycle, at first.
    let mut es: Vec<i64> = Vec::with_capacity(total);
    // Extents of output groups after the first (only `trn` has them).
    let mut more_groups = 0usize;
    // Per queue: issue slots and the smallest delay; per bank: busy cycles
    // and the smallest `delay - busy`.
    let mut slots = vec![0u64; p.queues.len()];
    let mut min_delay = vec![u64::MAX; p.queues.len()];
    // One entry per access: Fx hashing (the order is not observed; the
    // busiest bank is picked with a total order below).
    let mut banks: rustc_hash::FxHashMap<(u16, u32), (u64, i64, usize)> =
        rustc_hash::FxHashMap::default();
    let per_bank = chip.mem.addresses_per_bank;
    let mut mm = 0u64;
    // Pooled VXM and SXM issue slots and their smallest delays.
    let (mut vxm, mut vxm_delay, mut sxm, mut sxm_delay) = (0u64, u64::MAX, 0u64, u64::MAX);
    for (qi, q) in p.queues.iter().enumerate() {
        let fixed = matches!(q.queue.unit, Unit::Mem | Unit::Mxm);
        for (k, s) in q.slots.iter().enumerate() {
            let i = &s.instr;
            if i.op.info().unit == Unit::Icu {
                continue;
            }
            let (n, stride) = match q.slots.get(k + 1) {
                Some(r) if r.instr.op == Opcode::Repeat => {
                    (r.instr.arg as u64, r.instr.arg2 as u64)
                }
                _ => (0, 0),
            };
            let delay = chip.delay(i.op) as u64;
            slots[qi] += 1 + n * stride;
            min_delay[qi] = min_delay[qi].min(delay);
            match i.op {
                Opcode::Read | Opcode::Write | Opcode::Gather => {
                    let w = i.ty.bytes() as u64;
                    let b = banks
                        .entry((q.queue.slice, i.arg as u32 / per_bank))
                        .or_insert((0, i64::MAX, qi));
                    b.0 += w * (1 + n);
                    b.1 = b.1.min(delay as i64 - w as i64);
                }
                Opcode::Matmul => mm += 1 + n,
                _ => {}
            }
            if q.queue.unit == Unit::Vxm {
                vxm += 1 + n * stride;
                vxm_delay = vxm_delay.min(delay);
            }
            if q.queue.unit == Unit::Sxm {
                sxm += 1 + n * stride;
                sxm_delay = sxm_delay.min(delay);
            }
            if n * stride > 0 {
                repeats.push((nodes.len(), n * stride));
            }
            let dst = i.dst.filter(|_| i.op.writes_stream());
            let groups = dst.map_or(0, |_| i.dst_groups());
            nodes.push(Producer {
                node: nodes.len() as u32,
                delay: delay as u32,
                fixed_queue: if fixed { qi as u32 } else { u32::MAX },
                more_groups: more_groups as u32,
                groups: groups.min(u16::MAX as usize) as u16,
                x: q.queue.slice,
                west: dst.is_some_and(|d| d.dir == Dir::West),
                width: i.dst_width().min(u8::MAX as usize) as u8,
                ..Producer::ABSENT
            });
            more_groups += groups.saturating_sub(1);
            ids.push(s.id);
            es.push(starts[qi] as i64);
        }
    }
    let start = starts
        .iter()
        .zip(&slots)
        .filter(|(_, n)| **n > 0)
        .map(|(s, _)| *s)
        .min()
        .unwrap_or(0);

    // Each node's delay, for the critical path's end.
    let delays: Vec<u32> = nodes.iter().map(|n| n.delay).collect();
    let mut producers = Producers::new(nodes, &ids);
    drop(ids);

    // Each node's producers with the edge latency and, for one on a MEM or
    // MXM queue, that queue (in node order), and the positions each result
    // is consumed at.
    let node_count = delays.len();
    let mut pred_first: Vec<u32> = Vec::with_capacity(node_count + 1);
    let mut preds: Vec<(u32, i32, u32)> = Vec::new();
    let mut more_extents: Vec<(u16, u16)> = vec![(1, 0); more_groups];
    let mut hops = 0u64;
    for q in &p.queues {
        for (k, s) in q.slots.iter().enumerate() {
            if s.instr.op.info().unit == Unit::Icu {
                continue;
            }
            pred_first.push(preds.len() as u32);
            let cx = q.queue.slice;
            let issues = match q.slots.get(k + 1) {
                Some(r) if r.instr.op == Opcode::Repeat => 1 + r.instr.arg.max(0) as u64,
                _ => 1,
            };
            let width = s.instr.src_width();
            for d in &s.deps {
                let Some(pnode) = producers.get_mut(d.on) else {
                    continue;
                };
                let lat = edge_latency(d.kind, pnode.delay as u64, pnode.x, cx);
                preds.push((pnode.node, lat as i32, pnode.fixed_queue));
                if matches!(d.kind, DepKind::Src | DepKind::Src2) && (d.group as u16) < pnode.groups
                {
                    hops += crate::energy::operand_hops(width, pnode.x, cx, issues);
                    let e = match d.group {
                        0 => (&mut pnode.lo, &mut pnode.hi),
                        g => {
                            let e = &mut more_extents[pnode.more_groups as usize + g as usize - 1];
                            (&mut e.0, &mut e.1)
                        }
                    };
                    let x = pnode.x;
                    let (lo, hi) = if *e.0 > *e.1 { (x, x) } else { (*e.0, *e.1) };
                    (*e.0, *e.1) = (lo.min(cx), hi.max(cx));
                }
            }
        }
    }
    pred_first.push(preds.len() as u32);
    let preds_of = |n: usize| &preds[pred_first[n] as usize..pred_first[n + 1] as usize];

    // Longest path: the earliest issue of each node, by a depth-first pull
    // over the producers from roots in id order (the static issue order, so
    // the stack stays shallow). An edge that would close a cycle (a
    // malformed program) is left out, the same one on every run.
    const NEW: u8 = 0;
    const ACTIVE: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; node_count];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut fan: Vec<(u32, i64, i32)> = Vec::new();
    // (In id order when the ids are dense.)
    for root in producers.iter().map(|p| p.node as usize) {
        if state[root] != NEW {
            continue;
        }
        state[root] = ACTIVE;
        stack.push((root, 0));
        while let Some((n, k)) = stack.last_mut() {
            let ps = preds_of(*n);
            while *k < ps.len() && state[ps[*k].0 as usize] != NEW {
                *k += 1;
            }
            if let Some(&(pn, _, _)) = ps.get(*k) {
                state[pn as usize] = ACTIVE;
                stack.push((pn as usize, 0));
                continue;
            }
            let n = *n;
            let mut e = es[n];
            fan.clear();
            for &(pn, lat, queue) in ps {
                if state[pn as usize] == DONE {
                    let pe = es[pn as usize];
                    e = e.max(pe + lat as i64);
                    if queue != u32::MAX {
                        fan.push((queue, pe, lat));
                    }
                }
            }
            es[n] = e.max(fan_in_bound(&mut fan));
            state[n] = DONE;
            stack.pop();
        }
    }
    let mut end = start;
    for (e, delay) in es.iter().zip(&delays) {
        end = end.max(*e as u64 + *delay as u64);
    }
    for &(n, r) in &repeats {
        end = end.max(es[n] as u64 + r + delays[n] as u64);
    }
    let critical_path = Term {
        resource: "critical-path".into(),
        work: end - start,
        cycles: end + skew,
    };

    // The busiest queue: its last issue comes `slots - 1` cycles after its
    // start at the earliest, and lands its cheapest delay later.
    let queue = (0..p.queues.len())
        .filter(|&q| slots[q] > 0 && matches!(p.queues[q].queue.unit, Unit::Mem | Unit::Mxm))
        .map(|q| Term {
            resource: format!("queue {}", p.queues[q].queue),
            work: slots[q],
            cycles: starts[q] + slots[q] - 1 + min_delay[q] + skew,
        })
        .max_by(|a, b| a.cycles.cmp(&b.cycles).then(b.resource.cmp(&a.resource)));
    // The busiest bank port: the last access issues once the others have
    // released the port, and lands its own delay later.
    let bank = banks
        .iter()
        .map(|(&(slice, b), &(busy, slack, qi))| Term {
            resource: format!("bank mem@{slice}.{b}"),
            work: busy,
            cycles: (starts[qi] as i64 + busy as i64 + slack).max(0) as u64 + skew,
        })
        .max_by(|a, b| a.cycles.cmp(&b.cycles).then(b.resource.cmp(&a.resource)));
    // Stream slots per direction and position: a value holds one slot of
    // each stream it is on at every position from its producer to its
    // farthest consumer, and every occupied slot lies in the cycles after
    // the first issue and before the last landing. Counted with one
    // difference array per direction; a value produced and consumed at one
    // position (VXM to VXM) could take either direction, so it is counted
    // apart, for the two directions to share.
    let positions = chip.slices().len();
    let mut diff = [vec![0i64; positions + 1], vec![0i64; positions + 1]];
    let mut local = vec![0u64; positions];
    for pr in producers.iter().filter(|pr| pr.groups > 0) {
        let first = (pr.lo <= pr.hi).then_some((pr.lo, pr.hi));
        let more = &more_extents[pr.more_groups as usize..][..pr.groups as usize - 1];
        let consumed = more.iter().filter(|e| e.0 <= e.1).copied();
        for e in first.into_iter().chain(consumed) {
            let d = usize::from(pr.west);
            let w = pr.width as i64;
            let (lo, hi) = (e.0 as usize, (e.1 as usize + 1).min(positions));
            if lo + 1 == hi {
                local[lo] += w as u64;
            } else if lo < hi {
                diff[d][lo] += w;
                diff[d][hi] -= w;
            }
        }
    }
    // Per position: each direction's own values, and both directions'
    // values with the local ones shared evenly; the busiest position wins
    // (the first one on a tie).
    let per_stream = chip.streams_per_direction.max(1) as u64;
    let (mut east, mut west) = (0i64, 0i64);
    let mut busiest: Option<(u64, usize, &str)> = None;
    for pos in 0..positions {
        east += diff[0][pos];
        west += diff[1][pos];
        let (e, w) = (east.max(0) as u64, west.max(0) as u64);
        let shared = (e + w + local[pos]).div_ceil(2);
        let (slots, dir) = if e >= w && e >= shared {
            (e, "east")
        } else if w >= shared {
            (w, "west")
        } else {
            (shared, "both")
        };
        if slots > 0 && busiest.is_none_or(|(b, _, _)| slots > b) {
            busiest = Some((slots, pos, dir));
        }
    }
    let streams = busiest.map(|(n, pos, dir)| Term {
        resource: format!("streams {dir}@{pos}"),
        work: n,
        cycles: start + 1 + n.div_ceil(per_stream) + skew,
    });
    // Perfect balance over planes and ALUs.
    let spread = |name: &str, work: u64, queues: u64, delay: u64| {
        (work > 0 && queues > 0).then(|| Term {
            resource: name.into(),
            work,
            cycles: start + work.div_ceil(queues) - 1 + delay + skew,
        })
    };
    let planes = chip.positions_of(SliceKind::Mxm).len() as u64;
    let alus = chip.positions_of(SliceKind::Vxm).len() as u64 * chip.queues.vxm_alus as u64;
    let sxm_queues = chip.positions_of(SliceKind::Sxm).len() as u64 * chip.queues.sxm_queues as u64;
    let breakdown = BoundBreakdown {
        start_cycle: start,
        skew,
        critical_path,
        queue,
        bank,
        streams,
        mxm: spread("mxm", mm, planes, chip.delay(Opcode::Matmul) as u64),
        vxm: spread("vxm", vxm, alus, vxm_delay),
        sxm: spread("sxm", sxm, sxm_queues, sxm_delay),
    };
    let best = breakdown
        .terms()
        .fold(None::<&Term>, |b, t| match b {
            Some(b) if b.cycles >= t.cycles => Some(b),
            _ => Some(t),
        })
        .cloned()
        .unwrap_or_else(|| breakdown.critical_path.clone());
    let bound = Bound {
        cycles: best.cycles,
        kind: best.resource,
        breakdown,
    };
    (bound, hops)
}

/// The earliest issue a consumer's producers on fixed queues allow when
/// each queue issues once per cycle: `fan` holds, per producer, its queue,
/// earliest issue and edge latency. The producers on one queue take
/// distinct cycles from their earliest issues on, so the last of the `k`
/// issues no sooner than the `k`-th of the sequence `t_1 = e_1`,
/// `t_j = max(e_j, t_{j-1} + 1)` over their sorted earliest issues, and
/// the consumer follows it by at least the smallest of their latencies.
/// (Forty weight loads that an install waits for take forty cycles, not
/// one.) Sorts `fan`; `i64::MIN` when it is empty.
fn fan_in_bound(fan: &mut [(u32, i64, i32)]) -> i64 {
    if fan.len() < 2 {
        return i64::MIN;
    }
    fan.sort_unstable();
    let mut best = i64::MIN;
    let mut k = 0;
    while k < fan.len() {
        let q = fan[k].0;
        let (mut t, mut lat) = (fan[k].1, fan[k].2);
        k += 1;
        while k < fan.len() && fan[k].0 == q {
            t = fan[k].1.max(t + 1);
            lat = lat.min(fan[k].2);
            k += 1;
        }
        best = best.max(t + lat as i64);
    }
    best
}

impl Bound {
    /// `cycles / self.cycles`: how far a schedule of `cycles` is from the
    /// bound (1.0 when the bound is 0).
    pub fn ratio(&self, cycles: u64) -> f64 {
        if self.cycles == 0 {
            1.0
        } else {
            cycles as f64 / self.cycles as f64
        }
    }
}
