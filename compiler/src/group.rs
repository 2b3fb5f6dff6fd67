//! The lowered form: a dependence DAG of slice instructions, cut into
//! *groups* that the scheduler places as one piece.
//!
//! A group is a small tree of instructions joined by stream links: SRAM reads
//! feeding a chain of compute instructions (VXM, MXM, SXM) whose last result
//! is written back to SRAM (or ends in the MXM: `lw`, `mm`). Because a stream
//! value must be read on the exact cycle it passes, every member's issue
//! cycle is a fixed offset from the group's start; the scheduler only picks
//! the start, the streams and the queues. Edges between groups are order
//! dependences with a minimum gap (SRAM read-after-write, accumulator and
//! weight-buffer ordering).

use lpu_isa::program::VecLoc;
use lpu_isa::{ChipConfig, Instr, Opcode, SliceKind};

/// Refers to one member of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberRef {
    /// Group index.
    pub group: u32,
    /// Member index within the group.
    pub member: u32,
}

/// Where a member executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A MEM slice's queue, reading or writing `at`.
    Mem(VecLoc),
    /// Any ALU queue of the VXM slice.
    Vxm,
    /// Queue `queue` of the MXM plane at `slice`.
    Mxm {
        /// Slice position of the plane.
        slice: u16,
        /// 0: weights queue, 1: compute queue.
        queue: u8,
    },
    /// Any queue of the SXM slice at `slice` (the lowering picks the SXM
    /// nearest the data, [`Floorplan::nearest_sxm`]).
    Sxm {
        /// Slice position of the SXM.
        slice: u16,
    },
}

/// One instruction of a group. Its stream fields are filled by the scheduler.
#[derive(Clone, Debug)]
pub struct Member {
    /// The instruction (streams unset).
    pub instr: Instr,
    /// Where it runs.
    pub place: Place,
    /// Graph node it came from.
    pub node: u32,
    /// Order dependences on members of earlier groups: issue at least `gap`
    /// cycles after the producer issued.
    pub after: Vec<(MemberRef, i32)>,
}

/// A stream link inside a group: `from`'s result is stream group `group`
/// of operand `operand` (0 or 1) of `to` (only a multi-row `lw` has more
/// than one group).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Producer member.
    pub from: u32,
    /// Consumer member.
    pub to: u32,
    /// Operand index of the consumer.
    pub operand: u8,
    /// Stream group within the operand.
    pub group: u8,
}

/// A group of members scheduled together.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// Members.
    pub members: Vec<Member>,
    /// Stream links between them.
    pub links: Vec<Link>,
}

/// Positions and queue counts of the units a group may use.
pub struct Floorplan {
    /// Position of the VXM slice (the first one, west to east).
    pub vxm: u16,
    /// ALU queues of a VXM slice.
    pub vxm_queues: u8,
    /// Positions of the SXM slices.
    pub sxm: Vec<u16>,
    /// Queues of an SXM slice.
    pub sxm_queues: u8,
    /// Streams per direction.
    pub streams: u32,
}

impl Floorplan {
    /// The SXM slice nearest position `pos` (the western one on a tie).
    /// On a chip without an SXM it is position 0, which has no SXM queues:
    /// the scheduler then reports the group as not placeable.
    pub fn nearest_sxm(&self, pos: u16) -> u16 {
        self.sxm
            .iter()
            .copied()
            .min_by_key(|s| (s.abs_diff(pos), *s))
            .unwrap_or(0)
    }

    /// The floorplan of a chip (validated configs have a VXM slice).
    pub fn new(chip: &ChipConfig) -> Floorplan {
        Floorplan {
            vxm: chip
                .positions_of(SliceKind::Vxm)
                .first()
                .copied()
                .unwrap_or(0),
            vxm_queues: chip.queues_per_slice(SliceKind::Vxm),
            sxm: chip.positions_of(SliceKind::Sxm),
            sxm_queues: chip.queues_per_slice(SliceKind::Sxm),
            streams: chip.streams_per_direction,
        }
    }
}

/// The queue a member is bound to, when it has no choice: (slice, queue).
pub fn fixed_queue(place: &Place) -> Option<(u16, u8)> {
    match place {
        Place::Mem(at) => Some((at.slice, 0)),
        Place::Mxm { slice, queue } => Some((*slice, *queue)),
        _ => None,
    }
}

