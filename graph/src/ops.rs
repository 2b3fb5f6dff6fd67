//! The operators this crate supports ([`SUPPORTED_OPS`]) and, for each, its
//! arity and the attributes it accepts ([`OpSpec`]). Semantics follow ONNX;
//! see [`crate::infer`] for the shape and type rules and [`crate::interp`]
//! for the exact arithmetic.

/// Every op type accepted in a `.graph` file.
pub const SUPPORTED_OPS: &[&str] = &[
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Relu",
    "Identity",
    "Cast",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
];

/// The kind of value an attribute must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// [`crate::AttrValue::Int`].
    Int,
    /// [`crate::AttrValue::Float`].
    Float,
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
    /// Number of outputs (every supported op has exactly one).
    pub outputs: usize,
    /// Accepted attributes and their kinds.
    pub attributes: &'static [(&'static str, AttrKind)],
}

const SPECS: &[OpSpec] = &[
    OpSpec {
        name: "MatMul",
        inputs: &["A", "B"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Gemm",
        inputs: &["A", "B", "C"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[
            ("alpha", AttrKind::Float),
            ("beta", AttrKind::Float),
            ("transA", AttrKind::Int),
            ("transB", AttrKind::Int),
        ],
    },
    OpSpec {
        name: "Add",
        inputs: &["A", "B"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Sub",
        inputs: &["A", "B"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Mul",
        inputs: &["A", "B"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Relu",
        inputs: &["X"],
        required_inputs: 1,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Identity",
        inputs: &["input"],
        required_inputs: 1,
        outputs: 1,
        attributes: &[],
    },
    OpSpec {
        name: "Cast",
        inputs: &["input"],
        required_inputs: 1,
        outputs: 1,
        attributes: &[("to", AttrKind::Int)],
    },
    OpSpec {
        name: "QuantizeLinear",
        inputs: &["x", "y_scale", "y_zero_point"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[("axis", AttrKind::Int)],
    },
    OpSpec {
        name: "DequantizeLinear",
        inputs: &["x", "x_scale", "x_zero_point"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[("axis", AttrKind::Int)],
    },
    OpSpec {
        name: "MatMulInteger",
        inputs: &["A", "B", "a_zero_point", "b_zero_point"],
        required_inputs: 2,
        outputs: 1,
        attributes: &[],
    },
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
        for op in SUPPORTED_OPS {
            let s = op_spec(op).unwrap();
            assert!(s.required_inputs <= s.inputs.len());
        }
        assert!(op_spec("Conv").is_none());
    }
}
