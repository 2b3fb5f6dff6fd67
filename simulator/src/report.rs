//! The report of a run: one JSON object (`--json`) or a terminal table.
//! Every field is documented in the README ("Reading the report").

use crate::check::Check;
use crate::energy::{lpu_energy_with, EnergyReport};
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
    /// The precision the node computes in (`int8`, `fp16`, `fp32`, ...),
    /// when the model was compiled in-process; else null.
    pub precision: Option<String>,
}

/// A group of nodes in the breakdown (`--by layer` or `--by op`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReport {
    /// The layer name prefix or operator type.
    pub name: String,
    /// Nodes in the group.
    pub nodes: usize,
    /// First cycle any of its instructions issued.
    pub start_cycle: Option<u64>,
    /// Last cycle any of its instructions issued.
    pub end_cycle: Option<u64>,
    /// Instructions issued for its nodes.
    pub instructions: u64,
    /// Its share of all issued instructions.
    pub instruction_share: f64,
}

/// How the text report breaks the run down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakdown {
    /// One row per graph node.
    Node,
    /// One row per layer: nodes grouped by [`layer_of`].
    Layer,
    /// One row per operator type.
    Op,
    /// No breakdown table.
    None,
}

impl Breakdown {
    /// Parses `node`, `layer`, `op` or `none`.
    pub fn parse(s: &str) -> Option<Breakdown> {
        match s {
            "node" => Some(Breakdown::Node),
            "layer" => Some(Breakdown::Layer),
            "op" => Some(Breakdown::Op),
            "none" => Some(Breakdown::None),
            _ => None,
        }
    }
}

/// The layer a node belongs to: its name up to and including the first
/// `.`/`/`-separated part that ends in a digit, plus a following all-digit
/// block index (`layer1.0.conv1` -> `layer1.0`; `encoder.layer.3.attention`
/// -> `encoder.layer.3`; `h.0.attn` -> `h.0`; `conv1` -> `conv1`), or the
/// part before the first `/` when no part is numbered (`fc/bias` -> `fc`).
pub fn layer_of(name: &str) -> String {
    let mut end = 0;
    for (i, part) in name.split(['.', '/']).enumerate() {
        end += part.len() + usize::from(i > 0);
        if part.ends_with(|c: char| c.is_ascii_digit()) {
            // A stage and its block index (`layer1.0`) stay together.
            let rest = &name[end..];
            if let Some(next) = rest
                .strip_prefix('.')
                .and_then(|r| r.split(['.', '/']).next())
            {
                if !next.is_empty() && next.chars().all(|c| c.is_ascii_digit()) {
                    end += 1 + next.len();
                }
            }
            return name[..end].to_string();
        }
    }
    name.split('/').next().unwrap_or(name).to_string()
}

/// Groups `nodes` by `key`, in order of first appearance.
pub fn group_nodes(nodes: &[NodeReport], key: impl Fn(&NodeReport) -> String) -> Vec<GroupReport> {
    let total: u64 = nodes.iter().map(|n| n.instructions).sum();
    let mut out: Vec<GroupReport> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        let k = key(n);
        let i = *index.entry(k.clone()).or_insert_with(|| {
            out.push(GroupReport {
                name: k,
                nodes: 0,
                start_cycle: None,
                end_cycle: None,
                instructions: 0,
                instruction_share: 0.0,
            });
            out.len() - 1
        });
        let g = &mut out[i];
        g.nodes += 1;
        g.instructions += n.instructions;
        g.start_cycle = match (g.start_cycle, n.start_cycle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        g.end_cycle = match (g.end_cycle, n.end_cycle) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    for g in &mut out {
        g.instruction_share = if total == 0 {
            0.0
        } else {
            g.instructions as f64 / total as f64
        };
    }
    out
}

/// The GPU baseline of the same graph (a model: `docs/gpu-model.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuReport {
    /// GPU preset or file name.
    pub name: String,
    /// One line describing the GPU.
    pub description: String,
    /// Launch mode: `graphs`, `launch` or `eager`.
    pub mode: String,
    /// Modelled latency without jitter, microseconds.
    pub latency_us: f64,
    /// Median latency of the jitter model.
    pub p50_us: f64,
    /// 99th-percentile latency of the jitter model.
    pub p99_us: f64,
    /// `1e6 / p50_us`: batch as in the graph, runs not overlapped.
    pub inferences_per_s: f64,
    /// Energy per inference, J.
    pub energy_j: f64,
    /// `1 / energy_j`.
    pub inferences_per_j: f64,
    /// GPU p50 / LPU latency (null when the LPU did not run).
    pub lpu_speedup: Option<f64>,
    /// Operations of all kernels.
    pub flops: f64,
    /// HBM bytes of all kernels.
    pub hbm_bytes: f64,
    /// Energy by component.
    pub energy: lpu_gpu::model::GpuEnergyReport,
    /// Per kernel, in launch order.
    pub kernels: Vec<lpu_gpu::KernelTime>,
}

