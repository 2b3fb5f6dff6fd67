//! `lpsim onnx-test`: the ONNX backend-test conformance runner.
//!
//! A case is a directory in the layout of `onnx/backend/test/data/*/*`:
//! `model.onnx` and `test_data_set_N/` folders holding `input_K.pb` and
//! `output_K.pb` (`TensorProto` files). Each case is imported, compiled for
//! the chip with the graph passes in `--precision` (default
//! [`DEFAULT_PRECISION`], `fp32-split`: the ONNX tests expect fp32 results,
//! and lpu's default `fp32` multiplies f32 products by constant weights in
//! fp16 on the MXM, about 1e-4 relative; `fp32-split` computes them in
//! three fp16 passes, see `lpu_compiler::passes::precision`), simulated
//! on every data set's inputs, and its outputs compared
//! with the expected ones at the backend tests' default tolerance,
//! `|actual - expected| <= ATOL + RTOL * |expected|` elementwise with
//! `RTOL = 1e-3`, `ATOL = 1e-7` (numpy's `assert_allclose` rule, as in
//! `onnx.backend.test.runner`); integer outputs must be equal, NaN matches
//! NaN. An output with a zero dimension is not in the lpu graph (lpu has
//! no empty tensors; the importer lists it in `Imported::empty_outputs`)
//! and is compared by shape; when every output is, nothing is compiled or
//! simulated. Graph inputs with a zero dimension are constants (no data),
//! not fed. A directory without `model.onnx` is a suite: each of its
//! subdirectories that has one is a case. Cases are named
//! `<parent directory>/<case directory>` (`node/test_add`), the form the
//! conformance manifest (`conformance/onnx-pass.txt`) uses.
//!
//! One line per case (`PASS name`, `FAIL name max_abs_err=..: why`,
//! `UNSUPPORTED name: Op1, Op2`, `ERROR name: message`), then a summary per
//! suite and the precision used; `--json` prints one JSON object instead
//! (with `precision`). The exit code is 0 only if every case passed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lpu_compiler::Precision;
use lpu_graph::{Graph, Tensor};
use lpu_isa::ChipConfig;
use lpu_onnx::{ImportError, ImportOptions};

/// Relative tolerance of the comparison (the backend tests' default).
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance of the comparison (the backend tests' default).
pub const ATOL: f64 = 1e-7;
/// The precision cases compile in unless `--precision` says otherwise:
/// fp32 results with products fp32-accurate (three fp16 MXM passes each).
pub const DEFAULT_PRECISION: Precision = Precision::Fp32Split;

/// `lpsim onnx-test`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Case directories (with model.onnx) or suite directories (whose
    /// subdirectories are cases).
    pub dirs: Vec<PathBuf>,
    /// Target chip: a preset (tsp, tiny) or a RON file.
    #[arg(long, default_value = "tsp")]
    pub chip: String,
    /// The precision every case compiles in (as `lpc compile
    /// --precision`): fp32-split (the default: fp32 with products by
    /// constant weights fp32-accurate, three fp16 MXM passes each), fp32
    /// (those products in fp16 on the MXM, about 1e-4 relative), fp16,
    /// int8 or mixed. The summary and the JSON say which was used.
    #[arg(
        long,
        default_value = "fp32-split",
        value_name = "fp32-split|fp32|fp16|int8|mixed"
    )]
    pub precision: String,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run only the cases listed in this manifest (one `suite/case` per
    /// line, `#` comments), looked up under the given directories.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Print only the passing cases that this manifest does not list yet
    /// (the ratchet: add them to it); exit 0.
    #[arg(long, value_name = "FILE")]
    pub list_new: Option<PathBuf>,
    /// Seconds each case may take; each runs in a child process, which is
    /// killed when it runs out (an ERROR). 0 runs every case in this
    /// process, without a limit.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// Internal: run the single case given and print its result as JSON.
    #[arg(long, hide = true)]
    pub one: bool,
}

