//! The validated graph IR: [`Graph`] (nodes in topological order, every
//! tensor's inferred [`TensorInfo`], and the dependence DAG on petgraph),
//! [`Node`] and [`AttrValue`]. Build one with [`crate::load_graph`] or
//! [`crate::parse_graph`].

use std::collections::BTreeMap;

use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};

use lpu_isa::DType;

use crate::error::GraphError;
use crate::format::InitData;
use crate::tensor::{Tensor, TensorInfo};

/// An attribute value (ONNX `AttributeProto`, the kinds this crate uses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A string.
    String(String),
    /// A tensor (ONNX `TensorProto`, e.g. `Constant`'s `value`), written
    /// like an initializer:
    /// `Tensor(dtype: F32, shape: [2], data: Inline([1.0, 2.0]))`. `File(..)`
    /// data is read (relative to the `.graph` file) and `Random` data drawn
    /// when the graph is loaded; in a [`Graph`] the data is always `Inline`.
    Tensor {
        /// Element type.
        dtype: DType,
        /// Shape (`[]` for a scalar).
        shape: Vec<usize>,
        /// The values.
        data: InitData,
    },
}

impl AttrValue {
    /// The kind's name as written in a `.graph` file (`Int`, `Float`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "Int",
            AttrValue::Float(_) => "Float",
            AttrValue::Ints(_) => "Ints",
            AttrValue::Floats(_) => "Floats",
            AttrValue::String(_) => "String",
            AttrValue::Tensor { .. } => "Tensor",
        }
    }
}

/// One operator application (ONNX `NodeProto`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique name; in a [`Graph`] never empty (an unnamed node is called
    /// `<op_type>_<index in file>`).
    #[serde(default)]
    pub name: String,
    /// The operator, one of [`crate::SUPPORTED_OPS`] in a [`Graph`].
    pub op_type: String,
    /// Input tensor names by position; `""` is an omitted optional input.
    pub inputs: Vec<String>,
    /// Output tensor names by position.
    pub outputs: Vec<String>,
    /// Attributes by name.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
}

impl Node {
    fn attr_error(&self, name: &str, found: &AttrValue, expected: &str) -> GraphError {
        GraphError::Node {
            file: String::new(),
            node: self.name.clone(),
            op_type: self.op_type.clone(),
            message: format!(
                "attribute '{name}' is {}; expected {expected}(..)",
                match found {
                    AttrValue::Tensor { dtype, shape, .. } => format!("Tensor({dtype} {shape:?})"),
                    other => format!("{other:?}"),
                }
            ),
        }
    }

    /// Integer attribute `name`, or `default` if absent; an error if present
    /// with another kind.
    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64, GraphError> {
        match self.attributes.get(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(other) => Err(self.attr_error(name, other, "Int")),
        }
    }

    /// Float attribute `name`, or `default` if absent; an error if present
    /// with another kind.
    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32, GraphError> {
        match self.attributes.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(other) => Err(self.attr_error(name, other, "Float")),
        }
    }

    /// Integer-list attribute `name`, or `None` if absent; an error if
    /// present with another kind.
    pub fn attr_ints(&self, name: &str) -> Result<Option<&[i64]>, GraphError> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(other) => Err(self.attr_error(name, other, "Ints")),
        }
    }

    /// Float-list attribute `name`, or `None` if absent; an error if present
    /// with another kind.
    pub fn attr_floats(&self, name: &str) -> Result<Option<&[f32]>, GraphError> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v)),
            Some(other) => Err(self.attr_error(name, other, "Floats")),
        }
    }

    /// String attribute `name`, or `default` if absent; an error if present
    /// with another kind.
    pub fn attr_string<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str, GraphError> {
        match self.attributes.get(name) {
            None => Ok(default),
            Some(AttrValue::String(v)) => Ok(v),
            Some(other) => Err(self.attr_error(name, other, "String")),
        }
    }

    /// Input tensor name at position `i`; `None` if absent or `""` (an
    /// omitted optional input, as in ONNX).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A validated graph: every tensor defined exactly once, every op supported
