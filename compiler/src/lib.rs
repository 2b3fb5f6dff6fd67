//! `lpc`, the lpu compiler: lowers an operator graph into a statically
//! scheduled program for one chip.
//!
//! ```text
//!  .graph ──► lpu_graph::Graph (validated, shapes and dtypes inferred)
//!               │ lower        tensors to lane vectors in SRAM, ops to groups
//!               ▼              of slice instructions (the dependence DAG)
//!            Lowered { groups, bindings, memory image }
//!               │ schedule     exact issue cycle, queue and streams for each
//!               ▼              instruction, resources checked
//!            Vec<Vec<Placed>>
//!               │ emit         per-queue lists, NOPs, SYNC/NOTIFY, ids, deps
//!               ▼
//!            lpu_isa::Program  (.lpb binary or .lpa assembly)
//! ```
//!
//! The library knows nothing of the simulator; the program is the contract.

pub mod alloc;
pub mod emit;
pub mod error;
pub mod group;
pub mod lower;
pub mod schedule;

pub use error::CompileError;

use lpu_graph::Graph;
use lpu_isa::program::NodeInfo;
use lpu_isa::{ChipConfig, Program, Unit};
use std::collections::BTreeMap;

/// Figures about one compilation, printed by `lpc compile --stats`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileStats {
    /// Instructions per unit kind (NOP, SYNC and NOTIFY excluded).
    pub instructions: BTreeMap<Unit, usize>,
    /// Cycle on which the last result lands, including the start-up and the
    /// superlane skew: the program's latency.
    pub cycles: u64,
    /// Most SRAM bytes live at once (inputs, weights, constants and live
    /// intermediates; freed storage is reused).
    pub sram_bytes: u64,
    /// SRAM capacity of the chip.
    pub sram_capacity_bytes: u64,
    /// Scheduling groups (instruction bundles placed together).
    pub groups: usize,
}

/// A compiled program with its statistics.
pub struct Compiled {
    /// The program.
    pub program: Program,
    /// Figures about it.
    pub stats: CompileStats,
}

/// Compiles a validated graph for a chip.
pub fn compile(graph: &Graph, chip: &ChipConfig) -> Result<Compiled, CompileError> {
    let lowered = lower::lower(graph, chip)?;
    let placed = schedule::schedule(&lowered.groups, chip).map_err(|(gi, message)| {
        let node = lowered.groups[gi]
            .members
            .first()
            .and_then(|m| graph.nodes.get(m.node as usize))
            .map(|n| n.name.clone())
            .unwrap_or_default();
        CompileError::Schedule {
            model: graph.name.clone(),
            node,
            message,
        }
    })?;
    let mut instructions = BTreeMap::new();
    let mut last = 0u64;
    let base = chip.delay(lpu_isa::Opcode::Notify) as u64;
    for g in &placed {
        for p in g {
            *instructions.entry(p.queue.unit).or_insert(0) += 1;
            last = last.max(base + p.cycle + chip.delay(p.instr.op) as u64);
        }
    }
    let nodes = graph
        .nodes
        .iter()
        .map(|n| NodeInfo {
            name: n.name.clone(),
            op: n.op_type.clone(),
        })
        .collect();
    let stats = CompileStats {
        instructions,
        cycles: last + chip.superlane_skew() as u64,
        sram_bytes: lowered.sram_bytes,
        sram_capacity_bytes: chip.sram_capacity_bytes(),
        groups: lowered.groups.len(),
    };
    let program = emit::emit(
        emit::EmitInput {
            model: &graph.name,
            chip,
            nodes,
            inputs: lowered.inputs,
            outputs: lowered.outputs,
            memory: lowered.memory,
        },
        &lowered.groups,
        &placed,
    );
    Ok(Compiled { program, stats })
}
