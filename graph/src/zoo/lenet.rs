//! LeNet-5 for 28 x 28 MNIST digits, the smallest convolutional network of
//! the zoo.

use lpu_isa::DType;

use crate::format::GraphFile;
use crate::zoo::builder::{Conv2d, GraphBuilder};

/// Options of [`lenet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeNetOpts {
    /// Batch size.
    pub batch: usize,
}

impl Default for LeNetOpts {
    /// Batch 1.
    fn default() -> LeNetOpts {
        LeNetOpts { batch: 1 }
    }
}

/// LeNet-5 (LeCun et al. 1998) in its common modern form, on a
/// `[batch, 1, 28, 28]` image: the first convolution pads by 2, which is the
/// original 32 x 32 input, and ReLU and max pooling stand in for the scaled
/// tanh and trainable subsampling.
///
/// ```text
/// input [N,1,28,28] -> conv1 5x5 6 pad 2 -> Relu -> MaxPool 2 -> [N,6,14,14]
///   -> conv2 5x5 16 -> Relu -> MaxPool 2 -> [N,16,5,5] -> Flatten [N,400]
///   -> fc1 120 -> Relu -> fc2 84 -> Relu -> fc3 10 -> logits [N,10]
/// ```
///
/// 61,706 parameters.
pub fn lenet(opts: &LeNetOpts) -> GraphFile {
    let mut b = GraphBuilder::new("lenet");
    let x = b.input("input", DType::F32, &[opts.batch, 1, 28, 28]);
    let x = b.conv(&x, "conv1", Conv2d::new(6, 5).pad(2).with_bias());
    let x = b.relu(&x);
    let x = b.max_pool(&x, 2, 2, 0);
    let x = b.conv(&x, "conv2", Conv2d::new(16, 5).with_bias());
    let x = b.relu(&x);
    let x = b.max_pool(&x, 2, 2, 0);
    let x = b.flatten(&x, 1);
    let x = b.gemm(&x, "fc1", 120, true);
    let x = b.relu(&x);
    let x = b.gemm(&x, "fc2", 84, true);
    let x = b.relu(&x);
    let x = b.gemm(&x, "fc3", 10, true);
    b.output(&x, "logits");
    b.finish()
}
