//! The harness shared by the compiler's end-to-end tests: compile a graph
//! for a chip preset, simulate it on seeded inputs, require no hazard, and
//! compare the outputs with the reference interpreter.

#![allow(dead_code)]

use lpu_isa::{ChipConfig, Opcode, Program};
use lpu_sim::check::Check;
use lpu_sim::SimOptions;

/// One compiled and simulated graph.
pub struct Run {
    /// The simulated outputs against the interpreter's.
    pub check: Check,
    /// The compiled program.
    pub program: Program,
    /// The simulated cycle count.
    pub cycles: u64,
}

/// Parses a `.graph` text (a test's inline graph).
pub fn parse(text: &str) -> lpu_graph::Graph {
    lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Compiles `g` for preset `chip`, simulates it on the seeded random inputs
/// of `seed`, asserts the run has no hazard and compares its outputs with
/// the interpreter's on the same inputs.
pub fn compile_and_check(g: &lpu_graph::Graph, chip: &str, seed: u64) -> Run {
    let cfg = ChipConfig::preset(chip).expect("preset");
    let program = lpu_compiler::compile(g, &cfg)
        .unwrap_or_else(|e| panic!("{e}"))
        .program;
    let inputs = lpu_graph::random_inputs(g, seed);
    let o = lpu_sim::simulate(&program, &inputs, &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{chip}: {:?}", o.hazard);
    let reference = lpu_graph::interpret(g, &inputs).expect("reference");
    Run {
        check: lpu_sim::check::compare(&o.outputs, &reference),
        program,
        cycles: o.cycles,
    }
}

/// How many of `p`'s instructions are `op`.
pub fn count(p: &Program, op: Opcode) -> usize {
    p.queues
        .iter()
        .flat_map(|q| &q.slots)
        .filter(|s| s.instr.op == op)
        .count()
}
