//! The GPU/HBM baseline: what the same graph would cost on an NVIDIA GPU.
//!
//! ```text
//!   lpu_graph::Graph ──kernel::kernels──► Vec<Kernel>      flops, bytes, GEMM dims,
//!                                           │              precision, fused nodes
//!   GpuSpec (RON preset or file) ──────────►│ model::estimate
//!                                           ▼
//!                                        Estimate           per-kernel times, latency,
//!                                                           p50/p99 (jitter), energy
//! ```
//!
//! - [`spec`]: [`GpuSpec`], the GPU as data (`gpu/presets/*.ron`: `a100`,
//!   `h100`, `h200`, `l4`, every constant with its source).
//! - [`kernel`]: the front end, graph to kernels after epilogue fusion. It
//!   knows no GPU.
//! - [`model`]: the timing model (roofline with tile and wave quantization,
//!   launch overheads, energy). It knows no graph.
//! - [`jitter`]: seeded run-to-run variation for p50 and p99.
//! - [`calib`]: public measurements as kernel lists, and the calibration
//!   table of `docs/gpu-model.md`.
//!
//! The crate is a model, not a simulator: its figures are estimates whose
//! error against public measurements is stated in `docs/gpu-model.md`.

pub mod calib;
pub mod jitter;
pub mod kernel;
pub mod model;
pub mod spec;

pub use kernel::{kernels, F32Math, GemmDims, Kernel, KernelKind, Precision};
pub use model::{estimate, Bound, Estimate, KernelTime, LaunchMode, Options};
pub use spec::{GpuSpec, SpecError};

/// Estimates one inference of graph `g` on `spec`.
pub fn estimate_graph(
    g: &lpu_graph::Graph,
    spec: &GpuSpec,
    opts: &Options,
    f32_math: F32Math,
) -> Estimate {
    estimate(spec, &kernels(g, f32_math), opts)
}
