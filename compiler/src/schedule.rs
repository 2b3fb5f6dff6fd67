//! The scheduler: gives every instruction an exact issue cycle, a queue and
//! its streams, so that every operand arrives on the exact cycle it is read.
//!
//! Groups ([`crate::group`]) are placed one by one in list-scheduling order
//! (of the groups whose producers are placed, the one whose dependences
//! allow the earliest start; ties in lowering order), each at the earliest
//! start cycle where
//!
//! - every order dependence on earlier groups holds,
//! - each member's queue is free on its issue cycle (one issue per queue per
//!   cycle),
//! - each SRAM access has its bank's port for `dtype.bytes()` cycles,
//! - each stream link finds `width` consecutive free streams along its path.
//!
//! Stream occupancy is kept in wavefront coordinates: a value written at
//! position `x` on cycle `t` flowing east is at position `p` on cycle
//! `t + (p - x)`, so every point of its path shares the *diagonal* `t - x`
//! (west: `t + x`). Two transfers conflict exactly when they use the same
//! stream and direction on the same diagonal with overlapping position
//! ranges. All delays come from [`ChipConfig::delay`].

use crate::group::{conflict, offsets, position, Floorplan, Group, Link, MemberRef, Place};
use lpu_isa::program::QueueId;
use lpu_isa::{ChipConfig, Dir, Instr, Opcode, SliceKind, StreamRef, Unit};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A scheduled instruction.
#[derive(Clone, Debug)]
pub struct Placed {
    /// Issue cycle, counted from the first cycle after the start-up SYNC.
    pub cycle: u64,
    /// Queue that issues it.
    pub queue: QueueId,
    /// The instruction with its streams assigned.
    pub instr: Instr,
}

/// A bit set of busy cycles.
#[derive(Default, Clone)]
struct Busy(Vec<u64>);

impl Busy {
    fn get(&self, t: u64) -> bool {
        let w = (t / 64) as usize;
        self.0.get(w).is_some_and(|x| x & (1 << (t % 64)) != 0)
    }
    /// The first free cycle at or after `t`, skipping full words.
    fn next_free(&self, t: u64) -> u64 {
        let mut w = (t / 64) as usize;
        let mut mask = !0u64 << (t % 64);
        while let Some(&x) = self.0.get(w) {
            let free = !x & mask;
            if free != 0 {
                return w as u64 * 64 + free.trailing_zeros() as u64;
            }
            w += 1;
            mask = !0;
        }
        t.max(w as u64 * 64)
    }
    fn set(&mut self, t: u64) {
        let w = (t / 64) as usize;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (t % 64);
    }
}

/// A set of streams (chip configs allow at most 256 per direction).
#[derive(Clone, Copy, Default)]
struct StreamMask([u64; 4]);