/// How one case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Every output of every data set within tolerance.
    Pass {
        /// Largest absolute error seen.
        max_abs_err: f64,
    },
    /// Some output outside tolerance (or a hazard).
    Fail {
        /// Largest absolute error seen.
        max_abs_err: f64,
        /// The first failure, in words.
        detail: String,
    },
    /// The model uses operators lpu does not support (import) or lower
    /// (compile).
    Unsupported(Vec<String>),
    /// Anything else: the import, compile or simulation failed.
    Error(String),
}

impl Status {
    /// `PASS`, `FAIL`, `UNSUPPORTED` or `ERROR`.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Pass { .. } => "PASS",
            Status::Fail { .. } => "FAIL",
            Status::Unsupported(_) => "UNSUPPORTED",
            Status::Error(_) => "ERROR",
        }
    }
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// `suite/case`.
    pub name: String,
    /// How it ended.
    pub status: Status,
}

impl CaseResult {
    /// The one-line report.
    pub fn line(&self) -> String {
        match &self.status {
            Status::Pass { .. } => format!("PASS {}", self.name),
            Status::Fail {
                max_abs_err,
                detail,
            } => format!("FAIL {} max_abs_err={max_abs_err:e}: {detail}", self.name),
            Status::Unsupported(ops) => format!("UNSUPPORTED {}: {}", self.name, ops.join(", ")),
            Status::Error(m) => format!("ERROR {}: {}", self.name, one_line(m)),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// The case name of a case directory: `<parent>/<dir>`.
pub fn case_name(dir: &Path) -> String {
    let last = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match dir.parent().filter(|p| p.file_name().is_some()) {
        Some(parent) => format!("{}/{}", last(parent), last(dir)),
        None => last(dir),
    }
}

/// Expands suite directories into their case directories (sorted), and
/// keeps case directories as they are.
pub fn case_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if d.join("model.onnx").is_file() {
            out.push(d.clone());
            continue;
        }
        let rd = std::fs::read_dir(d).with_context(|| {
            format!(
                "{}: not a case (no model.onnx) and not a readable suite directory",
                d.display()
            )
        })?;
        let mut cases: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("model.onnx").is_file())
            .collect();
        if cases.is_empty() {
            bail!(
                "{}: no model.onnx in it or in its subdirectories",
                d.display()
            );
        }
        cases.sort();
        out.extend(cases);
    }
    Ok(out)
}

/// Reads a manifest: one case name per line; blank lines and `#` comments
/// ignored.
pub fn read_manifest(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the manifest", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Numbered entries `prefix<N>suffix` of `dir`, sorted by N.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    Ok(v.into_iter().map(|(_, p)| p).collect())
}

/// Compares one output; returns its max abs error and, if out of
/// tolerance, why.
pub fn compare(
    name: &str,
    actual: &Tensor,
    expected: &lpu_onnx::tensor::Const,
) -> (f64, Option<String>) {
    let (ash, esh) = (&actual.shape, &expected.shape);
    // A scalar may come back as [1] (or [] as [1]); everything else must match.
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    if ash != esh
        && !(actual.len() == expected.len() && squeeze(ash) == squeeze(esh) && actual.len() == 1)
    {
        return (
            f64::INFINITY,
            Some(format!(
                "output '{name}' has shape {ash:?}; expected {esh:?}"
            )),
        );
    }
    if actual.len() != expected.len() {
        return (
            f64::INFINITY,
            Some(format!(
                "output '{name}' has {} elements; expected {}",
                actual.len(),
                expected.len()
            )),
        );
    }
    let exact = matches!(expected.data, lpu_onnx::tensor::Data::Int(_));
    let mut worst: Option<(usize, f64, f64)> = None;
    let mut max_err = 0f64;
    for i in 0..expected.len() {
        let (a, e) = (actual.values.get_f64(i), expected.data.get_f64(i));
        let (err, ok) = if a.is_nan() || e.is_nan() {
            let same = a.is_nan() && e.is_nan();
            (if same { 0.0 } else { f64::INFINITY }, same)
        } else if a == e {
            (0.0, true)
        } else {
            let err = (a - e).abs();
            (err, !exact && err <= ATOL + RTOL * e.abs())
        };
        max_err = max_err.max(err);
        if !ok && worst.is_none_or(|(_, _, w)| err > w) {
            worst = Some((i, a, err));
        }
    }
    let why = worst.map(|(i, a, _)| {
        format!(
            "output '{name}' element {i} is {a}; expected {} (rtol {RTOL}, atol {ATOL})",
            expected.data.get_f64(i)
        )
    });
    (max_err, why)
}

