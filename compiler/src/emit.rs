//! Emission: turns scheduled groups into a [`Program`] — per-queue lists with
//! NOPs filling the gaps, the start-up SYNC/NOTIFY, program-wide instruction
//! ids, provenance and dependence edges.

use crate::group::{Group, MemberRef};
use crate::schedule::Placed;
use lpu_isa::program::{Binding, Dep, DepKind, MemInit, NodeInfo, QueueProgram, Slot};
use lpu_isa::{ChipConfig, Instr, Opcode, Program, QueueId};
use rayon::prelude::*;

/// Everything emission needs besides the schedule.
pub struct EmitInput<'a> {
    /// Model name.
    pub model: &'a str,
    /// Target chip.
    pub chip: &'a ChipConfig,
    /// Graph nodes, for provenance.
    pub nodes: Vec<NodeInfo>,
    /// Input bindings.
    pub inputs: Vec<Binding>,
    /// Output bindings.
    pub outputs: Vec<Binding>,
    /// Initial memory image.
    pub memory: Vec<MemInit>,
    /// Permutation tables (`perm`'s `tab=`).
    pub perm_tables: Vec<Vec<u16>>,
}

/// Builds the program. Every queue starts with `sync`; the ICU's `notify` on
/// cycle 0 releases them, so scheduled cycle 0 is absolute cycle
/// `delay(notify)`.
///
/// The sort by queue and the queues' slots run on rayon's pool: the sorted
/// elements are distinct, and every id is fixed before the slots are
/// built, so the program does not depend on the thread count.
pub fn emit(input: EmitInput<'_>, groups: &[Group], placed: &[Vec<Placed>]) -> Program {
    let base = input.chip.delay(Opcode::Notify) as u64;
    // Every placed member by (queue, cycle): one sort instead of a map
    // lookup per member.
    let mut all: Vec<(QueueId, u64, MemberRef)> =
        Vec::with_capacity(placed.iter().map(Vec::len).sum());
    for (gi, g) in placed.iter().enumerate() {
        for (mi, p) in g.iter().enumerate() {
            all.push((
                p.queue,
                p.cycle + base,
                MemberRef {
                    group: gi as u32,
                    member: mi as u32,
                },
            ));
        }
    }
    all.par_sort_unstable();
    // The lists: the ICU's (its NOTIFY), then each queue's members in
    // cycle order after a SYNC, a NOP filling each gap. A member issues at
    // its cycle, or right after the one before it on its queue.
    let runs: Vec<&[(QueueId, u64, MemberRef)]> = all.chunk_by(|a, b| a.0 == b.0).collect();
    // Ids: the NOTIFY is i0, then the SYNCs, then every scheduled
    // instruction in (cycle, queue) order, so ids grow with time in traces;
    // NOPs come last, list by list.
    let mut ats: Vec<u64> = Vec::with_capacity(all.len());
    let mut nops: Vec<u32> = Vec::with_capacity(runs.len());
    for items in &runs {
        let (mut cur, mut n) = (base, 0u32);
        for &(_, t, _) in *items {
            n += u32::from(t > cur);
            let at = t.max(cur);
            ats.push(at);
            cur = at + 1;
        }
        nops.push(n);
    }
    let counting_span = COUNTING_SPAN_PER_ENTRY * ats.len() as u64 + COUNTING_SPAN_SLACK;
    let ranks = issue_ranks(&ats, counting_span);
    drop(ats);
    let syncs = runs.len() as u32;
    // Ids by member, dense: group `g`'s members from `first[g]` (a map
    // lookup per dependence was a tenth of the compile time).
    let mut first = Vec::with_capacity(placed.len() + 1);
    let mut total = 0usize;
    for g in placed {
        first.push(total);
        total += g.len();
    }
    let mut dense = vec![0u32; total];
    for ((_, _, r), rank) in all.iter().zip(ranks) {
        dense[first[r.group as usize] + r.member as usize] = 1 + syncs + rank;
    }
    let id = |r: &MemberRef| dense[first[r.group as usize] + r.member as usize];
    let (in_start, incoming) = incoming_links(groups, &first, total);
    // Each list's first NOP id.
    let mut first_nop = Vec::with_capacity(runs.len());
    let mut next_nop = 1 + syncs + total as u32;
    for n in &nops {
        first_nop.push(next_nop);
        next_nop += n;
    }
    let slot = |id: u32, instr: Instr| Slot {
        id,
        instr,
        node: None,
        deps: lpu_isa::program::Deps::new(),
    };
    let mut queues = Vec::with_capacity(runs.len() + 1);
    queues.push(QueueProgram {
        queue: QueueId::ICU,
        slots: vec![slot(0, Instr::new(Opcode::Notify))],
    });
    // Each queue's slots are made where they are used, on the pool (the
    // list of SYNC, NOP and member entries they were made from before was
    // freed on one thread and the slots allocated on another, which kept
    // 220 MB more resident on BERT-base).
    let lists: Vec<QueueProgram> = runs
        .par_iter()
        .zip(first_nop)
        .zip(&nops)
        .enumerate()
        .map(|(k, ((items, mut next_nop), &n))| {
            let mut slots = Vec::with_capacity(1 + items.len() + n as usize);
            // The SYNC of list `k + 1` is id `k + 1`.
            slots.push(slot(k as u32 + 1, Instr::new(Opcode::Sync)));
            let mut cur = base;
            for &(_, t, r) in *items {
                if t > cur {
                    slots.push(slot(next_nop, Instr::nop((t - cur) as u32)));
                    next_nop += 1;
                }
                cur = t.max(cur) + 1;
                let g = &groups[r.group as usize];
                let m = &g.members[r.member as usize];
                let at = first[r.group as usize] + r.member as usize;
                let links = &incoming[in_start[at] as usize..in_start[at + 1] as usize];
                let mut deps = lpu_isa::program::Deps::with_capacity(links.len() + m.after.len());
                for l in links.iter().map(|&k| &g.links[k as usize]) {
                    let from = MemberRef {
                        group: r.group,
                        member: l.from,
                    };
                    deps.push(Dep {
                        on: id(&from),
                        kind: if l.operand == 0 {
                            DepKind::Src
                        } else {
                            DepKind::Src2
                        },
                        group: 0,
                    });
                }
                for (p, gap) in &m.after {
                    deps.push(Dep {
                        on: id(p),
                        kind: DepKind::Order(*gap),
                        group: 0,
                    });
                }
                slots.push(Slot {
                    id: id(&r),
                    instr: placed[r.group as usize][r.member as usize].instr.clone(),
                    node: Some(m.node),
                    deps,
                });
            }
            QueueProgram {
                queue: items[0].0,
                slots,
            }
        })
        .collect();
    queues.extend(lists);
    Program {
        model: input.model.to_string(),
        chip: input.chip.clone(),
        nodes: input.nodes,
        perm_tables: input.perm_tables,
        inputs: input.inputs,
        outputs: input.outputs,
        queues,
        memory: input.memory,
    }
}