impl GpuReport {
    /// The report block of an estimate; `lpu_latency_us` gives the speedup.
    pub fn new(spec: &lpu_gpu::GpuSpec, e: lpu_gpu::Estimate, lpu_latency_us: Option<f64>) -> Self {
        let pos = |x: f64| if x > 0.0 { 1.0 / x } else { 0.0 };
        GpuReport {
            name: spec.name.clone(),
            description: spec.description.clone(),
            mode: e.mode.name().to_string(),
            latency_us: e.latency_us,
            p50_us: e.p50_us,
            p99_us: e.p99_us,
            inferences_per_s: 1e6 * pos(e.p50_us),
            energy_j: e.energy.total_j,
            inferences_per_j: pos(e.energy.total_j),
            lpu_speedup: lpu_latency_us.filter(|l| *l > 0.0).map(|l| e.p50_us / l),
            flops: e.flops,
            hbm_bytes: e.hbm_bytes,
            energy: e.energy,
            kernels: e.kernels,
        }
    }

    /// The side-by-side lines of the terminal report: `lpu` is the LPU
    /// column's heading, `latency_us` and `energy_j` its figures (`-` when
    /// absent, e.g. for a model that does not fit).
    pub fn text(&self, lpu: &str, latency_us: Option<f64>, energy_j: Option<f64>) -> String {
        let mut s = String::new();
        let dash = || "-".to_string();
        let _ = writeln!(
            s,
            "\n  vs GPU       {} with {} launches: a model (docs/gpu-model.md)",
            self.name, self.mode
        );
        let _ = writeln!(
            s,
            "               {:<32} GPU {}",
            format!("LPU {lpu}"),
            self.name
        );
        let lpu_lat = latency_us.map_or_else(dash, |l| format!("{l:.3} us (static: p50 = p99)"));
        let _ = writeln!(
            s,
            "  latency      {lpu_lat:<32} {:.3} us (p50 {:.3}, p99 {:.3})",
            self.latency_us, self.p50_us, self.p99_us
        );
        let lpu_tp = latency_us
            .filter(|l| *l > 0.0)
            .map_or_else(dash, |l| format!("{:.0}", 1e6 / l));
        let _ = writeln!(
            s,
            "  inferences/s {lpu_tp:<32} {:.0}",
            self.inferences_per_s
        );
        let lpu_en = energy_j.map_or_else(dash, fmt_joules);
        let _ = writeln!(
            s,
            "  energy/inf   {lpu_en:<32} {}",
            fmt_joules(self.energy_j)
        );
        if let Some(x) = self.lpu_speedup {
            let _ = writeln!(s, "  speedup      {x:.2}x (GPU p50 / LPU latency)");
        }
        s
    }
}

