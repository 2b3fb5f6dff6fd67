//! The chip configuration: slice layout on the east-west axis, lanes, streams,
//! SRAM geometry, MXM and VXM sizes, clock and functional-delay overrides.
//!
//! Configurations are data: RON files under `isa-spec/chips/`, two of which
//! are built in as presets (`tsp`, the published part, and `tiny`, a teaching
//! chip). A user's own file is loaded with [`ChipConfig::load`].

use crate::isa::{Opcode, Unit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Largest functional delay a chip config may set, in cycles.
pub const MAX_DELAY: u32 = 1024;

/// The function of one slice on the east-west axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SliceKind {
    /// SRAM: reads vectors onto streams and writes vectors from streams.
    Mem,
    /// Vector execution: elementwise arithmetic, conversions, activations.
    Vxm,
    /// Matrix execution: one weight plane with its accumulators.
    Mxm,
    /// Switch execution: lane shifts, rotations and permutations.
    Sxm,
}

impl SliceKind {
    /// The unit kind whose instructions this slice's queues execute.
    pub fn unit(self) -> Unit {
        match self {
            SliceKind::Mem => Unit::Mem,
            SliceKind::Vxm => Unit::Vxm,
            SliceKind::Mxm => Unit::Mxm,
            SliceKind::Sxm => Unit::Sxm,
        }
    }
}

/// SRAM geometry of every MEM slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemConfig {
    /// Banks per MEM slice; each bank has one port (one access at a time).
    pub banks: u32,
    /// Addresses per bank. One address holds one byte per lane.
    pub addresses_per_bank: u32,
    /// Bytes per tile per address (one tile per superlane): must equal
    /// `lanes_per_superlane`, one byte per lane.
    pub word_bytes: u32,
}

/// Size of each MXM plane (one plane per MXM slice).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxmConfig {
    /// Weight rows and columns of one plane: must equal the vector length, so
    /// one activation vector is one K-tile and one result vector one N-tile.
    pub size: u32,
    /// Accumulator registers per plane, each one vector wide (int32 or fp32).
    pub accumulators: u32,
    /// Weight rows one `lw` loads in a cycle, each on its own stream group
    /// (the compiler uses fewer when the type is wide or streams are few).
    pub load_rows: u32,
    /// Input element types the plane multiplies (int8 accumulates in int32,
    /// fp16 in fp32).
    pub dtypes: Vec<crate::DType>,
}

/// Queues of the VXM and SXM slices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitQueues {
    /// Independent instruction queues (ALUs) per VXM slice.
    pub vxm_alus: u32,
    /// Independent instruction queues per SXM slice.
    pub sxm_queues: u32,
}

/// Energy parameters of a chip, for the energy per inference that `lpsim`
/// reports: dynamic energy per event plus static power x latency. Each
/// figure's source is commented in the chip's RON file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// Process node and where the figures come from, in words.
    pub technology: String,
    /// Per issued instruction (queue fetch, decode, control), pJ.
    pub instruction_pj: f64,
    /// Per int8 multiply-accumulate (int32 accumulation) in the MXM, pJ.
    pub mac_int8_pj: f64,
    /// Per fp16 multiply-accumulate (fp32 accumulation) in the MXM, pJ.
    pub mac_fp16_pj: f64,
    /// Per lane of one VXM or SXM operation, pJ.
    pub vxm_lane_op_pj: f64,
    /// Per byte read from or written to SRAM, pJ.
    pub sram_pj_per_byte: f64,
    /// Per byte carried one slice position along a stream, pJ.
    pub stream_pj_per_byte_hop: f64,
    /// Static (leakage and clock) power while running, W.
    pub static_w: f64,
}

impl EnergyConfig {
    /// Checks that every figure is a finite non-negative number.
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [
            ("instruction_pj", self.instruction_pj),
            ("mac_int8_pj", self.mac_int8_pj),
            ("mac_fp16_pj", self.mac_fp16_pj),
            ("vxm_lane_op_pj", self.vxm_lane_op_pj),
            ("sram_pj_per_byte", self.sram_pj_per_byte),
            ("stream_pj_per_byte_hop", self.stream_pj_per_byte_hop),
            ("static_w", self.static_w),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "energy.{what} must be a non-negative number, found {v}"
                ));
            }
        }
        Ok(())
    }
}

