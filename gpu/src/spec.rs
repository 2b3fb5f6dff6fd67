//! A GPU's description: datasheet figures, calibrated efficiencies, launch
//! overheads, jitter and energy parameters, loaded from RON.
//!
//! Four presets are compiled in (`a100`, `h100`, `h200`, `l4`, in
//! `gpu/presets/`), every constant commented with its source. A user's own
//! file is loaded with [`GpuSpec::load`]; [`GpuSpec::resolve`] takes either.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Dense peak throughput per precision, in TFLOPS (TOPS for int8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peaks {
    /// FP16/BF16 tensor cores.
    pub fp16: f64,
    /// FP8 tensor cores.
    pub fp8: f64,
    /// INT8 tensor cores.
    pub int8: f64,
    /// TF32 tensor cores.
    pub tf32: f64,
    /// FP32 on the CUDA cores (no tensor cores).
    pub fp32: f64,
}

/// Calibrated fractions of the peaks that kernels reach.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Tensor-core GEMM at its best tile, before tile and wave quantization.
    pub compute: f64,
    /// Streaming HBM bandwidth (elementwise and data-movement kernels).
    pub memory: f64,
    /// HBM bandwidth of memory-bound GEMMs (GEMV-like weight streaming).
    pub gemv_memory: f64,
    /// L2 bandwidth.
    pub l2: f64,
    /// CUDA-core kernels (direct and depthwise convolutions, fp32 math).
    pub cuda_core: f64,
}

/// One CTA tile shape a GEMM library picks from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    /// Rows of the output tile.
    pub m: u64,
    /// Columns of the output tile.
    pub n: u64,
    /// Throughput of this tile relative to the best one (1.0).
    pub efficiency: f64,
}

/// Per-kernel overheads of each launch mode, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Fixed execution cost of every kernel (CTA launch, prologue, first
    /// DRAM loads, epilogue, tail), in every launch mode.
    pub kernel_ramp_us: f64,
    /// GPU-side gap between kernels with plain stream launches (launch
    /// latency, dependency wait).
    pub gap_us: f64,
    /// The same inside a CUDA graph.
    pub graph_gap_us: f64,
    /// Host cost of enqueuing one kernel with plain launches.
    pub host_us: f64,
    /// Host cost of dispatching one op in an eager framework.
    pub eager_host_us: f64,
}

/// Run-to-run variation, for p50 and p99.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jitter {
    /// Relative standard deviation of kernel execution time.
    pub exec_sigma: f64,
    /// Log-normal sigma of the launch and scheduling overheads.
    pub overhead_sigma: f64,
    /// Probability of an outlier run.
    pub outlier_probability: f64,
    /// An outlier run's latency relative to the median.
    pub outlier_factor: f64,
}

/// Energy parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEnergy {
    /// Power drawn while the GPU is busy regardless of the work, in watts.
    pub static_w: f64,
    /// Energy per fp16/bf16 tensor-core flop, pJ.
    pub pj_per_flop_fp16: f64,
    /// Energy per fp8 or int8 tensor-core op, pJ.
    pub pj_per_flop_fp8: f64,
    /// Energy per tf32 tensor-core flop, pJ.
    pub pj_per_flop_tf32: f64,
    /// Energy per CUDA-core fp32 flop, pJ.
    pub pj_per_flop_fp32: f64,
    /// Energy per byte read from or written to HBM (DRAM), pJ.
    pub pj_per_hbm_byte: f64,
    /// Energy per byte moved through L2, pJ.
    pub pj_per_l2_byte: f64,
}

/// A whole GPU. Every field is documented in `docs/gpu-model.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Short name, printed in reports.
    pub name: String,
    /// One line saying what this GPU is.
    pub description: String,
    /// Streaming multiprocessors.
    pub sms: u64,
    /// Boost clock in MHz.
    pub clock_mhz: f64,
    /// Dense peaks per precision.
    pub peak_tflops: Peaks,
    /// DRAM (HBM or GDDR) bandwidth, GB/s.
    pub hbm_gbps: f64,
    /// DRAM capacity in bytes.
    pub hbm_bytes: u64,
    /// L2 capacity in bytes.
    pub l2_bytes: u64,
    /// L2 bandwidth, GB/s.
    pub l2_gbps: f64,
    /// Board power limit, W.
    pub tdp_w: f64,
    /// Calibrated efficiencies.
    pub efficiency: Efficiency,
    /// Tile shapes GEMMs choose from.
    pub tiles: Vec<Tile>,
    /// Tile CTAs resident per SM at once.
    pub ctas_per_sm: u64,
    /// Largest split-K factor for GEMMs whose tiles do not fill the SMs.
    pub max_split_k: u64,
    /// Launch overheads.
    pub launch: Launch,
    /// Jitter model.
    pub jitter: Jitter,
    /// Energy model.
    pub energy: GpuEnergy,
}

