//! `lpc`, the lpu compiler: lowers an operator graph into a statically
//! scheduled program for one chip.
//!
//! ```text
//!  .graph ──► lpu_graph::Graph (validated, shapes and dtypes inferred)
//!               │ passes       optimize (folding, BN, layout, dead code) and
//!               ▼              the precision rewrite (compile_with only)
//!            lpu_graph::Graph
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
pub mod passes;
pub mod schedule;

pub use error::CompileError;
pub use passes::Precision;

use lpu_graph::{Graph, Tensor};
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
    /// The precision every node of the compiled graph computes in, by node
    /// name (`int8`, `fp16`, `fp32`, ...; see [`passes::node_precisions`]).
    pub node_precision: BTreeMap<String, String>,
    /// Where the computed tensors live (empty unless [`compile_probed`] was
    /// asked for them).
    pub probes: Vec<lpu_isa::program::Probe>,
}

/// How [`compile_with`] prepares a graph before lowering.
///
/// On the command line: `lpc compile --precision
/// int8|fp16|fp32|fp32-split|mixed` chooses [`CompileOptions::precision`]
/// (default `fp32`: the graph's own types, f32 products by constant
/// weights on the MXM in fp16; `fp32-split`: the same graph with those
/// products fp32-accurate in three fp16 passes). `int8` quantizes every MatMul, Gemm and Conv post-training
/// (per-channel int8 weights, per-tensor int8 activations calibrated on
/// sample inputs, int32 accumulation, requantization on the VXM); `fp16`
/// runs weights and activations in f16 with f32 accumulation in the MXM;
/// `mixed` is int8 for products with constant weights, f32 for softmax and
/// normalizations, fp16 elsewhere. See [`passes::precision`] for the exact
/// rules.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The precision to compile in.
    pub precision: Precision,
    /// Whether to run the graph passes ([`passes::optimize`]) first.
    pub optimize: bool,
    /// Calibration samples for int8/mixed when `calibration` is empty (at
    /// least 1 is used).
    pub calib_samples: usize,
    /// Seed of the first seeded calibration sample.
    pub seed: u64,
    /// User-supplied calibration input sets (each: every graph input by
    /// name); empty: `calib_samples` seeded random sets.
    pub calibration: Vec<BTreeMap<String, Tensor>>,
}

impl Default for CompileOptions {
    /// fp32, optimized, [`passes::DEFAULT_CALIB_SAMPLES`] samples from
    /// [`passes::DEFAULT_CALIB_SEED`].
    fn default() -> CompileOptions {
        CompileOptions {
            precision: Precision::Fp32,
            optimize: true,
            calib_samples: passes::DEFAULT_CALIB_SAMPLES,
            seed: passes::DEFAULT_CALIB_SEED,
            calibration: Vec::new(),
        }
    }
}

/// Compiles `graph` for `chip` after the graph passes and the precision
/// rewrite chosen by `options`: [`passes::optimize`] (when
/// `options.optimize`), then [`passes::apply_precision`] calibrated on
/// `options.calibration` or on seeded samples, then [`compile`]. The
/// result's `node_precision` states the precision of every node.
pub fn compile_with(
    graph: &Graph,
    chip: &ChipConfig,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let out = prepare(graph.clone(), options)?;
    let mut compiled = compile_prepared(&out.graph, chip, options.precision, false)?;
    compiled.node_precision = out.node_precision;
    Ok(compiled)
}

/// The graph [`compile_with`] lowers: `graph` after [`passes::optimize`]
/// (when `options.optimize`) and [`passes::apply_precision`], with the
/// precision of every node. A caller that checks a simulation against the
/// reference interpreter runs the interpreter on this graph (int8 paths are
/// then compared bit-exactly), and can lower it with [`compile`] itself
/// instead of calling [`compile_with`]. Takes the graph by value so its
/// initializers are not copied.
pub fn prepare(
    graph: Graph,
    options: &CompileOptions,
) -> Result<passes::PrecisionOutcome, CompileError> {
    let g = if options.optimize {
        passes::optimize_owned(graph)?.0
    } else {
        graph
    };
    if options.precision == Precision::Fp32 {
        return Ok(passes::PrecisionOutcome {
            node_precision: passes::node_precisions(&g),
            graph: g,
        });
    }
    if options.precision == Precision::Fp32Split {
        return Ok(passes::PrecisionOutcome {
            node_precision: passes::precision::split_precisions(&g),
            graph: g,
        });
    }
    let seeded;
    let calib: &[BTreeMap<String, Tensor>] = if !options.calibration.is_empty()
        || !matches!(options.precision, Precision::Int8 | Precision::Mixed)
    {
        &options.calibration
    } else {
        seeded = passes::calibration_inputs(&g, options.calib_samples.max(1), options.seed);
        &seeded
    };
    passes::apply_precision(&g, options.precision, calib)
}

/// Compiles a validated graph for a chip.
pub fn compile(graph: &Graph, chip: &ChipConfig) -> Result<Compiled, CompileError> {
    compile_probed(graph, chip, false)
}

/// [`compile`]; with `probes`, [`Compiled::probes`] also lists where every
/// computed tensor lives, so that an in-process simulation can capture them
/// for a node-by-node check. The program is identical either way.
pub fn compile_probed(
    graph: &Graph,
    chip: &ChipConfig,
    probes: bool,
) -> Result<Compiled, CompileError> {
    compile_prepared(graph, chip, Precision::Fp32, probes)
}

/// [`compile_probed`] for a graph that [`prepare`] made for `precision`:
/// under [`Precision::Fp32Split`] the lowering computes f32 products by
/// constant weights in three fp16 passes ([`lower::lower_opts`]); under
/// any other precision the program is [`compile_probed`]'s.
pub fn compile_prepared(
    graph: &Graph,
    chip: &ChipConfig,
    precision: Precision,
    probes: bool,
) -> Result<Compiled, CompileError> {
    let split = precision == Precision::Fp32Split;
    let lowered = lower::lower_opts(graph, chip, probes, split)?;
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
            perm_tables: lowered.perm_tables,
        },
        &lowered.groups,
        &placed,
    );
    Ok(Compiled {
        program,
        stats,
        node_precision: if split {
            passes::precision::split_precisions(graph)
        } else {
            passes::node_precisions(graph)
        },
        probes: lowered.probes,
    })
}