/// The memory behind the MEM slices in `lpsim`'s dynamic mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum MemoryModel {
    /// The on-chip SRAM of the static model: no extra latency.
    #[default]
    Sram,
    /// HBM behind a small on-chip buffer: every SRAM read or write that
    /// misses the buffer pays `latency` plus a seeded uniform `0..=jitter`
    /// extra cycles (bank conflicts, refresh, queueing). Figures and their
    /// sources: `simulator/DYNAMIC.md` (assumed, order of magnitude).
    Hbm {
        /// Extra cycles of a buffer miss (device access plus controller).
        latency: u32,
        /// Largest further seeded extra delay of a miss, cycles.
        jitter: u32,
        /// On-chip buffer, KiB: the most recently used vectors that fit
        /// are served without extra latency; 0 for none.
        buffer_kib: u32,
    },
}

impl MemoryModel {
    /// The HBM model with this project's default figures: 100 cycles of
    /// latency, up to 100 of jitter, a 64 KiB buffer.
    pub fn hbm_default() -> MemoryModel {
        MemoryModel::Hbm {
            latency: 100,
            jitter: 100,
            buffer_kib: 64,
        }
    }
}

/// Default issue window of the dynamic mode.
pub const DEFAULT_WINDOW: u32 = 8;

fn default_window() -> u32 {
    DEFAULT_WINDOW
}

/// Options of `lpsim`'s dynamic (interlocked) mode; see `simulator/DYNAMIC.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicConfig {
    /// The memory behind the MEM slices.
    #[serde(default)]
    pub memory: MemoryModel,
    /// Issue window per queue: an instruction may issue only while it is
    /// among the first `window` not-yet-issued instructions of its queue.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Operand latches are the window (reservation stations): a producer
    /// issues only while every consumer of its stream result is in its
    /// queue's window. `false` (default): a result waits at its consumer
    /// for as long as needed (unbounded operand buffers).
    #[serde(default)]
    pub latch_in_window: bool,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            memory: MemoryModel::Sram,
            window: DEFAULT_WINDOW,
            latch_in_window: false,
        }
    }
}

impl DynamicConfig {
    /// Checks the window and the memory figures.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.window) {
            return Err(format!(
                "dynamic.window must be 1..=1024, found {}",
                self.window
            ));
        }
        if let MemoryModel::Hbm {
            latency,
            jitter,
            buffer_kib,
        } = self.memory
        {
            if latency > 1 << 20 || jitter > 1 << 20 || buffer_kib > 1 << 20 {
                return Err(
                    "dynamic.memory: latency, jitter and buffer_kib must be at most 2^20".into(),
                );
            }
        }
        Ok(())
    }
}

/// A whole chip. See `isa-spec/ISA.md` for what each field means to timing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipConfig {
    /// Short name, printed in reports.
    pub name: String,
    /// One line saying what this chip is and where its numbers come from.
    pub description: String,
    /// Core clock in MHz; latency in microseconds is cycles / clock_mhz.
    pub clock_mhz: f64,
    /// Superlanes; an instruction sweeps them one per cycle (superlane skew).
    pub superlanes: u32,
    /// Lanes per superlane; vector length = superlanes x lanes_per_superlane.
    pub lanes_per_superlane: u32,
    /// Streams flowing in each direction (east and west), one byte per lane.
    pub streams_per_direction: u32,
    /// Slices from west to east as runs of (kind, count); a slice's position
    /// on the axis is its index in the expanded list.
    pub layout: Vec<(SliceKind, u32)>,
    /// SRAM geometry.
    pub mem: MemConfig,
    /// MXM plane geometry.
    pub mxm: MxmConfig,
    /// Queue counts of VXM and SXM slices.
    pub queues: UnitQueues,
    /// Functional delays that differ from the ISA table's defaults, by
    /// mnemonic (for design sweeps).
    pub latency_overrides: BTreeMap<String, u32>,
    /// Energy parameters (optional: a chip without them reports no LPU
    /// energy).
    #[serde(default)]
    pub energy: Option<EnergyConfig>,
    /// Options of `lpsim`'s dynamic mode (optional: absent means on-chip
    /// SRAM and the default window).
    #[serde(default)]
    pub dynamic: Option<DynamicConfig>,
}

