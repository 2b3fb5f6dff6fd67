//! The LPU energy of a small hand-written program on `tiny`: every term is
//! checked against the counts it comes from.

use lpu_isa::{ChipConfig, Program};
use lpu_sim::{energy::lpu_energy, simulate, SimOptions};
use std::collections::BTreeMap;

mod common;

fn program(body: &str, chip: ChipConfig) -> Program {
    common::assemble(chip, "", body)
}

const ONES: &str = "01010101010101010101010101010101";

/// read on mem@5 -> relu on the VXM (6) -> write on mem@7.
fn body() -> String {
    format!(
        ".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n.queue mem@7\n  i3 sync\n  i4 nop n=6\n  i5 write.i8 a=0x0 s1e<i7\n.queue vxm@6.0\n  i6 sync\n  i8 nop n=4\n  i7 relu.i8 s0e<i2 ->s1e\n.data mem@5 0x0 i8 {ONES}\n"
    )
}

#[test]
fn energy_terms_follow_the_counts() {
    let chip = ChipConfig::preset("tiny").expect("tiny");
    let e = chip.energy.clone().expect("tiny has energy parameters");
    let p = program(&body(), chip);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none());
    let r = lpu_energy(&p, &o).expect("energy");
    // read, relu, write; 16 lanes of int8.
    assert_eq!(r.instructions, 3);
    assert_eq!(r.macs, 0);
    assert_eq!(r.lane_ops, 16);
    assert_eq!(r.sram_bytes, 32);
    // 16 bytes from mem@5 to the VXM at 6 (1 hop), then to mem@7 (1 hop).
    assert_eq!(r.stream_byte_hops, 32);
    let pj = 1e-12;
    assert!((r.instructions_j - 3.0 * e.instruction_pj * pj).abs() < 1e-20);
    assert!((r.sram_j - 32.0 * e.sram_pj_per_byte * pj).abs() < 1e-20);
    assert!((r.stream_j - 32.0 * e.stream_pj_per_byte_hop * pj).abs() < 1e-20);
    let static_j = e.static_w * o.cycles as f64 / (p.chip.clock_mhz * 1e6);
    assert!((r.static_j - static_j).abs() < 1e-18);
    let sum = r.instructions_j + r.mxm_j + r.vxm_j + r.sram_j + r.stream_j + r.static_j;
    assert!((r.total_j - sum).abs() < 1e-18);
    assert!((r.inferences_per_j * r.total_j - 1.0).abs() < 1e-9);
}

#[test]
fn no_energy_section_no_energy() {
    let mut chip = ChipConfig::preset("tiny").expect("tiny");
    chip.energy = None;
    let p = program(&body(), chip);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    assert_eq!(lpu_energy(&p, &o), None);
}

/// REPEATs count once per issue: the same three instructions, each issued
/// three times (counted from the queue lists when the run completes).
#[test]
fn repeats_count_every_issue() {
    let chip = ChipConfig::preset("tiny").expect("tiny");
    let text = body()
        .replace(
            "i2 read.i8 a=0x0 ->s0e\n",
            "i2 read.i8 a=0x0 ->s0e\n  i9 repeat n=2 d=1\n",
        )
        .replace(
            "i7 relu.i8 s0e<i2 ->s1e\n",
            "i7 relu.i8 s0e<i2 ->s1e\n  i10 repeat n=2 d=1\n",
        )
        .replace(
            "i5 write.i8 a=0x0 s1e<i7\n",
            "i5 write.i8 a=0x0 s1e<i7\n  i11 repeat n=2 d=1\n",
        );
    let p = program(&text, chip);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let r = lpu_energy(&p, &o).expect("energy");
    assert_eq!(r.instructions, 9);
    assert_eq!(r.lane_ops, 48);
    assert_eq!(r.sram_bytes, 96);
    assert_eq!(r.stream_byte_hops, 96);
    // The lower bound's count of the hops (what `lpsim` uses) includes
    // the REPEATs' issues too.
    let terms = lpu_sim::report::ProgramTerms::of(&p);
    assert_eq!(terms.completed_work, lpu_sim::energy::completed_work(&p));
    assert_eq!(
        lpu_sim::energy::lpu_energy_with(&p, &o, terms.completed_work),
        Some(r)
    );
}

/// The counts of a completed run worked out beside it
/// (`energy::completed_work`, what `lpsim` does) give the same energy as
/// counting after the run; a run stopped by a hazard counts its own
/// issues, whatever counts it is handed; no `energy` section, no counts.
#[test]
fn counts_worked_out_beside_the_run_price_the_same() {
    use lpu_sim::energy::{completed_work, lpu_energy_with};
    let chip = ChipConfig::preset("tiny").expect("tiny");
    let p = program(&body(), chip.clone());
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    let beside = completed_work(&p);
    assert!(beside.is_some());
    // The same counts with the hops from the lower bound's edge pass
    // (what `lpsim` works out beside the run).
    assert_eq!(lpu_sim::report::ProgramTerms::of(&p).completed_work, beside);
    let whole = lpu_energy(&p, &o);
    assert_eq!(lpu_energy_with(&p, &o, beside), whole);
    // i3 reads an empty stream: a hazard at its first issue. The counts
    // handed over (the other program's) are not used.
    let stopped = program(
        &format!(".queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i3 write.i8 a=0x10 s1e\n.data mem@5 0x0 i8 {ONES}\n"),
        chip.clone(),
    );
    let o = simulate(&stopped, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_some());
    let counted = lpu_energy(&stopped, &o);
    assert_ne!(counted, whole);
    assert_eq!(lpu_energy_with(&stopped, &o, beside), counted);
    let mut bare = chip;
    bare.energy = None;
    assert_eq!(completed_work(&program(&body(), bare)), None);
}
