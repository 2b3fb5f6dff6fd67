//! `gather` (the TSP's `Gather s,map`) on the `tiny` chip (16 lanes, MEM
//! slices at positions 2-5 and 7-10, read and gather delay 3): each lane
//! reads the vector its int32 map selects within the window, 0 outside it.

use lpu_isa::program::{MemInit, VecLoc};
use lpu_isa::{Opcode, Program, Values};
use lpu_sim::{simulate, HazardKind, SimOptions};
use std::collections::BTreeMap;

mod common;

/// The window: rows `LO..LO + 3` of a table on mem@4, bank 0, from 0x10.
const LO: i32 = 100;

/// Row `r`'s vector: lane `l` holds `(r - LO) * 16 + l + 1`.
fn row(r: i32) -> Vec<i8> {
    (0..16).map(|l| ((r - LO) * 16 + l + 1) as i8).collect()
}

/// The map, lane by lane: 99 to 103 in turn (99 and 103 are outside).
fn map() -> Vec<i32> {
    (0..16).map(|l| LO - 1 + l % 5).collect()
}

/// mem@4 reads the map (bank 1) at cycle 1 onto s0e-s3e, where it lands at
/// cycle 4; the gather at cycle 4 (`gather` is the queue's text) sends its
/// result east to mem@7, which writes it at cycle 10 as output `y`.
fn program(gather: &str, table: bool) -> Program {
    let body = format!(
        ".queue mem@4\n  i1 sync\n  i2 read.i32 a=0x2000 ->s0e\n  i3 nop n=2\n  {gather}\n.queue mem@7\n  i5 sync\n  i6 nop n=9\n  i7 write.i8 a=0x0 s4e<i4\n"
    );
    let mut p = common::tiny(".output \"y\" i8 [1,16] 1x16 mem@7:0x0\n", &body);
    let at = |addr| VecLoc { slice: 4, addr };
    p.memory.push(MemInit {
        at: at(0x2000),
        values: Values::I32(map()),
    });
    if table {
        for r in 0..3 {
            p.memory.push(MemInit {
                at: at(0x10 + r as u32),
                values: Values::I8(row(LO + r)),
            });
        }
    }
    p.validate().expect("valid");
    p
}

const GATHER: &str = "i4 gather.i8 a=0x10 lo=100 n=3 s0e<i2 ->s4e";

fn run(p: &Program, timing_only: bool) -> lpu_sim::Outcome {
    let opts = SimOptions {
        timing_only,
        ..SimOptions::default()
    };
    simulate(p, &BTreeMap::new(), &opts).expect("runs")
}

#[test]
fn each_lane_reads_the_row_its_map_selects_and_zero_outside_the_window() {
    let p = program(GATHER, true);
    let o = run(&p, false);
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let want: Vec<f64> = map()
        .iter()
        .enumerate()
        .map(|(l, &m)| {
            if (LO..LO + 3).contains(&m) {
                row(m)[l] as f64
            } else {
                0.0
            }
        })
        .collect();
    let y = &o.outputs["y"];
    let got: Vec<f64> = (0..16).map(|i| y.values.get_f64(i)).collect();
    assert_eq!(got, want);
    assert!(want.contains(&0.0) && want.iter().any(|v| *v > 16.0));
    // The assembly keeps every field.
    let text = lpu_isa::asm::disassemble(&p);
    assert!(
        text.contains("gather.i8 a=0x10 lo=100 n=3 s0e<i2 ->s4e"),
        "{text}"
    );
    assert_eq!(lpu_isa::asm::assemble(&text).expect("reassembles"), p);
    // Timing alone agrees on the cycles.
    assert_eq!(run(&p, true).cycles, o.cycles);
}

#[test]
fn a_window_without_data_is_an_uninitialized_read_in_either_mode() {
    let p = program(GATHER, false);
    for timing_only in [false, true] {
        let h = run(&p, timing_only).hazard.expect("hazard");
        assert_eq!(h.kind, HazardKind::UninitializedRead, "{h}");
    }
}

#[test]
fn a_gather_holds_its_banks_port_like_a_read() {
    // A second read of the map's bank one cycle after the map read collides
    // (the int32 read holds bank 1 for 4 cycles); the gather's own bank 0
    // is free, so moving the gather onto bank 1 collides too.
    let body = GATHER.replace("a=0x10", "a=0x2010");
    let p = program(&body, false);
    let h = run(&p, true).hazard.expect("hazard");
    assert_eq!(h.kind, HazardKind::BankConflict, "{h}");
}

#[test]
fn a_window_across_a_bank_boundary_or_of_no_rows_is_invalid() {
    for bad in [
        "i4 gather.i8 a=0x1fff lo=100 n=3 s0e<i2 ->s4e",
        "i4 gather.i8 a=0x10 lo=100 n=0 s0e<i2 ->s4e",
    ] {
        let mut p = program(GATHER, true);
        let good = p.clone();
        let text = lpu_isa::asm::disassemble(&good).replace(
            GATHER.trim_start_matches("i4 "),
            bad.trim_start_matches("i4 "),
        );
        assert!(lpu_isa::asm::assemble(&text).is_err(), "{bad}");
        // The same instruction built in memory fails validation too.
        for q in &mut p.queues {
            for s in &mut q.slots {
                if s.instr.op == Opcode::Gather {
                    s.instr.arg = if bad.contains("0x1fff") {
                        0x1fff
                    } else {
                        s.instr.arg
                    };
                    s.instr.imm = if bad.contains("n=0") {
                        0.0
                    } else {
                        s.instr.imm
                    };
                }
            }
        }
        assert!(p.validate().is_err(), "{bad}");
    }
}