/// Joules with a readable prefix.
pub fn fmt_joules(j: f64) -> String {
    if j >= 1.0 {
        format!("{j:.3} J")
    } else if j >= 1e-3 {
        format!("{:.3} mJ", j * 1e3)
    } else if j >= 1e-6 {
        format!("{:.3} uJ", j * 1e6)
    } else {
        format!("{:.3} nJ", j * 1e9)
    }
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
    /// A lower bound on the program's cycles ([`crate::bound`]): no
    /// schedule of its instructions can finish sooner.
    pub lower_bound_cycles: u64,
    /// The term that sets the bound (`critical-path`, `queue mxm@0.1`,
    /// `bank mem@4.1`, `streams east@46`, `vxm`, `sxm`, `mxm`).
    pub bound_kind: String,
    /// Every term of the bound.
    pub bound: crate::bound::BoundBreakdown,
    /// Instructions issued (NOP and SYNC excluded).
    pub instructions: u64,
    /// SRAM bytes holding data at the end of the run (nothing is freed, so
    /// this is the peak).
    pub sram_peak_bytes: u64,
    /// SRAM capacity of the chip.
    pub sram_capacity_bytes: u64,
    /// Per unit kind (`mem`, `vxm`, `mxm`, `sxm`).
    pub units: BTreeMap<String, UnitReport>,
    /// The precision the model was compiled in (`--precision`), when it was
    /// compiled in-process; else null.
    pub precision: Option<String>,
    /// Per graph node, in graph order.
    pub nodes: Vec<NodeReport>,
    /// Per layer (see [`layer_of`]), in order of first appearance.
    pub layers: Vec<GroupReport>,
    /// The hazard that stopped the run, or null.
    pub hazard: Option<Hazard>,
    /// The comparison with the reference (with `--check`), or null.
    pub check: Option<Check>,
    /// The moved instruction (with `--perturb`), or null.
    pub perturb: Option<Perturbation>,
    /// The LPU's energy per inference, or null when the chip config has no
    /// `energy` section.
    pub energy: Option<EnergyReport>,
    /// The GPU baseline, or null (`--gpu none`, or no graph to model).
    pub gpu: Option<GpuReport>,
    /// Dynamic mode (`--schedule dynamic`): window, memory, stalls and the
    /// seed distribution; absent from the JSON in static mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<crate::dynamic::DynamicReport>,
}

/// Builds the report of a run.
pub fn build(
    p: &Program,
    o: &Outcome,
    check: Option<Check>,
    perturb: Option<Perturbation>,
) -> Report {
    build_with(p, o, ProgramTerms::of(p), check, perturb)
}

/// The terms of a report that depend on the program alone, not on the run,
/// so that a caller can work them out beside the simulation (`lpsim` does,
/// on a second thread).
#[derive(Clone, Debug)]
pub struct ProgramTerms {
    /// The program's [`crate::bound::lower_bound`].
    pub bound: crate::bound::Bound,
    /// The work of a completed run ([`crate::energy::completed_work`]; its
    /// stream hops counted by the lower bound's pass over the edges).
    pub completed_work: Option<crate::energy::Counts>,
}

impl ProgramTerms {
    /// Works out the terms of `p`.
    pub fn of(p: &Program) -> ProgramTerms {
        let (bound, hops) = crate::bound::lower_bound_and_hops(p);
        ProgramTerms {
            bound,
            completed_work: crate::energy::completed_work_given_hops(p, hops),
        }
    }
}

/// [`build`] with the program's terms worked out by the caller.
pub fn build_with(
    p: &Program,
    o: &Outcome,
    terms: ProgramTerms,
    check: Option<Check>,
    perturb: Option<Perturbation>,
) -> Report {
    let ProgramTerms {
        bound,
        completed_work,
    } = terms;
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
                precision: None,
            }
        })
        .collect::<Vec<_>>();
    let layers = group_nodes(&nodes, |n| layer_of(&n.name));
    let latency_us = o.cycles as f64 / chip.clock_mhz;
    Report {
        model: p.model.clone(),
        chip: chip.name.clone(),
        clock_mhz: chip.clock_mhz,
        cycles: o.cycles,
        latency_us,
        lower_bound_cycles: bound.cycles,
        bound_kind: bound.kind,
        bound: bound.breakdown,
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
        precision: None,
        nodes,
        layers,
        hazard: o.hazard.clone(),
        check,
        perturb,
        energy: lpu_energy_with(p, o, completed_work),
        gpu: None,
        dynamic: None,
    }
}

