//! The operators this crate supports ([`SUPPORTED_OPS`]) and, for each, its
//! arity and the attributes it accepts ([`OpSpec`]). Semantics follow ONNX
//! (names of inputs and attributes exactly as in the ONNX operator spec);
//! see [`crate::infer`] for the shape and type rules and [`crate::interp`]
//! for the exact arithmetic.

/// Every op type accepted in a `.graph` file, in the order of [`op_spec`]'s
/// table (roughly by family).
pub const SUPPORTED_OPS: &[&str] = &[
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "HardSigmoid",
    "HardSwish",
    "Silu",
    "Sum",
    "Max",
    "Min",
    "Equal",
    "Less",
    "Greater",
    "Where",
    "Identity",
    "Cast",
    "NarrowCast",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "LRN",
    "Softmax",
    "LayerNormalization",
    "RMSNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "Reshape",
    "Flatten",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Pad",
    "Resize",
    "Expand",
    "Constant",
    "ConstantOfShape",
    "Shape",
];

/// The kind of value an attribute must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// [`crate::AttrValue::Int`].
    Int,
    /// [`crate::AttrValue::Float`].
    Float,
    /// [`crate::AttrValue::Ints`].
    Ints,
    /// [`crate::AttrValue::Floats`].
    Floats,
    /// [`crate::AttrValue::String`].
    String,
    /// [`crate::AttrValue::Tensor`].
    Tensor,
}

impl AttrKind {
    /// The kind's name as written in a `.graph` file (`Int`, `Floats`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Int => "Int",
            AttrKind::Float => "Float",
            AttrKind::Ints => "Ints",
            AttrKind::Floats => "Floats",
            AttrKind::String => "String",
            AttrKind::Tensor => "Tensor",
        }
    }

    /// Whether `value` is of this kind.
    pub fn matches(self, value: &crate::AttrValue) -> bool {
        value.kind_name() == self.name()
    }
}

/// Arity and attributes of one op type.
#[derive(Clone, Copy, Debug)]
pub struct OpSpec {
    /// The op type.
    pub name: &'static str,
    /// Names of the inputs, in order (ONNX's names).
    pub inputs: &'static [&'static str],
    /// How many leading inputs are required; the rest are optional.
    pub required_inputs: usize,
    /// Whether the last input is variadic (ONNX `Concat`, `Sum`, ...): it may
    /// be repeated any number of times, so there is no upper bound on the
    /// number of inputs.
    pub variadic_inputs: bool,
    /// The fewest outputs a node must have (1 for every op).
    pub min_outputs: usize,
    /// The most outputs a node may have (`usize::MAX` for `Split`, whose
    /// output count is variadic).
    pub max_outputs: usize,
    /// Accepted attributes and their kinds.
    pub attributes: &'static [(&'static str, AttrKind)],
}

impl OpSpec {
    /// The largest number of inputs a node may have (`usize::MAX` when
    /// variadic).
    pub fn max_inputs(&self) -> usize {
        if self.variadic_inputs {
            usize::MAX
        } else {
            self.inputs.len()
        }
    }
}

use AttrKind::{Float as F, Floats as FS, Int as I, Ints as IS, String as S, Tensor as T};

/// One input, one output.
const fn op(
    name: &'static str,
    inputs: &'static [&'static str],
    required_inputs: usize,
    attributes: &'static [(&'static str, AttrKind)],
) -> OpSpec {
    OpSpec {
        name,
        inputs,
        required_inputs,
        variadic_inputs: false,
        min_outputs: 1,
        max_outputs: 1,
        attributes,
    }
}

/// Like [`op`] with a variadic last input.
const fn variadic(
    name: &'static str,
    inputs: &'static [&'static str],
    attributes: &'static [(&'static str, AttrKind)],
) -> OpSpec {
    OpSpec {
        name,
        inputs,
        required_inputs: 1,
        variadic_inputs: true,
        min_outputs: 1,
        max_outputs: 1,
        attributes,
    }
}

