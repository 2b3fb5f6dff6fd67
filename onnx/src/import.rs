//! ONNX model to `.graph` [`GraphFile`]: decoding, initializers and
//! `Constant` nodes, symbolic dimensions, opset normalisation, shape
//! folding ([`crate::fold`]), attribute conversion and the one error that
//! lists every unsupported operator.
//!
//! # Opset normalisation
//!
//! Models of default-domain opset 7 to 23 are read (newer ones with a note,
//! using the opset-23 forms; opset 6 too, its legacy `broadcast`/`axis`
//! binary-op attributes rewritten to NumPy broadcasting and `is_test`
//! dropped). Where an older opset carried as an attribute
//! what a newer one takes as an input, the attribute becomes a constant
//! input, so that the graph always has the newest form:
//!
//! | op | attribute(s) | input since opset |
//! | --- | --- | --- |
//! | `Reshape` | `shape` | 5 |
//! | `Slice` | `starts`, `ends`, `axes` | 10 |
//! | `TopK` | `k` | 10 |
//! | `Clip` | `min`, `max` | 11 |
//! | `Pad` | `pads` (`paddings`), `value` | 11 |
//! | `Dropout` | `ratio` | 12 |
//! | `Unsqueeze`, `Squeeze`, `ReduceSum`, `Split` (`split`) | `axes` | 13 |
//! | `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`, `ReduceL1`, `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceSumSquare` | `axes` | 18 |
//!
//! `BatchNormalization`'s `spatial` (opsets 7 and 8) is dropped when 1 and
//! refused otherwise. `Softmax`, `LogSoftmax` and `Hardmax` before opset 13
//! coerce their input to 2-D at `axis` (default 1); that equals the opset-13
//! form only when `axis` is the last axis, which is rewritten to `axis: -1`;
//! other axes are refused.
//!
//! # Element types
//!
//! lpu has f32, f16, i8 and i32 (and whatever `lpu_isa::DType` adds: `i64`,
//! `u8` and `bool` are used when `DType::from_name` knows them). Without
//! them: DOUBLE and BFLOAT16 tensors become f32 (DOUBLE rounds; a note says
//! so), INT16, UINT16 and UINT32 become i32, INT64 and UINT64 become i32
//! when every value fits (shape and index tensors; a note says so), BOOL
//! becomes i8 0/1 (the type of lpu's comparison results and `Where`
//! conditions; a note says so), and UINT8 tensors are refused with an
//! error naming the tensor. `Cast` to DOUBLE casts to FLOAT (a note says
//! so), as DOUBLE tensors are f32.
//!
//! # Empty tensors
//!
//! lpu has no empty tensors (a zero dimension), but no data flows through
//! one, so the importer evaluates them away: every empty tensor is a
//! constant, and a node that reads one is evaluated at import or refused.
//!
//! - A graph input with a zero dimension is the empty constant, not an
//!   input of the lpu graph (a note says so; dropped when no node reads
//!   it, as `CastLike`'s expansion leaves its `like`).
//! - An empty optional input that means "not given" is dropped: a
//!   reduction's `axes` (every axis, or none with `noop_with_empty_axes`),
//!   `Resize`'s `roi`, `scales` and `sizes`.
//! - A reduction (`ReduceSum`, `ReduceMean`, `ReduceMax`) of an empty input
//!   is a constant: empty, or ONNX's value for the empty set (0 for
//!   `ReduceSum`, -inf for `ReduceMax`; `ReduceMean` of it is undefined and
//!   refused).
//! - A `Split` piece of size zero is the empty constant; the rest is a
//!   `Split` into the other pieces, or an `Identity` when one is left. A
//!   `Slice` of a runtime tensor that selects nothing is the empty constant.
//! - `Concat` drops its empty inputs (an `Identity` when one is left).
//! - The folding above and in [`crate::fold`] evaluates the rest (`Shape`,
//!   `Reshape`, `ConstantOfShape`, elementwise ops on constants, ...).
//!
//! A node that still reads an empty tensor is refused, naming a runtime
//! input that would have to be a constant for it to fold. A graph output
//! that is empty is left out of the lpu graph and listed, with its shape,
//! in [`Imported::empty_outputs`]; [`load`] refuses a model whose outputs
//! are all empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lpu_graph::format::{GraphFile, Initializer, ValueInfo};
use lpu_graph::ops::op_spec;
use lpu_graph::{AttrValue, DType, Node, TensorInfo};
use prost::Message;

use crate::error::{ImportError, UnsupportedOp};
use crate::fold::{fold, Attr, Attrs, FOLDABLE};
use crate::proto::{
    attribute_type as at, data_type as dt, AttributeProto, DimValue, ModelProto, NodeProto,
    TensorProto, ValueInfoProto,
};
use crate::tensor::{Const, Data};
use lpu_isa::narrow::Format;

/// The oldest default-domain opset the importer reads.
pub const MIN_OPSET: i64 = 6;
/// The newest default-domain opset whose forms the importer knows; newer
/// ones are read with a note.
pub const MAX_OPSET: i64 = 23;
/// The largest `.onnx` file read (2 GiB, protobuf's own limit); weights
/// beyond that must be external data.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// How to bind what the model leaves open.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Values of symbolic dimensions (`dim_param`), from `--dim NAME=VALUE`.
    pub dims: BTreeMap<String, usize>,
    /// Whole shapes of graph inputs, from `--input-shape NAME=1x3x224x224`;
    /// they override the declared shape (and bind its symbols).
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Graph inputs bound to fixed values: they become initializers (and
    /// feed shape folding). The conformance runner binds the INT64 inputs
    /// that lpu needs constant (a `Reshape`'s shape, a `Slice`'s starts..)
    /// to the test data this way.
    pub constants: BTreeMap<String, Const>,
}

/// An imported model and what the importer has to say about it.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The `.graph` structure (initializers inline).
    pub graph: GraphFile,
    /// Lossy or notable conversions (narrowed types, newer opset, unused
    /// `--dim`), one line each.
    pub notes: Vec<String>,
    /// The default-domain opset of the model.
    pub opset: i64,
    /// Graph outputs that are empty (a zero dimension), with their shapes,
    /// in the model's order: lpu has no empty tensors, so they are not
    /// outputs of `graph` (see "Empty tensors" in the module docs).
    pub empty_outputs: Vec<(String, Vec<usize>)>,
}

/// Imports the `.onnx` file at `path` into a [`GraphFile`]. External data
/// is read relative to the file's directory.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<GraphFile, ImportError> {
    import_with_notes(path, opts).map(|i| i.graph)
}

/// [`import`], with the notes.
pub fn import_with_notes(path: &Path, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let bytes = read_bounded(path, MAX_MODEL_BYTES)?;
    let base = path.parent().unwrap_or(Path::new("."));
    import_bytes(&bytes, &path.display().to_string(), base, opts)
}

