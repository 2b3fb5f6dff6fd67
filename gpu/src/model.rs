//! The timing model: a kernel list and a [`GpuSpec`] give each kernel's
//! time, the end-to-end latency, p50/p99 and energy.
//!
//! Per kernel, with `eta` the calibrated efficiencies of the spec:
//!
//! ```text
//! exec = max(flops / (peak[precision] x eta_c x q_tile x q_wave),   GEMMs
//!            hbm_bytes / (BW_hbm x eta_m x fill),
//!            l2_bytes  / (BW_l2 x eta_l2))
//! ```
//!
//! GEMMs (and implicit-GEMM convolutions) try every tile of the spec and
//! split-K factors up to `max_split_k` and keep the fastest, as a library
//! heuristic would: `q_tile = MN / (ceil(M/tm) tm ceil(N/tn) tn)` and
//! `q_wave = ctas / (ceil(ctas / slots) slots)` (NVIDIA, "Matrix
//! Multiplication Background User's Guide"). A GEMM with few CTAs also
//! cannot saturate HBM: `fill = min(1, 2 x ctas / slots)`. Weights always
//! come from HBM; an activation stays in L2 when it fits in half of it.
//!
//! Every kernel also pays a fixed `kernel_ramp_us` (CTA launch, prologue,
//! first DRAM loads, epilogue, tail). Kernels run back to back on one stream. The host enqueues them (plain
//! launches: `host_us` each; eager: `eager_host_us`; CUDA graphs: nothing
//! per kernel), and the GPU starts a kernel `gap_us` (`graph_gap_us` in a
//! graph) after the previous one ends, or when the host has enqueued it,
//! whichever is later.

use crate::jitter;
use crate::kernel::{Kernel, KernelKind, Precision};
use crate::spec::GpuSpec;
use serde::Serialize;

/// How kernels are launched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// Captured in a CUDA graph and replayed: lowest per-kernel overhead.
    #[default]
    Graphs,
    /// Plain stream launches from a compiled runtime (TensorRT without graphs).
    Launch,
    /// An eager framework dispatching op by op (PyTorch eager).
    Eager,
}

impl LaunchMode {
    /// Parses `graphs`, `launch` or `eager`.
    pub fn parse(s: &str) -> Option<LaunchMode> {
        match s {
            "graphs" => Some(LaunchMode::Graphs),
            "launch" => Some(LaunchMode::Launch),
            "eager" => Some(LaunchMode::Eager),
            _ => None,
        }
    }

    /// The name [`LaunchMode::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            LaunchMode::Graphs => "graphs",
            LaunchMode::Launch => "launch",
            LaunchMode::Eager => "eager",
        }
    }
}

/// What limits a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// Arithmetic (after tile and wave quantization).
    Compute,
    /// HBM bandwidth.
    Memory,
    /// L2 bandwidth.
    L2,
}

/// One kernel's estimate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelTime {
    /// Name of the kernel's main node.
    pub name: String,
    /// Its op type.
    pub op: String,
    /// Every node it executes (fused epilogue nodes after the main one).
    pub nodes: Vec<String>,
    /// Arithmetic it runs on.
    pub precision: Precision,
    /// `[m, n, k, batch]` for GEMMs.
    pub gemm: Option<[u64; 4]>,
    /// Tile and split-K chosen, e.g. `128x128/4` (GEMMs only).
    pub tile: Option<String>,
    /// Operations (multiply-add = 2).
    pub flops: f64,
    /// Bytes to and from HBM.
    pub hbm_bytes: f64,
    /// Bytes through L2.
    pub l2_bytes: f64,
    /// Execution time on the GPU, without launch overhead, in microseconds.
    pub exec_us: f64,
    /// When it starts, from the first launch, in microseconds.
    pub start_us: f64,
    /// When it ends.
    pub end_us: f64,
    /// What bounds its execution.
    pub bound: Bound,
}

/// Energy of one inference on the GPU, in joules.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuEnergyReport {
    /// Arithmetic.
    pub compute_j: f64,
    /// HBM traffic.
    pub hbm_j: f64,
    /// L2 traffic.
    pub l2_j: f64,
    /// Static power x latency.
    pub static_j: f64,
    /// The sum.
    pub total_j: f64,
}

