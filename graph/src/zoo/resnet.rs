//! ResNet-50 v1.5, the convolutional benchmark of the zoo.

use lpu_isa::DType;

use crate::format::GraphFile;
use crate::zoo::builder::{Conv2d, GraphBuilder, Value};

/// Options of [`resnet50`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetOpts {
    /// Batch size.
    pub batch: usize,
    /// Height and width of the square input image.
    pub image: usize,
    /// Number of classes of the final `Gemm`.
    pub classes: usize,
}

impl Default for ResNetOpts {
    /// Batch 1, 224 x 224, 1000 classes (ImageNet).
    fn default() -> ResNetOpts {
        ResNetOpts {
            batch: 1,
            image: 224,
            classes: 1000,
        }
    }
}

/// ResNet-50 v1.5 as in torchvision's `resnet50` (the layout of MLPerf's
/// reference): a 7 x 7 stride-2 stem and 3 x 3 max pool, then 3, 4, 6 and 3
/// bottleneck blocks of widths 64, 128, 256 and 512 (outputs 4x wider);
/// the first block of each of the last three stages strides by 2 in its
/// 3 x 3 convolution (the "v1.5" change) and in its 1 x 1 projection
/// shortcut. Every convolution is bias-free and followed by
/// `BatchNormalization` (not folded); the head is `GlobalAveragePool`,
/// `Flatten` and a `Gemm` 2048 -> classes.
///
/// With the defaults: input `[1, 3, 224, 224]`, output `logits [1, 1000]`,
/// 25,557,032 parameters (plus 53,120 batch-norm running statistics).
pub fn resnet50(opts: &ResNetOpts) -> GraphFile {
    let mut b = GraphBuilder::new("resnet50");
    let x = b.input(
        "input",
        DType::F32,
        &[opts.batch, 3, opts.image, opts.image],
    );
    let x = b.conv(&x, "conv1", Conv2d::new(64, 7).stride(2).pad(3));
    let x = b.batch_norm(&x, "bn1");
    let x = b.relu(&x);
    let mut x = b.max_pool(&x, 3, 2, 1);
    for (stage, (blocks, width, stride)) in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]
        .into_iter()
        .enumerate()
    {
        for i in 0..blocks {
            let s = if i == 0 { stride } else { 1 };
            x = b.scoped(&format!("layer{}.{i}", stage + 1), |b| {
                bottleneck(b, &x, width, s)
            });
        }
    }
    let x = b.global_avg_pool(&x);
    let x = b.flatten(&x, 1);
    let x = b.gemm(&x, "fc", opts.classes, true);
    b.output(&x, "logits");
    b.finish()
}

/// One bottleneck block: 1x1 (width) -> 3x3 (width, stride) -> 1x1
/// (4 x width), each with batch norm, ReLU after the first two and after
/// the residual `Add`; a 1x1 projection (`downsample`) when the shape
/// changes.
fn bottleneck(b: &mut GraphBuilder, x: &Value, width: usize, stride: usize) -> Value {
    let out = 4 * width;
    let y = b.conv(x, "conv1", Conv2d::new(width, 1));
    let y = b.batch_norm(&y, "bn1");
    let y = b.relu(&y);
    let y = b.conv(&y, "conv2", Conv2d::new(width, 3).stride(stride).pad(1));
    let y = b.batch_norm(&y, "bn2");
    let y = b.relu(&y);
    let y = b.conv(&y, "conv3", Conv2d::new(out, 1));
    let y = b.batch_norm(&y, "bn3");
    let shortcut = if stride != 1 || x.shape[1] != out {
        let s = b.conv(x, "downsample.0", Conv2d::new(out, 1).stride(stride));
        b.batch_norm(&s, "downsample.1")
    } else {
        x.clone()
    };
    let y = b.named("residual").add(&y, &shortcut);
    b.named("out").relu(&y)
}
