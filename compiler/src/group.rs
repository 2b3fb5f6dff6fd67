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
/// a few per member (the scheduler then reports the group).
pub fn retime_reads(g: &mut Group, chip: &ChipConfig, fp: &Floorplan) {
    for _ in 0..16 + 8 * g.members.len() {
        let Ok(off) = offsets(g, chip, fp) else {
            return;
        };
        let Some((a, b)) = conflict(g, chip, &off) else {
            return;
        };
        let read = [b, a]
            .into_iter()
            .find(|&m| g.members[m].instr.op == Opcode::Read);
        let Some(r) = read else { return };
        let Some(li) = g.links.iter().position(|l| l.from as usize == r) else {
            return;
        };
        let ty = g.members[r].instr.ty;
        let node = g.members[r].node;
        g.members.push(Member {
            instr: Instr::new(Opcode::Mov).typed(ty),
            place: Place::Vxm,
            node,
            after: vec![],
        });
        let m = g.members.len() as u32 - 1;
        let old = g.links[li];
        g.links[li] = Link { from: m, ..old };
        g.links.push(Link {
            from: r as u32,
            to: m,
            operand: 0,
            group: 0,
        });
    }
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
        let mut g = Group {
            members: vec![
                member(Opcode::Read, Place::Mem(VecLoc { slice: 5, addr: 0 })),
                member(Opcode::Read, Place::Mem(VecLoc { slice: 5, addr: 4 })),
                member(Opcode::Add, Place::Vxm),
            ],
            links: vec![
                link(0, 2),
                Link {
                    from: 1,
                    to: 2,
                    operand: 1,
                    group: 0,
                },
            ],
        };
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(conflict(&g, &chip, &off), Some((0, 1)));
        retime_reads(&mut g, &chip, &fp);
        let off = offsets(&g, &chip, &fp).expect("linked");
        assert_eq!(conflict(&g, &chip, &off), None);
        // The f32 bank port is busy 4 cycles, so 4 one-cycle movs went in.
        let movs = g
            .members
            .iter()
            .filter(|m| m.instr.op == Opcode::Mov)
            .count();
        assert_eq!(movs, 4);
    }
}