impl Report {
    /// Records the compile precision and each node's (no-op when
    /// `per_node` is empty: a program compiled elsewhere).
    pub fn set_precisions(&mut self, mode: &str, per_node: &BTreeMap<String, String>) {
        if per_node.is_empty() {
            return;
        }
        self.precision = Some(mode.to_string());
        for n in &mut self.nodes {
            n.precision = per_node.get(&n.name).cloned();
        }
    }
}

/// The terminal rendering, with one row per node.
pub fn text(r: &Report) -> String {
    text_by(r, Breakdown::Node)
}

/// The terminal rendering with the chosen breakdown table.
pub fn text_by(r: &Report, by: Breakdown) -> String {
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
    let _ = writeln!(
        s,
        "  lower bound  {} cycles ({}); schedule is {:.2}x the bound",
        r.lower_bound_cycles,
        r.bound_kind,
        r.cycles as f64 / r.lower_bound_cycles.max(1) as f64
    );
    let _ = writeln!(s, "  instructions {}", r.instructions);
    let _ = writeln!(
        s,
        "  SRAM         {:.3} MiB used of {:.3} MiB ({:.2}%)",
        mib(r.sram_peak_bytes),
        mib(r.sram_capacity_bytes),
        100.0 * r.sram_peak_bytes as f64 / r.sram_capacity_bytes.max(1) as f64
    );
    if let Some(e) = &r.energy {
        let _ = writeln!(
            s,
            "  energy       {} per inference ({:.0} inferences/J; static {}, dynamic {})",
            fmt_joules(e.total_j),
            e.inferences_per_j,
            fmt_joules(e.static_j),
            fmt_joules(e.total_j - e.static_j)
        );
    }
    if let Some(d) = &r.dynamic {
        s.push_str(&dynamic_text(d));
    }
    if let Some(g) = &r.gpu {
        s.push_str(&g.text(
            &r.chip,
            Some(r.latency_us),
            r.energy.as_ref().map(|e| e.total_j),
        ));
    }
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
    let span = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => (a.to_string(), b.to_string(), (b - a).to_string()),
        _ => ("-".into(), "-".into(), "-".into()),
    };
    match by {
        Breakdown::Node => {
            let _ = writeln!(
                s,
                "\n  node                 op               prec    start      end   cycles  instrs"
            );
            for n in &r.nodes {
                let (a, b, c) = span(n.start_cycle, n.end_cycle);
                let _ = writeln!(
                    s,
                    "  {:<20} {:<16} {:<5} {a:>7} {b:>8} {c:>8} {:>7}",
                    n.name,
                    n.op,
                    n.precision.as_deref().unwrap_or("-"),
                    n.instructions
                );
            }
        }
        Breakdown::Layer | Breakdown::Op => {
            let groups = if by == Breakdown::Layer {
                r.layers.clone()
            } else {
                group_nodes(&r.nodes, |n| n.op.clone())
            };
            let head = if by == Breakdown::Layer {
                "layer"
            } else {
                "op"
            };
            let _ = writeln!(
                s,
                "\n  {head:<24} nodes    start      end   cycles   instrs  share"
            );
            for g in &groups {
                let (a, b, c) = span(g.start_cycle, g.end_cycle);
                let _ = writeln!(
                    s,
                    "  {:<24} {:>5} {a:>8} {b:>8} {c:>8} {:>8} {:>5.1}%",
                    g.name,
                    g.nodes,
                    g.instructions,
                    100.0 * g.instruction_share
                );
            }
        }
        Breakdown::None => {}
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
        let verdict = if c.passed { "PASSED" } else { "FAILED" };
        match &c.per_node {
            None => {
                let _ = writeln!(
                    s,
                    "\n  check        {verdict} ({} outputs, max abs error {:e}; {})",
                    c.outputs_compared, c.max_abs_err, c.tolerance
                );
                for f in &c.failures {
                    let _ = writeln!(s, "    {f}");
                }
            }
            Some(n) => {
                let _ = writeln!(
                    s,
                    "\n  check        {verdict} node by node: {} computed tensors against the reference run on their own simulated inputs ({} more fused into chains or not readable); float max abs error {:e}; int8: {} of {} elements one step off",
                    n.tensors_compared,
                    n.tensors_not_captured,
                    n.max_abs_err,
                    n.int8_off_by_one,
                    n.int8_elements
                );
                for f in &n.failures {
                    let _ = writeln!(s, "    {f}");
                }
                let _ = writeln!(
                    s,
                    "               end to end ({} output{}): max abs error {:e}, {}",
                    c.outputs_compared,
                    if c.outputs_compared == 1 { "" } else { "s" },
                    c.max_abs_err,
                    if c.failures.is_empty() {
                        "within tolerance"
                    } else if n.passed {
                        "over tolerance, with every node right on its own inputs: rounding compounded through the nodes"
                    } else {
                        "over tolerance"
                    }
                );
                for f in &c.failures {
                    let _ = writeln!(s, "    {f}");
                }
            }
        }
    }
    if let Some(h) = &r.hazard {
        let _ = writeln!(s, "\n  HAZARD       {h}");
    }
    s
}

