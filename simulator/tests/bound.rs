//! The lower bound ([`lpu_sim::bound`]) on hand-written programs on `tiny`
//! where it is tight, and timing-only runs that time them exactly alike.

use lpu_isa::Program;
use lpu_sim::{lower_bound, simulate, SimOptions};
use std::collections::BTreeMap;

mod common;

const ONES: &str = "01fe0101010101010101010101010101";

/// Runs `p` in full and timing-only; both hazard-free with equal cycles and
/// counters. Returns the cycles.
fn cycles(p: &Program) -> u64 {
    let inputs = BTreeMap::new();
    let full = simulate(p, &inputs, &SimOptions::default()).expect("runs");
    assert!(full.hazard.is_none(), "{:?}", full.hazard);
    let timing = SimOptions {
        timing_only: true,
        ..SimOptions::default()
    };
    let t = simulate(p, &inputs, &timing).expect("runs");
    assert!(t.hazard.is_none(), "{:?}", t.hazard);
    assert_eq!(t.cycles, full.cycles);
    assert_eq!(t.stats, full.stats);
    assert!(t.outputs.is_empty());
    full.cycles
}

#[test]
fn a_chain_scheduled_back_to_back_meets_the_critical_path() {
    // read (delay 3) at mem@5, one hop to the VXM at 6, relu (delay 1), one
    // hop to mem@7, write (delay 1): 1 + 3 + 1 + 1 + 1 + 1 = 8 cycles.
    let p = common::tiny(
        ".output \"y\" i8 [1,16] 1x16 mem@7:0x0\n",
        &format!(
            ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n\
             .queue vxm@6.0\n  i3 sync\n  i4 nop n=4\n  i5 relu.i8 s0e<i2 ->s1e\n\
             .queue mem@7\n  i6 sync\n  i7 nop n=6\n  i8 write.i8 a=0x0 s1e<i5\n\
             .data mem@5 0x0 i8 {ONES}\n"
        ),
    );
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 8);
    assert_eq!(b.cycles, 8, "{b:?}");
    assert_eq!(b.kind, "critical-path");
    assert_eq!(b.breakdown.start_cycle, 1);
    assert_eq!(b.breakdown.critical_path.work, 7);
}

/// Four int8 reads on mem@5 (ids i2..=i5, cycles 1..=4), then `more`.
fn four_reads(more: &str) -> Program {
    let data: String = (0..4)
        .map(|a| format!(".data mem@5 {a:#x} i8 {ONES}\n"))
        .collect();
    common::tiny(
        "",
        &format!(
            ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i3 read.i8 a=0x1 ->s0e\n\
             \x20 i4 read.i8 a=0x2 ->s0e\n  i5 read.i8 a=0x3 ->s0e\n{more}{data}"
        ),
    )
}

#[test]
fn back_to_back_reads_meet_the_queue_bound() {
    // Four int8 reads on one queue, cycles 1..=4; the last lands at 4 + 3.
    let p = four_reads("");
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 7);
    assert_eq!(b.cycles, 7, "{b:?}");
    // The bank port ties with the queue; the queue is named.
    assert_eq!(b.kind, "queue mem@5");
    assert_eq!(b.breakdown.queue.as_ref().map(|t| t.work), Some(4));
    assert_eq!(b.breakdown.bank.as_ref().map(|t| t.cycles), Some(7));
}

#[test]
fn producers_sharing_a_queue_are_counted_one_per_cycle() {
    // A read at mem@7 ordered after four reads of mem@5 (cycles 1..=4):
    // the last of them issues at cycle 4 at the earliest, so the read at
    // mem@7 issues at 5 and lands at 8. The plain longest path would let
    // all four issue at cycle 1 (bound 7, the queue's).
    let p = four_reads(&format!(
        ".queue mem@7\n  i6 sync\n  i7 nop n=4\n\
         \x20 i8 read.i8 a=0x0 ->s1e after=i2+1,i3+1,i4+1,i5+1\n\
         .data mem@7 0x0 i8 {ONES}\n"
    ));
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 8);
    assert_eq!((b.cycles, b.kind.as_str()), (8, "critical-path"), "{b:?}");
    assert_eq!(b.breakdown.queue.as_ref().map(|t| t.cycles), Some(7));
}

#[test]
fn wide_reads_of_one_bank_meet_the_bank_bound() {
    // Two f32 reads of bank 0: the port is busy four cycles per read, so the
    // second issues at 5 and lands at 8.
    let p = common::tiny(
        "",
        &format!(
            ".queue mem@5\n  i1 sync\n  i2 read.f32 a=0x0 ->s0e\n  i3 nop n=3\n  i4 read.f32 a=0x4 ->s4e\n\
             .data mem@5 0x0 f32 {0}\n.data mem@5 0x4 f32 {0}\n",
            "0000803f".repeat(16)
        ),
    );
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 8);
    assert_eq!(b.cycles, 8, "{b:?}");
    assert_eq!(b.kind, "bank mem@5.0");
    assert_eq!(b.breakdown.bank.as_ref().map(|t| t.work), Some(8));
}

