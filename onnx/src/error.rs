//! [`ImportError`], the one error type of this crate. Every message is one
//! line that starts with the file and names the node (name and op type) and
//! the tensor where there is one.

/// One unsupported operator type found in a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// The op type, prefixed with its domain when that is not the default
    /// one (`com.microsoft:FusedGemm`).
    pub op_type: String,
    /// How many nodes use it (after shape folding).
    pub count: usize,
    /// The name of the first such node, in file order.
    pub first_node: String,
}

/// Anything that can go wrong while importing an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed, with the operating system's reason.
        message: String,
    },
    /// The bytes are not a valid ONNX protobuf message.
    #[error("{file}: not a valid ONNX model: {message}")]
    Decode {
        /// The file.
        file: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The model as a whole is unusable (no graph, bad opset, unbound
    /// symbolic dimension, bad declared input, ...).
    #[error("{file}: {message}")]
    Model {
        /// The file.
        file: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A tensor (initializer, `Constant` value, test data) is malformed or
    /// of an unsupported type.
    #[error("{file}: tensor '{tensor}': {message}")]
    Tensor {
        /// The file.
        file: String,
        /// The tensor's name (or a description of where it is).
        tensor: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A node cannot be imported.
    #[error("{file}: node '{node}' ({op_type}): {message}")]
    Node {
        /// The file.
        file: String,
        /// The node's name (or `<op_type>_<index>` when it has none).
        node: String,
        /// The node's op type.
        op_type: String,
        /// What was found and what was expected.
        message: String,
    },
    /// The model uses operators lpu does not support; all of them are
    /// listed, with their counts and first nodes.
    #[error("{file}: {}", unsupported_message(.ops))]
    Unsupported {
        /// The file.
        file: String,
        /// Every unsupported op type, sorted by name.
        ops: Vec<UnsupportedOp>,
    },
    /// The converted graph did not pass `lpu-graph`'s validation.
    #[error(transparent)]
    Graph(#[from] lpu_graph::GraphError),
}

fn unsupported_message(ops: &[UnsupportedOp]) -> String {
    let list: Vec<String> = ops
        .iter()
        .map(|o| {
            let s = if o.count == 1 { "" } else { "s" };
            format!(
                "{} ({} node{s}, first '{}')",
                o.op_type, o.count, o.first_node
            )
        })
        .collect();
    format!(
        "unsupported operator{}: {}; supported are {}",
        if ops.len() == 1 { "" } else { "s" },
        list.join(", "),
        lpu_graph::SUPPORTED_OPS.join(", ")
    )
}