/// The estimate of one inference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// GPU name.
    pub name: String,
    /// Launch mode.
    pub mode: LaunchMode,
    /// Modelled latency (no jitter), microseconds.
    pub latency_us: f64,
    /// Median of the jittered latency.
    pub p50_us: f64,
    /// 99th percentile of the jittered latency.
    pub p99_us: f64,
    /// Sum of kernel execution times.
    pub exec_us: f64,
    /// `latency_us - exec_us`: launch and scheduling overhead.
    pub overhead_us: f64,
    /// Total operations.
    pub flops: f64,
    /// Total HBM bytes.
    pub hbm_bytes: f64,
    /// Energy per inference.
    pub energy: GpuEnergyReport,
    /// Per kernel, in launch order.
    pub kernels: Vec<KernelTime>,
}

/// Options of an estimate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Launch mode.
    pub mode: LaunchMode,
    /// Seed of the jitter model.
    pub seed: u64,
}

fn peak(spec: &GpuSpec, p: Precision) -> f64 {
    let t = &spec.peak_tflops;
    1e12 * match p {
        Precision::Fp16 => t.fp16,
        Precision::Fp8 => t.fp8,
        Precision::Int8 => t.int8,
        Precision::Tf32 => t.tf32,
        Precision::Fp32 => t.fp32,
    }
}