fn unsupported_of(e: &ImportError) -> Option<Vec<String>> {
    match e {
        ImportError::Unsupported { ops, .. } => {
            Some(ops.iter().map(|o| o.op_type.clone()).collect())
        }
        ImportError::Graph(lpu_graph::GraphError::UnknownOps { ops, .. }) => Some(ops.clone()),
        _ => None,
    }
}

/// Runs one case directory in [`DEFAULT_PRECISION`].
pub fn run_case(dir: &Path, chip: &ChipConfig) -> CaseResult {
    run_case_with(dir, chip, DEFAULT_PRECISION)
}

/// Runs one case directory, compiled in `precision`.
pub fn run_case_with(dir: &Path, chip: &ChipConfig, precision: Precision) -> CaseResult {
    let name = case_name(dir);
    let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_case_inner(dir, chip, precision)
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Status::Error(format!("panic: {msg}"))
    });
    CaseResult { name, status }
}

/// The outcome of importing and compiling a case.
enum Prep {
    /// Ready to simulate.
    Ready(Box<Compiled>),
    /// lpu needs this graph input to be constant (a `Reshape`'s shape, a
    /// `Slice`'s starts, a `Conv`'s weights, a `Pow`'s exponent, ...): bind
    /// it to the test data and try again.
    Freeze(String),
    /// The case ends here.
    Done(Status),
}

/// Imports, validates and compiles.
/// A case ready to run.
#[derive(Clone)]
struct Compiled {
    /// The lpu graph and its program; `None` when every output is empty, so
    /// that there is nothing to compile or simulate.
    run: Option<(Box<Graph>, Box<lpu_isa::Program>)>,
    /// The outputs that are empty (a zero dimension), with their shapes as
    /// the importer found them: lpu has no empty tensors, so they are not
    /// outputs of the graph, and they are compared by shape.
    empty: BTreeMap<String, Vec<usize>>,
    /// Every output's name, in the model's order.
    outputs: Vec<String>,
}

fn prepare(model: &Path, opts: &ImportOptions, chip: &ChipConfig, precision: Precision) -> Prep {
    let imp = match lpu_onnx::import_with_notes(model, opts) {
        Ok(i) => i,
        Err(e) => {
            if let Some(t) = import_needs_constant(&e, model) {
                return Prep::Freeze(t);
            }
            return Prep::Done(match unsupported_of(&e) {
                Some(ops) => Status::Unsupported(ops),
                None => Status::Error(e.to_string()),
            });
        }
    };
    let empty: BTreeMap<String, Vec<usize>> = imp.empty_outputs.iter().cloned().collect();
    let outputs = onnx_outputs(model).unwrap_or_else(|_| {
        let names = imp.graph.outputs.iter().map(|o| &o.name);
        names.chain(empty.keys()).cloned().collect()
    });
    if imp.graph.outputs.is_empty() && !empty.is_empty() {
        let run = None;
        return Prep::Ready(Box::new(Compiled {
            run,
            empty,
            outputs,
        }));
    }
    let base = model.parent().unwrap_or(Path::new("."));
    let graph = match lpu_graph::load::build(imp.graph.clone(), &model.display().to_string(), base)
    {
        Ok(g) => g,
        Err(e) => {
            if let Some(t) = needs_constant(&e, &imp.graph) {
                return Prep::Freeze(t);
            }
            let e = ImportError::Graph(e);
            return Prep::Done(match unsupported_of(&e) {
                Some(ops) => Status::Unsupported(ops),
                None => Status::Error(e.to_string()),
            });
        }
    };
    // As `lpc compile --precision` does: the graph passes, then `precision`.
    let options = lpu_compiler::CompileOptions {
        precision,
        ..Default::default()
    };
    match lpu_compiler::compile_with(&graph, chip, &options) {
        Ok(c) => Prep::Ready(Box::new(Compiled {
            run: Some((Box::new(graph), Box::new(c.program))),
            empty,
            outputs,
        })),
        Err(lpu_compiler::CompileError::Unsupported { op, message, .. }) => {
            if let Some(t) = compile_needs_constant(&message, &imp.graph) {
                return Prep::Freeze(t);
            }
            Prep::Done(Status::Unsupported(vec![
                if message.contains("has no lowering") {
                    format!("{op} (not lowered)")
                } else {
                    format!("{op} (not lowered: {message})")
                },
            ]))
        }
        Err(e) => Prep::Done(Status::Error(format!("compile: {e}"))),
    }
}

