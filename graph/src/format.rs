//! The `.graph` file format: serde structures mirroring ONNX's `GraphProto`,
//! written as RON. See `examples/mlp.graph` for a complete file.
//!
//! ```ron
//! Graph(
//!   name: "tiny",
//!   inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 4])],
//!   outputs: [ValueInfo(name: "y", dtype: F32, shape: [1, 2])],
//!   initializers: [
//!     Initializer(name: "w", dtype: F32, shape: [4, 2],
//!                 data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.5))),
//!     Initializer(name: "b", dtype: F32, shape: [2], data: Inline([0.1, -0.2])),
//!     // raw little-endian bytes, relative to the .graph file's directory:
//!     // Initializer(name: "q", dtype: I8, shape: [3, 4], data: File("q.bin")),
//!   ],
//!   nodes: [
//!     Node(name: "fc", op_type: "Gemm", inputs: ["x", "w", "b"], outputs: ["y"],
//!          attributes: {"alpha": Float(1.0)}),
//!   ],
//! )
//! ```
//!
//! Unknown fields are errors. Graph inputs need `dtype` and `shape`; for graph
//! outputs both are optional and, when given, are checked against inference.
//! `Option` fields are written bare (RON's `implicit_some` is enabled).
//! A node's `name` and `attributes` may be omitted (a missing name becomes
//! `<op_type>_<index>`). An input name `""` marks an omitted optional input.
//! Attributes are `Int(3)`, `Float(0.5)`, `Ints([1, 1])`, `Floats([..])`,
//! `String("SAME_UPPER")` or a tensor written like an initializer,
//! `Tensor(dtype: F32, shape: [2], data: Inline([1.0, 2.0]))` (see
//! [`crate::AttrValue`]). ONNX `int64` tensors (shapes, axes, indices) are
//! written as `I32`, ONNX `bool` as `I8` holding 0 or 1.

use lpu_isa::DType;
use serde::{Deserialize, Serialize};

use crate::ir::Node;

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Graph", deny_unknown_fields)]
pub struct GraphFile {
    /// The graph's name.
    pub name: String,
    /// Runtime inputs, in order; `dtype` and `shape` are required.
    #[serde(default)]
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs, in order.
    pub outputs: Vec<ValueInfo>,
    /// Constant tensors (weights).
    #[serde(default)]
    pub initializers: Vec<Initializer>,
    /// Operators, in any order (they are sorted topologically on load).
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// A named tensor's type and shape, as declared for graph inputs and outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueInfo {
    /// Tensor name.
    pub name: String,
    /// Element type (required for inputs).
    #[serde(default)]
    pub dtype: Option<DType>,
    /// Shape (required for inputs).
    #[serde(default)]
    pub shape: Option<Vec<usize>>,
}

/// A constant tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Initializer {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Where the values come from.
    pub data: InitData,
}

/// The values of an initializer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InitData {
    /// Values written out, row-major; exactly `product(shape)` of them. For
    /// integer types each must be an integer within the type's range.
    Inline(Vec<f64>),
    /// Raw little-endian elements in a file, relative to the `.graph` file's
    /// directory; its size must be exactly `product(shape) * element size`.
    File(String),
    /// Seeded pseudo-random values; see [`crate::random`] for the exact,
    /// platform-independent generator.
    Random {
        /// The generator's seed.
        seed: u64,
        /// The distribution.
        dist: Dist,
    },
}

/// A distribution for [`InitData::Random`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Dist {
    /// Uniform in `[low, high)`.
    Uniform {
        /// Lower bound (inclusive).
        low: f64,
        /// Upper bound (exclusive).
        high: f64,
    },
    /// Normal (Gaussian).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
}
