//! The report of a run: one JSON object (`--json`) or a terminal table.
//! Every field is documented in the README ("Reading the report").

use crate::check::Check;
use crate::engine::Outcome;
use crate::hazard::Hazard;
use crate::perturb::Perturbation;
use lpu_isa::{Program, SliceKind, Unit};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Busy figures of one unit kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitReport {
    /// Queues of this kind on the chip.
    pub queues: u64,
    /// Queue-cycles that issued an instruction.
    pub busy_cycles: u64,
    /// `busy_cycles / (queues x cycles)`.
    pub utilization: f64,
}

/// One graph node's place in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Op type.
    pub op: String,
    /// First issue cycle of its instructions (null if it needed none).
    pub start_cycle: Option<u64>,
    /// Cycle its last result landed (null if it needed none).
    pub end_cycle: Option<u64>,
    /// Instructions issued for it.
    pub instructions: u64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Chip name.
    pub chip: String,
    /// Chip clock.
    pub clock_mhz: f64,
    /// Cycles from start to the last result, superlane skew included.
    pub cycles: u64,
    /// `cycles / clock_mhz`.
    pub latency_us: f64,
    /// Inferences per second at batch 1 when runs do not overlap:
    /// `1e6 / latency_us`.
    pub inferences_per_s: f64,
    /// Instructions issued (NOP and SYNC excluded).
    pub instructions: u64,
    /// SRAM bytes holding data at the end of the run (nothing is freed, so
    /// this is the peak).
    pub sram_peak_bytes: u64,
    /// SRAM capacity of the chip.
    pub sram_capacity_bytes: u64,
    /// Per unit kind (`mem`, `vxm`, `mxm`, `sxm`).
    pub units: BTreeMap<String, UnitReport>,
    /// Per graph node, in graph order.
    pub nodes: Vec<NodeReport>,
    /// The hazard that stopped the run, or null.
    pub hazard: Option<Hazard>,
    /// The comparison with the reference (with `--check`), or null.
    pub check: Option<Check>,
    /// The moved instruction (with `--perturb`), or null.
    pub perturb: Option<Perturbation>,
}

/// Builds the report of a run.
pub fn build(
    p: &Program,
    o: &Outcome,
    check: Option<Check>,
    perturb: Option<Perturbation>,
) -> Report {
    let chip = &p.chip;
    let slices = chip.slices();
    let mut units = BTreeMap::new();
    for kind in [
        SliceKind::Mem,
        SliceKind::Vxm,
        SliceKind::Mxm,
        SliceKind::Sxm,
    ] {
        let queues = slices.iter().filter(|k| **k == kind).count() as u64
            * chip.queues_per_slice(kind) as u64;
        let busy: u64 = o
            .stats
            .issued
            .iter()
            .filter(|(q, _)| q.unit == kind.unit())
            .map(|(_, n)| *n)
            .sum();
        let util = if queues == 0 || o.cycles == 0 {
            0.0
        } else {
            busy as f64 / (queues as f64 * o.cycles as f64)
        };
        units.insert(
            kind.to_string(),
            UnitReport {
                queues,
                busy_cycles: busy,
                utilization: util,
            },
        );
    }
    let nodes = p
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let span = o.stats.node_spans.get(k).copied().flatten();
            NodeReport {
                name: n.name.clone(),
                op: n.op.clone(),
                start_cycle: span.map(|s| s.0),
                end_cycle: span.map(|s| s.1),
                instructions: o.stats.node_instructions.get(k).copied().unwrap_or(0),
            }
        })
        .collect();
    let latency_us = o.cycles as f64 / chip.clock_mhz;
    Report {
        model: p.model.clone(),
        chip: chip.name.clone(),
        clock_mhz: chip.clock_mhz,
        cycles: o.cycles,
        latency_us,
        inferences_per_s: if latency_us > 0.0 {
            1e6 / latency_us
        } else {
            0.0
        },
        instructions: o
            .stats
            .issued
            .iter()
            .filter(|(q, _)| q.unit != Unit::Icu)
            .map(|(_, n)| n)
            .sum(),
        sram_peak_bytes: o.stats.sram_bytes,
        sram_capacity_bytes: chip.sram_capacity_bytes(),
        units,
        nodes,
        hazard: o.hazard.clone(),
        check,
        perturb,
    }
}

/// The terminal rendering.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let _ = writeln!(
        s,
        "model {}  on chip {} ({} MHz)",
        r.model, r.chip, r.clock_mhz
    );
    let _ = writeln!(
        s,
        "  latency      {} cycles = {:.3} us  ({:.0} inferences/s at batch 1)",
        r.cycles, r.latency_us, r.inferences_per_s
    );
    let _ = writeln!(s, "  instructions {}", r.instructions);
    let _ = writeln!(
        s,
        "  SRAM         {:.3} MiB used of {:.3} MiB ({:.2}%)",
        mib(r.sram_peak_bytes),
        mib(r.sram_capacity_bytes),
        100.0 * r.sram_peak_bytes as f64 / r.sram_capacity_bytes.max(1) as f64
    );
    let _ = writeln!(s, "\n  unit  queues  busy queue-cycles  utilization");
    for (k, u) in &r.units {
        let _ = writeln!(
            s,
            "  {k:<5} {:>6}  {:>17}  {:>10.2}%",
            u.queues,
            u.busy_cycles,
            100.0 * u.utilization
        );
    }
    let _ = writeln!(
        s,
        "\n  node                 op                 start      end   cycles  instrs"
    );
    for n in &r.nodes {
        let (a, b) = match (n.start_cycle, n.end_cycle) {
            (Some(a), Some(b)) => (a.to_string(), b.to_string()),
            _ => ("-".into(), "-".into()),
        };
        let span = match (n.start_cycle, n.end_cycle) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "  {:<20} {:<16} {a:>7} {b:>8} {span:>8} {:>7}",
            n.name, n.op, n.instructions
        );
    }
    if let Some(p) = &r.perturb {
        let _ = writeln!(
            s,
            "\n  perturb      seed {}: moved {} `{}` on {} from cycle {} to {}{}",
            p.seed,
            p.instr,
            p.asm,
            p.queue,
            p.from_cycle,
            p.to_cycle,
            p.node
                .as_ref()
                .map(|n| format!(" (node '{n}')"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &r.check {
        let _ = writeln!(
            s,
            "\n  check        {} ({} outputs, max abs error {:e}; {})",
            if c.passed { "PASSED" } else { "FAILED" },
            c.outputs_compared,
            c.max_abs_err,
            c.tolerance
        );
        for f in &c.failures {
            let _ = writeln!(s, "    {f}");
        }
    }
    if let Some(h) = &r.hazard {
        let _ = writeln!(s, "\n  HAZARD       {h}");
    }
    s
}