/// The dynamic-mode lines of the terminal report.
pub fn dynamic_text(d: &crate::dynamic::DynamicReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  schedule     dynamic (window {}, latch {}, memory {}, seed {})",
        d.window,
        if d.latch_in_window {
            "window"
        } else {
            "unbounded"
        },
        d.memory,
        d.seed
    );
    if let Some(st) = d.static_cycles {
        let _ = writeln!(
            s,
            "  vs static    {} cycles ({:+} cycles, {:.3}x)",
            st,
            d.cycles as i64 - st as i64,
            d.cycles as f64 / st.max(1) as f64
        );
    }
    let _ = writeln!(
        s,
        "  stalls       operand {}, structural {}, arbitration {}, memory {} (instruction-cycles; {} memory misses)",
        d.stalls.operand, d.stalls.structural, d.stalls.arbitration, d.stalls.memory, d.memory_misses
    );
    if let Some(x) = &d.distribution {
        let _ = writeln!(
            s,
            "  {} seeds     min {} p50 {} p90 {} p99 {} max {} cycles (seeds {}..{})",
            x.runs,
            x.min,
            x.p50,
            x.p90,
            x.p99,
            x.max,
            x.first_seed,
            x.first_seed.wrapping_add(x.runs.saturating_sub(1))
        );
        let m = &x.mean_stalls;
        let _ = writeln!(
            s,
            "  mean stalls  operand {:.1}, structural {:.1}, arbitration {:.1}, memory {:.1}",
            m.operand, m.structural, m.arbitration, m.memory
        );
    }
    s
}

#[cfg(test)]
mod layer_tests {
    use super::layer_of;

    #[test]
    fn layers_are_name_prefixes_up_to_the_numbered_part() {
        assert_eq!(layer_of("layer1.0.conv1"), "layer1.0");
        assert_eq!(layer_of("layer1.0/relu"), "layer1.0");
        assert_eq!(
            layer_of("encoder.layer.3.attention.self.query"),
            "encoder.layer.3"
        );
        assert_eq!(layer_of("h.0.attn/split"), "h.0");
        assert_eq!(layer_of("conv1"), "conv1");
        assert_eq!(layer_of("fc/bias"), "fc");
        assert_eq!(layer_of("gap"), "gap");
    }
}