/// The graph input a "must be a constant" error is about, if it is one:
/// the loader names the node and the input position (`(#k)`). When that
/// input is computed (shape arithmetic on a runtime `shape` input, as in
/// the `_expanded` function bodies), the first integer graph input it is
/// computed from.
fn needs_constant(
    e: &lpu_graph::GraphError,
    file: &lpu_graph::format::GraphFile,
) -> Option<String> {
    let lpu_graph::GraphError::Node { node, message, .. } = e else {
        return None;
    };
    if !message.contains("must be a constant") {
        return None;
    }
    let k: usize = message
        .split("(#")
        .nth(1)?
        .split(')')
        .next()?
        .parse()
        .ok()?;
    let t = file.nodes.iter().find(|n| n.name == *node)?.inputs.get(k)?;
    if file.inputs.iter().any(|i| i.name == *t) {
        return Some(t.clone());
    }
    let producer: BTreeMap<&str, &lpu_graph::Node> = file
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut stack = vec![t.as_str()];
    let mut seen = BTreeSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        if let Some(i) = file.inputs.iter().find(|i| i.name == x) {
            if i.dtype.is_some_and(|d| !d.is_float()) {
                return Some(i.name.clone());
            }
        } else if let Some(n) = producer.get(x) {
            stack.extend(n.inputs.iter().rev().map(String::as_str));
        }
    }
    None
}

/// The graph input an importer "must be a constant" refusal is about, if
/// it is one: a runtime input of a node that reads an empty tensor, which
/// lpu (having no empty tensors) evaluates at import.
fn import_needs_constant(e: &ImportError, model: &Path) -> Option<String> {
    let ImportError::Node { message, .. } = e else {
        return None;
    };
    if !message.contains("must be a constant") {
        return None;
    }
    let t = message.split('\'').nth(1)?;
    onnx_inputs(model).ok()?.into_iter().find(|i| i == t)
}