impl StreamMask {
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// A wavefront: a direction and a diagonal (see the module doc).
type DiagKey = (Dir, i64);

/// One stream's use along a wavefront: the stream and the position range.
type StreamUse = (u16, (u16, u16));

/// Resource tables of the whole chip.
struct Tables {
    /// Busy cycles per queue, indexed by [`Tables::queue_index`].
    queues: Vec<Busy>,
    /// Busy cycles per SRAM bank port, indexed by [`Tables::bank_index`].
    banks: Vec<Busy>,
    /// Queues per slice in the index (the most any slice kind has).
    queues_per_slice: usize,
    /// Banks per MEM slice.
    banks_per_slice: usize,
    /// Stream uses per wavefront: indexed by direction (east 0, west 1),
    /// then by diagonal plus [`Tables::diag_bias`] (dense: every cycle of
    /// the schedule has its diagonals, and a hash lookup per probe was a
    /// tenth of the compile time).
    streams: [Vec<Vec<StreamUse>>; 2],
    /// Added to a diagonal to index [`Tables::streams`]: the slice count,
    /// so that east diagonals `t - x` (t >= 0) index from 0.
    diag_bias: i64,
    /// Per wavefront, like [`Tables::streams`]: the positions where every
    /// stream is taken, as a bit set of [`Tables::pos_words`] words. A path
    /// whose segment touches one finds no stream there, which the search
    /// tells without scanning the uses (most failed starts are such).
    saturated: [Vec<u64>; 2],
    /// Words per bit set of positions.
    pos_words: usize,
    /// Streams per direction.
    stream_count: usize,
}

/// Reservations a tentative placement wants.
#[derive(Default)]
struct Pending {
    queues: Vec<(QueueId, u64)>,
    banks: Vec<((u16, u32), u64)>,
    streams: Vec<(DiagKey, StreamUse)>,
}

fn overlaps(a: (u16, u16), b: (u16, u16)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

impl Tables {
    /// Empty tables for `chip`.
    fn new(chip: &ChipConfig) -> Tables {
        let slices = chip.slices().len();
        let queues_per_slice = [
            SliceKind::Mem,
            SliceKind::Mxm,
            SliceKind::Vxm,
            SliceKind::Sxm,
        ]
        .into_iter()
        .map(|k| chip.queues_per_slice(k) as usize)
        .max()
        .unwrap_or(1);
        let banks_per_slice = chip.mem.banks as usize;
        Tables {
            queues: vec![Busy::default(); slices * queues_per_slice],
            banks: vec![Busy::default(); slices * banks_per_slice],
            queues_per_slice,
            banks_per_slice,
            streams: [Vec::new(), Vec::new()],
            diag_bias: slices as i64 + 1,
            saturated: [Vec::new(), Vec::new()],
            pos_words: slices.div_ceil(64).max(1),
            stream_count: chip.streams_per_direction as usize,
        }
    }
    fn queue_index(&self, q: QueueId) -> usize {
        q.slice as usize * self.queues_per_slice + q.index as usize
    }
    fn bank_index(&self, k: (u16, u32)) -> usize {
        k.0 as usize * self.banks_per_slice + k.1 as usize
    }
    fn queue(&self, q: QueueId) -> Option<&Busy> {
        self.queues.get(self.queue_index(q))
    }
    fn queue_free(&self, p: &Pending, q: QueueId, t: u64) -> bool {
        !self.queue(q).is_some_and(|b| b.get(t)) && !p.queues.contains(&(q, t))
    }
    fn bank_free(&self, p: &Pending, k: (u16, u32), t: u64, w: u64) -> bool {
        let busy = self.banks.get(self.bank_index(k));
        (t..t + w).all(|c| !busy.is_some_and(|b| b.get(c)) && !p.banks.contains(&(k, c)))
    }
    /// The first cycle at or after `t` from which bank `k`'s port is free
    /// for `w` cycles (committed reservations only).
    fn bank_next_free(&self, k: (u16, u32), mut t: u64, w: u64) -> u64 {
        let Some(b) = self.banks.get(self.bank_index(k)) else {
            return t;
        };
        loop {
            t = b.next_free(t);
            match (t..t + w).find(|c| b.get(*c)) {
                None => return t,
                Some(c) => t = c + 1,
            }
        }
    }
    /// Where wavefront `k` lives in [`Tables::streams`].
    fn diag_index(&self, k: DiagKey) -> (usize, usize) {
        let d = match k.0 {
            Dir::East => 0,
            Dir::West => 1,
        };
        (d, (k.1 + self.diag_bias).max(0) as usize)
    }
    /// The committed stream uses on wavefront `k`.
    fn uses(&self, k: DiagKey) -> &[StreamUse] {
        let (d, i) = self.diag_index(k);
        self.streams[d].get(i).map_or(&[], |v| &v[..])
    }
    /// Whether every stream is taken at some position of `seg` on wavefront
    /// `k` (committed uses only): then no path over `seg` fits there.
    fn saturated(&self, k: DiagKey, seg: (u16, u16)) -> bool {
        let (d, i) = self.diag_index(k);
        let w = self.pos_words;
        let Some(words) = self.saturated[d].get(i * w..(i + 1) * w) else {
            return false;
        };
        let (lo, hi) = (seg.0 as usize, seg.1 as usize);
        (lo / 64..=hi / 64).any(|j| {
            let from = if j == lo / 64 { lo % 64 } else { 0 };
            let to = if j == hi / 64 { hi % 64 } else { 63 };
            let mask = (!0u64 >> (63 - to)) & (!0u64 << from);
            words.get(j).is_some_and(|x| x & mask != 0)
        })
    }
    /// Recomputes [`Tables::saturated`] for wavefront `(d, i)` from its uses.
    fn resaturate(&mut self, d: usize, i: usize) {
        let w = self.pos_words;
        let mut per_stream = vec![0u64; self.stream_count * w];
        for &(stream, (lo, hi)) in &self.streams[d][i] {
            let Some(bits) = per_stream.get_mut(stream as usize * w..(stream as usize + 1) * w)
            else {
                continue;
            };
            for p in lo..=hi {
                bits[p as usize / 64] |= 1 << (p % 64);
            }
        }
        let mut all = vec![!0u64; w];
        for bits in per_stream.chunks(w) {
            for (a, b) in all.iter_mut().zip(bits) {
                *a &= b;
            }
        }
        let table = &mut self.saturated[d];
        if table.len() < (i + 1) * w {
            table.resize((i + 1) * w, 0);
        }
        table[i * w..(i + 1) * w].copy_from_slice(&all);
    }
    /// Which of `n` streams are busy somewhere on `seg` of wavefront `k`.
    fn busy_streams(&self, p: &Pending, k: DiagKey, seg: (u16, u16)) -> StreamMask {
        let mut busy = StreamMask::default();
        let committed = self.uses(k).iter();
        let pending = p.streams.iter().filter(|(pk, _)| *pk == k).map(|(_, u)| u);
        for (stream, s) in committed.chain(pending) {
            if overlaps(*s, seg) {
                busy.set(*stream as usize);
            }
        }
        busy
    }
    fn commit(&mut self, p: Pending) {
        for (q, t) in p.queues {
            let i = self.queue_index(q);
            self.queues[i].set(t);
        }
        for (k, t) in p.banks {
            let i = self.bank_index(k);
            self.banks[i].set(t);
        }
        let mut touched = Vec::with_capacity(p.streams.len());
        for (k, s) in p.streams {
            let (d, i) = self.diag_index(k);
            let table = &mut self.streams[d];
            if table.len() <= i {
                table.resize(i + 1, Vec::new());
            }
            table[i].push(s);
            touched.push((d, i));
        }
        touched.sort_unstable();
        touched.dedup();
        for (d, i) in touched {
            self.resaturate(d, i);
        }
    }
}

/// Schedules every group; returns the placement of each member, indexed like
/// the groups. On failure returns the group index and a message.
///
/// Groups are placed in list-scheduling order rather than lowering order:
/// among the groups whose producers are all placed, the one whose
/// dependences allow the earliest start goes next (ties by lowering order).
/// Independent chains, such as two MXM planes' weight loads, are then
/// interleaved in time instead of the first chain taking every good slot and
/// the second filling the holes it left.
pub fn schedule(groups: &[Group], chip: &ChipConfig) -> Result<Vec<Vec<Placed>>, (usize, String)> {
    let fp = Floorplan::new(chip);
    let mut tables = Tables::new(chip);
    let empty = Tables::new(chip);
    let n = groups.len();
    // Producers left to place per group, and each group's consumers.
    let mut waiting = vec![0u32; n];
    let mut consumers: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (gi, g) in groups.iter().enumerate() {
        let mut producers: Vec<u32> = g
            .members
            .iter()
            .flat_map(|m| m.after.iter().map(|(r, _)| r.group))
            .collect();
        producers.sort_unstable();
        producers.dedup();
        for p in producers {
            if p as usize >= gi {
                return Err((
                    gi,
                    "dependence on an instruction that is not scheduled yet".into(),
                ));
            }
            consumers[p as usize].push(gi as u32);
            waiting[gi] += 1;
        }
    }
    let mut out: Vec<Vec<Placed>> = vec![Vec::new(); n];
    let mut ready: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for (gi, g) in groups.iter().enumerate() {
        if waiting[gi] == 0 {
            let at = earliest_start(g, chip, &fp, &out).map_err(|m| (gi, m))?;
            ready.push(Reverse((at, gi)));
        }
    }
    while let Some(Reverse((_, gi))) = ready.pop() {
        let placed =
            place_group(&groups[gi], chip, &fp, &mut tables, &empty, &out).map_err(|m| (gi, m))?;
        out[gi] = placed;
        for &c in &consumers[gi] {
            let c = c as usize;
            waiting[c] -= 1;
            if waiting[c] == 0 {
                let at = earliest_start(&groups[c], chip, &fp, &out).map_err(|m| (c, m))?;
                ready.push(Reverse((at, c)));
            }
        }
    }
    Ok(out)
}

/// The first cycle a group's first member may issue given only its order
/// dependences (all producers placed): the list-scheduling priority.
fn earliest_start(
    g: &Group,
    chip: &ChipConfig,
    fp: &Floorplan,
    done: &[Vec<Placed>],
) -> Result<i64, String> {
    let off = offsets(g, chip, fp)?;
    let min_off = off.iter().copied().min().unwrap_or(0);
    let mut start = -min_off;
    for (m, o) in g.members.iter().zip(&off) {
        for (r, gap) in &m.after {
            let p = producer(done, *r)?;
            start = start.max(p.cycle as i64 + *gap as i64 - o);
        }
    }
    Ok(start + min_off)
}

fn place_group(
    g: &Group,
    chip: &ChipConfig,
    fp: &Floorplan,
    tables: &mut Tables,
    empty: &Tables,
    done: &[Vec<Placed>],
) -> Result<Vec<Placed>, String> {
    let off = offsets(g, chip, fp)?;
    let min_off = off.iter().copied().min().unwrap_or(0);
    // Members that collide with each other can never be placed.
    if let Some((a, b)) = conflict(g, chip, &off) {
        return Err(format!(
            "two instructions of one group need the same queue or bank on overlapping cycles ({} and {})",
            g.members[a].instr.op.info().mnemonic,
            g.members[b].instr.op.info().mnemonic
        ));
    }
    // Earliest start: every member at cycle >= 0 and after its dependences.
    let mut start = -min_off;
    for (m, o) in g.members.iter().zip(&off) {
        for (r, gap) in &m.after {
            let p = producer(done, *r)?;
            start = start.max(p.cycle as i64 + *gap as i64 - o);
        }
    }
    // A group that does not fit on an empty chip never will (its members'
    // relative timing is fixed): say so instead of searching. Otherwise the
    // search ends at the latest once it passes every reservation made so far.
    let bundles = bundles(g);
    if try_at(g, chip, fp, empty, &off, -min_off, &bundles).is_none() {
        return Err(format!(
            "its instructions need more streams, queues or bank cycles at once than chip '{}' has [{}]",
            chip.name,
            describe(g, fp, &off)
        ));
    }
    const SEARCH_LIMIT: i64 = 1 << 40;
    let limit = start + SEARCH_LIMIT;
    // Queues each member must use (MEM and MXM queues are fixed): a start
    // that puts one on a busy cycle moves to that queue's next free cycle.
    let fixed: Vec<(QueueId, i64)> = g
        .members
        .iter()
        .zip(&off)
        .filter_map(|(m, o)| {
            let (unit, slice, index) = match m.place {
                Place::Mem(at) => (Unit::Mem, at.slice, 0),
                Place::Mxm { slice, queue } => (Unit::Mxm, slice, queue),
                _ => return None,
            };
            Some((QueueId { unit, slice, index }, *o))
        })
        .collect();
    // Bank ports each SRAM access needs, for its width in cycles.
    let ports: Vec<((u16, u32), u64, i64)> = g
        .members
        .iter()
        .zip(&off)
        .filter_map(|(m, o)| match m.place {
            Place::Mem(at) => Some((
                (at.slice, at.addr / chip.mem.addresses_per_bank),
                m.instr.ty.bytes() as u64,
                *o,
            )),
            _ => None,
        })
        .collect();
    // The bundle that failed last is tried first: it usually fails again.
    let mut first = 0;
    while start < limit {
        loop {
            let mut moved = false;
            for (q, o) in &fixed {
                let t = (start + o) as u64;
                let free = tables.queue(*q).map_or(t, |b| b.next_free(t));
                if free > t {
                    start += (free - t) as i64;
                    moved = true;
                }
            }
            for (k, w, o) in &ports {
                let t = (start + o) as u64;
                let free = tables.bank_next_free(*k, t, *w);
                if free > t {
                    start += (free - t) as i64;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        if let Some((b, skip)) = streams_may_fit(g, chip, fp, tables, &off, start, &bundles, first)
        {
            first = b;
            start += skip;
            continue;
        }
        if let Some((pending, placed)) = try_at(g, chip, fp, tables, &off, start, &bundles) {
            tables.commit(pending);
            return Ok(placed);
        }
        start += flexible_skip(g, fp, tables, &off, start);
    }
    let desc: Vec<String> = g
        .members
        .iter()
        .zip(&off)
        .map(|(m, o)| {
            format!(
                "{}@{}{:+}",
                m.instr.op.info().mnemonic,
                position(&m.place, fp),
                o
            )
        })
        .collect();
    Err(format!(
        "no free cycle found for its instructions [{}]",
        desc.join(" ")
    ))
}

/// After [`try_at`] failed at `start`: how many starts surely fail because a
/// VXM or SXM member finds every queue of its unit taken (it moves to the
/// first cycle one of them frees up); at least 1.
fn flexible_skip(g: &Group, fp: &Floorplan, tables: &Tables, off: &[i64], start: i64) -> i64 {
    let mut skip = 1;
    for (m, o) in g.members.iter().zip(off) {
        let (unit, slice, count) = match m.place {
            Place::Vxm => (Unit::Vxm, fp.vxm, fp.vxm_queues),
            Place::Sxm => match fp.sxm.first() {
                Some(&slice) => (Unit::Sxm, slice, fp.sxm_queues),
                None => continue,
            },
            _ => continue,
        };
        let t = (start + o) as u64;
        let free = (0..count)
            .map(|index| {
                let q = QueueId { unit, slice, index };
                tables.queue(q).map_or(t, |b| b.next_free(t))
            })
            .min()
            .unwrap_or(t);
        skip = skip.max((free - t) as i64);
    }
    skip
}

/// `mnemonic@position+offset` for each member, for error messages.
fn describe(g: &Group, fp: &Floorplan, off: &[i64]) -> String {
    g.members
        .iter()
        .zip(off)
        .map(|(m, o)| {
            format!(
                "{}@{}{:+}",
                m.instr.op.info().mnemonic,
                position(&m.place, fp),
                o
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn producer(done: &[Vec<Placed>], r: MemberRef) -> Result<&Placed, String> {
    done.get(r.group as usize)
        .and_then(|g| g.get(r.member as usize))
        .ok_or_else(|| "dependence on an instruction that is not scheduled yet".to_string())
}

/// Links into one operand form a bundle: a multi-row `lw` reads its rows
/// from consecutive stream groups, so the bundle takes `groups x width`
/// consecutive streams, each group free along its own producer's path.
/// Sorted by stream group; computed once per group.
fn bundles(g: &Group) -> Vec<Vec<&Link>> {
    let mut bundles: Vec<Vec<&Link>> = Vec::new();
    for l in &g.links {
        match bundles
            .iter_mut()
            .find(|b| b[0].to == l.to && b[0].operand == l.operand)
        {
            Some(b) => b.push(l),
            None => bundles.push(vec![l]),
        }
    }
    for b in &mut bundles {
        b.sort_by_key(|l| l.group);
    }
    bundles
}

/// A necessary condition for [`try_at`] at `start`, without allocating:
/// every bundle finds its streams free on its own, ignoring the other
/// bundles of the group. Most failed starts fail here (streams are the
/// scarce resource), so the search tries this first. Returns a bundle that
/// does not fit (bundle `first` is tried first) and how many starts from
/// `start` surely fail for it, or `None`.
#[allow(clippy::too_many_arguments)]
fn streams_may_fit(
    g: &Group,
    chip: &ChipConfig,
    fp: &Floorplan,
    tables: &Tables,
    off: &[i64],
    start: i64,
    bundles: &[Vec<&Link>],
    first: usize,
) -> Option<(usize, i64)> {
    let empty = Pending::default();
    let streams = fp.streams as usize;
    let order = std::iter::once(first)
        .filter(|&b| b < bundles.len())
        .chain((0..bundles.len()).filter(|&b| b != first));
    // Ok if the bundle may fit; else how many starts from this one surely
    // fail for it (more than 1 when a path crosses a saturated position:
    // the starts until that wavefront frees up there are skipped).
    let fits = |bundle: &Vec<&Link>| -> Result<(), i64> {
        let to = bundle[0].to as usize;
        let pt = position(&g.members[to].place, fp);
        let f0 = bundle[0].from as usize;
        let pf0 = position(&g.members[f0].place, fp);
        let w = g.members[f0].instr.dst_width();
        let n = bundle.len();
        let Some(last_base) = streams.checked_sub(n * w) else {
            return Err(1);
        };
        let local = bundle
            .iter()
            .all(|l| position(&g.members[l.from as usize].place, fp) == pt);
        let dirs: &[Dir] = if local {
            &[Dir::East, Dir::West]
        } else {
            &[Dir::between(pf0, pt)][..]
        };
        let one_dir = |dir: Dir| -> Result<(), i64> {
            let mut busy = [StreamMask::default(); 16];
            let mut many = Vec::new();
            for (k, l) in bundle.iter().enumerate() {
                let f = l.from as usize;
                let pf = position(&g.members[f].place, fp);
                if pf != pt && Dir::between(pf, pt) != dir {
                    return Err(1);
                }
                let ready = start + off[f] + chip.delay(g.members[f].instr.op) as i64;
                let diag = match dir {
                    Dir::East => ready - pf as i64,
                    Dir::West => ready + pf as i64,
                };
                let seg = (pf.min(pt), pf.max(pt));
                if tables.saturated((dir, diag), seg) {
                    let mut skip = 1;
                    while tables.saturated((dir, diag + skip), seg) {
                        skip += 1;
                    }
                    return Err(skip);
                }
                let m = tables.busy_streams(&empty, (dir, diag), seg);
                match busy.get_mut(k) {
                    Some(b) => *b = m,
                    None => many.push(m),
                }
            }
            let mask = |k: usize| {
                if k < busy.len() {
                    busy[k]
                } else {
                    many[k - busy.len()]
                }
            };
            let free = (0..=last_base)
                .any(|b| (0..n).all(|k| (0..w).all(|c| !mask(k).get(b + k * w + c))));
            if free {
                Ok(())
            } else {
                Err(1)
            }
        };
        let mut skip = i64::MAX;
        for &dir in dirs {
            match one_dir(dir) {
                Ok(()) => return Ok(()),
                Err(s) => skip = skip.min(s),
            }
        }
        Err(skip)
    };
    for b in order {
        if let Err(skip) = fits(&bundles[b]) {
            return Some((b, skip));
        }
    }
    None
}

fn try_at(
    g: &Group,
    chip: &ChipConfig,
    fp: &Floorplan,
    tables: &Tables,
    off: &[i64],
    start: i64,
    bundles: &[Vec<&Link>],
) -> Option<(Pending, Vec<Placed>)> {
    let mut p = Pending::default();
    let mut placed = Vec::with_capacity(g.members.len());
    for (m, o) in g.members.iter().zip(off) {
        let t = (start + o) as u64;
        // The queue: fixed for MEM and MXM, the first free ALU of the VXM,
        // the first free queue of the first SXM.
        let (unit, slice, first, count) = match m.place {
            Place::Mem(at) => (Unit::Mem, at.slice, 0, 1),
            Place::Vxm => (Unit::Vxm, fp.vxm, 0, fp.vxm_queues),
            Place::Mxm { slice, queue } => (Unit::Mxm, slice, queue, 1),
            Place::Sxm => (
                Unit::Sxm,
                fp.sxm.first().copied().unwrap_or(0),
                0,
                if fp.sxm.is_empty() { 0 } else { fp.sxm_queues },
            ),
        };
        let q = (first..first + count)
            .map(|index| QueueId { unit, slice, index })
            .find(|q| tables.queue_free(&p, *q, t))?;
        p.queues.push((q, t));
        if let Place::Mem(at) = m.place {
            let bank = at.addr / chip.mem.addresses_per_bank;
            let w = m.instr.ty.bytes() as u64;
            if !tables.bank_free(&p, (at.slice, bank), t, w) {
                return None;
            }
            for c in t..t + w {
                p.banks.push(((at.slice, bank), c));
            }
        }
        placed.push(Placed {
            cycle: t,
            queue: q,
            instr: m.instr.clone(),
        });
    }
    for bundle in bundles {
        let to = bundle[0].to as usize;
        let pt = position(&g.members[to].place, fp);
        let paths: Vec<(usize, u16, i64)> = bundle
            .iter()
            .map(|l| {
                let f = l.from as usize;
                let ready = placed[f].cycle as i64 + chip.delay(g.members[f].instr.op) as i64;
                (f, position(&g.members[f].place, fp), ready)
            })
            .collect();
        let w = g.members[paths[0].0].instr.dst_width() as u32;
        let n = paths.len() as u32;
        // A value consumed where it is produced may use either direction.
        let dirs: Vec<Dir> = if paths.iter().all(|(_, pf, _)| *pf == pt) {
            vec![Dir::East, Dir::West]
        } else {
            vec![Dir::between(paths[0].1, pt)]
        };
        let key = |dir: Dir, pf: u16, ready: i64| {
            let diag = match dir {
                Dir::East => ready - pf as i64,
                Dir::West => ready + pf as i64,
            };
            ((dir, diag), (pf.min(pt), pf.max(pt)))
        };
        let streams = fp.streams as usize;
        let (dir, base) = dirs.iter().find_map(|&dir| {
            if paths
                .iter()
                .any(|(_, pf, _)| *pf != pt && Dir::between(*pf, pt) != dir)
            {
                return None;
            }
            if paths.iter().any(|(_, pf, ready)| {
                let (k, seg) = key(dir, *pf, *ready);
                tables.saturated(k, seg)
            }) {
                return None;
            }
            // One wavefront lookup per path, then a search over bases.
            let busy: Vec<StreamMask> = paths
                .iter()
                .map(|(_, pf, ready)| {
                    let (k, seg) = key(dir, *pf, *ready);
                    tables.busy_streams(&p, k, seg)
                })
                .collect();
            let (n, w) = (n as usize, w as usize);
            (0..=streams.checked_sub(n * w)?)
                .find(|b| {
                    busy.iter()
                        .enumerate()
                        .all(|(k, bk)| (0..w).all(|c| !bk.get(b + k * w + c)))
                })
                .map(|b| (dir, b as u32))
        })?;
        for (k, (f, pf, ready)) in paths.iter().enumerate() {
            let first = base + k as u32 * w;
            let (dk, seg) = key(dir, *pf, *ready);
            for c in 0..w {
                p.streams.push((dk, ((first + c) as u16, seg)));
            }
            placed[*f].instr.dst = Some(StreamRef {
                id: first as u8,
                dir,
            });
        }
        let s = StreamRef {
            id: base as u8,
            dir,
        };
        match bundle[0].operand {
            0 => placed[to].instr.src = Some(s),
            _ => placed[to].instr.src2 = Some(s),
        }
    }
    debug_assert!(placed.iter().all(|x| x.instr.op != Opcode::Nop));
    Some((p, placed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Link, Member};
    use lpu_isa::program::VecLoc;
    use lpu_isa::DType;

    fn copy(from: u16, to: u16, addr: u32) -> Group {
        let m = |op, place| Member {
            instr: Instr::new(op).typed(DType::I8),
            place,
            node: 0,
            after: vec![],
        };
        Group {
            members: vec![
                m(Opcode::Read, Place::Mem(VecLoc { slice: from, addr })),
                m(
                    Opcode::Write,
                    Place::Mem(VecLoc {
                        slice: to,
                        addr: addr + 100,
                    }),
                ),
            ],
            links: vec![Link {
                from: 0,
                to: 1,
                operand: 0,
                group: 0,
            }],
        }
    }

    #[test]
    fn next_free_skips_busy_words() {
        let mut b = Busy::default();
        assert_eq!(b.next_free(5), 5);
        for t in 3..140 {
            b.set(t);
        }
        assert_eq!(b.next_free(0), 0);
        assert_eq!(b.next_free(3), 140);
        assert_eq!(b.next_free(64), 140);
        assert_eq!(b.next_free(141), 141);
        b.set(141);
        assert_eq!(b.next_free(141), 142);
        assert_eq!(b.next_free(500), 500);
    }

    #[test]
    fn groups_share_queues_and_streams_without_collisions() {
        let chip = ChipConfig::preset("tiny").expect("tiny");
        // Three copies from mem@2 to mem@4: one read per cycle on mem@2, and
        // the same eastward path, so each takes the next free cycle or stream.
        let groups = vec![copy(2, 4, 0), copy(2, 4, 1), copy(2, 4, 2)];
        let placed = schedule(&groups, &chip).expect("placed");
        let reads: Vec<u64> = placed.iter().map(|g| g[0].cycle).collect();
        assert_eq!(reads, vec![0, 1, 2]);
        for g in &placed {
            // The write issues when the value passes: read delay 3 + 2 hops.
            assert_eq!(g[1].cycle, g[0].cycle + 5);
            assert_eq!(g[0].instr.dst, g[1].instr.src);
            assert_eq!(g[0].instr.dst.map(|s| s.dir), Some(Dir::East));
        }
    }

    #[test]
    fn a_group_wider_than_the_chip_fails_at_once() {
        let chip = ChipConfig::preset("tiny").expect("tiny");
        // An fp16 lw of 8 rows needs 8 groups of 2 streams flowing west into
        // the plane at 0: 16 streams, and tiny has 8 per direction.
        let slices = [2u16, 3, 4, 5, 7, 8, 9, 10];
        let mut members: Vec<Member> = slices
            .iter()
            .map(|&s| Member {
                instr: Instr::new(Opcode::Read).typed(DType::F16),
                place: Place::Mem(VecLoc { slice: s, addr: 0 }),
                node: 0,
                after: vec![],
            })
            .collect();
        members.push(Member {
            instr: Instr {
                arg2: 8,
                ..Instr::new(Opcode::LoadWeights).typed(DType::F16)
            },
            place: Place::Mxm { slice: 0, queue: 0 },
            node: 0,
            after: vec![],
        });
        let links = (0..8)
            .map(|k| Link {
                from: k,
                to: 8,
                operand: 0,
                group: k as u8,
            })
            .collect();
        let (gi, msg) = schedule(&[Group { members, links }], &chip).expect_err("too wide");
        assert_eq!(gi, 0);
        assert!(msg.contains("more streams"), "{msg}");
    }
}