/// A configuration that cannot describe a chip.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read chip config: {source}")]
    Io {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The RON text is not a valid config.
    #[error("{path}: invalid chip config: {message}")]
    Parse {
        /// File that failed.
        path: String,
        /// Parser's message with line and column.
        message: String,
    },
    /// The config parses but is inconsistent.
    #[error("{name}: invalid chip config: {message}")]
    Invalid {
        /// Chip name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A name that is neither a preset nor a file.
    #[error("unknown chip '{0}': expected a preset name ({presets}) or a path to a .ron file", presets = ChipConfig::PRESETS.join(", "))]
    Unknown(String),
}

impl ChipConfig {
    /// Names of the built-in presets.
    pub const PRESETS: &'static [&'static str] = &["tsp", "tiny"];

    /// A built-in preset by name.
    pub fn preset(name: &str) -> Option<ChipConfig> {
        let text = match name {
            "tsp" => include_str!("../chips/tsp.ron"),
            "tiny" => include_str!("../chips/tiny.ron"),
            _ => return None,
        };
        // The presets are tested to parse and validate.
        Self::parse(text, name).ok()
    }

    /// A preset name, or else a path to a RON file.
    pub fn resolve(name_or_path: &str) -> Result<ChipConfig, ConfigError> {
        if let Some(c) = Self::preset(name_or_path) {
            return Ok(c);
        }
        let p = Path::new(name_or_path);
        if p.exists() {
            return Self::load(p);
        }
        Err(ConfigError::Unknown(name_or_path.to_string()))
    }

    /// Loads and validates a RON file.
    pub fn load(path: &Path) -> Result<ChipConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates RON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ChipConfig, ConfigError> {
        let cfg: ChipConfig = ron::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid { name, message } if origin != name => ConfigError::Invalid {
                name: format!("{origin} (chip '{name}')"),
                message,
            },
            e => e,
        })?;
        Ok(cfg)
    }

    /// Checks that the numbers describe a chip this model can execute.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| {
            Err(ConfigError::Invalid {
                name: self.name.clone(),
                message: m,
            })
        };
        if !(self.clock_mhz.is_finite() && self.clock_mhz > 0.0) {
            return bad(format!(
                "clock_mhz must be positive, found {}",
                self.clock_mhz
            ));
        }
        if self.superlanes == 0 || self.lanes_per_superlane == 0 || self.lanes() > 4096 {
            return bad(format!(
                "vector length superlanes x lanes_per_superlane must be 1..=4096, found {} x {}",
                self.superlanes, self.lanes_per_superlane
            ));
        }
        if self.streams_per_direction == 0 || self.streams_per_direction > 256 {
            return bad(format!(
                "streams_per_direction must be 1..=256, found {}",
                self.streams_per_direction
            ));
        }
        if self.mem.word_bytes != self.lanes_per_superlane {
            return bad(format!(
                "mem.word_bytes ({}) must equal lanes_per_superlane ({}): one byte per lane",
                self.mem.word_bytes, self.lanes_per_superlane
            ));
        }
        if self.mem.banks == 0 || self.mem.addresses_per_bank == 0 {
            return bad("mem.banks and mem.addresses_per_bank must be positive".into());
        }
        if (self.mem.banks as u64) * (self.mem.addresses_per_bank as u64) > u32::MAX as u64 / 2 {
            return bad("mem.banks x mem.addresses_per_bank is too large".into());
        }
        let slice_bytes = self.addresses_per_slice() as u64 * self.lanes() as u64;
        if slice_bytes > 64 << 20 {
            return bad(format!(
                "one MEM slice would hold {slice_bytes} bytes; this model allows at most 64 MiB per slice"
            ));
        }
        if self.mxm.size != self.lanes() {
            return bad(format!(
                "mxm.size ({}) must equal the vector length ({}) in this model",
                self.mxm.size,
                self.lanes()
            ));
        }
        if self.mxm.load_rows == 0 || self.mxm.load_rows > self.mxm.size {
            return bad(format!(
                "mxm.load_rows must be 1..=mxm.size, found {}",
                self.mxm.load_rows
            ));
        }
        if self.mxm.accumulators == 0 || self.mxm.accumulators > 65536 {
            return bad("mxm.accumulators must be 1..=65536".into());
        }
        if self.queues.vxm_alus == 0 || self.queues.vxm_alus > 64 {
            return bad("queues.vxm_alus must be 1..=64".into());
        }
        if self.queues.sxm_queues == 0 || self.queues.sxm_queues > 64 {
            return bad("queues.sxm_queues must be 1..=64".into());
        }
        let total: u64 = self.layout.iter().map(|(_, n)| *n as u64).sum();
        if total == 0 || total > 4096 {
            return bad(format!("layout must have 1..=4096 slices, found {total}"));
        }
        for kind in [SliceKind::Mem, SliceKind::Vxm, SliceKind::Mxm] {
            if !self.layout.iter().any(|(k, n)| *k == kind && *n > 0) {
                return bad(format!("layout has no {kind} slice"));
            }
        }
        if let Some(e) = &self.energy {
            if let Err(m) = e.validate() {
                return bad(m);
            }
        }
        if let Some(d) = &self.dynamic {
            if let Err(m) = d.validate() {
                return bad(m);
            }
        }
        for (name, d) in &self.latency_overrides {
            match Opcode::from_mnemonic(name) {
                None => return bad(format!("latency_overrides names unknown mnemonic '{name}'")),
                Some(Opcode::Nop | Opcode::Sync | Opcode::Repeat) => {
                    return bad(format!(
                        "the delay of '{name}' is fixed by its definition and cannot be overridden"
                    ))
                }
                Some(_) if !(1..=MAX_DELAY).contains(d) => {
                    return bad(format!(
                        "latency_overrides: '{name}' must take 1..={MAX_DELAY} cycles, found {d}"
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Vector length in lanes (elements per vector).
    pub fn lanes(&self) -> u32 {
        self.superlanes * self.lanes_per_superlane
    }

    /// Slice kinds by position, west to east.
    pub fn slices(&self) -> Vec<SliceKind> {
        self.layout
            .iter()
            .flat_map(|(k, n)| std::iter::repeat_n(*k, *n as usize))
            .collect()
    }

    /// Positions of the slices of one kind, west to east.
    pub fn positions_of(&self, kind: SliceKind) -> Vec<u16> {
        self.slices()
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == kind)
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// Number of instruction queues a slice of this kind has.
    pub fn queues_per_slice(&self, kind: SliceKind) -> u8 {
        match kind {
            SliceKind::Mem => 1,
            // Queue 0 loads and installs weights, queue 1 streams activations
            // and emits results, so loading overlaps computing.
            SliceKind::Mxm => 2,
            SliceKind::Vxm => self.queues.vxm_alus as u8,
            SliceKind::Sxm => self.queues.sxm_queues as u8,
        }
    }

    /// Addresses in one MEM slice.
    pub fn addresses_per_slice(&self) -> u32 {
        self.mem.banks * self.mem.addresses_per_bank
    }

    /// Total SRAM capacity in bytes.
    pub fn sram_capacity_bytes(&self) -> u64 {
        self.positions_of(SliceKind::Mem).len() as u64
            * self.addresses_per_slice() as u64
            * self.lanes() as u64
    }

    /// Functional delay of an opcode on this chip: the ISA table's default
    /// unless `latency_overrides` names it.
    pub fn delay(&self, op: Opcode) -> u32 {
        if self.latency_overrides.is_empty() {
            return op.info().delay;
        }
        self.latency_overrides
            .get(op.info().mnemonic)
            .copied()
            .unwrap_or(op.info().delay)
    }

    /// Superlane skew: the last superlane finishes this many cycles after the
    /// first, for every instruction alike.
    pub fn superlane_skew(&self) -> u32 {
        self.superlanes - 1
    }
}

impl fmt::Display for SliceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SliceKind::Mem => "mem",
            SliceKind::Vxm => "vxm",
            SliceKind::Mxm => "mxm",
            SliceKind::Sxm => "sxm",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for name in ChipConfig::PRESETS {
            let text = match *name {
                "tsp" => include_str!("../chips/tsp.ron"),
                _ => include_str!("../chips/tiny.ron"),
            };
            let c = ChipConfig::parse(text, name).expect("preset parses");
            assert_eq!(c.name, *name);
        }
    }

    #[test]
    fn tsp_matches_published_geometry() {
        // reference/tsp.md: 88 MEM slices of 2.5 MiB = 220 MiB, 320 lanes,
        // 32 streams per direction, 4 MXM planes of 320 x 320, 900 MHz.
        let c = ChipConfig::preset("tsp").expect("tsp");
        assert_eq!(c.lanes(), 320);
        assert_eq!(c.positions_of(SliceKind::Mem).len(), 88);
        assert_eq!(c.sram_capacity_bytes(), 220 * 1024 * 1024);
        assert_eq!(c.positions_of(SliceKind::Mxm).len(), 4);
        assert_eq!(c.streams_per_direction, 32);
        assert_eq!(c.clock_mhz, 900.0);
    }

    #[test]
    fn latency_overrides_are_bounded() {
        let base = include_str!("../chips/tiny.ron");
        for (bad, what) in [
            ("{\"read\": 0}", "1..=1024"),
            ("{\"read\": 2147483648}", "1..=1024"),
            ("{\"nop\": 3}", "cannot be overridden"),
            ("{\"frob\": 3}", "unknown mnemonic"),
        ] {
            let text = base.replace(
                "latency_overrides: {}",
                &format!("latency_overrides: {bad}"),
            );
            let e = ChipConfig::parse(&text, "x.ron")
                .expect_err(bad)
                .to_string();
            assert!(e.contains(what), "{e}");
        }
        let ok = base.replace("latency_overrides: {}", "latency_overrides: {\"read\": 7}");
        assert_eq!(
            ChipConfig::parse(&ok, "x.ron")
                .expect("valid")
                .delay(Opcode::Read),
            7
        );
    }

    #[test]
    fn energy_section_is_optional_and_validated() {
        let base = include_str!("../chips/tiny.ron");
        let start = base.find("    energy: Some(").expect("tiny has energy");
        let end = base[start..].find("\n    )),\n").expect("end of energy") + start + 8;
        let without = format!("{}{}", &base[..start], &base[end..]);
        let c = ChipConfig::parse(&without, "old.ron").expect("loads without energy");
        assert_eq!(c.energy, None);
        let full = ChipConfig::parse(base, "tiny.ron").expect("tiny");
        assert!(full.energy.is_some());
        let bad = base.replacen("static_w: ", "static_w: -", 1);
        let e = ChipConfig::parse(&bad, "x.ron").unwrap_err().to_string();
        assert!(e.contains("energy.static_w"), "{e}");
    }

    #[test]
    fn bad_config_is_an_error() {
        let text = include_str!("../chips/tiny.ron").replace("size: 16", "size: 8");
        let e = ChipConfig::parse(&text, "x.ron").unwrap_err().to_string();
        assert!(e.contains("mxm.size"), "{e}");
        let e = ChipConfig::parse("ChipConfig(", "x.ron")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.ron: invalid chip config"), "{e}");
        assert!(ChipConfig::resolve("nope").is_err());
    }

    #[test]
    fn dynamic_section_is_optional_and_validated() {
        let base = include_str!("../chips/tiny.ron");
        assert_eq!(ChipConfig::parse(base, "tiny").unwrap().dynamic, None);
        let end = base.rfind(')').unwrap();
        let with = format!(
            "{}    dynamic: Some((memory: Hbm(latency: 90, jitter: 30, buffer_kib: 16), window: 4)),\n)",
            &base[..end]
        );
        let c = ChipConfig::parse(&with, "dyn.ron").expect("dynamic section");
        let d = c.dynamic.expect("some");
        assert_eq!(d.window, 4);
        assert_eq!(
            d.memory,
            MemoryModel::Hbm {
                latency: 90,
                jitter: 30,
                buffer_kib: 16
            }
        );
        let short = format!("{}    dynamic: Some(()),\n)", &base[..end]);
        let c = ChipConfig::parse(&short, "dyn.ron").expect("defaults");
        assert_eq!(c.dynamic, Some(DynamicConfig::default()));
        let bad = with.replace("window: 4", "window: 0");
        assert!(ChipConfig::parse(&bad, "dyn.ron").is_err());
    }
}