/// A GPU description that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: cannot read GPU config: {source}")]
    Io {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The RON text is not a valid GPU config.
    #[error("{path}: invalid GPU config: {message}")]
    Parse {
        /// File that failed.
        path: String,
        /// Parser's message with line and column.
        message: String,
    },
    /// The config parses but a value is out of range.
    #[error("{path}: invalid GPU config: {message}")]
    Invalid {
        /// File (or preset) that failed.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A name that is neither a preset nor a file.
    #[error("unknown GPU '{0}': expected a preset name ({presets}), a path to a .ron file, or 'none'", presets = GpuSpec::PRESETS.join(", "))]
    Unknown(String),
}

impl GpuSpec {
    /// Names of the built-in presets.
    pub const PRESETS: &'static [&'static str] = &["h100", "a100", "h200", "l4"];

    /// The RON text of a preset.
    pub fn preset_text(name: &str) -> Option<&'static str> {
        Some(match name {
            "a100" => include_str!("../presets/a100.ron"),
            "h100" => include_str!("../presets/h100.ron"),
            "h200" => include_str!("../presets/h200.ron"),
            "l4" => include_str!("../presets/l4.ron"),
            _ => return None,
        })
    }

    /// A built-in preset by name.
    pub fn preset(name: &str) -> Option<GpuSpec> {
        // The presets are tested to parse and validate.
        Self::parse(Self::preset_text(name)?, name).ok()
    }

    /// A preset name, or else a path to a RON file.
    pub fn resolve(name_or_path: &str) -> Result<GpuSpec, SpecError> {
        if let Some(g) = Self::preset(name_or_path) {
            return Ok(g);
        }
        let p = Path::new(name_or_path);
        if p.exists() {
            return Self::load(p);
        }
        Err(SpecError::Unknown(name_or_path.to_string()))
    }

    /// Loads and validates a RON file.
    pub fn load(path: &Path) -> Result<GpuSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates RON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<GpuSpec, SpecError> {
        let g: GpuSpec = ron::from_str(text).map_err(|e| SpecError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        g.validate().map_err(|message| SpecError::Invalid {
            path: origin.to_string(),
            message,
        })?;
        Ok(g)
    }

    /// Checks that every figure is in range.
    pub fn validate(&self) -> Result<(), String> {
        let pos = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a positive number, found {v}"))
            }
        };
        let nonneg = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a non-negative number, found {v}"))
            }
        };
        let frac = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(format!("{what} must be in (0, 1], found {v}"))
            }
        };
        if self.sms == 0 || self.sms > 100_000 {
            return Err(format!("sms must be 1..=100000, found {}", self.sms));
        }
        pos("clock_mhz", self.clock_mhz)?;
        let p = &self.peak_tflops;
        for (w, v) in [
            ("peak_tflops.fp16", p.fp16),
            ("peak_tflops.fp8", p.fp8),
            ("peak_tflops.int8", p.int8),
            ("peak_tflops.tf32", p.tf32),
            ("peak_tflops.fp32", p.fp32),
            ("hbm_gbps", self.hbm_gbps),
            ("l2_gbps", self.l2_gbps),
            ("tdp_w", self.tdp_w),
            ("jitter.outlier_factor", self.jitter.outlier_factor),
        ] {
            pos(w, v)?;
        }
        let e = &self.efficiency;
        for (w, v) in [
            ("efficiency.compute", e.compute),
            ("efficiency.memory", e.memory),
            ("efficiency.gemv_memory", e.gemv_memory),
            ("efficiency.l2", e.l2),
            ("efficiency.cuda_core", e.cuda_core),
        ] {
            frac(w, v)?;
        }
        if self.tiles.is_empty() {
            return Err("tiles must list at least one tile".into());
        }
        for t in &self.tiles {
            if t.m == 0 || t.n == 0 || t.m > 4096 || t.n > 4096 {
                return Err(format!("tile {}x{}: sides must be 1..=4096", t.m, t.n));
            }
            frac("tiles[].efficiency", t.efficiency)?;
        }
        if self.ctas_per_sm == 0 || self.ctas_per_sm > 64 {
            return Err(format!(
                "ctas_per_sm must be 1..=64, found {}",
                self.ctas_per_sm
            ));
        }
        if self.max_split_k == 0 || self.max_split_k > 256 {
            return Err(format!(
                "max_split_k must be 1..=256, found {}",
                self.max_split_k
            ));
        }
        let l = &self.launch;
        for (w, v) in [
            ("launch.kernel_ramp_us", l.kernel_ramp_us),
            ("launch.gap_us", l.gap_us),
            ("launch.graph_gap_us", l.graph_gap_us),
            ("launch.host_us", l.host_us),
            ("launch.eager_host_us", l.eager_host_us),
            ("jitter.exec_sigma", self.jitter.exec_sigma),
            ("jitter.overhead_sigma", self.jitter.overhead_sigma),
            ("energy.static_w", self.energy.static_w),
            ("energy.pj_per_flop_fp16", self.energy.pj_per_flop_fp16),
            ("energy.pj_per_flop_fp8", self.energy.pj_per_flop_fp8),
            ("energy.pj_per_flop_tf32", self.energy.pj_per_flop_tf32),
            ("energy.pj_per_flop_fp32", self.energy.pj_per_flop_fp32),
            ("energy.pj_per_hbm_byte", self.energy.pj_per_hbm_byte),
            ("energy.pj_per_l2_byte", self.energy.pj_per_l2_byte),
        ] {
            nonneg(w, v)?;
        }
        if self.jitter.exec_sigma > 1.0 || self.jitter.overhead_sigma > 3.0 {
            return Err("jitter sigmas must be at most 1 (exec) and 3 (overhead)".into());
        }
        if !(0.0..=0.5).contains(&self.jitter.outlier_probability) {
            return Err(format!(
                "jitter.outlier_probability must be in [0, 0.5], found {}",
                self.jitter.outlier_probability
            ));
        }
        Ok(())
    }

    /// One line per preset: name and description.
    pub fn list() -> String {
        let mut s = String::new();
        for name in Self::PRESETS {
            if let Some(g) = Self::preset(name) {
                s.push_str(&format!("{:<6} {}\n", g.name, g.description));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for name in GpuSpec::PRESETS {
            let text = GpuSpec::preset_text(name).expect("text");
            let g = GpuSpec::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(g.name, *name);
        }
    }

    #[test]
    fn datasheet_figures() {
        let a = GpuSpec::preset("a100").expect("a100");
        assert_eq!(
            (a.sms, a.peak_tflops.fp16, a.hbm_gbps),
            (108, 312.0, 2039.0)
        );
        let h = GpuSpec::preset("h100").expect("h100");
        assert_eq!(
            (h.sms, h.peak_tflops.fp16, h.hbm_gbps),
            (132, 989.0, 3350.0)
        );
        let h2 = GpuSpec::preset("h200").expect("h200");
        assert_eq!(h2.hbm_gbps, 4800.0);
        assert_eq!(h2.peak_tflops, h.peak_tflops);
        let l = GpuSpec::preset("l4").expect("l4");
        assert_eq!(
            (l.peak_tflops.fp16, l.hbm_gbps, l.tdp_w),
            (121.0, 300.0, 72.0)
        );
    }

    #[test]
    fn bad_configs_are_errors_naming_the_file() {
        let e = GpuSpec::parse("GpuSpec(", "my.ron")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("my.ron: invalid GPU config"), "{e}");
        let text = GpuSpec::preset_text("a100")
            .expect("a100")
            .replace("hbm_gbps: 2039.0", "hbm_gbps: -1.0");
        let e = GpuSpec::parse(&text, "neg.ron").unwrap_err().to_string();
        assert!(e.contains("neg.ron") && e.contains("hbm_gbps"), "{e}");
        let text = GpuSpec::preset_text("a100")
            .expect("a100")
            .replace("compute: 0.869", "compute: 1.5");
        let e = GpuSpec::parse(&text, "eff.ron").unwrap_err().to_string();
        assert!(e.contains("efficiency.compute"), "{e}");
        let e = GpuSpec::resolve("v100").unwrap_err().to_string();
        assert!(
            e.contains("unknown GPU 'v100'") && e.contains("h100"),
            "{e}"
        );
        let e = GpuSpec::resolve("/nonexistent/dir/x.ron")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown GPU"), "{e}");
    }

    #[test]
    fn list_names_every_preset() {
        let l = GpuSpec::list();
        for name in GpuSpec::PRESETS {
            assert!(l.contains(name), "{l}");
        }
    }
}