/// [`issue_ranks`] counts by cycle while the cycles span at most this many
/// per entry (plus [`COUNTING_SPAN_SLACK`]); a sparser schedule is sorted
/// instead (the counts take 4 bytes per cycle spanned).
const COUNTING_SPAN_PER_ENTRY: u64 = 16;

/// See [`COUNTING_SPAN_PER_ENTRY`].
const COUNTING_SPAN_SLACK: u64 = 1 << 20;

/// Each entry's rank in (cycle, list) order, where `ats` holds the issue
/// cycles list by list (lists in order, cycles increasing within one, so
/// no two entries tie). A counting sort by cycle when the cycles span at
/// most `counting_span` (it is stable, and the entries come list by list,
/// so equal cycles rank by list); otherwise a sort of (cycle, position)
/// pairs, the same ranks. For ResNet-50's 1.5 M, a sort of (cycle, queue,
/// member) triples took about 85 ms of the compile.
fn issue_ranks(ats: &[u64], counting_span: u64) -> Vec<u32> {
    let (Some(&lo), Some(&hi)) = (ats.iter().min(), ats.iter().max()) else {
        return Vec::new();
    };
    let span = hi - lo + 1;
    let mut ranks = vec![0u32; ats.len()];
    if span <= counting_span {
        let mut next = vec![0u32; span as usize];
        for &t in ats {
            next[(t - lo) as usize] += 1;
        }
        let mut at = 0u32;
        for n in &mut next {
            (*n, at) = (at, at + *n);
        }
        for (rank, &t) in ranks.iter_mut().zip(ats) {
            let n = &mut next[(t - lo) as usize];
            *rank = *n;
            *n += 1;
        }
    } else {
        let mut order: Vec<(u64, u32)> = ats.iter().zip(0u32..).map(|(&t, k)| (t, k)).collect();
        order.par_sort_unstable();
        for (rank, &(_, k)) in (0u32..).zip(&order) {
            ranks[k as usize] = rank;
        }
    }
    ranks
}

/// Every member's incoming stream links, as indices into its group's
/// `links` in (operand, stream group) order, the links' own order among
/// equals: member `m` of group `g` has
/// `incoming[start[first[g] + m]..start[first[g] + m + 1]]`. A counting
/// sort on the consumer, once: filtering a group's links for each member
/// was quadratic in the group's size, half of ResNet-50's compile time.
fn incoming_links(groups: &[Group], first: &[usize], total: usize) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; total + 1];
    for (g, &f) in groups.iter().zip(first) {
        for l in &g.links {
            start[f + l.to as usize + 1] += 1;
        }
    }
    for i in 0..total {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut incoming = vec![0u32; start[total] as usize];
    for (g, &f) in groups.iter().zip(first) {
        for (k, l) in g.links.iter().enumerate() {
            let at = &mut next[f + l.to as usize];
            incoming[*at as usize] = k as u32;
            *at += 1;
        }
        for m in 0..g.members.len() {
            let (lo, hi) = (start[f + m] as usize, start[f + m + 1] as usize);
            incoming[lo..hi].sort_by_key(|&k| {
                let l = &g.links[k as usize];
                (l.operand, l.group)
            });
        }
    }
    (start, incoming)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Counting and sorting give the same ranks, which are the
        /// entries' positions in (cycle, list) order.
        #[test]
        fn issue_ranks_count_or_sort_alike(
            lists in proptest::collection::vec(
                proptest::collection::vec(1u64..5, 0..20),
                0..12,
            ),
            // (Counted from a large first cycle too: the counts are by
            // cycle less the first.)
            start in prop_oneof![Just(0u64), Just(1u64 << 40)],
        ) {
            // Each list's cycles increase; lists may share cycles.
            let mut ats = Vec::new();
            let mut list_of = Vec::new();
            for (l, gaps) in lists.iter().enumerate() {
                let mut t = start;
                for g in gaps {
                    t += g;
                    ats.push(t);
                    list_of.push(l);
                }
            }
            let mut order: Vec<usize> = (0..ats.len()).collect();
            order.sort_by_key(|&k| (ats[k], list_of[k]));
            let mut expected = vec![0u32; ats.len()];
            for (rank, &k) in order.iter().enumerate() {
                expected[k] = rank as u32;
            }
            prop_assert_eq!(&issue_ranks(&ats, u64::MAX), &expected);
            prop_assert_eq!(&issue_ranks(&ats, 0), &expected);
        }
    }
}
