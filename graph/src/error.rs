//! [`GraphError`], the one error type of this crate.
//!
//! Every message is a single line that names the file the problem is in (the
//! graph's `source`, or the `.npy` path), the node (name and op type) and the
//! tensor where relevant, and says what was found and what was expected.

/// Anything that can go wrong while loading, validating or interpreting a
/// graph, or reading and writing tensors.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed, including the operating system's reason.
        message: String,
    },
    /// The text is not valid RON or does not match the `.graph` schema.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        /// The graph's source (path or `<string>`).
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        col: usize,
        /// What the parser found and expected.
        message: String,
    },
    /// Some node uses an op type this crate does not support.
    #[error("{file}: {message}")]
    UnknownOps {
        /// The graph's source.
        file: String,
        /// The unknown op types, sorted.
        ops: Vec<String>,
        /// The full description (each op with its count and first node).
        message: String,
    },
    /// The nodes' data dependences form a cycle.
    #[error("{file}: the graph has a cycle through nodes {}", quote_list(.nodes))]
    Cycle {
        /// The graph's source.
        file: String,
        /// The nodes on the cycle(s), in file order.
        nodes: Vec<String>,
    },
    /// A node is invalid: wrong arity, attribute, input shape or dtype.
    #[error("{}node '{node}' ({op_type}): {message}", file_prefix(.file))]
    Node {
        /// The graph's source (empty when raised by [`crate::Node`]'s
        /// accessors outside a graph).
        file: String,
        /// The node's name.
        node: String,
        /// The node's op type.
        op_type: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Any other problem with the graph as a whole (undefined or doubly
    /// defined tensor, bad initializer, bad declared output, ...).
    #[error("{file}: {message}")]
    Invalid {
        /// The graph's source.
        file: String,
        /// What was found and what was expected.
        message: String,
    },
    /// The inputs given to the interpreter do not match the graph.
    #[error("{file}: {message}")]
    Input {
        /// The graph's source.
        file: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A tensor's shape and values do not agree, or the shape is too large.
    #[error("invalid tensor: {message}")]
    Tensor {
        /// What was found and what was expected.
        message: String,
    },
    /// A `.npy` file or buffer could not be decoded.
    #[error("{file}: {message}")]
    Npy {
        /// The file (or a description of the buffer).
        file: String,
        /// What was found and what was expected.
        message: String,
    },
}

/// `'a', 'b', 'c'`.
pub(crate) fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"file: "`, or nothing when the file is unknown.
fn file_prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}: ")
    }
}

impl GraphError {
    /// Sets the file of an error raised without one (see [`GraphError::Node`]).
    pub(crate) fn in_file(mut self, source: &str) -> GraphError {
        if let GraphError::Node { file, .. } = &mut self {
            if file.is_empty() {
                *file = source.to_string();
            }
        }
        self
    }
}