#[test]
fn the_bound_is_deterministic_and_below_a_slow_schedule() {
    // The chain of the first test with idle cycles between its steps.
    let p = common::tiny(
        ".output \"y\" i8 [1,16] 1x16 mem@7:0x0\n",
        &format!(
            ".queue mem@5\n  i1 sync\n  i9 nop n=5\n  i2 read.i8 a=0x0 ->s0e\n\
             .queue vxm@6.0\n  i3 sync\n  i4 nop n=9\n  i5 relu.i8 s0e<i2 ->s1e\n\
             .queue mem@7\n  i6 sync\n  i7 nop n=11\n  i8 write.i8 a=0x0 s1e<i5\n\
             .data mem@5 0x0 i8 {ONES}\n"
        ),
    );
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 13);
    assert_eq!(b.cycles, 8);
    assert_eq!(b, lower_bound(&p));
    assert!((b.ratio(13) - 13.0 / 8.0).abs() < 1e-12);
}

#[test]
fn a_negative_gap_edge_pointing_backwards_can_bind() {
    // i3 (an earlier id) must issue at most one cycle before the chain's
    // final write i8 (cycle 7): at 6, landing at 9.
    let p = common::tiny(
        ".output \"y\" i8 [1,16] 1x16 mem@7:0x0\n",
        &format!(
            ".queue mem@4\n  i9 sync\n  i10 nop n=5\n  i3 read.i8 a=0x0 ->s2w after=i8-1\n\
             .queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n\
             .queue vxm@6.0\n  i11 sync\n  i4 nop n=4\n  i5 relu.i8 s0e<i2 ->s1e\n\
             .queue mem@7\n  i6 sync\n  i7 nop n=6\n  i8 write.i8 a=0x0 s1e<i5\n\
             .data mem@4 0x0 i8 {ONES}\n.data mem@5 0x0 i8 {ONES}\n"
        ),
    );
    let b = lower_bound(&p);
    assert_eq!(cycles(&p), 9);
    assert_eq!((b.cycles, b.kind.as_str()), (9, "critical-path"), "{b:?}");
}

#[test]
fn a_dependence_cycle_still_gives_a_bound() {
    // Malformed: i2 waits for i5, which reads i2's result. The bound leaves
    // the closing edge out instead of looping.
    let p = common::tiny(
        "",
        &format!(
            ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e after=i5+1\n\
             .queue vxm@6.0\n  i3 sync\n  i4 nop n=4\n  i5 relu.i8 s0e<i2 ->s1e\n\
             .data mem@5 0x0 i8 {ONES}\n"
        ),
    );
    let b = lower_bound(&p);
    assert_eq!(b, lower_bound(&p));
    assert!(b.cycles >= 4, "{b:?}");
}

#[test]
fn stream_slots_count_at_the_busiest_position_with_local_values_shared() {
    // An f32 read at mem@5 feeds four chained relus on the VXM (position 6)
    // and the last one a write at mem@7. At position 6 the read's and the
    // last relu's values hold 4 east slots each, and the three values
    // passed from relu to relu (produced and consumed at 6, free to take
    // either direction) 12 more: (8 + 12) / 2 = 10 slots over both
    // directions, more than the 8 east alone.
    let p = common::tiny(
        ".output \"y\" f32 [1,16] 1x16 mem@7:0x0\n",
        &format!(
            ".queue mem@5\n  i1 sync\n  i2 read.f32 a=0x0 ->s0e\n\
             .queue vxm@6.0\n  i3 sync\n  i4 nop n=4\n  i5 relu.f32 s0e<i2 ->s4e\n\
             \x20 i6 relu.f32 s4e<i5 ->s0e\n  i7 relu.f32 s0e<i6 ->s4e\n  i8 relu.f32 s4e<i7 ->s0e\n\
             .queue mem@7\n  i9 sync\n  i10 nop n=9\n  i11 write.f32 a=0x0 s0e<i8\n\
             .data mem@5 0x0 f32 {}\n",
            "0000803f".repeat(16)
        ),
    );
    assert_eq!(cycles(&p), 11);
    let b = lower_bound(&p);
    let s = b.breakdown.streams.as_ref().expect("a stream term");
    assert_eq!(
        (s.resource.as_str(), s.work),
        ("streams both@6", 10),
        "{b:?}"
    );
    // 10 slots over 8 streams: 2 cycles after the first issue.
    assert_eq!(s.cycles, b.breakdown.start_cycle + 1 + 2 + b.breakdown.skew);
    assert!(b.cycles >= s.cycles && b.cycles <= 11);
    assert_eq!(lower_bound(&sparse_ids(&p)), b);
}

/// `p` with every instruction id `i` renumbered `i * 100,000 + 7`: too
/// sparse for the bound's table by id, which then looks ids up in a map.
fn sparse_ids(p: &Program) -> Program {
    let mut sparse = p.clone();
    let renumber = |id: u32| id * 100_000 + 7;
    for s in sparse.queues.iter_mut().flat_map(|q| &mut q.slots) {
        s.id = renumber(s.id);
        for d in &mut s.deps {
            d.on = renumber(d.on);
        }
    }
    sparse.validate().expect("still a valid program");
    sparse
}

#[test]
fn sparse_ids_give_the_same_bound() {
    // The critical path through producers on one queue (fan-in), the
    // queue term and the streams' extents, all found through the map.
    let p = four_reads(&format!(
        ".queue mem@7\n  i6 sync\n  i7 nop n=4\n\
         \x20 i8 read.i8 a=0x0 ->s1w after=i2+1,i3+1,i4+1,i5+1\n\
         .queue vxm@6.0\n  i9 sync\n  i10 nop n=8\n  i11 relu.i8 s1w<i8 ->s2e\n\
         .data mem@7 0x0 i8 {ONES}\n"
    ));
    let b = lower_bound(&p);
    assert!(b.breakdown.streams.is_some(), "{b:?}");
    assert_eq!(lower_bound(&sparse_ids(&p)), b);
}
