//! Every hazard kind, provoked by a small hand-written assembly program on
//! the `tiny` chip (MEM slices at positions 2-5 and 7-10, the VXM at 6,
//! MXM planes at 0 and 11; read delay 3, write delay 1, mov delay 1).

use lpu_isa::Program;
use lpu_sim::{simulate, HazardKind, SimOptions};
use std::collections::BTreeMap;

mod common;

/// Assembles `body` (queues and data) under a header for the tiny chip.
fn program(body: &str) -> Program {
    common::tiny("", body)
}

const ONES: &str = "01010101010101010101010101010101";

fn hazard_of(body: &str) -> Option<HazardKind> {
    let p = program(body);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    o.hazard.map(|h| {
        // Every hazard names its cycle, queue and instruction.
        assert!(h.to_string().contains(&format!("cycle {}", h.cycle)), "{h}");
        h.kind
    })
}

#[test]
fn a_correct_program_has_no_hazard() {
    // read at 1 on mem@5 lands at 4, reaches the VXM (6) at 5; relu lands at
    // 6 and reaches mem@7 at 7.
    let body = format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mem@7\n  i3 sync\n  i4 nop n=6\n  i5 write.i8 a=0x0 s1e<i7\n.queue vxm@6.0\n  i6 sync\n  i8 nop n=4\n  i7 relu.i8 s0e<i2 ->s1e\n.data mem@5 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), None);
}

#[test]
fn reading_an_empty_stream() {
    let body = ".queue mem@7\n  i1 sync\n  i2 write.i8 a=0x0 s1e\n";
    assert_eq!(hazard_of(body), Some(HazardKind::EmptyStream));
}

#[test]
fn reading_one_cycle_late_misses_the_value() {
    let body = format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue vxm@6.0\n  i6 sync\n  i8 nop n=5\n  i7 relu.i8 s0e<i2 ->s1e\n.data mem@5 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::EmptyStream));
}

#[test]
fn reading_another_producers_value() {
    // i2 (mem@2, cycle 1) and i3 (mem@3, cycle 2) share a diagonal on s0e:
    // i3 overwrites i2's value from position 3 on, so mem@4 reading at
    // cycle 6 gets i3's value while it expects i2's.
    let body = format!(
        ".queue mem@2\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mem@3\n  i4 sync\n  i9 nop n=1\n  i3 read.i8 a=0x0 ->s0e\n.queue mem@4\n  i5 sync\n  i6 nop n=5\n  i7 write.i8 a=0x0 s0e<i2\n.data mem@2 0x0 i8 {ONES}\n.data mem@3 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::WrongProducer));
}

#[test]
fn two_writers_on_one_stream_position_and_cycle() {
    // Two VXM ALUs at position 6 both write s2e on cycle 6.
    let body = format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mem@7\n  i3 sync\n  i4 read.i8 a=0x0 ->s0w\n.queue vxm@6.0\n  i5 sync\n  i6 nop n=4\n  i7 mov.i8 s0e<i2 ->s2e\n.queue vxm@6.1\n  i8 sync\n  i9 nop n=4\n  i10 mov.i8 s0w<i4 ->s2e\n.data mem@5 0x0 i8 {ONES}\n.data mem@7 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::StreamCollision));
}

#[test]
fn bank_port_conflict() {
    // An fp32 read holds bank 0 for 4 cycles; a second read of the bank on
    // the next cycle collides.
    let data = ONES;
    let body = format!(
        ".queue mem@5\n  i1 sync\n  i2 read.f32 a=0x0 ->s0e\n  i3 read.i8 a=0x10 ->s4e\n.data mem@5 0x0 f32 {}\n.data mem@5 0x10 i8 {data}\n",
        ONES.repeat(4)
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::BankConflict));
}

#[test]
fn reading_never_written_sram() {
    let body = ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x40 ->s0e\n";
    assert_eq!(hazard_of(body), Some(HazardKind::UninitializedRead));
}

#[test]
fn a_broken_order_dependence() {
    // i3 must issue at least 5 cycles after i2 but issues 1 cycle after.
    let body = format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i3 read.i8 a=0x0 ->s1e after=i2+5\n.data mem@5 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::DependenceViolated));
}

/// The hazard of `body`'s run, with its cycle.
fn hazard_at(body: &str) -> Option<(HazardKind, u64)> {
    let p = program(body);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    o.hazard.map(|h| (h.kind, h.cycle))
}

/// The consumer (i5, mem@7, cycle 1) issues before its producer (i3,
/// mem@5, cycle 5): the simulator checks such an edge once the producer
/// has issued, and reports the violation at the consumer's cycle, as if
/// it had checked every edge before the run.
#[test]
fn an_order_dependence_on_a_later_producer() {
    let body = |gap: &str| {
        format!(
            ".queue mem@5\n  i1 sync\n  i2 nop n=4\n  i3 read.i8 a=0x0 ->s0e\n.queue mem@7\n  i4 sync\n  i5 read.i8 a=0x0 ->s0w after=i3{gap}\n.data mem@5 0x0 i8 {ONES}\n.data mem@7 0x0 i8 {ONES}\n"
        )
    };
    assert_eq!(
        hazard_at(&body("+0")),
        Some((HazardKind::DependenceViolated, 1))
    );
    // A negative gap that the producer's later issue still meets.
    assert_eq!(hazard_at(&body("-4")), None);
    assert_eq!(
        hazard_at(&body("-3")),
        Some((HazardKind::DependenceViolated, 1))
    );
}

