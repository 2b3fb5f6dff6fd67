//! [`Tensor`] (a shape and typed values) and [`TensorInfo`] (a shape and
//! element type), with the element-count checks every shape goes through.

use crate::error::GraphError;
use lpu_isa::{DType, Values};

/// The largest number of elements a tensor may have (2^28). Larger shapes are
/// rejected with an error instead of attempting a huge allocation.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Number of elements of `shape` (1 for a scalar `[]`), or `None` if the
/// product overflows or exceeds [`MAX_ELEMENTS`].
pub fn num_elements(shape: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d)?;
    }
    (n <= MAX_ELEMENTS).then_some(n)
}

/// Like [`num_elements`], with a descriptive error message on failure.
pub(crate) fn checked_elements(shape: &[usize]) -> Result<usize, String> {
    num_elements(shape).ok_or_else(|| {
        format!("shape {shape:?} has more than 2^28 = {MAX_ELEMENTS} elements, the largest tensor supported")
    })
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Elements in row-major order; exactly `product(shape)` of them.
    pub values: Values,
}

impl Tensor {
    /// A tensor, checking that the number of values equals the product of the
    /// shape and that the shape is not larger than [`MAX_ELEMENTS`].
    pub fn new(shape: Vec<usize>, values: Values) -> Result<Tensor, GraphError> {
        let n = checked_elements(&shape).map_err(|message| GraphError::Tensor { message })?;
        if n != values.len() {
            return Err(GraphError::Tensor {
                message: format!(
                    "shape {shape:?} has {n} elements but {} {} values were given",
                    values.len(),
                    values.dtype()
                ),
            });
        }
        Ok(Tensor { shape, values })
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor, GraphError> {
        let n = checked_elements(&shape).map_err(|message| GraphError::Tensor { message })?;
        Ok(Tensor {
            shape,
            values: Values::zeros(dtype, n),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.values.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The element type and shape.
    pub fn info(&self) -> TensorInfo {
        TensorInfo {
            dtype: self.dtype(),
            shape: self.shape.clone(),
        }
    }
}

/// What is known about a tensor before running: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The element type.
    pub dtype: DType,
    /// Dimensions, outermost first; `[]` is a scalar.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar). Shapes in a validated graph never
    /// exceed [`MAX_ELEMENTS`]; a larger one saturates to `usize::MAX`.
    pub fn len(&self) -> usize {
        num_elements(&self.shape).unwrap_or(usize::MAX)
    }

    /// Whether the tensor has no elements (never the case in a validated graph).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a scalar: shape `[]` or `[1]`.
    pub fn is_scalar(&self) -> bool {
        self.shape.is_empty() || self.shape == [1]
    }
}

impl std::fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_length() {
        assert!(Tensor::new(vec![2, 3], Values::F32(vec![0.0; 6])).is_ok());
        let e = Tensor::new(vec![2, 3], Values::F32(vec![0.0; 5])).unwrap_err();
        assert!(
            e.to_string().contains("[2, 3] has 6 elements but 5 f32"),
            "{e}"
        );
        let s = Tensor::new(vec![], Values::I8(vec![3])).unwrap();
        assert_eq!((s.len(), s.dtype()), (1, DType::I8));
    }

    #[test]
    fn huge_shapes_rejected() {
        assert_eq!(num_elements(&[1 << 14, 1 << 14]), Some(1 << 28));
        assert_eq!(num_elements(&[1 << 14, 1 << 15]), None);
        assert_eq!(num_elements(&[usize::MAX, 2]), None);
        let e = Tensor::new(vec![usize::MAX, 3], Values::F32(vec![])).unwrap_err();
        assert!(e.to_string().contains("2^28"), "{e}");
    }
}
