//! The `.graph` model format of lpu and everything that reads it:
//!
//! - [`format`](mod@format): the serde structures of a `.graph` file (RON mirroring ONNX's
//!   `GraphProto`);
//! - [`load_graph`] / [`parse_graph`] ([`load`]): parsing, validation,
//!   stable topological ordering, shape/type inference ([`infer`]) and
//!   folding of small constants (shape computations) into the validated IR
//!   [`Graph`] ([`ir`]);
//! - [`ops`]: the supported operators ([`SUPPORTED_OPS`]): ONNX's CNN and
//!   transformer operators with ONNX input and attribute names; ONNX
//!   `int64` tensors are represented as `i32` and `bool` as `i8` 0/1
//!   (see [`infer`]);
//! - [`interpret`] ([`interp`]): the reference interpreter, the correctness
//!   oracle, whose exact arithmetic is documented there (and checked
//!   against ONNX's `ReferenceEvaluator` by `tests/onnx_reference.rs`);
//! - [`random`]: seeded, platform-independent random tensors
//!   ([`random_inputs`]);
//! - [`npy`]: NumPy `.npy` reading and writing;
//! - [`Tensor`], [`TensorInfo`] ([`tensor`]) and [`GraphError`] ([`error`]).

pub mod error;
pub mod format;
pub mod infer;
pub mod interp;
pub mod ir;
pub mod load;
pub mod npy;
pub mod ops;
pub mod random;
pub mod tensor;
pub mod zoo;

pub use error::GraphError;
pub use interp::{interpret, interpret_nodes};
pub use ir::{AttrValue, Graph, Node};
pub use load::{load_graph, parse_graph};
pub use lpu_isa::{DType, Values};
pub use ops::SUPPORTED_OPS;
pub use random::random_inputs;
pub use tensor::{Tensor, TensorInfo};