/// A violated edge whose producer issues later (i4 at cycle 1 needs i7,
/// which issues at 8) comes before a bank conflict at cycle 2 (i3 holds
/// mem@5's bank 0 for 4 cycles from cycle 1, and i6 reads it at cycle 2):
/// the violation is the hazard reported, though the run met the conflict
/// first.
#[test]
fn a_violation_before_another_hazard_is_the_one_reported() {
    let conflict = format!(
        ".queue mem@5\n  i1 sync\n  i3 read.f32 a=0x0 ->s0e\n  i5 read.i8 a=0x10 ->s4e\n.queue mem@7\n  i2 sync\n  i4 read.i8 a=0x0 ->s0w after=i7+0\n  i6 nop n=6\n  i7 read.i8 a=0x0 ->s1w\n.data mem@5 0x0 f32 {}\n.data mem@5 0x10 i8 {ONES}\n.data mem@7 0x0 i8 {ONES}\n",
        ONES.repeat(4)
    );
    assert_eq!(
        hazard_at(&conflict),
        Some((HazardKind::DependenceViolated, 1))
    );
}

#[test]
fn multiply_without_installed_weights() {
    let body = format!(
        ".queue mem@10\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mxm@11.1\n  i3 sync\n  i4 nop n=4\n  i5 mm.i8 s0e<i2 acc=0 mode=set\n.data mem@10 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&body), Some(HazardKind::MxmState));
}

#[test]
fn sram_overflow_is_rejected_on_load() {
    let empty = program("");
    let text = lpu_isa::asm::disassemble(&empty)
        + ".queue mem@5\n  i1 sync\n  i2 read.f32 a=0x3ffe ->s0e\n";
    let e = lpu_isa::asm::assemble(&text).expect_err("overflow");
    assert!(e.to_string().contains("SRAM overflow"), "{e}");
}

#[test]
fn multi_row_weight_load_reads_every_stream_group() {
    // mem@3 reads at cycle 1 (lands 4, reaches the MXM at 0 on cycle 7);
    // mem@2 reads at cycle 2 (lands 5, reaches 0 on cycle 7): one lw loads
    // both rows from s0w and s1w.
    let good = format!(
        ".queue mem@2\n  i1 sync\n  i9 nop n=1\n  i3 read.i8 a=0x0 ->s1w\n.queue mem@3\n  i4 sync\n  i2 read.i8 a=0x0 ->s0w\n.queue mxm@0.0\n  i5 sync\n  i6 nop n=6\n  i7 lw.i8 row=0 rows=2 s0w<i2,i3\n.data mem@2 0x0 i8 {ONES}\n.data mem@3 0x0 i8 {ONES}\n"
    );
    assert_eq!(hazard_of(&good), None);
    // The second row one cycle late: its group is empty when lw reads it.
    let late = good.replace("i9 nop n=1", "i9 nop n=2");
    assert_eq!(hazard_of(&late), Some(HazardKind::EmptyStream));
    // Producers named in the wrong order: each group holds the other's value.
    let swapped = good.replace("s0w<i2,i3", "s0w<i3,i2");
    assert_eq!(hazard_of(&swapped), Some(HazardKind::WrongProducer));
}

/// `simulate_beside` reports what `simulate` does, with values and timing
/// only, and runs its side work exactly once: on a clean run, on one that
/// stops at a hazard, on one that must run again with its order edges
/// checked first, and on one whose issue times cannot be worked out.
#[test]
fn simulate_beside_matches_simulate_and_runs_beside_once() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let bodies = [
        format!(
            ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mem@7\n  i3 sync\n  i4 nop n=6\n  i5 write.i8 a=0x0 s1e<i7\n.queue vxm@6.0\n  i6 sync\n  i8 nop n=4\n  i7 relu.i8 s0e<i2 ->s1e\n.data mem@5 0x0 i8 {ONES}\n"
        ),
        format!(
            ".queue mem@5\n  i1 sync\n  i3 read.f32 a=0x0 ->s0e\n  i5 read.i8 a=0x10 ->s4e\n.queue mem@7\n  i2 sync\n  i4 read.i8 a=0x0 ->s0w after=i7+0\n  i6 nop n=6\n  i7 read.i8 a=0x0 ->s1w\n.data mem@5 0x0 f32 {}\n.data mem@5 0x10 i8 {ONES}\n.data mem@7 0x0 i8 {ONES}\n",
            ONES.repeat(4)
        ),
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x40 ->s0e\n".to_string(),
        // A second SYNC with no NOTIFY after the first: no issue times.
        ".queue mem@5\n  i1 sync\n  i2 nop n=1\n  i3 sync\n".to_string(),
    ];
    let mut seen = Vec::new();
    for body in &bodies {
        let p = program(body);
        for timing_only in [false, true] {
            let opts = SimOptions {
                timing_only,
                ..SimOptions::default()
            };
            let summary = |o: lpu_sim::Outcome| {
                let hazard = o.hazard.map(|h| (h.kind, h.to_string()));
                (o.cycles, hazard, o.outputs, o.stats.issued)
            };
            let plain = simulate(&p, &BTreeMap::new(), &opts).map(summary);
            let calls = AtomicUsize::new(0);
            let (beside, r) = lpu_sim::simulate_beside(&p, &BTreeMap::new(), &opts, || {
                calls.fetch_add(1, SeqCst) + 41
            });
            assert_eq!((r, calls.load(SeqCst)), (41, 1), "{body}");
            match (plain, beside.map(summary)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{body}");
                    seen.push(a.1.map_or("clean".to_string(), |h| format!("{:?}", h.0)));
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{body}");
                    seen.push("error".into());
                }
                (a, b) => panic!("{body}: {a:?} against {b:?}"),
            }
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], "clean");
    assert_eq!(seen[2], "DependenceViolated");
    assert_eq!(seen[4], "UninitializedRead");
    assert_eq!(seen[6], "error");
}
