//! Errors of `lpc`: each names the model, and where it applies the node and
//! tensor, and says what was expected.

use lpu_graph::GraphError;

/// Why a graph could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The graph itself is invalid (parse, validation or inference).
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A node uses an operator, dtype or shape this compiler cannot lower.
    #[error("{model}: node '{node}' ({op}): {message}")]
    Unsupported {
        /// Model name.
        model: String,
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What is not supported and what would be.
        message: String,
    },
    /// The model's tensors exceed the chip's SRAM.
    #[error("{model}: does not fit chip '{chip}': needs {required_mib:.2} MiB of SRAM, the chip has {available_mib:.2} MiB; largest tensors: {largest}")]
    DoesNotFit {
        /// Model name.
        model: String,
        /// Chip name.
        chip: String,
        /// SRAM needed.
        required_mib: f64,
        /// SRAM available.
        available_mib: f64,
        /// The largest consumers, formatted `name (x.xx MiB)`.
        largest: String,
    },
    /// A graph pass (optimization or precision rewrite) could not transform
    /// the graph; the message names the node and tensor.
    #[error("{model}: {pass}: {message}")]
    Pass {
        /// Model name.
        model: String,
        /// The pass (`fold`, `bn`, `layout`, `dce`, `precision`, ...).
        pass: String,
        /// What went wrong, naming the node and tensor.
        message: String,
    },
    /// The scheduler could not place an instruction (a bug or an impossible
    /// chip configuration).
    #[error("{model}: cannot schedule node '{node}': {message}")]
    Schedule {
        /// Model name.
        model: String,
        /// Node name.
        node: String,
        /// Why.
        message: String,
    },
}
