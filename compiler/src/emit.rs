//! Emission: turns scheduled groups into a [`Program`] — per-queue lists with
//! NOPs filling the gaps, the start-up SYNC/NOTIFY, program-wide instruction
//! ids, provenance and dependence edges.

use crate::group::{Group, MemberRef};
use crate::schedule::Placed;
use lpu_isa::program::{Binding, Dep, DepKind, MemInit, NodeInfo, QueueProgram, Slot};
use lpu_isa::{ChipConfig, Instr, Opcode, Program, QueueId};
use std::collections::BTreeMap;

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
pub fn emit(input: EmitInput<'_>, groups: &[Group], placed: &[Vec<Placed>]) -> Program {
    let base = input.chip.delay(Opcode::Notify) as u64;
    let mut by_queue: BTreeMap<QueueId, Vec<(u64, MemberRef)>> = BTreeMap::new();
    for (gi, g) in placed.iter().enumerate() {
        for (mi, p) in g.iter().enumerate() {
            by_queue.entry(p.queue).or_default().push((
                p.cycle + base,
                MemberRef {
                    group: gi as u32,
                    member: mi as u32,
                },
            ));
        }
    }
    let mut lists: Vec<(QueueId, Vec<Entry>)> = vec![(QueueId::ICU, vec![Entry::Notify])];
    for (q, mut items) in by_queue {
        items.sort();
        let mut entries = vec![Entry::Sync];
        let mut cur = base;
        for (t, r) in items {
            if t > cur {
                entries.push(Entry::Nop(t - cur));
            }
            entries.push(Entry::Member(r));
            cur = t + 1;
        }
        lists.push((q, entries));
    }
    // Ids in queue order, then slot order.
    let mut ids: BTreeMap<MemberRef, u32> = BTreeMap::new();
    let mut next = 0u32;
    for (_, entries) in &lists {
        for e in entries {
            if let Entry::Member(r) = e {
                ids.insert(*r, next);
            }
            next += 1;
        }
    }
    let mut queues = Vec::with_capacity(lists.len());
    let mut id = 0u32;
    for (q, entries) in lists {
        let mut slots = Vec::with_capacity(entries.len());
        for e in entries {
            let slot = match e {
                Entry::Sync => Slot {
                    id,
                    instr: Instr::new(Opcode::Sync),
                    node: None,
                    deps: vec![],
                },
                Entry::Notify => Slot {
                    id,
                    instr: Instr::new(Opcode::Notify),
                    node: None,
                    deps: vec![],
                },
                Entry::Nop(n) => Slot {
                    id,
                    instr: Instr::nop(n as u32),
                    node: None,
                    deps: vec![],
                },
                Entry::Member(r) => {
                    let g = &groups[r.group as usize];
                    let m = &g.members[r.member as usize];
                    let mut deps = Vec::new();
                    for l in g.links.iter().filter(|l| l.to == r.member) {
                        let from = MemberRef {
                            group: r.group,
                            member: l.from,
                        };
                        deps.push(Dep {
                            on: ids[&from],
                            kind: if l.operand == 0 {
                                DepKind::Src
                            } else {
                                DepKind::Src2
                            },
                        });
                    }
                    for (p, gap) in &m.after {
                        deps.push(Dep {
                            on: ids[p],
                            kind: DepKind::Order(*gap),
                        });
                    }
                    Slot {
                        id,
                        instr: placed[r.group as usize][r.member as usize].instr.clone(),
                        node: Some(m.node),
                        deps,
                    }
                }
            };
            slots.push(slot);
            id += 1;
        }
        queues.push(QueueProgram { queue: q, slots });
    }
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