fn pj_per_flop(spec: &GpuSpec, p: Precision) -> f64 {
    let e = &spec.energy;
    match p {
        Precision::Fp16 => e.pj_per_flop_fp16,
        Precision::Fp8 | Precision::Int8 => e.pj_per_flop_fp8,
        Precision::Tf32 => e.pj_per_flop_tf32,
        Precision::Fp32 => e.pj_per_flop_fp32,
    }
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Activation bytes that go to HBM (those too large to stay in L2) and the
/// HBM bytes of a kernel.
fn hbm_bytes(spec: &GpuSpec, k: &Kernel) -> f64 {
    let act = k.input_bytes + k.output_bytes;
    let spill = if k.largest_activation_bytes > spec.l2_bytes as f64 / 2.0 {
        act
    } else {
        0.0
    };
    k.weight_bytes + spill
}

/// Times one kernel: (exec seconds, bound, hbm bytes, l2 bytes, tile).
fn time_kernel(spec: &GpuSpec, k: &Kernel) -> (f64, Bound, f64, f64, Option<String>) {
    let bw = spec.hbm_gbps * 1e9;
    let l2bw = spec.l2_gbps * 1e9 * spec.efficiency.l2;
    let hbm = hbm_bytes(spec, k);
    let base_l2 = k.weight_bytes + k.input_bytes + k.output_bytes;
    let pick = |c: f64, m: f64, l: f64| -> (f64, Bound) {
        if c >= m && c >= l {
            (c, Bound::Compute)
        } else if m >= l {
            (m, Bound::Memory)
        } else {
            (l, Bound::L2)
        }
    };
    match (k.kind, k.gemm) {
        (KernelKind::Gemm, Some(d)) => {
            let slots = spec.sms * spec.ctas_per_sm;
            let per_sm = peak(spec, k.precision) * spec.efficiency.compute / spec.sms as f64;
            let elem = match k.precision {
                Precision::Int8 | Precision::Fp8 => 1.0,
                Precision::Fp16 => 2.0,
                _ => 4.0,
            };
            let extra =
                (k.flops - 2.0 * d.m as f64 * d.n as f64 * d.k as f64 * d.batch as f64).max(0.0);
            let mut best: Option<(f64, Bound, f64, f64, String)> = None;
            for t in &spec.tiles {
                let (tm, tn) = (div_ceil(d.m, t.m), div_ceil(d.n, t.n));
                let tiles = tm * tn * d.batch;
                let mut s = 1;
                while s <= spec.max_split_k {
                    let kk = div_ceil(d.k, s);
                    if s > 1 && kk < 32 {
                        break;
                    }
                    let ctas = tiles * s;
                    let waves = div_ceil(ctas, slots);
                    let tile_flops = 2.0 * (t.m * t.n * kk) as f64;
                    let compute = waves as f64 * spec.ctas_per_sm as f64 * tile_flops
                        / (per_sm * t.efficiency)
                        + extra / (peak(spec, Precision::Fp32) * spec.efficiency.cuda_core);
                    let fill = (2.0 * ctas.max(1) as f64 / slots as f64).min(1.0);
                    let partial = if s > 1 {
                        2.0 * (s as f64) * (d.m * d.n * d.batch) as f64 * 4.0
                    } else {
                        0.0
                    };
                    let memory = hbm / (bw * spec.efficiency.gemv_memory * fill);
                    let l2_bytes = (d.batch * d.m * d.k) as f64 * elem * tn as f64
                        + (d.batch * d.k * d.n) as f64 * elem * tm as f64
                        + k.output_bytes
                        + partial;
                    let l2 = l2_bytes / l2bw;
                    let (time, bound) = pick(compute, memory, l2);
                    if best.as_ref().is_none_or(|b| time < b.0) {
                        best = Some((time, bound, hbm, l2_bytes, format!("{}x{}/{}", t.m, t.n, s)));
                    }
                    s *= 2;
                }
            }
            if let Some((t, b, h, l, tile)) = best {
                return (t, b, h, l, Some(tile));
            }
            // A spec without tiles (built by hand, not parsed): time the
            // GEMM as a CUDA-core kernel.
            let compute = k.flops / (peak(spec, Precision::Fp32) * spec.efficiency.cuda_core);
            let memory = hbm / (bw * spec.efficiency.memory);
            let (t, b) = pick(compute, memory, base_l2 / l2bw);
            (t, b, hbm, base_l2, None)
        }
        _ => {
            // Memory-bound kernels and direct convolutions: CUDA cores.
            let eff = spec.efficiency.cuda_core;
            let compute = k.flops / (peak(spec, Precision::Fp32) * eff);
            let memory = hbm / (bw * spec.efficiency.memory);
            let l2 = base_l2 / l2bw;
            let (t, b) = pick(compute, memory, l2);
            (t, b, hbm, base_l2, None)
        }
    }
}

/// Estimates one inference of `kernels` on `spec`.
pub fn estimate(spec: &GpuSpec, kernels: &[Kernel], opts: &Options) -> Estimate {
    let l = &spec.launch;
    let (host, gap) = match opts.mode {
        LaunchMode::Graphs => (0.0, l.graph_gap_us),
        LaunchMode::Launch => (l.host_us, l.gap_us),
        LaunchMode::Eager => (l.eager_host_us, l.gap_us),
    };
    let mut host_t = 0.0f64;
    let mut gpu_end = 0.0f64;
    let mut out = Vec::with_capacity(kernels.len());
    let (mut compute_j, mut hbm_total, mut l2_total, mut flops, mut exec_total) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for k in kernels {
        let (exec_s, bound, hbm, l2, tile) = time_kernel(spec, k);
        let exec_us = exec_s * 1e6 + l.kernel_ramp_us;
        host_t += host;
        let start = host_t.max(gpu_end + gap);
        let end = start + exec_us;
        gpu_end = end;
        compute_j += k.flops * pj_per_flop(spec, k.precision) * 1e-12;
        hbm_total += hbm;
        l2_total += l2;
        flops += k.flops;
        exec_total += exec_us;
        out.push(KernelTime {
            name: k.name.clone(),
            op: k.op.clone(),
            nodes: k.nodes.clone(),
            precision: k.precision,
            gemm: k.gemm.map(|d| [d.m, d.n, d.k, d.batch]),
            tile,
            flops: k.flops,
            hbm_bytes: hbm,
            l2_bytes: l2,
            exec_us,
            start_us: start,
            end_us: end,
            bound,
        });
    }
    let latency_us = gpu_end;
    let (p50_us, p99_us) = jitter::percentiles(
        &spec.jitter,
        exec_total,
        (latency_us - exec_total).max(0.0),
        opts.seed,
    );
    let hbm_j = hbm_total * spec.energy.pj_per_hbm_byte * 1e-12;
    let l2_j = l2_total * spec.energy.pj_per_l2_byte * 1e-12;
    let static_j = spec.energy.static_w * latency_us * 1e-6;
    Estimate {
        name: spec.name.clone(),
        mode: opts.mode,
        latency_us,
        p50_us,
        p99_us,
        exec_us: exec_total,
        overhead_us: (latency_us - exec_total).max(0.0),
        flops,
        hbm_bytes: hbm_total,
        energy: GpuEnergyReport {
            compute_j,
            hbm_j,
            l2_j,
            static_j,
            total_j: compute_j + hbm_j + l2_j + static_j,
        },
        kernels: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::GemmDims;

    fn h100() -> GpuSpec {
        GpuSpec::preset("h100").expect("h100")
    }

    fn gemm(m: u64, n: u64, k: u64, p: Precision, e: f64) -> Kernel {
        Kernel::gemm("g", "MatMul", GemmDims { m, n, k, batch: 1 }, p, e, e, true)
    }

    fn one(spec: &GpuSpec, k: Kernel) -> Estimate {
        estimate(spec, &[k], &Options::default())
    }

    #[test]
    fn large_gemm_is_compute_bound_near_the_calibrated_efficiency() {
        let g = h100();
        let e = one(&g, gemm(8192, 8192, 8192, Precision::Fp16, 2.0));
        let k = &e.kernels[0];
        assert_eq!(k.bound, Bound::Compute);
        let achieved = k.flops / ((k.exec_us - g.launch.kernel_ramp_us) * 1e-6);
        let target = g.peak_tflops.fp16 * 1e12 * g.efficiency.compute;
        // 8192 divides every tile; only wave quantization is lost (2048
        // tiles of 256x128 on 132 SMs: 16 waves, the last one 68/132 full).
        let q_wave = 2048.0 / (16.0 * 132.0);
        assert!(
            (achieved / target - q_wave).abs() < 0.01,
            "{achieved} vs {target}"
        );
    }

    #[test]
    fn gemv_is_memory_bound_at_bytes_over_bandwidth() {
        let g = h100();
        let e = one(&g, gemm(1, 8192, 8192, Precision::Fp16, 2.0));
        let k = &e.kernels[0];
        assert_eq!(k.bound, Bound::Memory);
        let weights = 8192.0 * 8192.0 * 2.0;
        assert_eq!(k.hbm_bytes, weights);
        let expect =
            weights / (g.hbm_gbps * 1e9 * g.efficiency.gemv_memory) * 1e6 + g.launch.kernel_ramp_us;
        assert!(
            (k.exec_us - expect).abs() / expect < 1e-9,
            "{} vs {expect}",
            k.exec_us
        );
    }

    #[test]
    fn tile_quantization_penalises_ragged_shapes() {
        let g = h100();
        let even = one(&g, gemm(4096, 4096, 4096, Precision::Fp16, 2.0));
        let ragged = one(&g, gemm(4097, 4096, 4096, Precision::Fp16, 2.0));
        let per_flop = |e: &Estimate| e.kernels[0].exec_us / e.flops;
        assert!(per_flop(&ragged) > per_flop(&even) * 1.01);
    }

    #[test]
    fn cuda_graphs_lower_latency_and_eager_raises_it() {
        let g = h100();
        let ks: Vec<Kernel> = (0..50)
            .map(|i| Kernel::memory(&format!("k{i}"), "Relu", 4096.0, 0.0, 4096.0, 1024.0))
            .collect();
        let at = |mode| estimate(&g, &ks, &Options { mode, seed: 0 }).latency_us;
        let (graphs, launch, eager) = (
            at(LaunchMode::Graphs),
            at(LaunchMode::Launch),
            at(LaunchMode::Eager),
        );
        assert!(
            graphs < launch && launch < eager,
            "{graphs} {launch} {eager}"
        );
        // Tiny kernels are bound by the host's per-op dispatch in eager mode.
        assert!(
            (eager - 50.0 * g.launch.eager_host_us).abs() < 5.0,
            "{eager}"
        );
    }

    #[test]
    fn p99_is_at_least_p50_and_energy_adds_up() {
        let g = h100();
        let e = one(&g, gemm(64, 4096, 4096, Precision::Int8, 1.0));
        assert!(e.p99_us >= e.p50_us && e.p50_us > 0.0);
        let en = &e.energy;
        assert!((en.compute_j + en.hbm_j + en.l2_j + en.static_j - en.total_j).abs() < 1e-15);
        assert!((en.static_j - g.energy.static_w * e.latency_us * 1e-6).abs() < 1e-15);
    }

    #[test]
    fn a_faster_memory_helps_only_memory_bound_kernels() {
        let h = h100();
        let h2 = GpuSpec::preset("h200").expect("h200");
        let gemv = gemm(1, 8192, 8192, Precision::Fp16, 2.0);
        let big = gemm(8192, 8192, 8192, Precision::Fp16, 2.0);
        let ramp = h.launch.kernel_ramp_us;
        let r = (one(&h, gemv.clone()).kernels[0].exec_us - ramp)
            / (one(&h2, gemv).kernels[0].exec_us - ramp);
        assert!((r - 4800.0 / 3350.0).abs() < 1e-6, "{r}");
        let r = (one(&h, big.clone()).kernels[0].exec_us - ramp)
            / (one(&h2, big).kernels[0].exec_us - ramp);
        assert!((r - 1.0).abs() < 1e-9, "{r}");
    }
}
