//! [`GraphBuilder`]: writes a [`GraphFile`] one layer at a time, so that the
//! model code of the zoo reads like the architecture it describes.
//!
//! The builder names everything, draws nothing and infers only what it needs:
//!
//! - **Names.** Layers live in dotted module paths
//!   ([`GraphBuilder::scoped`]), as in PyTorch: a layer's main node and its
//!   output tensor are called by its path (`layer1.0.conv1`), its parameters
//!   `<path>.weight` and `<path>.bias`, helper nodes `<path>/<what>`, and
//!   anonymous operators `<scope>/<op>` (`layer1.0/relu`, then
//!   `layer1.0/relu_1`, ...) unless [`GraphBuilder::named`] names them
//!   (`h.0.attn/scores`). Constants (shapes, axes, scales) are named
//!   `const/...` after their values and shared.
//! - **Weights** are [`InitData::Random`] initializers. Seeds count up from 1
//!   in creation order, so they follow the layer index and a model's bytes
//!   never change between runs. Every distribution is uniform (exact and
//!   cheap to draw; [`uniform_fan_in`] and [`uniform_std`] pick the bounds).
//!   Weights of matrix products and convolutions have std
//!   `1 / sqrt(fan_in)`; biases lie in `±1 / sqrt(fan_in)`
//!   as in PyTorch's default; normalization scales in `1 ± 0.1` with shifts
//!   in `±0.05`.
//! - **Shapes.** Each method computes its output's shape (ONNX semantics) to
//!   size the next layer's weights; the loader's inference checks them again.
//!
//! Integer constants (shapes, axes, split sizes) are `I32`, the widest
//! integer element type of the format (ONNX would use int64).

use std::collections::{BTreeMap, BTreeSet};

use lpu_isa::DType;

use crate::format::{Dist, GraphFile, InitData, Initializer, ValueInfo};
use crate::ir::{AttrValue, Node};

/// A tensor of the graph being built: its name, element type and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
}

impl Value {
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension `axis`; negative axes count from the end.
    pub fn dim(&self, axis: isize) -> usize {
        self.shape[norm_axis(axis, self.rank())]
    }
}

/// An axis in `[-rank, rank)` as an index in `[0, rank)`.
fn norm_axis(axis: isize, rank: usize) -> usize {
    let r = rank as isize;
    assert!(
        -r <= axis && axis < r,
        "axis {axis} out of range for rank {rank}"
    );
    if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    }
}

/// Uniform bounds `±sqrt(3) * std`: the uniform distribution with mean 0 and
/// standard deviation `std`.
pub fn uniform_std(std: f64) -> Dist {
    let a = 3f64.sqrt() * std;
    Dist::Uniform { low: -a, high: a }
}

/// Uniform in `±sqrt(scale / fan_in)`: standard deviation
/// `sqrt(scale / (3 fan_in))`, so `scale` 3 gives `1 / sqrt(fan_in)`, 6 gives
/// He's `sqrt(2 / fan_in)` and 1 PyTorch's default bias bound.
pub fn uniform_fan_in(scale: f64, fan_in: usize) -> Dist {
    let a = (scale / fan_in as f64).sqrt();
    Dist::Uniform { low: -a, high: a }
}

/// Uniform in `center ± spread`.
pub fn uniform_around(center: f64, spread: f64) -> Dist {
    Dist::Uniform {
        low: center - spread,
        high: center + spread,
    }
}

/// NumPy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            assert!(
                da == db || da == 1 || db == 1,
                "shapes {a:?} and {b:?} do not broadcast"
            );
            if da == 1 {
                db
            } else {
                da
            }
        })
        .collect()
}

/// The hyper-parameters of a 2-D convolution ([`GraphBuilder::conv`]), built
/// PyTorch-style: `Conv2d::new(64, 7).stride(2).pad(3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Dilation in both directions.
    pub dilation: usize,
    /// Number of groups (input channels / group per filter).
    pub group: usize,
    /// Whether the convolution has a bias input.
    pub bias: bool,
}

