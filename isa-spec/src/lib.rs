//! Machine model and ISA of the lpu chip: the single source of truth that the
//! compiler (`lpc`) and the simulator (`lpsim`) both read.
//!
//! - [`config`]: the chip configuration ([`ChipConfig`]), loaded from RON, with
//!   the `tsp` and `tiny` presets.
//! - [`isa`]: the opcode table (mnemonic, unit, operands, streams, functional
//!   delay, documentation) and the [`Instr`] type.
//! - [`program`]: the program format (per-queue instruction lists, memory
//!   image, I/O bindings, provenance, dependence edges) and its binary form.
//! - [`asm`]: the text assembly form (`.lpa`) and its parser.
//! - [`narrow`]: the narrow number formats (fp8, fp4, bf16, int4, ...) held
//!   widened in a chip type, and their conversion rules.
//!
//! Nothing here depends on another crate of the workspace.

pub mod asm;
mod chunked;
pub mod config;
pub mod dtype;
pub mod isa;
mod le_bytes;
pub mod narrow;
pub mod program;
mod queue_codec;

pub use config::{ChipConfig, DynamicConfig, EnergyConfig, MemoryModel, SliceKind};
pub use dtype::{DType, Values};
pub use isa::{Dir, Instr, Opcode, StreamRef, Unit};
pub use narrow::Format;
pub use program::{Program, QueueId};