/// The ONNX graph outputs of a model, in order: what `output_K.pb` binds to
/// when the file does not name its tensor.
fn onnx_outputs(model: &Path) -> Result<Vec<String>> {
    let bytes = lpu_onnx::import::read_bounded(model, lpu_onnx::import::MAX_MODEL_BYTES)?;
    let m = lpu_onnx::decode_model(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid ONNX model: {e}", model.display()))?;
    Ok(m.graph
        .unwrap_or_default()
        .output
        .iter()
        .map(|v| v.name.clone())
        .collect())
}

/// The graph input a compiler "must be a constant" refusal is about, if it
/// is one: a weight, scale or exponent (`'W'`, `'x_scale'`, `'y'`) that
/// the node test feeds at run time and that lpu compiles into the program,
/// as a deployed model has it, or the input such a value is shifted from
/// (`Sub`, `Cast`).
fn compile_needs_constant(message: &str, file: &lpu_graph::format::GraphFile) -> Option<String> {
    if !message.contains("must be a constant") {
        return None;
    }
    let t = message.split('\'').nth(1)?;
    if file.inputs.iter().any(|i| i.name == t) {
        return Some(t.to_string());
    }
    // A value the importer derived from a graph input (a UINT8 operand
    // shifted to i8 by `Sub` and `Cast`): that input.
    let producer: BTreeMap<&str, &lpu_graph::Node> = file
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut x = t;
    while let Some(n) = producer
        .get(x)
        .filter(|n| matches!(n.op_type.as_str(), "Sub" | "Cast"))
    {
        x = n.inputs.first()?;
        if file.inputs.iter().any(|i| i.name == x) {
            return Some(x.to_string());
        }
    }
    None
}

/// The ONNX graph inputs of a model (initializers excluded), in order: what
/// `input_K.pb` binds to when the file does not name its tensor.
fn onnx_inputs(model: &Path) -> Result<Vec<String>> {
    let bytes = lpu_onnx::import::read_bounded(model, lpu_onnx::import::MAX_MODEL_BYTES)?;
    let m = lpu_onnx::decode_model(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid ONNX model: {e}", model.display()))?;
    let g = m.graph.unwrap_or_default();
    let inits: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(g.input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .map(|v| v.name.clone())
        .collect())
}

/// A data set's inputs by graph input name.
fn read_inputs(set: &Path, names: &[String]) -> Result<BTreeMap<String, lpu_onnx::tensor::Const>> {
    let mut out = BTreeMap::new();
    for (k, path) in numbered(set, "input_", ".pb")?.iter().enumerate() {
        let (pname, c) = lpu_onnx::read_tensor_file(path)?;
        let name = names
            .iter()
            .find(|n| !pname.is_empty() && **n == pname)
            .or_else(|| names.get(k))
            .with_context(|| format!("{}: the model has no input #{k}", path.display()))?;
        out.insert(name.clone(), c);
    }
    Ok(out)
}

fn run_case_inner(dir: &Path, chip: &ChipConfig, precision: Precision) -> Status {
    match run_case_result(dir, chip, precision) {
        Ok(s) => s,
        Err(e) => Status::Error(format!("{e:#}")),
    }
}

fn run_case_result(dir: &Path, chip: &ChipConfig, precision: Precision) -> Result<Status> {
    let model = dir.join("model.onnx");
    let sets = numbered(dir, "test_data_set_", "")?;
    let load_data = || -> Result<Vec<BTreeMap<String, lpu_onnx::tensor::Const>>> {
        let names = onnx_inputs(&model)?;
        sets.iter().map(|set| read_inputs(set, &names)).collect()
    };
    let opts_for =
        |data: &[BTreeMap<String, lpu_onnx::tensor::Const>], frozen: &[String], k: usize| {
            let mut o = ImportOptions::default();
            for t in frozen {
                if let Some(c) = data.get(k).and_then(|d| d.get(t)) {
                    o.constants.insert(t.clone(), c.clone());
                }
            }
            o
        };
    // Find the inputs that must be constant, on the first data set (the test
    // data is read only then, so that an unsupported model says so first).
    let mut frozen: Vec<String> = Vec::new();
    type Data = Vec<BTreeMap<String, lpu_onnx::tensor::Const>>;
    let mut data: Option<Data> = None;
    let mut first = loop {
        let opts = match &data {
            Some(d) => opts_for(d, &frozen, 0),
            None => ImportOptions::default(),
        };
        match prepare(&model, &opts, chip, precision) {
            Prep::Ready(c) => break Some(c),
            Prep::Freeze(t) => {
                let d: &Data = match &mut data {
                    Some(d) => d,
                    None => data.insert(load_data()?),
                };
                if frozen.contains(&t) || !d.first().is_some_and(|m| m.contains_key(&t)) {
                    return Ok(Status::Error(format!(
                        "input '{t}' must be a constant and the test data does not give it"
                    )));
                }
                frozen.push(t);
            }
            Prep::Done(s) => return Ok(s),
        }
    };
    if sets.is_empty() {
        return Ok(Status::Error("no test_data_set_N directory".into()));
    }
    let data = match data {
        Some(d) => d,
        None => load_data()?,
    };
    let mut max_abs_err = 0f64;
    for (k, set) in sets.iter().enumerate() {
        // Without frozen inputs one program serves every data set.
        let compiled = match first.take() {
            Some(c) if frozen.is_empty() || k == 0 => {
                if frozen.is_empty() {
                    first = Some(c.clone());
                }
                c
            }
            _ => match prepare(&model, &opts_for(&data, &frozen, k), chip, precision) {
                Prep::Ready(c) => c,
                Prep::Freeze(t) => {
                    return Ok(Status::Error(format!("input '{t}' must be a constant")))
                }
                Prep::Done(s) => return Ok(s),
            },
        };
        let (err, why) = run_set(set, &data[k], &compiled)?;
        max_abs_err = max_abs_err.max(err);
        if let Some(detail) = why {
            return Ok(Status::Fail {
                max_abs_err,
                detail: format!(
                    "{}: {detail}",
                    set.file_name().unwrap_or_default().to_string_lossy()
                ),
            });
        }
    }
    Ok(Status::Pass { max_abs_err })
}

/// Simulates one data set; `(max abs error, first failure)`. Inputs bound
/// as constants (not graph inputs any more) are skipped; empty outputs are
/// compared by shape.
fn run_set(
    set: &Path,
    data: &BTreeMap<String, lpu_onnx::tensor::Const>,
    compiled: &Compiled,
) -> Result<(f64, Option<String>)> {
    let mut sim_outputs = BTreeMap::new();
    if let Some((graph, program)) = &compiled.run {
        match simulate_set(set, data, graph, program)? {
            Ok(o) => sim_outputs = o,
            Err(why) => return Ok((f64::INFINITY, Some(why))),
        }
    }
    let mut max_err = 0f64;
    for (k, path) in numbered(set, "output_", ".pb")?.iter().enumerate() {
        let (pname, expected) = lpu_onnx::read_tensor_file(path)?;
        let name = compiled
            .outputs
            .iter()
            .find(|n| !pname.is_empty() && **n == pname)
            .or_else(|| compiled.outputs.get(k))
            .with_context(|| format!("{}: the model has no output #{k}", path.display()))?;
        if let Some(shape) = compiled.empty.get(name) {
            if *shape != expected.shape {
                return Ok((
                    f64::INFINITY,
                    Some(format!(
                        "output '{name}' is empty with shape {shape:?}; expected shape {:?}",
                        expected.shape
                    )),
                ));
            }
            continue;
        }
        let Some(actual) = sim_outputs.get(name) else {
            return Ok((
                f64::INFINITY,
                Some(format!("output '{name}' is missing from the simulation")),
            ));
        };
        let (err, why) = compare(name, actual, &expected);
        max_err = max_err.max(err);
        if why.is_some() {
            return Ok((max_err, why));
        }
    }
    Ok((max_err, None))
}

/// Simulates one data set: the outputs, or why the simulation failed (a
/// hazard).
fn simulate_set(
    set: &Path,
    data: &BTreeMap<String, lpu_onnx::tensor::Const>,
    graph: &Graph,
    program: &lpu_isa::Program,
) -> Result<Result<BTreeMap<String, Tensor>, String>> {
    let mut inputs = BTreeMap::new();
    for (name, info) in &graph.inputs {
        let c = data
            .get(name)
            .with_context(|| format!("{}: no data for input '{name}'", set.display()))?;
        let t = c
            .to_tensor(info.dtype)
            .map_err(|m| anyhow::anyhow!("{}: input '{name}': {m}", set.display()))?;
        if t.shape != info.shape {
            bail!(
                "{}: input '{name}' has shape {:?}; the model expects {:?}",
                set.display(),
                t.shape,
                info.shape
            );
        }
        inputs.insert(name.clone(), t);
    }
    let outcome = lpu_sim::simulate(program, &inputs, &lpu_sim::SimOptions::default())?;
    if let Some(h) = &outcome.hazard {
        return Ok(Err(format!("hazard: {h}")));
    }
    Ok(Ok(outcome.outputs))
}

/// One result as a JSON object (the `cases` entries of [`to_json`]).
pub fn case_json(r: &CaseResult) -> serde_json::Value {
    let mut o = serde_json::json!({"name": r.name, "status": r.status.word()});
    let finite = |x: f64| if x.is_finite() { Some(x) } else { None };
    match &r.status {
        Status::Pass { max_abs_err } => o["max_abs_err"] = serde_json::json!(finite(*max_abs_err)),
        Status::Fail {
            max_abs_err,
            detail,
        } => {
            o["max_abs_err"] = serde_json::json!(finite(*max_abs_err));
            o["message"] = serde_json::json!(detail);
        }
        Status::Unsupported(ops) => o["ops"] = serde_json::json!(ops),
        Status::Error(m) => o["message"] = serde_json::json!(m),
    }
    o
}

/// Reads back what [`case_json`] wrote.
pub fn case_from_json(v: &serde_json::Value) -> Option<CaseResult> {
    let name = v["name"].as_str()?.to_string();
    let err = v["max_abs_err"].as_f64().unwrap_or(f64::INFINITY);
    let msg = v["message"].as_str().unwrap_or("").to_string();
    let status = match v["status"].as_str()? {
        "PASS" => Status::Pass { max_abs_err: err },
        "FAIL" => Status::Fail {
            max_abs_err: err,
            detail: msg,
        },
        "UNSUPPORTED" => Status::Unsupported(
            v["ops"]
                .as_array()?
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect(),
        ),
        _ => Status::Error(msg),
    };
    Some(CaseResult { name, status })
}

/// Runs one case in a child process (`lpsim onnx-test --one`), compiled in
/// `precision`, killed after `timeout` seconds; a crash or a timeout is an
/// ERROR.
pub fn run_case_isolated(dir: &Path, chip: &str, precision: Precision, timeout: u64) -> CaseResult {
    use std::io::Read;
    let name = case_name(dir);
    let error = |m: String| CaseResult {
        name: name.clone(),
        status: Status::Error(m),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return error(format!("cannot find lpsim itself: {e}")),
    };
    let mut child = match std::process::Command::new(exe)
        .args(["onnx-test", "--one", "--chip", chip])
        .args(["--precision", precision.name()])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return error(format!("cannot start a child process: {e}")),
    };
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed().as_secs() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return error(format!("timed out after {timeout} s"));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return error(format!("waiting for the child: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    serde_json::from_str::<serde_json::Value>(out.trim())
        .ok()
        .and_then(|v| case_from_json(&v))
        .map(|mut r| {
            r.name = name.clone();
            r
        })
        .unwrap_or_else(|| error(format!("the case crashed ({status})")))
}

/// Per-suite counts: total, all operators supported (not UNSUPPORTED), pass.
pub fn counts(results: &[CaseResult]) -> BTreeMap<String, (usize, usize, usize)> {
    let mut m: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for r in results {
        let suite = r.name.split('/').next().unwrap_or("").to_string();
        let e = m.entry(suite).or_default();
        e.0 += 1;
        if !matches!(r.status, Status::Unsupported(_)) {
            e.1 += 1;
        }
        if matches!(r.status, Status::Pass { .. }) {
            e.2 += 1;
        }
    }
    m
}

/// The summary text: one line per suite, a total and the precision.
pub fn summary(results: &[CaseResult], precision: Precision) -> String {
    let mut s = String::new();
    for (suite, (total, supported, pass)) in counts(results) {
        s += &format!(
            "suite {suite}: {total} cases, {supported} with all ops supported, {pass} pass\n"
        );
    }
    let n = |w: &str| results.iter().filter(|r| r.status.word() == w).count();
    s += &format!(
        "onnx-test: {} cases: {} PASS, {} FAIL, {} UNSUPPORTED, {} ERROR\n",
        results.len(),
        n("PASS"),
        n("FAIL"),
        n("UNSUPPORTED"),
        n("ERROR")
    );
    s += &format!("onnx-test: compiled in precision {precision}\n");
    s
}

/// The results as JSON, with the precision they were compiled in.
pub fn to_json(results: &[CaseResult], precision: Precision) -> serde_json::Value {
    let cases: Vec<serde_json::Value> = results.iter().map(case_json).collect();
    let suites: serde_json::Map<String, serde_json::Value> = counts(results)
        .into_iter()
        .map(|(s, (t, sup, p))| {
            (
                s,
                serde_json::json!({"total": t, "all_ops_supported": sup, "pass": p}),
            )
        })
        .collect();
    serde_json::json!({
        "rtol": RTOL,
        "atol": ATOL,
        "precision": precision.name(),
        "cases": cases,
        "suites": suites
    })
}

/// Runs the cases the arguments name, in order.
pub fn run_dirs(args: &Args, chip: &ChipConfig) -> Result<Vec<CaseResult>> {
    run_dirs_with(args, chip, |_| Ok(()))
}

/// [`run_dirs`], calling `each` with every result as it comes.
pub fn run_dirs_with(
    args: &Args,
    chip: &ChipConfig,
    mut each: impl FnMut(&CaseResult) -> Result<()>,
) -> Result<Vec<CaseResult>> {
    let precision = precision_of(args)?;
    let dirs = case_dirs(&args.dirs)?;
    let dirs: Vec<PathBuf> = match &args.manifest {
        Some(m) => {
            let want: BTreeSet<String> = read_manifest(m)?.into_iter().collect();
            let found: Vec<PathBuf> = dirs
                .into_iter()
                .filter(|d| want.contains(&case_name(d)))
                .collect();
            let have: BTreeSet<String> = found.iter().map(|d| case_name(d)).collect();
            if let Some(missing) = want.iter().find(|w| !have.contains(*w)) {
                bail!(
                    "{}: case '{missing}' is not under the given directories",
                    m.display()
                );
            }
            found
        }
        None => dirs,
    };
    let mut out = Vec::with_capacity(dirs.len());
    for d in &dirs {
        let r = if args.timeout == 0 {
            run_case_with(d, chip, precision)
        } else {
            run_case_isolated(d, &args.chip, precision, args.timeout)
        };
        each(&r)?;
        out.push(r);
    }
    Ok(out)
}

/// The `--precision` of `args`.
pub fn precision_of(args: &Args) -> Result<Precision> {
    args.precision
        .parse()
        .map_err(|e| anyhow::anyhow!("--precision: {e}"))
}

/// `lpsim onnx-test`: prints the results and returns the exit code.
pub fn main(args: Args) -> Result<u8> {
    if args.dirs.is_empty() {
        bail!("onnx-test: give at least one case or suite directory");
    }
    let chip = crate::chip(&args.chip)?;
    let precision = precision_of(&args)?;
    if args.one {
        let [dir] = &args.dirs[..] else {
            bail!("onnx-test --one takes exactly one case directory");
        };
        let r = run_case_with(dir, &chip, precision);
        crate::print_stdout(&(case_json(&r).to_string() + "\n"))?;
        return Ok(crate::EXIT_OK);
    }
    let stream = !args.json && args.list_new.is_none();
    let results = run_dirs_with(&args, &chip, |r| {
        if stream {
            crate::print_stdout(&(r.line() + "\n"))?;
        }
        Ok(())
    })?;
    if let Some(m) = &args.list_new {
        let known: BTreeSet<String> = read_manifest(m)?.into_iter().collect();
        let mut text = String::new();
        for r in &results {
            if matches!(r.status, Status::Pass { .. }) && !known.contains(&r.name) {
                text += &r.name;
                text.push('\n');
            }
        }
        crate::print_stdout(&text)?;
        return Ok(crate::EXIT_OK);
    }
    if args.json {
        let json = to_json(&results, precision);
        crate::print_stdout(&(serde_json::to_string_pretty(&json)? + "\n"))?;
    } else {
        crate::print_stdout(&summary(&results, precision))?;
    }
    let all = results
        .iter()
        .all(|r| matches!(r.status, Status::Pass { .. }));
    Ok(if all {
        crate::EXIT_OK
    } else {
        crate::EXIT_FOUND
    })
}