/// with the right arity, attributes and input types and shapes, no cycles.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// Where it came from (file path or `<string>`); starts every error message.
    pub source: String,
    /// Runtime inputs, in declared order.
    pub inputs: Vec<(String, TensorInfo)>,
    /// Graph outputs, in declared order.
    pub outputs: Vec<String>,
    /// Constant tensors by name.
    pub initializers: BTreeMap<String, Tensor>,
    /// Nodes in a topological order: the file's order when that already is
    /// one, otherwise the stable topological order that always picks the
    /// earliest (in file order) node whose inputs are all available.
    pub nodes: Vec<Node>,
    /// Inferred type and shape of every tensor (inputs, initializers and node
    /// outputs).
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Values known when the graph is loaded, by tensor name: the outputs of
    /// `Constant` and `Shape` nodes, and the outputs of nodes all of whose
    /// inputs are initializers or such constants when they have at most
    /// [`crate::load::FOLD_LIMIT`] elements (constant folding, which is what
    /// lets `Reshape`, `Slice`, ... take shapes computed by `Shape` ->
    /// `Gather` -> `Concat` chains). Initializers are not repeated here.
    pub constants: BTreeMap<String, Tensor>,
    /// Dependences between nodes: node `i` of the DAG (`NodeIndex::new(i)`)
    /// has weight `i`, the index into [`Graph::nodes`]; an edge
    /// producer → consumer carries the tensor's name (one edge per tensor and
    /// consumer, even if the consumer reads the tensor several times).
    pub dag: DiGraph<usize, String>,
}

impl Graph {
    /// Indices (into [`Graph::nodes`]) of the nodes reading `tensor`, ascending.
    pub fn consumers(&self, tensor: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|i| i == tensor))
            .map(|(i, _)| i)
            .collect()
    }

    /// Index (into [`Graph::nodes`]) of the node producing `tensor`; `None`
    /// for inputs, initializers and unknown names.
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.outputs.iter().any(|o| o == tensor))
    }

    /// Type and shape of `tensor`.
    pub fn info(&self, tensor: &str) -> Option<&TensorInfo> {
        self.tensors.get(tensor)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "g".into(),
            op_type: "Gemm".into(),
            inputs: vec!["a".into(), "b".into(), "".into()],
            outputs: vec!["y".into()],
            attributes: [
                ("alpha".to_string(), AttrValue::Float(2.0)),
                ("transB".to_string(), AttrValue::Float(1.0)),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn attributes() {
        let n = node();
        assert_eq!(n.attr_float("alpha", 1.0).unwrap(), 2.0);
        assert_eq!(n.attr_float("beta", 1.0).unwrap(), 1.0);
        assert_eq!(n.attr_int("transA", 0).unwrap(), 0);
        let e = n.attr_int("transB", 0).unwrap_err().to_string();
        assert_eq!(
            e,
            "node 'g' (Gemm): attribute 'transB' is Float(1.0); expected Int(..)"
        );
    }

    #[test]
    fn list_and_string_attributes() {
        let mut n = node();
        n.attributes
            .insert("pads".into(), AttrValue::Ints(vec![1, 2, 3, 4]));
        n.attributes
            .insert("mode".into(), AttrValue::String("reflect".into()));
        n.attributes
            .insert("scales".into(), AttrValue::Floats(vec![2.0]));
        assert_eq!(n.attr_ints("pads").unwrap(), Some(&[1, 2, 3, 4][..]));
        assert_eq!(n.attr_ints("strides").unwrap(), None);
        assert_eq!(n.attr_string("mode", "constant").unwrap(), "reflect");
        assert_eq!(n.attr_string("other", "constant").unwrap(), "constant");
        assert_eq!(n.attr_floats("scales").unwrap(), Some(&[2.0f32][..]));
        let e = n.attr_ints("mode").unwrap_err().to_string();
        assert!(
            e.contains("attribute 'mode' is String(\"reflect\"); expected Ints(..)"),
            "{e}"
        );
        n.attributes.insert(
            "value".into(),
            AttrValue::Tensor {
                dtype: DType::F32,
                shape: vec![1],
                data: InitData::Inline(vec![1.0]),
            },
        );
        let e = n.attr_int("value", 0).unwrap_err().to_string();
        assert!(e.contains("is Tensor(f32 [1]); expected Int(..)"), "{e}");
    }

    #[test]
    fn optional_inputs() {
        let n = node();
        assert_eq!(n.input(1), Some("b"));
        assert_eq!(n.input(2), None);
        assert_eq!(n.input(7), None);
    }
}