impl Conv2d {
    /// A `kernel x kernel` convolution to `out_channels` channels: stride 1,
    /// no padding, no dilation, one group, no bias.
    pub fn new(out_channels: usize, kernel: usize) -> Conv2d {
        Conv2d {
            out_channels,
            kernel,
            stride: 1,
            pad: 0,
            dilation: 1,
            group: 1,
            bias: false,
        }
    }

    /// With stride `s`.
    pub fn stride(self, s: usize) -> Conv2d {
        Conv2d { stride: s, ..self }
    }

    /// With padding `p` on every side.
    pub fn pad(self, p: usize) -> Conv2d {
        Conv2d { pad: p, ..self }
    }

    /// With dilation `d`.
    pub fn dilation(self, d: usize) -> Conv2d {
        Conv2d {
            dilation: d,
            ..self
        }
    }

    /// With `g` groups.
    pub fn group(self, g: usize) -> Conv2d {
        Conv2d { group: g, ..self }
    }

    /// With a bias.
    pub fn with_bias(self) -> Conv2d {
        Conv2d { bias: true, ..self }
    }
}

/// Builds a [`GraphFile`]; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    name: String,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    initializers: Vec<Initializer>,
    nodes: Vec<Node>,
    scope: Vec<String>,
    /// Every tensor and node name given out so far.
    names: BTreeSet<String>,
    /// Constants by content, for sharing.
    consts: BTreeMap<String, Value>,
    next_seed: u64,
    /// The name [`GraphBuilder::named`] gave the next anonymous operator.
    pending: Option<String>,
}

