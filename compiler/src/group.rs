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
use lpu_isa::Instr;

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
    /// Any queue of an SXM slice.
    Sxm,
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

/// A stream link inside a group: `from`'s result is operand `operand` (0 or
/// 1) of `to`.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Producer member.
    pub from: u32,
    /// Consumer member.
    pub to: u32,
    /// Operand index of the consumer.
    pub operand: u8,
}

/// A group of members scheduled together.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// Members.
    pub members: Vec<Member>,
    /// Stream links between them.
    pub links: Vec<Link>,
}