/// Imports and validates: the [`lpu_graph::Graph`] `lpu-graph`'s loader
/// builds from the imported file, and the notes.
pub fn load(
    path: &Path,
    opts: &ImportOptions,
) -> Result<(lpu_graph::Graph, Vec<String>), ImportError> {
    let imp = import_with_notes(path, opts)?;
    if imp.graph.outputs.is_empty() && !imp.empty_outputs.is_empty() {
        let names: Vec<&str> = imp.empty_outputs.iter().map(|(n, _)| n.as_str()).collect();
        return Err(ImportError::Model {
            file: path.display().to_string(),
            message: format!(
                "every output ({}) is empty (a zero dimension); lpu has no empty tensors and nothing to compute",
                names.join(", ")
            ),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let g = lpu_graph::load::build(imp.graph, &path.display().to_string(), base)?;
    Ok((g, imp.notes))
}

/// Reads a whole file, refusing one larger than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ImportError> {
    let io = |e: std::io::Error| ImportError::Io {
        path: path.display().to_string(),
        message: format!("cannot read: {e}"),
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limit {
        return Err(ImportError::Io {
            path: path.display().to_string(),
            message: format!("the file has {len} bytes, more than the {limit} read"),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Decodes a `ModelProto`.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}

/// Reads a `TensorProto` file (the backend tests' `input_K.pb`): its name
/// (possibly empty) and value. External data is refused.
pub fn read_tensor_file(path: &Path) -> Result<(String, Const), ImportError> {
    let file = path.display().to_string();
    let bytes = read_bounded(path, MAX_MODEL_BYTES)?;
    let t = TensorProto::decode(&bytes[..]).map_err(|e| ImportError::Decode {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let c = Const::from_proto(&t, None).map_err(|message| ImportError::Tensor {
        file,
        tensor: t.name.clone(),
        message,
    })?;
    Ok((t.name, c))
}

/// The lpu element type a tensor of ONNX type `code` becomes, and a note
/// when that is a conversion; `ints` (the values, for constants) decides
/// whether INT64 fits i32. `Err` says why the type is refused.
pub fn lpu_dtype(code: i32, ints: Option<&[i64]>) -> Result<(DType, Option<String>), String> {
    let named = |n: &str| DType::from_name(n);
    let fits32 = |what: &str| -> Result<(DType, Option<String>), String> {
        if let Some(v) = ints {
            if let Some(x) = v
                .iter()
                .find(|x| **x < i32::MIN as i64 || **x > i32::MAX as i64)
            {
                return Err(format!(
                    "{what} value {x} does not fit i32, and lpu has no 64-bit integers"
                ));
            }
        }
        Ok((
            DType::I32,
            Some(format!("{what} narrowed to i32 (lpu has no {what})")),
        ))
    };
    Ok(match code {
        dt::FLOAT => (DType::F32, None),
        dt::FLOAT16 => (DType::F16, None),
        dt::INT8 => (DType::I8, None),
        dt::INT32 => (DType::I32, None),
        dt::DOUBLE => (
            DType::F32,
            Some("DOUBLE rounded to f32 (lpu has no f64)".into()),
        ),
        dt::BFLOAT16 => (DType::F32, Some("BFLOAT16 widened to f32 (exact)".into())),
        dt::INT16 | dt::UINT16 => (
            DType::I32,
            Some(format!("{} widened to i32 (exact)", dt::name(code))),
        ),
        dt::INT64 => match named("i64") {
            Some(d) => (d, None),
            None => fits32("INT64")?,
        },
        dt::UINT32 | dt::UINT64 => fits32(&dt::name(code))?,
        // Widened exactly; the MXM's operands must still be i8 (checked
        // where a MatMulInteger/ConvInteger reads one).
        dt::UINT8 => (DType::I32, Some("UINT8 widened to i32 (exact)".into())),
        dt::BOOL => match named("bool") {
            Some(d) => (d, None),
            // lpu's comparisons produce i8 0/1 and Where takes an i8
            // condition (`Cast` to BOOL is i8 too): the same representation.
            None => (
                DType::I8,
                Some("BOOL stored as i8 0/1 (lpu's boolean type)".into()),
            ),
        },
        c => match crate::tensor::narrow_type(c) {
            Some((f, _)) => (
                f.container(),
                Some(format!(
                    "{} held widened in {} (exact; lpu has no {}-bit storage)",
                    dt::name(c),
                    f.container(),
                    crate::tensor::narrow_type(c).map_or(8, |(_, b)| b)
                )),
            ),
            None => return Err(format!("element type {} is not supported", dt::name(c))),
        },
    })
}

/// Attributes that lpu's op specs do not list but whose ONNX default value
/// means "no change": dropped when they hold that value.
const DROPPABLE_DEFAULTS: &[(&str, &str, i64)] = &[
    ("Cast", "saturate", 1),
    ("QuantizeLinear", "saturate", 1),
    ("QuantizeLinear", "block_size", 0),
    ("QuantizeLinear", "output_dtype", 0),
    ("QuantizeLinear", "precision", 0),
    ("DequantizeLinear", "block_size", 0),
    ("DequantizeLinear", "output_dtype", 0),
    ("Gemm", "transA", 0),
    ("Gemm", "transB", 0),
];

/// The import state.
struct Ctx<'a> {
    file: String,
    base: &'a Path,
    opset: i64,
    consts: BTreeMap<String, Const>,
    /// Types and shapes of non-constant tensors, where known.
    infos: BTreeMap<String, TensorInfo>,
    /// Declared (value_info / output) shapes with symbols bound, where
    /// fully known, and element types.
    declared: BTreeMap<String, (i32, Option<Vec<usize>>)>,
    /// ONNX element types of graph inputs and of the results of
    /// conversions to narrow types (which lpu holds widened: the lpu type
    /// alone does not say that a tensor holds fp8 values).
    codes: BTreeMap<String, i32>,
    /// Every tensor name in the model, for fresh names.
    taken: BTreeSet<String>,
    nodes: Vec<Node>,
    notes: BTreeSet<String>,
}

impl Ctx<'_> {
    fn model_err(&self, message: String) -> ImportError {
        ImportError::Model {
            file: self.file.clone(),
            message,
        }
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// The shape of `name`, if known.
    fn shape(&self, name: &str) -> Option<&[usize]> {
        if let Some(c) = self.consts.get(name) {
            return Some(&c.shape);
        }
        if let Some(i) = self.infos.get(name) {
            return Some(&i.shape);
        }
        self.declared.get(name).and_then(|(_, s)| s.as_deref())
    }

    /// The lpu type and shape of `name` as a node input, if known.
    fn info(&self, name: &str) -> Option<TensorInfo> {
        if let Some(c) = self.consts.get(name) {
            let (dtype, _) = lpu_dtype(c.code, c.as_ints()).ok()?;
            return Some(TensorInfo {
                dtype,
                shape: c.shape.clone(),
            });
        }
        self.infos.get(name).cloned()
    }
}

/// Binds the dimensions of a declared type; `Err((k, param))` names the
/// first open one (`param` empty for an unnamed unknown dimension).
fn resolve_dims(
    vi: &ValueInfoProto,
    sym: &BTreeMap<String, usize>,
) -> Result<Option<Vec<usize>>, (usize, String)> {
    let Some(tt) = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Ok(None);
    };
    let Some(shape) = &tt.shape else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(shape.dim.len().min(64));
    for (k, d) in shape.dim.iter().enumerate() {
        out.push(match &d.value {
            Some(DimValue::DimValue(v)) if *v >= 0 => {
                usize::try_from(*v).map_err(|_| (k, String::new()))?
            }
            Some(DimValue::DimParam(p)) => match sym.get(p) {
                Some(v) => *v,
                None => return Err((k, p.clone())),
            },
            _ => return Err((k, String::new())),
        });
    }
    Ok(Some(out))
}

fn elem_type(vi: &ValueInfoProto) -> Option<i32> {
    vi.r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map(|t| t.elem_type)
}

/// Decodes one attribute.
fn decode_attr(a: &AttributeProto, base: &Path) -> Result<Attr, String> {
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| format!("attribute '{}' is not UTF-8", a.name))
    };
    let tensor = |t: &TensorProto| {
        Const::from_proto(t, Some(base)).map_err(|m| format!("attribute '{}': {m}", a.name))
    };
    if !a.ref_attr_name.is_empty() {
        return Err(format!(
            "attribute '{}' refers to a function attribute; functions are not supported",
            a.name
        ));
    }
    let kind = if a.r#type != at::UNDEFINED {
        a.r#type
    } else if a.t.is_some() {
        at::TENSOR
    } else if !a.floats.is_empty() {
        at::FLOATS
    } else if !a.ints.is_empty() {
        at::INTS
    } else if !a.strings.is_empty() {
        at::STRINGS
    } else if !a.s.is_empty() {
        at::STRING
    } else if a.f != 0.0 {
        at::FLOAT
    } else {
        at::INT
    };
    Ok(match kind {
        at::FLOAT => Attr::Float(a.f),
        at::INT => Attr::Int(a.i),
        at::STRING => Attr::String(utf8(&a.s)?),
        at::TENSOR => match &a.t {
            Some(t) => Attr::Tensor(tensor(t)?),
            None => {
                return Err(format!(
                    "attribute '{}' is a TENSOR without a value",
                    a.name
                ))
            }
        },
        at::FLOATS => Attr::Floats(a.floats.clone()),
        at::INTS => Attr::Ints(a.ints.clone()),
        at::STRINGS => Attr::Strings(
            a.strings
                .iter()
                .map(|s| utf8(s))
                .collect::<Result<_, _>>()?,
        ),
        at::GRAPH => Attr::Other("GRAPH"),
        at::GRAPHS => Attr::Other("GRAPHS"),
        at::TENSORS => Attr::Other("TENSORS"),
        _ => Attr::Other("an unsupported kind"),
    })
}

/// The value of a `Constant` node.
fn constant_value(attrs: &Attrs) -> Result<Const, String> {
    let mut it = attrs.iter();
    let (Some((name, value)), None) = (it.next(), it.next()) else {
        return Err(format!(
            "a Constant needs exactly one value attribute; it has {}",
            attrs.len()
        ));
    };
    Ok(match (name.as_str(), value) {
        ("value", Attr::Tensor(t)) => t.clone(),
        ("value_float", Attr::Float(f)) => Const::scalar_f32(*f),
        ("value_floats", Attr::Floats(v)) => {
            Const::new(dt::FLOAT, vec![v.len()], Data::F32(v.clone()))?
        }
        ("value_int", Attr::Int(i)) => Const::new(dt::INT64, vec![], Data::Int(vec![*i]))?,
        ("value_ints", Attr::Ints(v)) => Const::ints(v.clone()),
        (n, v) => return Err(format!("Constant attribute '{n}' ({v:?}) is not supported")),
    })
}

/// Imports a decoded-from-bytes model. `source` names it in messages;
/// external data is read relative to `base_dir`.
pub fn import_bytes(
    bytes: &[u8],
    source: &str,
    base_dir: &Path,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let model = decode_model(bytes).map_err(|e| ImportError::Decode {
        file: source.to_string(),
        message: e.to_string(),
    })?;
    import_model(&model, source, base_dir, opts)
}

/// Imports a decoded model.
///
/// Operators that can never import (not supported by `lpu-graph` and not
/// foldable at import) are found first, so that a model using them is
/// reported as [`ImportError::Unsupported`] even when something else (an
/// element type, an attribute) would fail earlier in the import; when the
/// import gets as far as checking every node, the error lists the
/// unfolded foldable-only operators too.
pub fn import_model(
    model: &ModelProto,
    source: &str,
    base_dir: &Path,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let never = never_importable(model);
    match import_model_nodes(model, source, base_dir, opts) {
        Err(ImportError::Unsupported { file, ops }) => {
            let mut all: BTreeMap<String, UnsupportedOp> = never;
            for o in ops {
                all.insert(o.op_type.clone(), o);
            }
            Err(ImportError::Unsupported {
                file,
                ops: all.into_values().collect(),
            })
        }
        Err(_) if !never.is_empty() => Err(ImportError::Unsupported {
            file: source.to_string(),
            ops: never.into_values().collect(),
        }),
        r => r,
    }
}

/// The model's operators that no import can accept: neither in
/// `lpu-graph`'s op set nor (default domain) `Constant` or foldable.
fn never_importable(model: &ModelProto) -> BTreeMap<String, UnsupportedOp> {
    let mut out: BTreeMap<String, UnsupportedOp> = BTreeMap::new();
    let Some(graph) = &model.graph else {
        return out;
    };
    for (i, np) in graph.node.iter().enumerate() {
        let default_domain = np.domain.is_empty() || np.domain == "ai.onnx";
        let op_type = if default_domain {
            np.op_type.clone()
        } else {
            format!("{}:{}", np.domain, np.op_type)
        };
        let importable = op_spec(&op_type).is_some()
            || (default_domain
                && (np.op_type == "Constant"
                    || np.op_type == "CastLike"
                    || FOLDABLE.contains(&np.op_type.as_str())));
        if !importable {
            let first_node = if np.name.is_empty() {
                format!("{}_{i}", np.op_type)
            } else {
                np.name.clone()
            };
            out.entry(op_type.clone())
                .or_insert_with(|| UnsupportedOp {
                    op_type,
                    count: 0,
                    first_node,
                })
                .count += 1;
        }
    }
    out
}

/// [`import_model`] without the early check for unsupported operators.
fn import_model_nodes(
    model: &ModelProto,
    source: &str,
    base_dir: &Path,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let file = source.to_string();
    let model_err = |message: String| ImportError::Model {
        file: file.clone(),
        message,
    };
    let Some(graph) = &model.graph else {
        return Err(model_err("the model has no graph".into()));
    };
    let mut notes = BTreeSet::new();

    // Opset.
    // A model that imports no default-domain opset has no default-domain
    // nodes; the newest known forms apply to none of them.
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(MAX_OPSET);
    if opset < MIN_OPSET {
        return Err(model_err(format!(
            "default-domain opset {opset} is older than {MIN_OPSET}, the oldest supported; convert the model with onnx.version_converter"
        )));
    }
    if opset > MAX_OPSET {
        notes.insert(format!(
            "opset {opset} is newer than {MAX_OPSET}; imported with the opset-{MAX_OPSET} forms of the supported operators"
        ));
    }
    if let Some(s) = graph.sparse_initializer.first() {
        let name = s.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(ImportError::Tensor {
            file,
            tensor: name.to_string(),
            message: "sparse initializers are not supported".into(),
        });
    }

    let mut taken = BTreeSet::new();
    for vi in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        taken.insert(vi.name.clone());
    }
    for t in &graph.initializer {
        taken.insert(t.name.clone());
    }
    for n in &graph.node {
        taken.extend(n.input.iter().cloned());
        taken.extend(n.output.iter().cloned());
    }

    // Initializers.
    let mut consts = BTreeMap::new();
    for (i, t) in graph.initializer.iter().enumerate() {
        let tensor_err = |message: String| ImportError::Tensor {
            file: file.clone(),
            tensor: if t.name.is_empty() {
                format!("initializer #{i}")
            } else {
                t.name.clone()
            },
            message,
        };
        if t.name.is_empty() {
            return Err(tensor_err("the initializer has no name".into()));
        }
        let c = Const::from_proto(t, Some(base_dir)).map_err(&tensor_err)?;
        if consts.insert(t.name.clone(), c).is_some() {
            return Err(tensor_err("two initializers have this name".into()));
        }
    }

    // Symbols: --dim, then those an --input-shape binds.
    let mut sym = opts.dims.clone();
    for (name, shape) in &opts.input_shapes {
        let Some(vi) = graph.input.iter().find(|v| &v.name == name) else {
            let names: Vec<&str> = graph
                .input
                .iter()
                .filter(|v| !consts.contains_key(&v.name))
                .map(|v| v.name.as_str())
                .collect();
            return Err(model_err(format!(
                "--input-shape names '{name}', which is not a graph input (the inputs are {})",
                names.join(", ")
            )));
        };
        let dims = vi
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.as_slice())
            .unwrap_or(&[]);
        if !dims.is_empty() && dims.len() != shape.len() {
            return Err(model_err(format!(
                "--input-shape {name}={shape:?} has rank {}; the model declares rank {}",
                shape.len(),
                dims.len()
            )));
        }
        for (d, &v) in dims.iter().zip(shape) {
            match &d.value {
                Some(DimValue::DimParam(p)) => {
                    if let Some(&prev) = sym.get(p) {
                        if prev != v {
                            return Err(model_err(format!(
                                "symbolic dimension '{p}' is bound to {prev} and, by --input-shape {name}, to {v}"
                            )));
                        }
                    }
                    sym.insert(p.clone(), v);
                }
                Some(DimValue::DimValue(k)) if *k >= 0 && *k as u64 != v as u64 => {
                    notes.insert(format!(
                        "--input-shape {name} overrides declared dimension {k} with {v}"
                    ));
                }
                _ => {}
            }
        }
    }

    let mut cx = Ctx {
        file: file.clone(),
        base: base_dir,
        opset,
        consts,
        infos: BTreeMap::new(),
        declared: BTreeMap::new(),
        codes: BTreeMap::new(),
        taken,
        nodes: Vec::new(),
        notes,
    };

    // Graph inputs (those that are initializers are initializers).
    let mut inputs = Vec::new();
    for vi in &graph.input {
        if cx.consts.contains_key(&vi.name) {
            continue;
        }
        if let Some(c) = opts.constants.get(&vi.name) {
            cx.consts.insert(vi.name.clone(), c.clone());
            continue;
        }
        let what = format!("graph input '{}'", vi.name);
        let code = elem_type(vi).ok_or_else(|| cx.model_err(format!("{what} is not a tensor")))?;
        let (dtype, note) =
            lpu_dtype(code, None).map_err(|m| cx.model_err(format!("{what}: {m}")))?;
        cx.codes.insert(vi.name.clone(), code);
        if let Some(n) = note {
            cx.notes.insert(format!("{what}: {n}"));
        }
        let shape = match opts.input_shapes.get(&vi.name) {
            Some(s) => s.clone(),
            None => match resolve_dims(vi, &sym) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return Err(cx.model_err(format!(
                        "{what} has no declared shape; give it with --input-shape {}=D0xD1x..",
                        vi.name
                    )))
                }
                Err((k, p)) if p.is_empty() => {
                    return Err(cx.model_err(format!(
                        "{what}: dimension #{k} is unknown; give the shape with --input-shape {}=D0xD1x..",
                        vi.name
                    )))
                }
                Err((k, p)) => {
                    return Err(cx.model_err(format!(
                        "{what}: dimension #{k} is symbolic ('{p}'); bind it with --dim {p}=N or give --input-shape {}=D0xD1x..",
                        vi.name
                    )))
                }
            },
        };
        if shape.contains(&0) {
            // No elements, so nothing to feed: the empty constant.
            cx.notes.insert(format!(
                "{what} has shape {shape:?} (no elements): it is the empty constant, not an input of the lpu graph"
            ));
            cx.consts.insert(vi.name.clone(), empty_const(code, shape));
            continue;
        }
        cx.infos.insert(
            vi.name.clone(),
            TensorInfo {
                dtype,
                shape: shape.clone(),
            },
        );
        inputs.push(ValueInfo {
            name: vi.name.clone(),
            dtype: Some(dtype),
            shape: Some(shape),
        });
    }
    for vi in graph.value_info.iter().chain(&graph.output) {
        if let Some(code) = elem_type(vi) {
            let s = resolve_dims(vi, &sym).ok().flatten();
            cx.declared.insert(vi.name.clone(), (code, s));
        }
    }
    let used: BTreeSet<&str> = graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
        .filter_map(|vi| vi.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref())
        .flat_map(|s| s.dim.iter())
        .filter_map(|d| match &d.value {
            Some(DimValue::DimParam(p)) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    for name in opts.constants.keys() {
        if !graph.input.iter().any(|v| &v.name == name) {
            return Err(cx.model_err(format!(
                "a constant is given for '{name}', which is not a graph input"
            )));
        }
    }
    for name in opts.dims.keys() {
        if !used.contains(name.as_str()) {
            cx.notes.insert(format!(
                "--dim {name}: the model has no dimension named '{name}'"
            ));
        }
    }

    // Nodes.
    let mut names = BTreeSet::new();
    for (i, np) in graph.node.iter().enumerate() {
        let mut name = if np.name.is_empty() {
            format!("{}_{i}", np.op_type)
        } else {
            np.name.clone()
        };
        if names.contains(&name) {
            name = format!("{name}_{i}");
        }
        names.insert(name.clone());
        import_node(&mut cx, np, name)?;
    }

    // Unsupported operators, all at once.
    let mut unsupported: BTreeMap<String, UnsupportedOp> = BTreeMap::new();
    for n in &cx.nodes {
        if op_spec(&n.op_type).is_none() {
            unsupported
                .entry(n.op_type.clone())
                .or_insert_with(|| UnsupportedOp {
                    op_type: n.op_type.clone(),
                    count: 0,
                    first_node: n.name.clone(),
                })
                .count += 1;
        }
    }
    if !unsupported.is_empty() {
        return Err(ImportError::Unsupported {
            file,
            ops: unsupported.into_values().collect(),
        });
    }

    // Outputs.
    let mut outputs = Vec::new();
    let mut empty_outputs = Vec::new();
    for vi in &graph.output {
        if let Some(c) = cx.consts.get(&vi.name).filter(|c| c.is_empty()) {
            cx.notes.insert(format!(
                "output '{}' is empty (shape {:?}): not an output of the lpu graph, which has no empty tensors",
                vi.name, c.shape
            ));
            empty_outputs.push((vi.name.clone(), c.shape.clone()));
            continue;
        }
        let dtype = elem_type(vi)
            .and_then(|c| lpu_dtype(c, None).ok())
            .and_then(|(d, note)| note.is_none().then_some(d));
        let shape = resolve_dims(vi, &sym).ok().flatten();
        outputs.push(ValueInfo {
            name: vi.name.clone(),
            dtype,
            shape,
        });
    }

    // Initializers: the constants the remaining nodes and outputs read.
    let mut wanted: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for t in cx
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .chain(outputs.iter().map(|o| &o.name))
    {
        if cx.consts.contains_key(t) && seen.insert(t.clone()) {
            wanted.push(t.clone());
        }
    }
    let mut initializers: Vec<Initializer> = Vec::new();
    for name in wanted {
        let c = &cx.consts[&name];
        let tensor_err = |message: String| ImportError::Tensor {
            file: file.clone(),
            tensor: name.clone(),
            message,
        };
        let (dtype, note) = lpu_dtype(c.code, c.as_ints()).map_err(&tensor_err)?;
        if let Some(n) = note {
            cx.notes.insert(n);
        }
        initializers.push(c.to_initializer(&name, dtype).map_err(&tensor_err)?);
    }

    let name = if graph.name.is_empty() {
        Path::new(source)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string()
    } else {
        graph.name.clone()
    };
    Ok(Imported {
        graph: GraphFile {
            name,
            inputs,
            outputs,
            initializers,
            nodes: cx.nodes,
        },
        notes: cx.notes.into_iter().collect(),
        opset,
        empty_outputs,
    })
}

/// Imports one node: a `Constant` becomes a constant, a foldable node with
/// constant inputs is evaluated, anything else is normalised and emitted.
fn import_node(cx: &mut Ctx, np: &NodeProto, name: String) -> Result<(), ImportError> {
    let op = np.op_type.clone();
    let file = cx.file.clone();
    let node_err = |message: String| ImportError::Node {
        file: file.clone(),
        node: name.clone(),
        op_type: op.clone(),
        message,
    };
    let default_domain = np.domain.is_empty() || np.domain == "ai.onnx";
    let mut attrs = Attrs::new();
    for a in &np.attribute {
        let v = decode_attr(a, cx.base).map_err(&node_err)?;
        attrs.insert(a.name.clone(), v);
    }
    let mut inputs = np.input.clone();
    let mut outputs = np.output.clone();
    let mut kind = op.clone();
    if default_domain && op == "Constant" {
        let c = constant_value(&attrs).map_err(&node_err)?;
        let Some(out) = np.output.first() else {
            return Err(node_err("a Constant needs an output".into()));
        };
        cx.consts.insert(out.clone(), c);
        return Ok(());
    }
    if default_domain {
        if let Some(parts) = expand_narrow(cx, np, &name).map_err(&node_err)? {
            for (k, p) in parts.iter().enumerate() {
                let same_op = parts.iter().filter(|q| q.op_type == p.op_type).count();
                let part = if k + 1 == parts.len() {
                    name.clone()
                } else if same_op > 1 {
                    format!("{name}/{}_{k}", p.op_type)
                } else {
                    format!("{name}/{}", p.op_type)
                };
                import_node(cx, p, part)?;
            }
            return Ok(());
        }
        normalise(cx, &op, &name, &mut inputs, &mut attrs).map_err(&node_err)?;
        match empty_tensors(cx, &op, &name, &mut inputs, &mut outputs, &mut attrs)
            .map_err(&node_err)?
        {
            Empty::Done => return Ok(()),
            Empty::Identity => {
                kind = "Identity".into();
                attrs.clear();
            }
            Empty::Keep => {}
        }
        if FOLDABLE.contains(&kind.as_str()) {
            let ins: Vec<Option<&Const>> = inputs.iter().map(|t| cx.consts.get(t)).collect();
            let present: Vec<bool> = inputs.iter().map(|t| !t.is_empty()).collect();
            let shapes: Vec<Option<&[usize]>> = inputs.iter().map(|t| cx.shape(t)).collect();
            let folded = fold(&kind, &ins, &present, &shapes, &attrs).map_err(&node_err)?;
            if let Some(outs) = folded {
                if outs.len() == outputs.len() {
                    for (o, c) in outputs.iter().zip(outs) {
                        cx.consts.insert(o.clone(), c);
                    }
                    return Ok(());
                }
            }
        }
    }
    // lpu has no empty tensors: a node that reads one must fold above.
    if let Some((e, c)) = inputs
        .iter()
        .find_map(|t| cx.consts.get(t).filter(|c| c.is_empty()).map(|c| (t, c)))
    {
        let runtime = inputs
            .iter()
            .find(|t| !t.is_empty() && !cx.consts.contains_key(*t));
        return Err(node_err(match runtime {
            Some(r) => format!(
                "'{r}' must be a constant: the node reads the empty tensor '{e}' (shape {:?}), and lpu, which has no empty tensors, evaluates such a node at import",
                c.shape
            ),
            None => format!(
                "the node reads the empty tensor '{e}' (shape {:?}) and cannot be evaluated at import; lpu has no empty tensors",
                c.shape
            ),
        }));
    }
    let op_type = if default_domain {
        kind.clone()
    } else {
        format!("{}:{op}", np.domain)
    };
    let spec = op_spec(&op_type);
    let mut attributes = BTreeMap::new();
    for (k, v) in attrs {
        let listed = spec.is_some_and(|s| s.attributes.iter().any(|(a, _)| *a == k));
        if !listed {
            let droppable = DROPPABLE_DEFAULTS
                .iter()
                .any(|(o, a, d)| *o == op_type && *a == k && v == Attr::Int(*d));
            if droppable || spec.is_none() {
                continue;
            }
        }
        let value = match v {
            Attr::Int(i) => AttrValue::Int(i),
            Attr::Float(f) => AttrValue::Float(f),
            Attr::Ints(v) => AttrValue::Ints(v),
            Attr::Floats(v) => AttrValue::Floats(v),
            Attr::String(s) => AttrValue::String(s),
            Attr::Strings(_) => {
                return Err(node_err(format!(
                    "attribute '{k}' is a list of strings, which lpu does not support"
                )))
            }
            Attr::Tensor(c) => {
                let (dtype, _) = lpu_dtype(c.code, c.as_ints())
                    .map_err(|m| node_err(format!("attribute '{k}': {m}")))?;
                let init = c
                    .to_initializer(&k, dtype)
                    .map_err(|m| node_err(format!("attribute '{k}': {m}")))?;
                AttrValue::Tensor {
                    dtype,
                    shape: init.shape,
                    data: init.data,
                }
            }
            Attr::Other(kind) => {
                return Err(node_err(format!(
                    "attribute '{k}' is {kind}, which lpu does not support"
                )))
            }
        };
        attributes.insert(k, value);
    }
    let node = Node {
        name,
        op_type,
        inputs,
        outputs,
        attributes,
    };
    // Shapes of the outputs, for folding further down: lpu's inference for
    // supported ops, the model's declarations otherwise.
    let mut inferred = false;
    let arity_ok = spec.is_some_and(|s| {
        node.inputs.len() >= s.required_inputs
            && (s.variadic_inputs || node.inputs.len() <= s.inputs.len())
            && (s.min_outputs..=s.max_outputs).contains(&node.outputs.len())
            && node
                .inputs
                .iter()
                .take(s.required_inputs)
                .all(|t| !t.is_empty())
            && node.attributes.iter().all(|(k, v)| {
                s.attributes
                    .iter()
                    .any(|(a, kind)| a == k && kind.matches(v))
            })
    });
    if arity_ok {
        let infos: Vec<Option<TensorInfo>> = node
            .inputs
            .iter()
            .map(|t| if t.is_empty() { None } else { cx.info(t) })
            .collect();
        let refs: Vec<Option<&TensorInfo>> = infos.iter().map(Option::as_ref).collect();
        // Values of small constant inputs (Reshape's shape, Slice's starts..).
        let values: Vec<Option<lpu_graph::Tensor>> = node
            .inputs
            .iter()
            .map(|t| {
                let c = cx.consts.get(t).filter(|c| c.len() <= 4096)?;
                let (dtype, _) = lpu_dtype(c.code, c.as_ints()).ok()?;
                c.to_tensor(dtype).ok()
            })
            .collect();
        let vrefs: Vec<Option<&lpu_graph::Tensor>> = values.iter().map(Option::as_ref).collect();
        if let Ok(outs) = lpu_graph::infer::infer_node(&node, &refs, &vrefs) {
            for (o, info) in node.outputs.iter().zip(outs) {
                cx.infos.insert(o.clone(), info);
            }
            inferred = true;
        }
    }
    if !inferred {
        for o in &node.outputs {
            if let Some((code, Some(shape))) = cx.declared.get(o).cloned() {
                if let Ok((dtype, _)) = lpu_dtype(code, None) {
                    cx.infos.insert(o.clone(), TensorInfo { dtype, shape });
                }
            }
        }
    }
    cx.nodes.push(node);
    Ok(())
}

/// The empty constant of ONNX type `code` and `shape` (which has a zero
/// dimension).
fn empty_const(code: i32, shape: Vec<usize>) -> Const {
    let data = match code {
        dt::FLOAT16 => Data::F16(vec![]),
        dt::DOUBLE => Data::F64(vec![]),
        dt::FLOAT | dt::BFLOAT16 => Data::F32(vec![]),
        c if crate::tensor::elem_size(c).is_some() => Data::Int(vec![]),
        _ => Data::F32(vec![]),
    };
    Const { code, shape, data }
}

/// The ONNX element type of node output `out` computed from `input`: as
/// declared, else that of `input`.
fn output_code(cx: &Ctx, out: &str, input: &str) -> i32 {
    cx.declared
        .get(out)
        .map(|(code, _)| *code)
        .or_else(|| elem_code(cx, input))
        .unwrap_or(dt::FLOAT)
}

/// What [`empty_tensors`] made of a node.
enum Empty {
    /// Nothing (the node goes on as it is, inputs possibly dropped).
    Keep,
    /// Every output is a constant now.
    Done,
    /// The node is an `Identity` of `inputs[0]` now (attributes dropped).
    Identity,
}

/// Empty tensors (a zero dimension) at one node, before folding (see
/// "Empty tensors" in the module docs).
fn empty_tensors(
    cx: &mut Ctx,
    op: &str,
    node: &str,
    inputs: &mut Vec<String>,
    outputs: &mut Vec<String>,
    attrs: &mut Attrs,
) -> Result<Empty, String> {
    let is_empty = |cx: &Ctx, t: &str| cx.consts.get(t).is_some_and(Const::is_empty);
    // An empty optional input that means "not given".
    let absent_if_empty = |cx: &Ctx, inputs: &mut Vec<String>, ks: &[usize]| {
        for &k in ks {
            if inputs.get(k).is_some_and(|t| is_empty(cx, t)) {
                inputs[k].clear();
            }
        }
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
    };
    // The integer values of constant input `k`: `Ok(None)` when absent,
    // `Err(())` when not constant.
    let ints = |cx: &Ctx, inputs: &[String], k: usize| -> Result<Option<Vec<i64>>, ()> {
        match inputs.get(k).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => match cx.consts.get(t).and_then(Const::as_ints) {
                Some(v) => Ok(Some(v.to_vec())),
                None => Err(()),
            },
        }
    };
    let supported = op_spec(op).is_some();
    match op {
        _ if op.starts_with("Reduce") && supported => {
            absent_if_empty(cx, inputs, &[1]);
            let Some(x) = inputs
                .first()
                .and_then(|t| cx.consts.get(t))
                .filter(|c| c.is_empty())
                .cloned()
            else {
                return Ok(Empty::Keep);
            };
            let axes = match ints(cx, inputs, 1) {
                Ok(Some(a)) => a,
                Ok(None) => match attrs.get("axes") {
                    None => vec![],
                    Some(Attr::Ints(v)) => v.clone(),
                    Some(other) => {
                        return Err(format!("attribute 'axes' is {other:?}; expected INTS"))
                    }
                },
                Err(()) => return Ok(Empty::Keep),
            };
            let keepdims = crate::fold::attr_int(attrs, "keepdims", 1)? != 0;
            let noop = crate::fold::attr_int(attrs, "noop_with_empty_axes", 0)? != 0;
            let (Some(out), 1) = (outputs.first().filter(|o| !o.is_empty()), outputs.len()) else {
                return Ok(Empty::Keep);
            };
            match crate::fold::reduce_empty(op, &x, &axes, keepdims, noop)? {
                Some(c) => {
                    cx.consts.insert(out.clone(), c);
                    Ok(Empty::Done)
                }
                None => Ok(Empty::Keep),
            }
        }
        "Resize" => {
            absent_if_empty(cx, inputs, &[1, 2, 3]);
            Ok(Empty::Keep)
        }
        "Concat" => {
            let any_empty = inputs.iter().any(|t| is_empty(cx, t));
            let all_const = inputs
                .iter()
                .all(|t| t.is_empty() || cx.consts.contains_key(t));
            if !any_empty || all_const {
                // Folding concatenates constants, empty ones included.
                return Ok(Empty::Keep);
            }
            let rank = inputs
                .iter()
                .find(|t| !t.is_empty() && !is_empty(cx, t))
                .and_then(|t| cx.shape(t))
                .map(<[usize]>::len);
            if let Some(r) = rank {
                if let Some(e) = inputs
                    .iter()
                    .filter_map(|t| cx.consts.get(t).filter(|c| c.is_empty()))
                    .find(|c| c.shape.len() != r)
                {
                    return Err(format!(
                        "an empty input of shape {:?} does not concatenate with rank-{r} inputs",
                        e.shape
                    ));
                }
            }
            inputs.retain(|t| !t.is_empty() && cx.consts.get(t).is_none_or(|c| !c.is_empty()));
            Ok(if inputs.len() == 1 {
                Empty::Identity
            } else {
                Empty::Keep
            })
        }
        "Split" if supported => {
            let Some(x) = inputs.first().cloned() else {
                return Ok(Empty::Keep);
            };
            let Some(shape) = cx.shape(&x).map(<[usize]>::to_vec) else {
                return Ok(Empty::Keep);
            };
            let r = shape.len() as i64;
            let a = crate::fold::attr_int(attrs, "axis", 0)?;
            let a = if a < 0 { a + r } else { a };
            if !(0..r).contains(&a) {
                return Ok(Empty::Keep); // lpu's inference says why
            }
            let a = a as usize;
            let sizes: Vec<i64> = match ints(cx, inputs, 1) {
                Ok(Some(s)) => s,
                Ok(None) if shape[a] == 0 => vec![0; outputs.len()],
                _ => return Ok(Empty::Keep),
            };
            let total = sizes
                .iter()
                .try_fold(0usize, |acc, &s| acc.checked_add(usize::try_from(s).ok()?));
            if !sizes.contains(&0) || sizes.len() != outputs.len() || total != Some(shape[a]) {
                return Ok(Empty::Keep); // lpu's inference checks the rest
            }
            let mut piece = shape.clone();
            piece[a] = 0;
            let (mut outs, mut kept) = (Vec::new(), Vec::new());
            for (o, &s) in outputs.iter().zip(&sizes) {
                if s == 0 {
                    if !o.is_empty() {
                        let c = empty_const(output_code(cx, o, &x), piece.clone());
                        cx.consts.insert(o.clone(), c);
                    }
                } else {
                    outs.push(o.clone());
                    kept.push(s);
                }
            }
            *outputs = outs;
            Ok(match kept.len() {
                0 => Empty::Done,
                // The one piece that is not empty is the whole input.
                1 => {
                    inputs.truncate(1);
                    Empty::Identity
                }
                _ => {
                    let name = cx.fresh(&format!("{node}_split"));
                    cx.consts.insert(name.clone(), Const::ints(kept));
                    *inputs = vec![x, name];
                    attrs.remove("num_outputs");
                    Empty::Keep
                }
            })
        }
        "Slice" => {
            let Some(x) = inputs.first().cloned() else {
                return Ok(Empty::Keep);
            };
            // A constant input folds.
            if cx.consts.contains_key(&x) {
                return Ok(Empty::Keep);
            }
            let Some(shape) = cx.shape(&x).map(<[usize]>::to_vec) else {
                return Ok(Empty::Keep);
            };
            let p: Vec<Option<Vec<i64>>> = match (1..=4).map(|k| ints(cx, inputs, k)).collect() {
                Ok(p) => p,
                Err(()) => return Ok(Empty::Keep),
            };
            let (Some(starts), Some(ends)) = (&p[0], &p[1]) else {
                return Ok(Empty::Keep);
            };
            let Ok(per) =
                crate::fold::slice_plan(&shape, starts, ends, p[2].as_deref(), p[3].as_deref())
            else {
                return Ok(Empty::Keep); // lpu's inference says why
            };
            let out: Vec<usize> = per.iter().map(|q| q.2).collect();
            match (out.contains(&0), outputs.first().filter(|o| !o.is_empty())) {
                (true, Some(o)) => {
                    let c = empty_const(output_code(cx, o, &x), out);
                    cx.consts.insert(o.clone(), c);
                    Ok(Empty::Done)
                }
                _ => Ok(Empty::Keep),
            }
        }
        _ => Ok(Empty::Keep),
    }
}