/// Slice position where a member executes.
pub fn position(place: &Place, fp: &Floorplan) -> u16 {
    match place {
        Place::Mem(at) => at.slice,
        Place::Vxm => fp.vxm,
        Place::Mxm { slice, .. } => *slice,
        Place::Sxm { slice } => *slice,
    }
}

/// Issue-cycle offsets of a group's members relative to its first member,
/// fixed by the stream links: a link from `f` to `t` means
/// `t = f + delay(f) + |pos(f) - pos(t)|`.
pub fn offsets(g: &Group, chip: &ChipConfig, fp: &Floorplan) -> Result<Vec<i64>, String> {
    let n = g.members.len();
    let mut off: Vec<Option<i64>> = vec![None; n];
    if n == 0 {
        return Ok(vec![]);
    }
    off[0] = Some(0);
    // Links form a tree; relax until every member has an offset (at most
    // `n` passes; a pass that sets nothing new ends it, which in the usual
    // link order is the second).
    for _ in 0..n {
        let mut changed = false;
        for l in &g.links {
            let (f, t) = (l.from as usize, l.to as usize);
            let hop = chip.delay(g.members[f].instr.op) as i64
                + (position(&g.members[f].place, fp) as i64
                    - position(&g.members[t].place, fp) as i64)
                    .abs();
            match (off[f], off[t]) {
                (Some(a), None) => {
                    off[t] = Some(a + hop);
                    changed = true;
                }
                (None, Some(b)) => {
                    off[f] = Some(b - hop);
                    changed = true;
                }
                (Some(a), Some(b)) if b != a + hop => {
                    return Err("stream links of one group disagree on timing".into())
                }
                _ => {}
            }
        }
        if !changed {
            break;
        }
    }
    off.into_iter()
        .map(|o| o.ok_or_else(|| "group members are not all linked".to_string()))
        .collect()
}

/// Two members of a group that can never be placed together, whatever the
/// start cycle: the same fixed queue on the same cycle, or overlapping
/// uses of one SRAM bank's port.
pub fn conflict(g: &Group, chip: &ChipConfig, off: &[i64]) -> Option<(usize, usize)> {
    let bank = |p: &Place| match p {
        Place::Mem(at) => Some((at.slice, at.addr / chip.mem.addresses_per_bank)),
        _ => None,
    };
    for (a, ma) in g.members.iter().enumerate() {
        for (b, mb) in g.members.iter().enumerate().skip(a + 1) {
            let qa = fixed_queue(&ma.place);
            if qa.is_some() && qa == fixed_queue(&mb.place) && off[a] == off[b] {
                return Some((a, b));
            }
            if let (Some(ba), Some(bb)) = (bank(&ma.place), bank(&mb.place)) {
                let (wa, wb) = (ma.instr.ty.bytes() as i64, mb.instr.ty.bytes() as i64);
                if ba == bb && off[a] < off[b] + wb && off[b] < off[a] + wa {
                    return Some((a, b));
                }
            }
        }
    }
    None
}

/// Resolves intra-group conflicts by retiming SRAM reads: a `mov` on the VXM
/// between a conflicting read and its consumer makes the read issue
/// `delay(mov)` cycles earlier. Gives up after a bounded number of rounds,
/// a few per member (the scheduler then reports the group). Each run of
/// `mov`s it put on one link then becomes fewer, longer identity steps of
/// the same total delay ([`identity_steps`]): an f32 read that clears a
/// 4-cycle bank port costs two VXM instructions instead of four, and every
/// other member keeps its offset.
pub fn retime_reads(g: &mut Group, chip: &ChipConfig, fp: &Floorplan) {
    let first_new = g.members.len();
    for _ in 0..16 + 8 * g.members.len() {
        let Ok(off) = offsets(g, chip, fp) else {
            break;
        };
        let Some((a, b)) = conflict(g, chip, &off) else {
            break;
        };
        // A read feeding the VXM is retimed first: the `mov` then sits on
        // its way, where for another consumer (an SXM, an MXM plane) the
        // value would detour through the VXM and back.
        let link_of = |m: usize| g.links.iter().position(|l| l.from as usize == m);
        let feeds_vxm = |m: usize| {
            link_of(m).is_some_and(|li| g.members[g.links[li].to as usize].place == Place::Vxm)
        };
        let reads = [b, a]
            .into_iter()
            .filter(|&m| g.members[m].instr.op == Opcode::Read);
        let read = reads
            .clone()
            .find(|&m| feeds_vxm(m))
            .or(reads.clone().next());
        let Some(r) = read else { break };
        let Some(li) = link_of(r) else {
            break;
        };
        insert_mov(g, li);
    }
    compress_movs(g, chip, first_new);
}

