//! Dynamic mode on small hand-written programs on `tiny`: values equal the
//! static engine's, the static timing is never beaten here, bank conflicts
//! show up as arbitration stalls, HBM latency as memory stalls, seeded.

use lpu_isa::{MemoryModel, Program};
use lpu_sim::dynamic::{run_seeds, simulate_dynamic, DynamicOptions};
use lpu_sim::{simulate, SimOptions};
use std::collections::BTreeMap;

mod common;

fn program(body: &str) -> Program {
    common::tiny(".output \"y\" i8 [2,16] 2x16 mem@7:0x0 mem@7:0x1\n", body)
}

const ONES: &str = "01fe0101010101010101010101010101";
const TWOS: &str = "02020202020202020202020202020202";

/// Two read -> relu -> write chains through one VXM ALU; the reads share a
/// bank of mem@5.
fn two_chains() -> Program {
    program(&format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i10 read.i8 a=0x1 ->s2e\n\
         .queue vxm@6.0\n  i6 sync\n  i8 nop n=4\n  i7 relu.i8 s0e<i2 ->s1e\n  i11 relu.i8 s2e<i10 ->s3e\n\
         .queue mem@7\n  i3 sync\n  i4 nop n=6\n  i5 write.i8 a=0x0 s1e<i7\n  i12 write.i8 a=0x1 s3e<i11\n\
         .data mem@5 0x0 i8 {ONES}\n.data mem@5 0x1 i8 {TWOS}\n"
    ))
}

fn opts(window: usize, memory: MemoryModel, seed: u64) -> DynamicOptions {
    DynamicOptions {
        window,
        memory,
        seed,
        latch_in_window: false,
        trace: false,
    }
}

#[test]
fn values_match_static_and_static_is_not_beaten() {
    let p = two_chains();
    let inputs = BTreeMap::new();
    let s = simulate(&p, &inputs, &SimOptions::default()).expect("static");
    assert!(s.hazard.is_none(), "{:?}", s.hazard);
    for window in [1, 8] {
        for latch_in_window in [false, true] {
            let o = DynamicOptions {
                latch_in_window,
                ..opts(window, MemoryModel::Sram, 0)
            };
            let d = simulate_dynamic(&p, &inputs, &o).expect("dynamic");
            assert!(d.outcome.hazard.is_none(), "{:?}", d.outcome.hazard);
            assert_eq!(d.outcome.outputs, s.outputs);
            assert!(
                d.outcome.cycles >= s.cycles,
                "{} < {}",
                d.outcome.cycles,
                s.cycles
            );
            assert_eq!(d.stalls.memory, 0);
            // Six instructions; the static program's NOPs, SYNCs and NOTIFY
            // are not issued.
            let issued: u64 = d.outcome.stats.issued.values().sum();
            assert_eq!(issued, 6);
        }
    }
    // relu of [1, -2, 1, ...] and [2, 2, ...].
    let y = &s.outputs["y"];
    assert_eq!(y.shape, vec![2, 16]);
}

#[test]
fn bank_port_conflicts_are_arbitration_stalls() {
    // Two f32 reads of one bank: the port is busy four cycles per read.
    let p = program(&format!(
        ".queue mem@5\n  i1 sync\n  i2 read.f32 a=0x0 ->s0e\n  i16 nop n=3\n  i3 read.f32 a=0x4 ->s4e\n\
         .queue vxm@6.0\n  i6 sync\n  i8 nop n=4\n  i7 cvt.f32.i8 s0e<i2 ->s1e\n  i9 nop n=3\n  i11 cvt.f32.i8 s4e<i3 ->s2e\n\
         .queue mem@7\n  i13 sync\n  i14 nop n=7\n  i5 write.i8 a=0x0 s1e<i7\n  i15 nop n=3\n  i12 write.i8 a=0x1 s2e<i11\n\
         .data mem@5 0x0 f32 {0}\n.data mem@5 0x4 f32 {0}\n",
        "0000803f".repeat(16)
    ));
    let inputs = BTreeMap::new();
    let s = simulate(&p, &inputs, &SimOptions::default()).expect("static");
    assert!(s.hazard.is_none(), "{:?}", s.hazard);
    let d = simulate_dynamic(&p, &inputs, &opts(8, MemoryModel::Sram, 0)).expect("dynamic");
    assert!(d.outcome.hazard.is_none(), "{:?}", d.outcome.hazard);
    assert_eq!(d.outcome.outputs, s.outputs);
    assert!(d.stalls.arbitration >= 3, "{:?}", d.stalls);
    assert!(d.outcome.cycles >= s.cycles);
}

#[test]
fn hbm_latency_is_seeded_and_shows_as_memory_stalls() {
    let p = two_chains();
    let inputs = BTreeMap::new();
    let sram = simulate_dynamic(&p, &inputs, &opts(8, MemoryModel::Sram, 0)).expect("sram");
    let hbm = MemoryModel::Hbm {
        latency: 50,
        jitter: 40,
        buffer_kib: 0,
    };
    let runs: Vec<u64> = (0..12)
        .map(|seed| {
            let d = simulate_dynamic(&p, &inputs, &opts(8, hbm.clone(), seed)).expect("hbm");
            assert_eq!(d.outcome.outputs, sram.outcome.outputs);
            assert!(d.stalls.memory > 0, "{:?}", d.stalls);
            assert_eq!(d.memory_misses, 4);
            d.outcome.cycles
        })
        .collect();
    assert!(runs.iter().all(|c| *c >= sram.outcome.cycles + 100));
    assert!(
        runs.iter().any(|c| *c != runs[0]),
        "jitter varies: {runs:?}"
    );
    // Same seed, same run.
    let again = simulate_dynamic(&p, &inputs, &opts(8, hbm.clone(), 3)).expect("hbm");
    assert_eq!(again.outcome.cycles, runs[3]);
    // The distribution is that of the single runs, for any pool size.
    let o = opts(8, hbm, 0);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run_seeds(&p, &inputs, &o, 12).expect("seeds"));
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(|| run_seeds(&p, &inputs, &o, 12).expect("seeds"));
    assert_eq!(one, two);
    assert_eq!(one.min, *runs.iter().min().unwrap());
    assert_eq!(one.max, *runs.iter().max().unwrap());
}

#[test]
fn repeat_is_refused() {
    let p = program(&format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i3 repeat n=1 d=1\n.data mem@5 0x0 i8 {ONES}\n"
    ));
    let e = simulate_dynamic(&p, &BTreeMap::new(), &opts(8, MemoryModel::Sram, 0)).unwrap_err();
    assert!(e.to_string().contains("REPEAT"), "{e}");
}
