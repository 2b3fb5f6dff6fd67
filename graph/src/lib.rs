//! The `.graph` model format of lpu and everything that reads it:
//!
//! - [`format`](mod@format): the serde structures of a `.graph` file (RON mirroring ONNX's
//!   `GraphProto`);
//! - [`load_graph`] / [`parse_graph`] ([`load`]): parsing, validation,
//!   stable topological ordering and shape/type inference ([`infer`]) into
//!   the validated IR [`Graph`] ([`ir`]);
//! - [`ops`]: the supported operators ([`SUPPORTED_OPS`]);
//! - [`interpret`] ([`interp`]): the reference interpreter, the correctness
//!   oracle, whose exact arithmetic is documented there;
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

pub use error::GraphError;
pub use interp::interpret;
pub use ir::{AttrValue, Graph, Node};
pub use load::{load_graph, parse_graph};
pub use lpu_isa::{DType, Values};
pub use ops::SUPPORTED_OPS;
pub use random::random_inputs;
pub use tensor::{Tensor, TensorInfo};