/// Rewrites older-opset attribute forms into the newest input forms (see
/// the module docs).
fn normalise(
    cx: &mut Ctx,
    op: &str,
    node: &str,
    inputs: &mut Vec<String>,
    attrs: &mut Attrs,
) -> Result<(), String> {
    let v = cx.opset;
    let set_input = |cx: &mut Ctx, inputs: &mut Vec<String>, pos: usize, attr: &str, c: Const| {
        let name = cx.fresh(&format!("{node}_{attr}"));
        cx.consts.insert(name.clone(), c);
        if inputs.len() <= pos {
            inputs.resize(pos + 1, String::new());
        }
        inputs[pos] = name;
    };
    let ints = |attrs: &mut Attrs, a: &str| -> Result<Option<Vec<i64>>, String> {
        match attrs.remove(a) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(Attr::Int(i)) => Ok(Some(vec![i])),
            Some(other) => Err(format!("attribute '{a}' is {other:?}; expected INTS")),
        }
    };
    let float = |attrs: &mut Attrs, a: &str| -> Result<Option<f32>, String> {
        match attrs.remove(a) {
            None => Ok(None),
            Some(Attr::Float(f)) => Ok(Some(f)),
            Some(other) => Err(format!("attribute '{a}' is {other:?}; expected FLOAT")),
        }
    };
    // A scalar of the element type of `inputs[0]` (FLOAT when unknown).
    let scalar_like = |cx: &Ctx, inputs: &[String], x: f32| -> Const {
        let code = inputs
            .first()
            .and_then(|t| {
                cx.consts.get(t).map(|c| c.code).or_else(|| {
                    match cx.infos.get(t).map(|i| i.dtype) {
                        Some(DType::F16) => Some(dt::FLOAT16),
                        _ => None,
                    }
                })
            })
            .unwrap_or(dt::FLOAT);
        match code {
            dt::FLOAT16 => Const {
                code,
                shape: vec![],
                data: Data::F16(vec![half::f16::from_f32(x)]),
            },
            dt::DOUBLE => Const {
                code,
                shape: vec![],
                data: Data::F64(vec![x as f64]),
            },
            _ => Const::scalar_f32(x),
        }
    };
    const REDUCE_18: &[&str] = &[
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    ];
    if v < 7 {
        // Opset 6: legacy broadcasting and flags that opset 7 removed.
        attrs.remove("is_test");
        attrs.remove("consumed_inputs");
        if op == "Gemm" {
            attrs.remove("broadcast");
        }
        if matches!(
            op,
            "Add"
                | "Sub"
                | "Mul"
                | "Div"
                | "Pow"
                | "And"
                | "Or"
                | "Xor"
                | "Equal"
                | "Less"
                | "Greater"
        ) {
            let legacy = matches!(attrs.remove("broadcast"), Some(Attr::Int(1)));
            let ax = attrs.remove("axis");
            if let (true, Some(Attr::Int(a))) = (legacy, ax) {
                // B's dimensions line up with A's from `axis`: append ones so
                // that NumPy broadcasting (right-aligned) means the same.
                let ra = inputs.first().and_then(|t| cx.shape(t)).map(<[usize]>::len);
                let b = inputs.get(1).cloned().unwrap_or_default();
                match (ra, cx.consts.get(&b).cloned()) {
                    (Some(ra), Some(c)) => {
                        let a = if a < 0 { a + ra as i64 } else { a };
                        let pad = (ra as i64 - a - c.shape.len() as i64).max(0) as usize;
                        if pad > 0 {
                            let mut shape = c.shape.clone();
                            shape.extend(std::iter::repeat_n(1, pad));
                            let c = Const::new(c.code, shape, c.data)?;
                            set_input(cx, inputs, 1, "broadcast", c);
                        }
                    }
                    _ => {
                        return Err(format!(
                            "opset-{v} broadcasting with axis {a} needs a constant B and a known rank of A"
                        ))
                    }
                }
            }
        }
    }
    match op {
        "Reshape" if v < 5 => {
            if let Some(s) = ints(attrs, "shape")? {
                set_input(cx, inputs, 1, "shape", Const::ints(s));
            }
        }
        "Unsqueeze" | "Squeeze" | "ReduceSum" if v < 13 => {
            if let Some(a) = ints(attrs, "axes")? {
                set_input(cx, inputs, 1, "axes", Const::ints(a));
            }
        }
        _ if v < 18 && REDUCE_18.contains(&op) => {
            if let Some(a) = ints(attrs, "axes")? {
                set_input(cx, inputs, 1, "axes", Const::ints(a));
            }
        }
        "Split" if v < 13 => {
            if let Some(s) = ints(attrs, "split")? {
                set_input(cx, inputs, 1, "split", Const::ints(s));
            }
        }
        "Slice" if v < 10 => {
            let starts = ints(attrs, "starts")?.ok_or("Slice needs 'starts'")?;
            let ends = ints(attrs, "ends")?.ok_or("Slice needs 'ends'")?;
            set_input(cx, inputs, 1, "starts", Const::ints(starts));
            set_input(cx, inputs, 2, "ends", Const::ints(ends));
            if let Some(a) = ints(attrs, "axes")? {
                set_input(cx, inputs, 3, "axes", Const::ints(a));
            }
        }
        "TopK" if v < 10 => {
            if let Some(k) = ints(attrs, "k")? {
                set_input(cx, inputs, 1, "k", Const::ints(k));
            }
        }
        "Clip" if v < 11 => {
            let (lo, hi) = (float(attrs, "min")?, float(attrs, "max")?);
            if let Some(lo) = lo {
                let c = scalar_like(cx, inputs, lo);
                set_input(cx, inputs, 1, "min", c);
            }
            if let Some(hi) = hi {
                let c = scalar_like(cx, inputs, hi);
                set_input(cx, inputs, 2, "max", c);
            }
        }
        "Pad" if v < 11 => {
            let pads = match ints(attrs, "pads")? {
                Some(p) => Some(p),
                None => ints(attrs, "paddings")?,
            };
            let value = float(attrs, "value")?;
            if let Some(p) = pads {
                set_input(cx, inputs, 1, "pads", Const::ints(p));
            }
            if let Some(x) = value {
                let c = scalar_like(cx, inputs, x);
                set_input(cx, inputs, 2, "value", c);
            }
        }
        // DOUBLE tensors are f32 here, so a cast to DOUBLE is one to FLOAT
        // (exact from FLOAT and FLOAT16).
        "Cast" if attrs.get("to") == Some(&Attr::Int(dt::DOUBLE as i64)) => {
            attrs.insert("to".into(), Attr::Int(dt::FLOAT as i64));
            cx.notes
                .insert("Cast to DOUBLE computed as FLOAT (lpu has no f64)".into());
        }
        "Cast"
            if matches!(
                attrs.get("to"),
                Some(Attr::Int(c)) if [dt::UINT8, dt::INT16, dt::UINT16].contains(&(*c as i32))
            ) =>
        {
            // Held widened in i32, as their tensors are.
            attrs.insert("to".into(), Attr::Int(dt::INT32 as i64));
        }
        "Dropout" if v < 12 => {
            if let Some(r) = float(attrs, "ratio")? {
                set_input(cx, inputs, 1, "ratio", Const::scalar_f32(r));
            }
        }
        "BatchNormalization" if v < 9 => match attrs.remove("spatial") {
            None | Some(Attr::Int(1)) => {}
            Some(other) => {
                return Err(format!(
                    "attribute 'spatial' is {other:?}; only spatial = 1 is supported"
                ))
            }
        },
        "Softmax" | "LogSoftmax" | "Hardmax" if v < 13 => {
            let a = match attrs.get("axis") {
                None => 1,
                Some(Attr::Int(a)) => *a,
                Some(other) => return Err(format!("attribute 'axis' is {other:?}; expected INT")),
            };
            if let Some(r) = inputs.first().and_then(|t| cx.shape(t)).map(<[usize]>::len) {
                let norm = if a < 0 { a + r as i64 } else { a };
                if norm == r as i64 - 1 {
                    attrs.insert("axis".into(), Attr::Int(-1));
                } else {
                    return Err(format!(
                        "before opset 13, {op} flattens its rank-{r} input to 2-D at axis {a}; only the last axis is supported"
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The ONNX element type of `name`, where known: a constant's, a graph
/// input's, that of a conversion to a narrow type, a declared one, or the
/// one of its lpu type.
fn elem_code(cx: &Ctx, name: &str) -> Option<i32> {
    cx.consts
        .get(name)
        .map(|c| c.code)
        .or_else(|| cx.codes.get(name).copied())
        .or_else(|| cx.declared.get(name).map(|(c, _)| *c))
        .or_else(|| {
            Some(match cx.infos.get(name)?.dtype {
                DType::F32 => dt::FLOAT,
                DType::F16 => dt::FLOAT16,
                DType::I8 => dt::INT8,
                DType::I32 => dt::INT32,
            })
        })
}

/// The scale of an fp8/fp4 `QuantizeLinear`/`DequantizeLinear` (`np`, of
/// `x`, ONNX type `code`) as a `Div`/`Mul` operand: itself when it is a
/// scalar, else broadcast along the node's `axis`. The zero point, when
/// given, must be 0 (as ONNX requires for these types).
fn float_scale(
    cx: &mut Ctx,
    np: &NodeProto,
    x: &str,
    s: &str,
    zero_point: Option<&str>,
    code: i32,
) -> Result<String, String> {
    let op = &np.op_type;
    if let Some(z) = zero_point.and_then(|z| cx.consts.get(z)) {
        if (0..z.len()).any(|i| z.data.get_f64(i) != 0.0) {
            return Err(format!(
                "the zero point of a {} {op} must be 0",
                dt::name(code)
            ));
        }
    }
    if cx
        .shape(s)
        .is_some_and(|sh| sh.iter().product::<usize>() == 1)
    {
        return Ok(s.to_string());
    }
    let rank = cx.shape(x).map_or(0, <[usize]>::len);
    let axis = np
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(1, |a| a.i);
    per_axis_scale(cx, s, axis, rank).map_err(|m| format!("{op} of {}: {m}", dt::name(code)))
}

/// A per-axis scale `s` (a 1-D constant) reshaped to broadcast along
/// `axis` of a rank-`rank` tensor (`[n, 1, .., 1]`), as a new constant.
fn per_axis_scale(cx: &mut Ctx, s: &str, axis: i64, rank: usize) -> Result<String, String> {
    let Some(c) = cx.consts.get(s).cloned() else {
        return Err(format!("the per-axis scale '{s}' must be a constant"));
    };
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if c.shape.len() != 1 || !(0..rank as i64).contains(&a) {
        return Err(format!(
            "scale '{s}' of shape {:?} does not fit axis {axis} of a rank-{rank} input",
            c.shape
        ));
    }
    let mut shape = vec![c.shape[0]];
    shape.extend(std::iter::repeat_n(1, rank - 1 - a as usize));
    let name = cx.fresh(&format!("{s}/axis"));
    cx.consts
        .insert(name.clone(), Const::new(c.code, shape, c.data)?);
    Ok(name)
}

/// The range of the integer types other than INT8 that a `QuantizeLinear`
/// may produce, and the type lpu holds them in (i8 for the 4- and 2-bit
/// ones, i32 for UINT8, INT16 and UINT16).
fn small_int_range(code: i32) -> Option<(i64, i64, i32)> {
    let (lo, hi) = match code {
        dt::UINT8 => return Some((0, 255, dt::INT32)),
        dt::INT16 => return Some((i16::MIN as i64, i16::MAX as i64, dt::INT32)),
        dt::UINT16 => return Some((0, u16::MAX as i64, dt::INT32)),
        _ => small_int(code)?,
    };
    Some((lo, hi, dt::INT8))
}

/// The range of INT4, UINT4, INT2 and UINT2.
fn small_int(code: i32) -> Option<(i64, i64)> {
    match crate::tensor::narrow_type(code)?.0 {
        Format::I4 => Some((-8, 7)),
        Format::U4 => Some((0, 15)),
        Format::I2 => Some((-2, 1)),
        Format::U2 => Some((0, 3)),
        _ => None,
    }
}

/// Rewrites a node that produces or reads a narrow type (fp8, fp4, bf16,
/// int4, int2, held widened: see [`lpu_isa::narrow`]) into lpu ops, as the
/// ONNX reference computes it:
///
/// - `Cast` to a narrow type: `NarrowCast` (the VXM's `ncvt`);
/// - `QuantizeLinear` to INT4/UINT4/INT2/UINT2: the int8 `QuantizeLinear`
///   (round, add the zero point, clamp to i8), then `Clip` to the type's
///   range (the same result: the narrower clamp contains the wider one);
/// - `QuantizeLinear` to an fp8 or fp4 type: `x / scale` (`Div`), then
///   `NarrowCast` with the node's `saturate`;
/// - `DequantizeLinear` of an fp8 or fp4 tensor: `x * scale` (`Mul`, the
///   zero point is 0 for these types), then `Cast` to the scale's type
///   when that is not f32.
///
/// `None`: the node is not one of these and imports as it is.
fn expand_narrow(
    cx: &mut Ctx,
    np: &NodeProto,
    name: &str,
) -> Result<Option<Vec<NodeProto>>, String> {
    let int_attr = |n: &str| np.attribute.iter().find(|a| a.name == n).map(|a| a.i);
    let str_attr = |n: &str| {
        np.attribute
            .iter()
            .find(|a| a.name == n)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    };
    let part = |op: &str, inputs: Vec<String>, outputs: Vec<String>, attrs: Vec<AttributeProto>| {
        NodeProto {
            input: inputs,
            output: outputs,
            name: String::new(),
            op_type: op.to_string(),
            attribute: attrs,
            doc_string: String::new(),
            domain: String::new(),
        }
    };
    let int_a = |n: &str, i: i64| AttributeProto {
        name: n.into(),
        i,
        r#type: crate::proto::attribute_type::INT,
        ..Default::default()
    };
    let str_a = |n: &str, v: &str| AttributeProto {
        name: n.into(),
        s: v.as_bytes().to_vec(),
        r#type: crate::proto::attribute_type::STRING,
        ..Default::default()
    };
    let input = |k: usize| np.input.get(k).filter(|t| !t.is_empty()).cloned();
    let out = np.output.first().cloned().unwrap_or_default();
    match np.op_type.as_str() {
        "CastLike" => {
            // `Cast` to the element type of `target_type` (only its type is
            // read, so it may be empty).
            let (Some(x), Some(like)) = (input(0), input(1)) else {
                return Err("CastLike needs 'input' and 'target_type'".into());
            };
            let Some(to) = elem_code(cx, &like) else {
                return Err(format!("the element type of '{like}' is not known"));
            };
            let mut attrs = vec![int_a("to", to as i64)];
            attrs.extend(
                np.attribute
                    .iter()
                    .filter(|a| a.name == "saturate" || a.name == "round_mode")
                    .cloned(),
            );
            Ok(Some(vec![part("Cast", vec![x], np.output.clone(), attrs)]))
        }
        "MatMulInteger" | "ConvInteger" => {
            // The MXM multiplies i8: a UINT8 operand and its zero point are
            // both shifted by -128, which leaves every `x - zero_point` (all
            // these ops read) unchanged. A constant shifts at import; a
            // runtime operand (held in i32) through `Sub` and `Cast` to i8.
            let mut inputs = np.input.clone();
            inputs.resize(4, String::new());
            let mut parts = Vec::new();
            for k in 0..2 {
                let Some(t) = input(k) else {
                    continue;
                };
                if elem_code(cx, &t) != Some(dt::UINT8) {
                    continue;
                }
                let zp = match input(k + 2) {
                    Some(z) => match cx.consts.get(&z) {
                        Some(c) if c.code == dt::UINT8 => c.clone(),
                        Some(c) => {
                            return Err(format!(
                                "input '{t}' is UINT8 but its zero point '{z}' is {}",
                                dt::name(c.code)
                            ))
                        }
                        None => return Err(format!("the zero point '{z}' must be a constant")),
                    },
                    None => Const::new(dt::UINT8, vec![], Data::Int(vec![0]))?,
                };
                let shift = |c: &Const| -> Result<Const, String> {
                    let v = (0..c.len())
                        .map(|i| c.data.get_f64(i) as i64 - 128)
                        .collect();
                    Const::new(dt::INT8, c.shape.clone(), Data::Int(v))
                };
                let zp8 = cx.fresh(&format!("{t}/zero_point_i8"));
                cx.consts.insert(zp8.clone(), shift(&zp)?);
                inputs[k + 2] = zp8;
                let t8 = cx.fresh(&format!("{t}/i8"));
                if let Some(c) = cx.consts.get(&t).cloned() {
                    cx.consts.insert(t8.clone(), shift(&c)?);
                } else {
                    let (c128, wide) = (
                        cx.fresh(&format!("{t}/128")),
                        cx.fresh(&format!("{t}/shifted")),
                    );
                    cx.consts.insert(
                        c128.clone(),
                        Const::new(dt::INT32, vec![], Data::Int(vec![128]))?,
                    );
                    parts.push(part(
                        "Sub",
                        vec![t.clone(), c128],
                        vec![wide.clone()],
                        vec![],
                    ));
                    parts.push(part(
                        "Cast",
                        vec![wide],
                        vec![t8.clone()],
                        vec![int_a("to", dt::INT8 as i64)],
                    ));
                }
                inputs[k] = t8;
            }
            if inputs[2..].iter().all(String::is_empty) {
                inputs.truncate(2);
            } else if inputs[3].is_empty() {
                inputs.truncate(3);
            }
            if inputs == np.input {
                return Ok(None);
            }
            parts.push(part(
                &np.op_type,
                inputs,
                np.output.clone(),
                np.attribute.clone(),
            ));
            Ok(Some(parts))
        }
        "Cast" => {
            let Some(to) = int_attr("to") else {
                return Ok(None);
            };
            let Some((mut f, _)) = i32::try_from(to)
                .ok()
                .and_then(crate::tensor::narrow_type)
                .or_else(|| (to == dt::BFLOAT16 as i64).then_some((Format::Bf16, 16)))
            else {
                return Ok(None);
            };
            if f == Format::E8m0Up {
                f = match str_attr("round_mode").as_deref() {
                    None | Some("up") => Format::E8m0Up,
                    Some("down") => Format::E8m0Down,
                    Some("nearest") => Format::E8m0Nearest,
                    Some(m) => {
                        return Err(format!(
                            "attribute 'round_mode' is \"{m}\"; expected up, down or nearest"
                        ))
                    }
                };
            }
            cx.codes.insert(out.clone(), to as i32);
            let attrs = vec![
                str_a("format", f.name()),
                int_a("saturate", int_attr("saturate").unwrap_or(1)),
            ];
            Ok(Some(vec![part(
                "NarrowCast",
                np.input.clone(),
                np.output.clone(),
                attrs,
            )]))
        }
        "QuantizeLinear" => {
            let code = match input(2).and_then(|z| elem_code(cx, &z)) {
                Some(c) => c,
                None => match int_attr("output_dtype") {
                    Some(c) if c != 0 => c as i32,
                    _ => return Ok(None),
                },
            };
            if let Some((lo, hi, held)) = small_int_range(code) {
                let tmp = cx.fresh(&format!("{name}/unclamped"));
                let (lo_n, hi_n) = (
                    cx.fresh(&format!("{name}/lo")),
                    cx.fresh(&format!("{name}/hi")),
                );
                cx.consts
                    .insert(lo_n.clone(), Const::new(held, vec![], Data::Int(vec![lo]))?);
                cx.consts
                    .insert(hi_n.clone(), Const::new(held, vec![], Data::Int(vec![hi]))?);
                cx.codes.insert(out.clone(), code);
                // The same zero point as INT8 or INT32 (the values fit).
                let mut inputs = np.input.clone();
                if let Some(z) = input(2) {
                    let Some(c) = cx.consts.get(&z).cloned() else {
                        return Err(format!("the zero point '{z}' must be a constant"));
                    };
                    let z8 = cx.fresh(&format!("{z}/held"));
                    let c = Const::new(held, c.shape.clone(), c.data.clone())?;
                    cx.consts.insert(z8.clone(), c);
                    inputs[2] = z8;
                }
                let attrs: Vec<AttributeProto> = np
                    .attribute
                    .iter()
                    .filter(|a| a.name == "axis" || a.name == "block_size")
                    .cloned()
                    .collect();
                return Ok(Some(vec![
                    part("QuantizeLinear", inputs, vec![tmp.clone()], attrs),
                    part("Clip", vec![tmp, lo_n, hi_n], np.output.clone(), vec![]),
                ]));
            }
            let Some((f, _)) =
                crate::tensor::narrow_type(code).filter(|(f, _)| f.container() == DType::F32)
            else {
                return Ok(None);
            };
            let (Some(x), Some(s)) = (input(0), input(1)) else {
                return Ok(None);
            };
            let s = float_scale(cx, np, &x, &s, input(2).as_deref(), code)?;
            let tmp = cx.fresh(&format!("{name}/scaled"));
            cx.codes.insert(out.clone(), code);
            Ok(Some(vec![
                part("Div", vec![x, s], vec![tmp.clone()], vec![]),
                part(
                    "NarrowCast",
                    vec![tmp],
                    np.output.clone(),
                    vec![
                        str_a("format", f.name()),
                        int_a("saturate", int_attr("saturate").unwrap_or(1)),
                    ],
                ),
            ]))
        }
        "DequantizeLinear" => {
            let (Some(x), Some(s)) = (input(0), input(1)) else {
                return Ok(None);
            };
            let Some(code) = elem_code(cx, &x) else {
                return Ok(None);
            };
            if crate::tensor::narrow_type(code).is_none_or(|(f, _)| f.container() != DType::F32) {
                return Ok(None);
            }
            let s = float_scale(cx, np, &x, &s, input(2).as_deref(), code)?;
            let s_code = elem_code(cx, &s).unwrap_or(dt::FLOAT);
            if s_code == dt::FLOAT {
                return Ok(Some(vec![part(
                    "Mul",
                    vec![x, s],
                    np.output.clone(),
                    vec![],
                )]));
            }
            // The product in f32 (exact for an fp8 x and an f16 scale), then
            // rounded once to the scale's type.
            let (s32, tmp) = (
                cx.fresh(&format!("{name}/scale_f32")),
                cx.fresh(&format!("{name}/f32")),
            );
            Ok(Some(vec![
                part(
                    "Cast",
                    vec![s],
                    vec![s32.clone()],
                    vec![int_a("to", dt::FLOAT as i64)],
                ),
                part("Mul", vec![x, s32], vec![tmp.clone()], vec![]),
                part(
                    "Cast",
                    vec![tmp],
                    np.output.clone(),
                    vec![int_a("to", s_code as i64)],
                ),
            ]))
        }
        _ => Ok(None),
    }
}