const CONV_ATTRS: &[(&str, AttrKind)] = &[
    ("auto_pad", S),
    ("dilations", IS),
    ("group", I),
    ("kernel_shape", IS),
    ("pads", IS),
    ("strides", IS),
];
const REDUCE_ATTRS: &[(&str, AttrKind)] =
    &[("axes", IS), ("keepdims", I), ("noop_with_empty_axes", I)];
const AB: &[&str] = &["A", "B"];
const X: &[&str] = &["X"];
const INPUT: &[&str] = &["input"];

const SPECS: &[OpSpec] = &[
    op("MatMul", AB, 2, &[]),
    op(
        "Gemm",
        &["A", "B", "C"],
        2,
        &[("alpha", F), ("beta", F), ("transA", I), ("transB", I)],
    ),
    op("Add", AB, 2, &[]),
    op("Sub", AB, 2, &[]),
    op("Mul", AB, 2, &[]),
    op("Div", AB, 2, &[]),
    op("Pow", &["X", "Y"], 2, &[]),
    op("Sqrt", X, 1, &[]),
    op("Reciprocal", X, 1, &[]),
    op("Exp", INPUT, 1, &[]),
    op("Relu", X, 1, &[]),
    op("LeakyRelu", X, 1, &[("alpha", F)]),
    op("PRelu", &["X", "slope"], 2, &[]),
    op(
        "Clip",
        &["input", "min", "max"],
        1,
        &[("min", F), ("max", F)],
    ),
    op("Sigmoid", X, 1, &[]),
    op("Tanh", INPUT, 1, &[]),
    op("Gelu", X, 1, &[("approximate", S)]),
    op("Erf", INPUT, 1, &[]),
    op("HardSigmoid", X, 1, &[("alpha", F), ("beta", F)]),
    op("HardSwish", X, 1, &[]),
    op("Silu", X, 1, &[]),
    variadic("Sum", &["data_0"], &[]),
    variadic("Max", &["data_0"], &[]),
    variadic("Min", &["data_0"], &[]),
    op("Equal", AB, 2, &[]),
    op("Less", AB, 2, &[]),
    op("Greater", AB, 2, &[]),
    op("Where", &["condition", "X", "Y"], 3, &[]),
    op("Identity", INPUT, 1, &[]),
    op("Cast", INPUT, 1, &[("to", I), ("saturate", I)]),
    // lpu's own: ONNX `Cast` to a narrow format (fp8, fp4, bf16, int4, ...),
    // the result held widened in the format's container type.
    op("NarrowCast", INPUT, 1, &[("format", S), ("saturate", I)]),
    op(
        "QuantizeLinear",
        &["x", "y_scale", "y_zero_point"],
        2,
        &[("axis", I)],
    ),
    op(
        "DequantizeLinear",
        &["x", "x_scale", "x_zero_point"],
        2,
        &[("axis", I)],
    ),
    op(
        "MatMulInteger",
        &["A", "B", "a_zero_point", "b_zero_point"],
        2,
        &[],
    ),
    op("Conv", &["X", "W", "B"], 2, CONV_ATTRS),
    op(
        "ConvInteger",
        &["x", "w", "x_zero_point", "w_zero_point"],
        2,
        CONV_ATTRS,
    ),
    op(
        "ConvTranspose",
        &["X", "W", "B"],
        2,
        &[
            ("auto_pad", S),
            ("dilations", IS),
            ("group", I),
            ("kernel_shape", IS),
            ("output_padding", IS),
            ("output_shape", IS),
            ("pads", IS),
            ("strides", IS),
        ],
    ),
    op(
        "MaxPool",
        X,
        1,
        &[
            ("auto_pad", S),
            ("ceil_mode", I),
            ("dilations", IS),
            ("kernel_shape", IS),
            ("pads", IS),
            ("storage_order", I),
            ("strides", IS),
        ],
    ),
    op(
        "AveragePool",
        X,
        1,
        &[
            ("auto_pad", S),
            ("ceil_mode", I),
            ("count_include_pad", I),
            ("dilations", IS),
            ("kernel_shape", IS),
            ("pads", IS),
            ("strides", IS),
        ],
    ),
    op("GlobalAveragePool", X, 1, &[]),
    op(
        "BatchNormalization",
        &["X", "scale", "B", "input_mean", "input_var"],
        5,
        &[("epsilon", F), ("momentum", F), ("training_mode", I)],
    ),
    op(
        "LRN",
        X,
        1,
        &[("alpha", F), ("beta", F), ("bias", F), ("size", I)],
    ),
    op("Softmax", INPUT, 1, &[("axis", I)]),
    // Y, and optionally Mean and InvStdDev (ONNX's training outputs).
    OpSpec {
        max_outputs: 3,
        ..op(
            "LayerNormalization",
            &["X", "Scale", "B"],
            2,
            &[("axis", I), ("epsilon", F), ("stash_type", I)],
        )
    },
    op(
        "RMSNormalization",
        &["X", "scale"],
        2,
        &[("axis", I), ("epsilon", F), ("stash_type", I)],
    ),
    op("ReduceMean", &["data", "axes"], 1, REDUCE_ATTRS),
    op("ReduceSum", &["data", "axes"], 1, REDUCE_ATTRS),
    op("ReduceMax", &["data", "axes"], 1, REDUCE_ATTRS),
    op("Reshape", &["data", "shape"], 2, &[("allowzero", I)]),
    op("Flatten", INPUT, 1, &[("axis", I)]),
    op("Transpose", &["data"], 1, &[("perm", IS)]),
    variadic("Concat", &["inputs"], &[("axis", I)]),
    OpSpec {
        name: "Split",
        inputs: &["input", "split"],
        required_inputs: 1,
        variadic_inputs: false,
        min_outputs: 1,
        max_outputs: usize::MAX,
        attributes: &[("axis", I), ("num_outputs", I), ("split", IS)],
    },
    op(
        "Slice",
        &["data", "starts", "ends", "axes", "steps"],
        3,
        &[],
    ),
    op("Squeeze", &["data", "axes"], 1, &[("axes", IS)]),
    op("Unsqueeze", &["data", "axes"], 1, &[("axes", IS)]),
    op("Gather", &["data", "indices"], 2, &[("axis", I)]),
    op(
        "Pad",
        &["data", "pads", "constant_value", "axes"],
        1,
        &[("mode", S), ("pads", IS), ("value", F)],
    ),
    op(
        "Resize",
        &["X", "roi", "scales", "sizes"],
        1,
        &[
            ("antialias", I),
            ("axes", IS),
            ("coordinate_transformation_mode", S),
            ("cubic_coeff_a", F),
            ("exclude_outside", I),
            ("extrapolation_value", F),
            ("keep_aspect_ratio_policy", S),
            ("mode", S),
            ("nearest_mode", S),
        ],
    ),
    op("Expand", &["input", "shape"], 2, &[]),
    op(
        "Constant",
        &[],
        0,
        &[
            ("value", T),
            ("value_float", F),
            ("value_floats", FS),
            ("value_int", I),
            ("value_ints", IS),
        ],
    ),
    op("ConstantOfShape", INPUT, 1, &[("value", T)]),
    op("Shape", &["data"], 1, &[("end", I), ("start", I)]),
];

/// The spec of `op_type`, or `None` if it is not supported.
pub fn op_spec(op_type: &str) -> Option<&'static OpSpec> {
    SPECS.iter().find(|s| s.name == op_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_op_has_a_spec() {
        assert_eq!(SPECS.len(), SUPPORTED_OPS.len());
        for (op, spec) in SUPPORTED_OPS.iter().zip(SPECS) {
            assert_eq!(*op, spec.name);
            let s = op_spec(op).unwrap();
            assert!(s.required_inputs <= s.inputs.len());
            assert!(s.min_outputs <= s.max_outputs);
        }
        assert!(op_spec("Conv").is_some());
        assert!(op_spec("Foo").is_none());
    }
}
