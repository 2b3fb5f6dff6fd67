//! Hazards: what a statically scheduled machine would silently get wrong,
//! and the simulator instead stops on.

use serde::Serialize;
use std::fmt;

/// The kind of a hazard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HazardKind {
    /// A read of a stream that carries no value at that position and cycle.
    EmptyStream,
    /// A read that found another instruction's value (or part of one).
    WrongProducer,
    /// Two instructions wrote the same stream at the same position and cycle.
    StreamCollision,
    /// Two accesses used one SRAM bank's port in the same cycle.
    BankConflict,
    /// A read of SRAM that was never written (or whose write has not landed).
    UninitializedRead,
    /// An instruction issued before a dependence it was scheduled against was
    /// satisfied.
    DependenceViolated,
    /// MXM state misuse: multiply with no installed weights, emit of an empty
    /// accumulator, or mismatched accumulator type.
    MxmState,
    /// A graph output whose SRAM was never written.
    MissingOutput,
}

/// A hazard, with everything needed to find it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hazard {
    /// What went wrong.
    pub kind: HazardKind,
    /// Cycle it happened.
    pub cycle: u64,
    /// Queue that issued the instruction, e.g. `mem@3`.
    pub queue: String,
    /// Slice position.
    pub slice: u16,
    /// The instruction id, e.g. `i17`.
    pub instr: String,
    /// The instruction's assembly text.
    pub asm: String,
    /// Graph node it came from.
    pub node: Option<String>,
    /// The stream involved, if any, e.g. `s3e`.
    pub stream: Option<String>,
    /// One sentence describing it.
    pub message: String,
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hazard at cycle {}, slice {} (queue {}), instruction {} `{}`",
            self.cycle, self.slice, self.queue, self.instr, self.asm
        )?;
        if let Some(n) = &self.node {
            write!(f, " from node '{n}'")?;
        }
        if let Some(s) = &self.stream {
            write!(f, ", stream {s}")?;
        }
        write!(f, ": {}", self.message)
    }
}