/// Puts a VXM `mov` on link `li`, between its producer and its consumer:
/// the producer then issues `delay(mov)` cycles (and, when it is not on the
/// VXM, its distance to the VXM and back) earlier relative to the consumer,
/// whose last hop becomes local to the VXM.
pub fn insert_mov(g: &mut Group, li: usize) {
    let old = g.links[li];
    let producer = &g.members[old.from as usize];
    let (ty, node) = (producer.instr.ty, producer.node);
    g.members.push(Member {
        instr: Instr::new(Opcode::Mov).typed(ty),
        place: Place::Vxm,
        node,
        after: vec![],
    });
    let m = g.members.len() as u32 - 1;
    g.links[li] = Link { from: m, ..old };
    g.links.push(Link {
        from: old.from,
        to: m,
        operand: 0,
        group: 0,
    });
}

/// Replaces each chain of the `mov`s from member `first_new` on (which only
/// [`retime_reads`] added, one input and one output link each) by
/// [`identity_steps`] of the same total delay. The chain's first step issues
/// when its first `mov` did and the value reaches the consumer on the same
/// cycle, so the group uses a subset of the queues and streams it used.
fn compress_movs(g: &mut Group, chip: &ChipConfig, first_new: usize) {
    if g.members.len() == first_new {
        return;
    }
    let added = |m: u32| m as usize >= first_new;
    // The link leaving each added member.
    let mut next: Vec<Option<usize>> = vec![None; g.members.len() - first_new];
    for (i, l) in g.links.iter().enumerate() {
        if added(l.from) {
            next[l.from as usize - first_new] = Some(i);
        }
    }
    let mut members = g.members[..first_new].to_vec();
    let mut links = Vec::with_capacity(g.links.len());
    for l in &g.links {
        if added(l.from) {
            continue; // rebuilt with its chain
        }
        if !added(l.to) {
            links.push(*l);
            continue;
        }
        // A chain starts here: follow it to the consumer.
        let ty = g.members[l.to as usize].instr.ty;
        let node = g.members[l.to as usize].node;
        let mut movs = 0i64;
        let mut at = l.to;
        let last = loop {
            movs += 1;
            let Some(li) = next[at as usize - first_new] else {
                return; // a dangling chain: leave the group as it is
            };
            let out = g.links[li];
            if !added(out.to) {
                break out;
            }
            at = out.to;
        };
        let total = movs * chip.delay(Opcode::Mov) as i64;
        let steps = identity_steps(chip, ty, total)
            .unwrap_or_else(|| vec![Instr::new(Opcode::Mov).typed(ty); movs as usize]);
        let mut from = l.from;
        for instr in steps {
            members.push(Member {
                instr,
                place: Place::Vxm,
                node,
                after: vec![],
            });
            let m = members.len() as u32 - 1;
            links.push(Link {
                from,
                to: m,
                operand: 0,
                group: 0,
            });
            from = m;
        }
        links.push(Link { from, ..last });
    }
    g.members = members;
    g.links = links;
}

