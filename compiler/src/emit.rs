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
}

enum Entry {
    Sync,
    Notify,
    Nop(u64),
    Member(MemberRef),
}

/// Builds the program. Every queue starts with `sync`; the ICU's `notify` on
/// cycle 0 releases them, so scheduled cycle 0 is absolute cycle
/// `delay(notify)`.
///
/// The sorts and the queues' slots run on rayon's pool: the sorted
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
    let mut lists: Vec<(QueueId, Vec<Entry>)> = vec![(QueueId::ICU, vec![Entry::Notify])];
    for items in all.chunk_by(|a, b| a.0 == b.0) {
        let mut entries = vec![Entry::Sync];
        let mut cur = base;
        for &(_, t, r) in items {
            if t > cur {
                entries.push(Entry::Nop(t - cur));
            }
            entries.push(Entry::Member(r));
            cur = t + 1;
        }
        lists.push((items[0].0, entries));
    }
    // Ids: the NOTIFY is i0, then the SYNCs, then every scheduled
    // instruction in (cycle, queue) order, so ids grow with time in traces;
    // NOPs come last.
    let mut order: Vec<(u64, QueueId, MemberRef)> = Vec::new();
    for (q, entries) in &lists {
        let mut t = base;
        for e in entries {
            match e {
                Entry::Nop(n) => t += n,
                Entry::Member(r) => {
                    order.push((t, *q, *r));
                    t += 1;
                }
                _ => {}
            }
        }
    }
    // (cycle, queue) pairs are distinct: an unstable sort gives the same order.
    order.par_sort_unstable();
    let syncs = lists.len() as u32 - 1;
    // Ids by member, dense: group `g`'s members from `first[g]` (a map
    // lookup per dependence was a tenth of the compile time).
    let mut first = Vec::with_capacity(placed.len() + 1);
    let mut total = 0usize;
    for g in placed {
        first.push(total);
        total += g.len();
    }
    let mut dense = vec![0u32; total];
    for (k, (_, _, r)) in order.iter().enumerate() {
        dense[first[r.group as usize] + r.member as usize] = 1 + syncs + k as u32;
    }
    let id = |r: &MemberRef| dense[first[r.group as usize] + r.member as usize];
    // The SYNC of list `i` (1..) is id `i`; NOPs are numbered after every
    // scheduled instruction, in list order.
    let mut first_nop = Vec::with_capacity(lists.len());
    let mut next_nop = 1 + syncs + order.len() as u32;
    for (_, entries) in &lists {
        first_nop.push(next_nop);
        next_nop += entries
            .iter()
            .filter(|e| matches!(e, Entry::Nop(_)))
            .count() as u32;
    }
    let queues: Vec<QueueProgram> = lists
        .into_par_iter()
        .zip(first_nop)
        .enumerate()
        .map(|(i, ((q, entries), mut next_nop))| {
            // A member's incoming links, reused from one member to the next.
            let mut links: Vec<&crate::group::Link> = Vec::new();
            let slots = entries
                .into_iter()
                .map(|e| match e {
                    Entry::Sync => Slot {
                        id: i as u32,
                        instr: Instr::new(Opcode::Sync),
                        node: None,
                        deps: vec![],
                    },
                    Entry::Notify => Slot {
                        id: 0,
                        instr: Instr::new(Opcode::Notify),
                        node: None,
                        deps: vec![],
                    },
                    Entry::Nop(n) => {
                        next_nop += 1;
                        Slot {
                            id: next_nop - 1,
                            instr: Instr::nop(n as u32),
                            node: None,
                            deps: vec![],
                        }
                    }
                    Entry::Member(r) => {
                        let g = &groups[r.group as usize];
                        let m = &g.members[r.member as usize];
                        links.clear();
                        links.extend(g.links.iter().filter(|l| l.to == r.member));
                        links.sort_by_key(|l| (l.operand, l.group));
                        let mut deps = Vec::with_capacity(links.len() + m.after.len());
                        for l in &links {
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
                        Slot {
                            id: id(&r),
                            instr: placed[r.group as usize][r.member as usize].instr.clone(),
                            node: Some(m.node),
                            deps,
                        }
                    }
                })
                .collect();
            QueueProgram { queue: q, slots }
        })
        .collect();
    Program {
        model: input.model.to_string(),
        chip: input.chip.clone(),
        nodes: input.nodes,
        perm_tables: vec![],
        inputs: input.inputs,
        outputs: input.outputs,
        queues,
        memory: input.memory,
    }
}
