//! ONNX import for lpu: reads a `.onnx` model (protobuf, decoded in pure
//! Rust with hand-written `prost` messages, see [`proto`]) and produces
//! `lpu-graph`'s [`GraphFile`](lpu_graph::format::GraphFile), which
//! `lpu_graph::load::build` then validates like any `.graph` file.
//!
//! - [`import`] / [`import_with_notes`] / [`load`] ([`mod@import`]):
//!   initializers of every numeric type (raw or typed fields, external data
//!   files), `Constant` nodes, opsets 7 to 23 with older attribute forms
//!   normalised to the newest input forms, symbolic dimensions bound by
//!   [`ImportOptions`], and one error listing every unsupported operator;
//! - [`fold`](mod@fold): the import-time evaluator that folds shape
//!   subgraphs (`Shape`, `Gather`, `Concat`, `Reshape`, `ConstantOfShape`,
//!   `Expand`, `Where`, `Cast`, `Equal`, ...) into constants;
//! - [`tensor`]: [`Const`](tensor::Const), a constant of any ONNX numeric
//!   type, decoded from a `TensorProto` with every length checked;
//! - [`write`]: the `.graph` text, with large initializers in side files.
//!
//! No input panics, and no allocation is sized by a declared length the
//! bytes do not back (tensor sizes are checked against the data present and
//! bounded by `lpu_graph::tensor::MAX_ELEMENTS`).

pub mod error;
pub mod fold;
pub mod import;
pub mod proto;
pub mod tensor;
pub mod write;

pub use error::{ImportError, UnsupportedOp};
pub use import::{
    decode_model, import, import_bytes, import_with_notes, load, read_tensor_file, ImportOptions,
    Imported,
};
pub use write::{write_graph, INLINE_LIMIT_BYTES};