/// VXM instructions that pass a `ty` vector through unchanged and whose
/// functional delays add up to exactly `cycles`, as few as the greedy choice
/// finds (`None` when it finds no exact sum): `mov`; `addi -0.0` (x + (-0)
/// is x for every x, signed zeros included, and 0 for integers); for floats
/// `muli 1.0` (exact; fp16 is computed in f32 and rounds back to itself).
pub fn identity_steps(chip: &ChipConfig, ty: lpu_isa::DType, cycles: i64) -> Option<Vec<Instr>> {
    let mut kinds = vec![
        Instr::new(Opcode::Mov).typed(ty),
        Instr {
            imm: -0.0,
            ..Instr::new(Opcode::AddImm).typed(ty)
        },
    ];
    if ty.is_float() {
        kinds.push(Instr {
            imm: 1.0,
            ..Instr::new(Opcode::MulImm).typed(ty)
        });
    }
    let delay = |i: &Instr| chip.delay(i.op) as i64;
    // Longest first; equal delays keep the order above.
    kinds.sort_by_key(|i| std::cmp::Reverse(delay(i)));
    let mut steps = Vec::new();
    let mut left = cycles;
    while left > 0 {
        let step = kinds.iter().find(|i| (1..=left).contains(&delay(i)))?;
        left -= delay(step);
        steps.push(step.clone());
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ChipConfig {
        ChipConfig::preset("tiny").expect("tiny")
    }

    fn member(op: Opcode, place: Place) -> Member {
        Member {
            instr: Instr::new(op).typed(lpu_isa::DType::F32),
            place,
            node: 0,
            after: vec![],
        }
    }

    fn link(from: u32, to: u32) -> Link {
        Link {
            from,
            to,
            operand: 0,
            group: 0,
        }
    }

    /// A link into operand 1 of `to`.
    fn link2(from: u32, to: u32) -> Link {
        Link {
            operand: 1,
            ..link(from, to)
        }
    }

    /// `adds + 1` f32 reads of one bank of mem@5 summed by a chain of
    /// `adds` VXM `add`s: read 0 and read 1 into add 2, then each add and
    /// the next read into the next add.
    fn reads_added(adds: u32) -> Group {
        let mut g = Group {
            members: vec![read_at(5, 0)],
            links: vec![],
        };
        let mut sum = 0;
        for k in 1..=adds {
            let r = g.members.len() as u32;
            g.members.push(read_at(5, 4 * k));
            g.members.push(member(Opcode::Add, Place::Vxm));
            g.links.extend([link(sum, r + 1), link2(r, r + 1)]);
            sum = r + 1;
        }
        g
    }

    /// An f32 read of `addr` at MEM slice `slice`.
    fn read_at(slice: u16, addr: u32) -> Member {
        member(Opcode::Read, Place::Mem(VecLoc { slice, addr }))
    }

    /// read at mem@2 -> relu on the VXM (6) -> write at mem@7.
    fn chain(read_slice: u16, write_slice: u16) -> Group {
        Group {
            members: vec![
                member(
                    Opcode::Read,
                    Place::Mem(VecLoc {
                        slice: read_slice,
                        addr: 0,
                    }),
                ),
                member(Opcode::Relu, Place::Vxm),
                member(
                    Opcode::Write,
                    Place::Mem(VecLoc {
                        slice: write_slice,
                        addr: 4,
                    }),
                ),
            ],
            links: vec![link(0, 1), link(1, 2)],
        }
    }

    #[test]
    fn offsets_follow_delays_and_hops() {
        let chip = tiny();
        let fp = Floorplan::new(&chip);
        let g = chain(2, 7);
        // read (delay 3) + 4 hops to the VXM; relu (delay 1) + 1 hop.
        assert_eq!(offsets(&g, &chip, &fp).expect("linked"), vec![0, 7, 9]);
    }

    #[test]
    fn colliding_members_are_found_and_reads_retimed() {
        let chip = tiny();
        let fp = Floorplan::new(&chip);
        // Two f32 operands read from one bank of mem@5 on the same cycle.
        let mut g = reads_added(1);
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(conflict(&g, &chip, &off), Some((0, 1)));
        retime_reads(&mut g, &chip, &fp);
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(conflict(&g, &chip, &off), None);
        // The f32 bank port is busy 4 cycles: four `mov`s' worth of delay,
        // as `muli 1.0` (3 cycles) and a `mov` (1).
        let steps: Vec<(Opcode, f64)> = g.members[3..]
            .iter()
            .map(|m| (m.instr.op, m.instr.imm))
            .collect();
        assert_eq!(steps, vec![(Opcode::MulImm, 1.0), (Opcode::Mov, 0.0)]);
        assert_eq!((off[0] - off[1]).abs(), 4, "one read moved 4 cycles");
    }

    #[test]
    fn the_read_feeding_the_vxm_is_retimed() {
        let chip = tiny();
        let fp = Floorplan::new(&chip);
        // Two f32 reads of one bank of mem@2 a cycle apart: the first feeds
        // a `muli` on the VXM, the second a `rot` on the SXM at 1, and the
        // two meet in an `add`. A `mov` after the second would send its
        // value through the VXM (6) and back to the SXM.
        let mut g = Group {
            members: vec![
                read_at(2, 0),
                member(Opcode::MulImm, Place::Vxm),
                member(Opcode::Add, Place::Vxm),
                read_at(2, 4),
                member(Opcode::Rotate, Place::Sxm { slice: 1 }),
            ],
            links: vec![link(0, 1), link(1, 2), link(3, 4), link2(4, 2)],
        };
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(off[0] - off[3], 1);
        retime_reads(&mut g, &chip, &fp);
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(conflict(&g, &chip, &off), None);
        let into = |m: u32| g.links.iter().find(|l| l.to == m).map(|l| l.from);
        assert_eq!(into(4), Some(3), "the rot still reads straight from SRAM");
        assert_ne!(into(1), Some(0), "the muli's read went earlier");
    }

    #[test]
    fn identity_steps_add_up_to_the_cycles() {
        let chip = tiny();
        let ops = |ty, cycles| -> Vec<(Opcode, f64)> {
            identity_steps(&chip, ty, cycles)
                .expect("reachable")
                .iter()
                .map(|i| (i.op, i.imm))
                .collect()
        };
        use lpu_isa::DType::{F16, F32, I32, I8};
        assert_eq!(ops(F32, 0), vec![]);
        assert_eq!(ops(F32, 1), vec![(Opcode::Mov, 0.0)]);
        assert_eq!(ops(F32, 4), vec![(Opcode::MulImm, 1.0), (Opcode::Mov, 0.0)]);
        assert_eq!(
            ops(F16, 7),
            vec![(Opcode::MulImm, 1.0); 2]
                .into_iter()
                .chain([(Opcode::Mov, 0.0)])
                .collect::<Vec<_>>()
        );
        let two = ops(F32, 2);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].0, Opcode::AddImm);
        assert!(
            two[0].1 == 0.0 && two[0].1.is_sign_negative(),
            "x + (-0) keeps -0"
        );
        // Integers get no multiply.
        assert_eq!(ops(I8, 4), vec![(Opcode::AddImm, -0.0); 2]);
        assert_eq!(
            ops(I32, 3).iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![Opcode::AddImm, Opcode::Mov]
        );
        // With delays overridden the sum follows the chip, or is refused.
        let mut slow = tiny();
        slow.latency_overrides.insert("mov".into(), 2);
        slow.latency_overrides.insert("addi".into(), 2);
        slow.latency_overrides.insert("muli".into(), 2);
        assert!(identity_steps(&slow, F32, 3).is_none());
        assert_eq!(identity_steps(&slow, F32, 4).map(|v| v.len()), Some(2));
    }

    #[test]
    fn compressed_movs_keep_every_other_offset() {
        let chip = tiny();
        let fp = Floorplan::new(&chip);
        // Three f32 operands of one bank: two rounds of retiming.
        let mut g = reads_added(2);
        // The same group retimed with plain `mov`s only.
        let mut plain = g.clone();
        let n0 = plain.members.len();
        retime_reads(&mut g, &chip, &fp);
        let mut slow = tiny();
        // Only `mov` fits exactly when every other step is longer than the
        // whole: retiming then keeps its `mov`s.
        slow.latency_overrides.insert("addi".into(), 99);
        slow.latency_overrides.insert("muli".into(), 99);
        retime_reads(&mut plain, &slow, &fp);
        let off = offsets(&g, &chip, &fp).expect("linked");
        let plain_off = offsets(&plain, &chip, &fp).expect("linked");
        assert_eq!(
            off[..n0],
            plain_off[..n0],
            "the original members keep their offsets"
        );
        assert_eq!(conflict(&g, &chip, &off), None);
        let movs = plain.members.len() - n0;
        let steps = g.members.len() - n0;
        assert!(movs >= 4 && steps < movs, "{steps} steps for {movs} movs");
        assert!(g.members[n0..].iter().all(|m| m.place == Place::Vxm));
    }
}