type Attrs = Vec<(&'static str, AttrValue)>;

fn ints(v: &[usize]) -> AttrValue {
    AttrValue::Ints(v.iter().map(|&x| x as i64).collect())
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            name: name.to_string(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            initializers: Vec::new(),
            nodes: Vec::new(),
            scope: Vec::new(),
            names: BTreeSet::new(),
            consts: BTreeMap::new(),
            next_seed: 1,
            pending: None,
        }
    }

    /// The finished file.
    pub fn finish(self) -> GraphFile {
        assert!(
            self.pending.is_none(),
            "named({:?}) was never used",
            self.pending
        );
        GraphFile {
            name: self.name,
            inputs: self.inputs,
            outputs: self.outputs,
            initializers: self.initializers,
            nodes: self.nodes,
        }
    }

    // ---- names -------------------------------------------------------------

    /// Runs `f` inside module `name` (appended to the current path with a
    /// dot) and returns its result.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut GraphBuilder) -> R) -> R {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    /// Names the next anonymous operator (`relu`, `add`, `matmul`, ...)
    /// `<scope>/<what>` instead of after its op: `b.named("scores").matmul(&q, &k)`.
    pub fn named(&mut self, what: &str) -> &mut GraphBuilder {
        self.pending = Some(what.to_string());
        self
    }

    /// `local` inside the current module path.
    fn path(&self, local: &str) -> String {
        if self.scope.is_empty() {
            local.to_string()
        } else {
            format!("{}.{local}", self.scope.join("."))
        }
    }

    /// The current module path followed by `/op`, for anonymous operators.
    fn anon(&self, op: &str) -> String {
        if self.scope.is_empty() {
            op.to_string()
        } else {
            format!("{}/{op}", self.scope.join("."))
        }
    }

    /// `base`, or `base_1`, `base_2`, ... if taken; reserves the result.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    // ---- inputs, outputs, initializers --------------------------------------

    /// Declares graph input `name`.
    pub fn input(&mut self, name: &str, dtype: DType, shape: &[usize]) -> Value {
        let name = self.fresh(name);
        self.inputs.push(ValueInfo {
            name: name.clone(),
            dtype: Some(dtype),
            shape: Some(shape.to_vec()),
        });
        Value {
            name,
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// Declares `v` a graph output called `name`, renaming the tensor (in the
    /// node that produces it and in every reader) when its name differs.
    pub fn output(&mut self, v: &Value, name: &str) -> Value {
        let mut v = v.clone();
        if v.name != name {
            assert!(
                self.names.insert(name.to_string()),
                "output name '{name}' is taken"
            );
            for n in &mut self.nodes {
                for t in n.inputs.iter_mut().chain(n.outputs.iter_mut()) {
                    if *t == v.name {
                        *t = name.to_string();
                    }
                }
            }
            v.name = name.to_string();
        }
        self.outputs.push(ValueInfo {
            name: v.name.clone(),
            dtype: Some(v.dtype),
            shape: Some(v.shape.clone()),
        });
        v
    }

    /// A learned parameter `<path>.<local>`: an `F32` [`InitData::Random`]
    /// initializer with the next seed.
    pub fn param(&mut self, local: &str, shape: &[usize], dist: Dist) -> Value {
        let name = self.fresh(&self.path(local));
        let seed = self.next_seed;
        self.next_seed += 1;
        self.initializers.push(Initializer {
            name: name.clone(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            data: InitData::Random { seed, dist },
        });
        Value {
            name,
            dtype: DType::F32,
            shape: shape.to_vec(),
        }
    }

    /// An inline constant `const/<name>`, shared with any earlier constant of
    /// the same name, type, shape and values.
    pub fn constant(&mut self, name: &str, dtype: DType, shape: &[usize], values: &[f64]) -> Value {
        assert_eq!(values.len(), shape.iter().product::<usize>());
        let key = format!("{name}{dtype:?}{shape:?}{values:?}");
        if let Some(v) = self.consts.get(&key) {
            return v.clone();
        }
        let name = self.fresh(&format!("const/{name}"));
        self.initializers.push(Initializer {
            name: name.clone(),
            dtype,
            shape: shape.to_vec(),
            data: InitData::Inline(values.to_vec()),
        });
        let v = Value {
            name,
            dtype,
            shape: shape.to_vec(),
        };
        self.consts.insert(key, v.clone());
        v
    }

    /// A 1-D `I32` constant, named `<what>_<v0>_<v1>...`.
    pub fn const_ints(&mut self, what: &str, values: &[i64]) -> Value {
        let name = values
            .iter()
            .fold(what.to_string(), |s, v| format!("{s}_{v}"));
        let vals: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        self.constant(&name, DType::I32, &[values.len()], &vals)
    }

    /// A scalar `F32` constant.
    pub fn const_scalar(&mut self, name: &str, value: f64) -> Value {
        self.constant(name, DType::F32, &[], &[value])
    }

    // ---- nodes ---------------------------------------------------------------

    /// Appends node `name` (already reserved) with one output of the same
    /// name.
    fn push(
        &mut self,
        name: String,
        op: &str,
        inputs: &[&str],
        attrs: Attrs,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Value {
        self.nodes.push(Node {
            name: name.clone(),
            op_type: op.to_string(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.clone()],
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        Value { name, dtype, shape }
    }

    /// An anonymous node, named `<scope>/<what>`, or after the name
    /// [`GraphBuilder::named`] gave.
    fn op(
        &mut self,
        what: &str,
        op: &str,
        inputs: &[&str],
        attrs: Attrs,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Value {
        let what = self.pending.take().unwrap_or_else(|| what.to_string());
        let name = self.fresh(&self.anon(&what));
        self.push(name, op, inputs, attrs, dtype, shape)
    }

    /// A same-shape unary operator.
    fn unary(&mut self, what: &str, op: &str, x: &Value, attrs: Attrs) -> Value {
        self.op(what, op, &[&x.name], attrs, x.dtype, x.shape.clone())
    }

    /// A broadcasting binary operator.
    fn binary(&mut self, what: &str, op: &str, a: &Value, b: &Value) -> Value {
        let shape = broadcast(&a.shape, &b.shape);
        self.op(what, op, &[&a.name, &b.name], vec![], a.dtype, shape)
    }

    // ---- convolutional layers -------------------------------------------------

    /// `Conv` layer `local` over NCHW `x`: weight `[out, in / group, k, k]`
    /// with std `1 / sqrt(fan_in)` and, if `c.bias`, a bias in
    /// `±1 / sqrt(fan_in)`. Every attribute is written out.
    pub fn conv(&mut self, x: &Value, local: &str, c: Conv2d) -> Value {
        assert_eq!(x.rank(), 4, "conv input {} must be NCHW", x.name);
        let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        assert_eq!(cin % c.group, 0);
        assert_eq!(c.out_channels % c.group, 0);
        let fan_in = cin / c.group * c.kernel * c.kernel;
        let name = self.fresh(&self.path(local));
        let wt = self.param(
            &format!("{local}.weight"),
            &[c.out_channels, cin / c.group, c.kernel, c.kernel],
            uniform_fan_in(3.0, fan_in),
        );
        let mut inputs = vec![x.name.clone(), wt.name];
        if c.bias {
            let b = self.param(
                &format!("{local}.bias"),
                &[c.out_channels],
                uniform_fan_in(1.0, fan_in),
            );
            inputs.push(b.name);
        }
        let span = c.dilation * (c.kernel - 1) + 1;
        let out = |d: usize| (d + 2 * c.pad - span) / c.stride + 1;
        let attrs = vec![
            ("dilations", ints(&[c.dilation, c.dilation])),
            ("group", AttrValue::Int(c.group as i64)),
            ("kernel_shape", ints(&[c.kernel, c.kernel])),
            ("pads", ints(&[c.pad; 4])),
            ("strides", ints(&[c.stride, c.stride])),
        ];
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.push(
            name,
            "Conv",
            &inputs,
            attrs,
            DType::F32,
            vec![n, c.out_channels, out(h), out(w)],
        )
    }

    /// `BatchNormalization` layer `local` (inference form, epsilon 1e-5) over
    /// channel axis 1: scale in `1 ± 0.1`, shift in `±0.05`, running mean in
    /// `±0.05` and running variance in `1 ± 0.1`.
    pub fn batch_norm(&mut self, x: &Value, local: &str) -> Value {
        let c = x.shape[1];
        let name = self.fresh(&self.path(local));
        let scale = self.param(&format!("{local}.weight"), &[c], uniform_around(1.0, 0.1));
        let bias = self.param(&format!("{local}.bias"), &[c], uniform_around(0.0, 0.05));
        let mean = self.param(
            &format!("{local}.running_mean"),
            &[c],
            uniform_around(0.0, 0.05),
        );
        let var = self.param(
            &format!("{local}.running_var"),
            &[c],
            uniform_around(1.0, 0.1),
        );
        self.push(
            name,
            "BatchNormalization",
            &[&x.name, &scale.name, &bias.name, &mean.name, &var.name],
            vec![("epsilon", AttrValue::Float(1e-5))],
            DType::F32,
            x.shape.clone(),
        )
    }

    /// `MaxPool` with a square `kernel`, `stride` and padding `pad` on every side.
    pub fn max_pool(&mut self, x: &Value, kernel: usize, stride: usize, pad: usize) -> Value {
        let out = |d: usize| (d + 2 * pad - kernel) / stride + 1;
        let shape = vec![x.shape[0], x.shape[1], out(x.shape[2]), out(x.shape[3])];
        let attrs = vec![
            ("kernel_shape", ints(&[kernel, kernel])),
            ("pads", ints(&[pad; 4])),
            ("strides", ints(&[stride, stride])),
        ];
        self.op("maxpool", "MaxPool", &[&x.name], attrs, x.dtype, shape)
    }

    /// `GlobalAveragePool`: NCHW to NC11.
    pub fn global_avg_pool(&mut self, x: &Value) -> Value {
        let shape = vec![x.shape[0], x.shape[1], 1, 1];
        self.op(
            "avgpool",
            "GlobalAveragePool",
            &[&x.name],
            vec![],
            x.dtype,
            shape,
        )
    }

    /// `Flatten` at `axis`: `[prod(shape[..axis]), prod(shape[axis..])]`.
    pub fn flatten(&mut self, x: &Value, axis: usize) -> Value {
        let shape = vec![
            x.shape[..axis].iter().product(),
            x.shape[axis..].iter().product(),
        ];
        self.op(
            "flatten",
            "Flatten",
            &[&x.name],
            vec![("axis", AttrValue::Int(axis as i64))],
            x.dtype,
            shape,
        )
    }

    // ---- dense layers -----------------------------------------------------------

    /// Fully connected layer `local` as one `Gemm` (`transB = 1`, the weight
    /// stored `[out, in]` as in PyTorch) over 2-D `x`: weight std
    /// `1 / sqrt(in)`, bias (if `bias`) in `±1 / sqrt(in)`.
    pub fn gemm(&mut self, x: &Value, local: &str, out: usize, bias: bool) -> Value {
        let fan_in = x.dim(-1);
        let name = self.fresh(&self.path(local));
        let w = self.param(
            &format!("{local}.weight"),
            &[out, fan_in],
            uniform_fan_in(3.0, fan_in),
        );
        let b = bias.then(|| {
            self.param(
                &format!("{local}.bias"),
                &[out],
                uniform_fan_in(1.0, fan_in),
            )
        });
        self.gemm_with(name, x, &w, b.as_ref())
    }

    /// `Gemm` of 2-D `x` with an existing weight `w` stored `[out, in]`
    /// (`transB = 1`), e.g. a tied embedding table, plus optional bias `c`.
    pub fn gemm_by(&mut self, x: &Value, local: &str, w: &Value, c: Option<&Value>) -> Value {
        let name = self.fresh(&self.path(local));
        self.gemm_with(name, x, w, c)
    }

    fn gemm_with(&mut self, name: String, x: &Value, w: &Value, c: Option<&Value>) -> Value {
        assert_eq!(x.rank(), 2, "Gemm input {} must be 2-D", x.name);
        assert_eq!(
            x.shape[1], w.shape[1],
            "Gemm {name}: {:?} x {:?}^T",
            x.shape, w.shape
        );
        let mut inputs = vec![x.name.as_str(), w.name.as_str()];
        if let Some(c) = c {
            inputs.push(&c.name);
        }
        let shape = vec![x.shape[0], w.shape[0]];
        self.push(
            name,
            "Gemm",
            &inputs,
            vec![("transB", AttrValue::Int(1))],
            DType::F32,
            shape,
        )
    }

    /// Linear layer `local` as exported for N-D inputs: `MatMul` by a weight
    /// stored `[in, out]` (std `1 / sqrt(in)`), then, if `bias`, an `Add`
    /// of a bias in `±1 / sqrt(in)` (node `<path>/bias`).
    pub fn linear(&mut self, x: &Value, local: &str, out: usize, bias: bool) -> Value {
        let fan_in = x.dim(-1);
        let name = self.fresh(&self.path(local));
        let w = self.param(
            &format!("{local}.weight"),
            &[fan_in, out],
            uniform_fan_in(3.0, fan_in),
        );
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = out;
        let y = self.push(
            name.clone(),
            "MatMul",
            &[&x.name, &w.name],
            vec![],
            DType::F32,
            shape.clone(),
        );
        if !bias {
            return y;
        }
        let b = self.param(
            &format!("{local}.bias"),
            &[out],
            uniform_fan_in(1.0, fan_in),
        );
        let add = self.fresh(&format!("{name}/bias"));
        self.push(add, "Add", &[&y.name, &b.name], vec![], DType::F32, shape)
    }

    /// `MatMul` with NumPy semantics (batched, broadcasting batch dimensions);
    /// both operands at least 2-D.
    pub fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        assert!(a.rank() >= 2 && b.rank() >= 2);
        let (n, k) = (a.dim(-2), a.dim(-1));
        let (k2, m) = (b.dim(-2), b.dim(-1));
        assert_eq!(k, k2, "MatMul {:?} x {:?}", a.shape, b.shape);
        let mut shape = broadcast(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2]);
        shape.extend([n, m]);
        self.op(
            "matmul",
            "MatMul",
            &[&a.name, &b.name],
            vec![],
            a.dtype,
            shape,
        )
    }

    /// `Gather` along `axis`: output shape `data[..axis] ++ indices ++
    /// data[axis + 1..]`.
    pub fn gather(&mut self, data: &Value, indices: &Value, axis: isize) -> Value {
        let ax = norm_axis(axis, data.rank());
        let mut shape = data.shape[..ax].to_vec();
        shape.extend(&indices.shape);
        shape.extend(&data.shape[ax + 1..]);
        self.op(
            "gather",
            "Gather",
            &[&data.name, &indices.name],
            vec![("axis", AttrValue::Int(axis as i64))],
            data.dtype,
            shape,
        )
    }

    // ---- normalization and activations ----------------------------------------

    /// `LayerNormalization` layer `local` over the last axis.
    pub fn layer_norm(&mut self, x: &Value, local: &str, epsilon: f32) -> Value {
        let c = x.dim(-1);
        let name = self.fresh(&self.path(local));
        let scale = self.param(&format!("{local}.weight"), &[c], uniform_around(1.0, 0.1));
        let bias = self.param(&format!("{local}.bias"), &[c], uniform_around(0.0, 0.05));
        let attrs = vec![
            ("axis", AttrValue::Int(-1)),
            ("epsilon", AttrValue::Float(epsilon)),
        ];
        self.push(
            name,
            "LayerNormalization",
            &[&x.name, &scale.name, &bias.name],
            attrs,
            DType::F32,
            x.shape.clone(),
        )
    }

    /// `RMSNormalization` layer `local` over the last axis (no shift).
    pub fn rms_norm(&mut self, x: &Value, local: &str, epsilon: f32) -> Value {
        let c = x.dim(-1);
        let name = self.fresh(&self.path(local));
        let scale = self.param(&format!("{local}.weight"), &[c], uniform_around(1.0, 0.1));
        let attrs = vec![
            ("axis", AttrValue::Int(-1)),
            ("epsilon", AttrValue::Float(epsilon)),
        ];
        self.push(
            name,
            "RMSNormalization",
            &[&x.name, &scale.name],
            attrs,
            DType::F32,
            x.shape.clone(),
        )
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &Value) -> Value {
        self.unary("relu", "Relu", x, vec![])
    }

    /// `Sigmoid`.
    pub fn sigmoid(&mut self, x: &Value) -> Value {
        self.unary("sigmoid", "Sigmoid", x, vec![])
    }

    /// `Tanh`.
    pub fn tanh(&mut self, x: &Value) -> Value {
        self.unary("tanh", "Tanh", x, vec![])
    }

    /// SiLU (swish) as exported to standard ONNX: `Mul(x, Sigmoid(x))`.
    pub fn silu(&mut self, x: &Value) -> Value {
        let name = self.pending.take();
        let s = self.sigmoid(x);
        self.pending = name;
        self.binary("silu", "Mul", x, &s)
    }

    /// `Gelu`: exact (erf), or with `approximate = "tanh"` when `tanh`.
    pub fn gelu(&mut self, x: &Value, tanh: bool) -> Value {
        let attrs = if tanh {
            vec![("approximate", AttrValue::String("tanh".into()))]
        } else {
            vec![]
        };
        self.unary("gelu", "Gelu", x, attrs)
    }

    /// `Softmax` along `axis`.
    pub fn softmax(&mut self, x: &Value, axis: isize) -> Value {
        self.unary(
            "softmax",
            "Softmax",
            x,
            vec![("axis", AttrValue::Int(axis as i64))],
        )
    }

    // ---- elementwise arithmetic -----------------------------------------------

    /// `Add` with broadcasting.
    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("add", "Add", a, b)
    }

    /// `Mul` with broadcasting.
    pub fn mul(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("mul", "Mul", a, b)
    }

    /// `Div` with broadcasting.
    pub fn div(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("div", "Div", a, b)
    }

    // ---- layout ------------------------------------------------------------------

    /// `Reshape` to `shape` (every dimension explicit), the shape given as
    /// an `I32` constant input.
    pub fn reshape(&mut self, x: &Value, shape: &[usize]) -> Value {
        assert_eq!(
            x.len(),
            shape.iter().product::<usize>(),
            "reshape {:?} to {shape:?}",
            x.shape
        );
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.const_ints("shape", &dims);
        self.op(
            "reshape",
            "Reshape",
            &[&x.name, &s.name],
            vec![],
            x.dtype,
            shape.to_vec(),
        )
    }

    /// `Transpose` by `perm`.
    pub fn transpose(&mut self, x: &Value, perm: &[usize]) -> Value {
        assert_eq!(perm.len(), x.rank());
        let shape = perm.iter().map(|&p| x.shape[p]).collect();
        self.op(
            "transpose",
            "Transpose",
            &[&x.name],
            vec![("perm", ints(perm))],
            x.dtype,
            shape,
        )
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, xs: &[&Value], axis: isize) -> Value {
        let ax = norm_axis(axis, xs[0].rank());
        let mut shape = xs[0].shape.clone();
        shape[ax] = xs.iter().map(|x| x.shape[ax]).sum();
        let inputs: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        self.op(
            "concat",
            "Concat",
            &inputs,
            vec![("axis", AttrValue::Int(axis as i64))],
            xs[0].dtype,
            shape,
        )
    }

    /// `Split` along `axis` into parts of `sizes` (the `split` input, an `I32`
    /// constant); output `i` is named `<scope>/<names[i]>`.
    pub fn split(&mut self, x: &Value, axis: isize, sizes: &[usize], names: &[&str]) -> Vec<Value> {
        let ax = norm_axis(axis, x.rank());
        assert_eq!(sizes.iter().sum::<usize>(), x.shape[ax]);
        assert_eq!(sizes.len(), names.len());
        let s: Vec<i64> = sizes.iter().map(|&d| d as i64).collect();
        let s = self.const_ints("split", &s);
        let what = self.pending.take().unwrap_or_else(|| "split".to_string());
        let name = self.fresh(&self.anon(&what));
        let outs: Vec<Value> = sizes
            .iter()
            .zip(names)
            .map(|(&size, n)| {
                let mut shape = x.shape.clone();
                shape[ax] = size;
                Value {
                    name: self.fresh(&self.anon(n)),
                    dtype: x.dtype,
                    shape,
                }
            })
            .collect();
        self.nodes.push(Node {
            name,
            op_type: "Split".into(),
            inputs: vec![x.name.clone(), s.name],
            outputs: outs.iter().map(|o| o.name.clone()).collect(),
            attributes: [("axis".to_string(), AttrValue::Int(axis as i64))]
                .into_iter()
                .collect(),
        });
        outs
    }

    /// `Slice` of `[starts[i], ends[i])` along `axes[i]` (step 1), the three
    /// lists given as `I32` constant inputs.
    pub fn slice(&mut self, x: &Value, starts: &[usize], ends: &[usize], axes: &[usize]) -> Value {
        let mut shape = x.shape.clone();
        for ((&s, &e), &a) in starts.iter().zip(ends).zip(axes) {
            assert!(s < e && e <= x.shape[a]);
            shape[a] = e - s;
        }
        let as_i64 = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let st = self.const_ints("starts", &as_i64(starts));
        let en = self.const_ints("ends", &as_i64(ends));
        let ax = self.const_ints("axes", &as_i64(axes));
        self.op(
            "slice",
            "Slice",
            &[&x.name, &st.name, &en.name, &ax.name],
            vec![],
            x.dtype,
            shape,
        )
    }

    /// `Squeeze` of the size-1 `axes` (an `I32` constant input).
    pub fn squeeze(&mut self, x: &Value, axes: &[usize]) -> Value {
        for &a in axes {
            assert_eq!(x.shape[a], 1);
        }
        let shape = (0..x.rank())
            .filter(|i| !axes.contains(i))
            .map(|i| x.shape[i])
            .collect();
        let ax: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let ax = self.const_ints("axes", &ax);
        self.op(
            "squeeze",
            "Squeeze",
            &[&x.name, &ax.name],
            vec![],
            x.dtype,
            shape,
        )
    }

    /// `Unsqueeze`: inserts size-1 dimensions at `axes` of the output (an
    /// `I32` constant input).
    pub fn unsqueeze(&mut self, x: &Value, axes: &[usize]) -> Value {
        let rank = x.rank() + axes.len();
        let mut src = x.shape.iter();
        let shape = (0..rank)
            .map(|i| {
                if axes.contains(&i) {
                    1
                } else {
                    *src.next().unwrap()
                }
            })
            .collect();
        let ax: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let ax = self.const_ints("axes", &ax);
        self.op(
            "unsqueeze",
            "Unsqueeze",
            &[&x.name, &ax.name],
            vec![],
            x.dtype,
            shape,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_names() {
        let mut b = GraphBuilder::new("t");
        let x = b.input("x", DType::F32, &[1, 3, 32, 32]);
        let y = b.scoped("stem", |b| {
            let y = b.conv(&x, "conv", Conv2d::new(8, 3).stride(2).pad(1));
            let y = b.batch_norm(&y, "bn");
            let y = b.relu(&y);
            b.relu(&y)
        });
        assert_eq!(y.shape, vec![1, 8, 16, 16]);
        assert_eq!(y.name, "stem/relu_1");
        let z = b.named("act").relu(&y);
        assert_eq!(z.name, "act");
        assert_eq!(b.relu(&z).name, "relu");
        let p = b.max_pool(&y, 3, 2, 1);
        assert_eq!(p.shape, vec![1, 8, 8, 8]);
        let g = b.global_avg_pool(&p);
        let f = b.flatten(&g, 1);
        assert_eq!(f.shape, vec![1, 8]);
        let g = b.gemm(&f, "fc", 10, true);
        b.output(&g, "logits");
        let file = b.finish();
        let names: Vec<&str> = file.initializers.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stem.conv.weight",
                "stem.bn.weight",
                "stem.bn.bias",
                "stem.bn.running_mean",
                "stem.bn.running_var",
                "fc.weight",
                "fc.bias"
            ]
        );
        assert_eq!(file.nodes.last().unwrap().outputs, ["logits"]);
        let seeds: Vec<u64> = file
            .initializers
            .iter()
            .map(|i| match i.data {
                InitData::Random { seed, .. } => seed,
                _ => 0,
            })
            .collect();
        assert_eq!(seeds, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn layout_ops() {
        let mut b = GraphBuilder::new("t");
        let x = b.input("x", DType::F32, &[2, 5, 12]);
        let w = b.param("w", &[4, 3], uniform_std(1.0));
        let y = b.reshape(&x, &[2, 5, 3, 4]);
        assert_eq!(b.transpose(&y, &[0, 2, 3, 1]).shape, vec![2, 3, 4, 5]);
        assert_eq!(b.matmul(&y, &w).shape, vec![2, 5, 3, 3]);
        let parts = b.split(&x, -1, &[4, 8], &["a", "b"]);
        assert_eq!(parts[1].shape, vec![2, 5, 8]);
        assert_eq!(b.concat(&[&parts[1], &parts[0]], 2).shape, vec![2, 5, 12]);
        assert_eq!(b.slice(&x, &[1], &[4], &[1]).shape, vec![2, 3, 12]);
        let u = b.unsqueeze(&x, &[0, 3]);
        assert_eq!(u.shape, vec![1, 2, 5, 1, 12]);
        assert_eq!(b.squeeze(&u, &[0, 3]).shape, vec![2, 5, 12]);
        let ids = b.input("ids", DType::I32, &[1, 7]);
        assert_eq!(b.gather(&w, &ids, 0).shape, vec![1, 7, 3]);
        // Equal constants are shared.
        let a = b.const_ints("axes", &[0, 3]);
        assert_eq!(a.name, "const/axes_0_3");
        assert_eq!(b.finish().initializers.len(), 7);
    }
}
