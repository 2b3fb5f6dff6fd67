//! `--perturb SEED`: moves one seeded-random instruction one cycle later, the
//! hazard lab of the course. The simulator must then either report a hazard
//! or still produce exactly the right output.

use lpu_isa::program::Slot;
use lpu_isa::{Instr, Opcode, Program, Unit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What was moved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Perturbation {
    /// The seed that chose it.
    pub seed: u64,
    /// Instruction id, e.g. `i17`.
    pub instr: String,
    /// Its assembly text.
    pub asm: String,
    /// Its queue.
    pub queue: String,
    /// Its node, if any.
    pub node: Option<String>,
    /// Issue cycle before.
    pub from_cycle: u64,
    /// Issue cycle after (one later).
    pub to_cycle: u64,
}

/// Returns the program with one instruction delayed by a cycle, or `None` if
/// no instruction can move (every one is followed at once by another).
pub fn perturb(p: &Program, seed: u64) -> Option<(Program, Perturbation)> {
    // Candidates: non-control instructions whose next queue slot is a NOP or
    // the end, so that moving them shifts nothing else.
    let mut cands = Vec::new();
    for (qi, q) in p.queues.iter().enumerate() {
        for (si, s) in q.slots.iter().enumerate() {
            if s.instr.op.info().unit == Unit::Icu {
                continue;
            }
            let next = q.slots.get(si + 1).map(|n| n.instr.op);
            if matches!(next, None | Some(Opcode::Nop)) {
                cands.push((qi, si));
            }
        }
    }
    if cands.is_empty() {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (qi, si) = cands[rng.gen_range(0..cands.len())];
    let times = p.issue_times().ok()?;
    let from = times
        .iter()
        .find(|t| t.queue as usize == qi && t.slot as usize == si && t.repeat == 0)?
        .cycle;
    let mut out = p.clone();
    let fresh = p
        .queues
        .iter()
        .flat_map(|q| &q.slots)
        .map(|s| s.id)
        .max()
        .unwrap_or(0)
        + 1;
    let slots = &mut out.queues[qi].slots;
    // Shorten the NOP after it, or nothing if it is last.
    if let Some(n) = slots.get_mut(si + 1) {
        if n.instr.arg > 1 {
            n.instr.arg -= 1;
        } else {
            slots.remove(si + 1);
        }
    }
    // Lengthen the NOP before it, or insert one.
    let mut at = si;
    if si > 0 && slots[si - 1].instr.op == Opcode::Nop {
        slots[si - 1].instr.arg += 1;
    } else {
        slots.insert(
            si,
            Slot {
                id: fresh,
                instr: Instr::nop(1),
                node: None,
                deps: lpu_isa::program::Deps::new(),
            },
        );
        at += 1;
    }
    let s = &out.queues[qi].slots[at];
    let desc = Perturbation {
        seed,
        instr: format!("i{}", s.id),
        asm: lpu_isa::asm::format_instr(&s.instr, &[], &[]),
        queue: out.queues[qi].queue.to_string(),
        node: s
            .node
            .and_then(|n| p.nodes.get(n as usize))
            .map(|n| n.name.clone()),
        from_cycle: from,
        to_cycle: from + 1,
    };
    Some((out, desc))
}
