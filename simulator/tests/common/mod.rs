//! Shared by the simulator's integration tests: hand-written programs.

#![allow(dead_code)]

use lpu_isa::{ChipConfig, Program};

/// Assembles `body` (queues and data) for `chip` under the standard header:
/// one node `n`, `extra` header lines (bindings, say), and the ICU's
/// start-up `notify`.
pub fn assemble(chip: ChipConfig, extra: &str, body: &str) -> Program {
    let empty = Program {
        model: "t".into(),
        chip,
        nodes: vec![lpu_isa::program::NodeInfo {
            name: "n".into(),
            op: "Test".into(),
        }],
        perm_tables: vec![],
        inputs: vec![],
        outputs: vec![],
        queues: vec![],
        memory: vec![],
    };
    let text = format!(
        "{}{extra}.queue icu\n  i0 notify\n{body}",
        lpu_isa::asm::disassemble(&empty)
    );
    lpu_isa::asm::assemble(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// [`assemble`] on the `tiny` preset.
pub fn tiny(extra: &str, body: &str) -> Program {
    assemble(ChipConfig::preset("tiny").expect("tiny"), extra, body)
}
