//! Shared plumbing of the `lpc` and `lpsim` binaries: loading models and
//! programs by file type, writing outputs atomically, exit codes. The work
//! itself lives in the library crates; these binaries only parse flags and
//! print.

use anyhow::{Context, Result};
use lpu_graph::Graph;
use lpu_isa::{ChipConfig, Program};
use std::path::Path;

pub mod onnx_test;
pub mod progress;
pub mod sweep;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run finished but found a hazard or a failed check.
pub const EXIT_FOUND: u8 = 1;
/// Exit code: bad input or usage.
pub const EXIT_ERROR: u8 = 2;

/// What a path on the command line holds.
pub enum Artifact {
    /// An operator graph (`.graph`).
    Graph(Box<Graph>),
    /// A compiled program (`.lpb` or `.lpa`).
    Program(Box<Program>),
}

/// Loads a `.graph`, `.onnx` (imported with default options: every
/// dimension must be static), `.lpb` or `.lpa` file, by extension (or,
/// failing that, by the binary program's magic bytes).
pub fn load(path: &Path) -> Result<Artifact> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "graph" | "ron" => Ok(Artifact::Graph(Box::new(lpu_graph::load_graph(path)?))),
        "lpa" => load_program(path).map(|p| Artifact::Program(Box::new(p))),
        "onnx" => load_onnx(path, &lpu_onnx::ImportOptions::default())
            .map(|g| Artifact::Graph(Box::new(g))),
        _ => load_program(path).map(|p| Artifact::Program(Box::new(p))),
    }
}

/// Imports an `.onnx` model and validates it; the importer's notes (lossy
/// conversions) go to stderr.
pub fn load_onnx(path: &Path, opts: &lpu_onnx::ImportOptions) -> Result<Graph> {
    let (g, notes) = lpu_onnx::load(path, opts)?;
    for n in notes {
        eprintln!("note: {}: {n}", path.display());
    }
    Ok(g)
}

/// Parses `NAME=VALUE` (`--dim`).
pub fn parse_dim(s: &str) -> Result<(String, usize)> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--dim '{s}': expected NAME=VALUE"))?;
    let v = v
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("--dim '{s}': '{v}' is not a non-negative integer"))?;
    Ok((name.to_string(), v))
}

/// Parses `NAME=D0xD1x..` (`--input-shape`); `NAME=` is a scalar.
pub fn parse_input_shape(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--input-shape '{s}': expected NAME=1x3x224x224"))?;
    let shape = if dims.trim().is_empty() {
        Vec::new()
    } else {
        dims.split(['x', ','])
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("--input-shape '{s}': expected dimensions like 1x3x224x224")
            })?
    };
    Ok((name.to_string(), shape))
}

/// Import options from `--dim` and `--input-shape` values.
pub fn import_options(dims: &[String], input_shapes: &[String]) -> Result<lpu_onnx::ImportOptions> {
    let mut o = lpu_onnx::ImportOptions::default();
    for d in dims {
        let (k, v) = parse_dim(d)?;
        o.dims.insert(k, v);
    }
    for s in input_shapes {
        let (k, v) = parse_input_shape(s)?;
        o.input_shapes.insert(k, v);
    }
    Ok(o)
}

/// Like [`load`], with import options for `.onnx` models.
pub fn load_with(path: &Path, opts: &lpu_onnx::ImportOptions) -> Result<Artifact> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => load_onnx(path, opts).map(|g| Artifact::Graph(Box::new(g))),
        _ => load(path),
    }
}

/// Files at least this large are read in pieces at once ([`read_file`]).
const PARALLEL_READ_BYTES: u64 = 16 << 20;

/// Reads a whole file, as [`std::fs::read`] does. A large one (ResNet-50's
/// program is 128 MB) is read in one piece per core at once, each through
/// its own handle: the copy out of the page cache and the page faults of
/// the new buffer then share the cores (ResNet-50 on 2 cores: 65-75 ms
/// down to 36-45 ms). A file whose length changes meanwhile is read again
/// whole.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    read_in_pieces(path, PARALLEL_READ_BYTES).or_else(|_| std::fs::read(path))
}

/// [`read_file`] without its second try: reads in pieces from `min_bytes`
/// on, and fails if the file's length is not the one it had at first.
fn read_in_pieces(path: &Path, min_bytes: u64) -> std::io::Result<Vec<u8>> {
    use rayon::prelude::*;
    use std::io::{Read, Seek, SeekFrom};
    let len = std::fs::metadata(path)?.len();
    if len < min_bytes.max(2) {
        return std::fs::read(path);
    }
    let mut bytes = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    let total = bytes.len();
    let per = total.div_ceil(rayon::current_num_threads().max(2));
    let whole = bytes
        .par_chunks_mut(per)
        .enumerate()
        .try_for_each(|(k, piece)| {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start((k * per) as u64))?;
            f.read_exact(piece)?;
            // The last piece also checks that nothing follows.
            if (k + 1) * per >= total && f.read(&mut [0u8])? != 0 {
                return Err(std::io::Error::other("the file grew while read"));
            }
            Ok::<(), std::io::Error>(())
        });
    whole.map(|()| bytes)
}

/// Loads a binary or assembly program.
pub fn load_program(path: &Path) -> Result<Program> {
    let bytes = read_file(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.starts_with(lpu_isa::program::MAGIC) {
        return Program::from_bytes(&bytes)
            .with_context(|| format!("{}: not a valid program", path.display()));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{}: neither a binary program (.lpb) nor assembly text (.lpa)",
            path.display()
        )
    })?;
    lpu_isa::asm::assemble(&text).with_context(|| format!("{}: invalid assembly", path.display()))
}

/// Resolves `--chip` (a preset name or a RON file).
pub fn chip(name: &str) -> Result<ChipConfig> {
    Ok(ChipConfig::resolve(name)?)
}

/// Writes a file whole or not at all: to a temporary sibling, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| std::io::Write::write_all(w, bytes))
}

/// [`write_atomic`] with the contents written by `fill` to a buffered
/// temporary file (a large program is serialised straight to disk instead
/// of into memory first).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        fill(&mut w)?;
        std::io::Write::flush(&mut w)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::anyhow!("{}: cannot write: {e}", path.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("{}: cannot write: {e}", path.display())
    })
}

/// Writes text to stdout; a closed pipe (`lpc disasm x.lpb | head`) ends the
/// output quietly instead of panicking.
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints an error as one paragraph (with its causes) to stderr.
pub fn report_error(tool: &str, e: &anyhow::Error) {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
    }
    eprintln!("{tool}: error: {msg}");
}

/// How a model is prepared before lowering: the graph passes and the
/// precision rewrite (shared by `lpc compile` and `lpsim run MODEL`).
#[derive(clap::Args, Clone, Debug)]
pub struct PrepareArgs {
    /// Precision: fp32 (the model's own types; the MXM multiplies f32
    /// operands of products by constant weights in fp16, with f32
    /// accumulation: about 1e-4 relative), fp32-split (fp32, with those
    /// products fp32-accurate, about 1e-6 relative: three fp16 MXM passes
    /// over the operands' fp16 high and low halves, three times the MXM
    /// work and twice the weight SRAM), fp16 (f16 weights and activations,
    /// f32 accumulation), int8 (post-training quantization: per-channel
    /// int8 weights, per-tensor int8 activations calibrated on sample
    /// inputs, int32 accumulation, requantization on the VXM) or mixed
    /// (int8 products, f32 normalizations, fp16 elsewhere).
    #[arg(
        long,
        default_value = "fp32",
        value_name = "int8|fp16|fp32|fp32-split|mixed"
    )]
    pub precision: String,
    /// Calibration sample sets for int8/mixed when no --calib is given:
    /// seeded random inputs.
    #[arg(long, default_value_t = lpu_compiler::passes::DEFAULT_CALIB_SAMPLES, value_name = "N")]
    pub calib_samples: usize,
    /// A calibration input (NAME=FILE.npy, repeatable): one user-supplied
    /// sample set replacing the seeded ones.
    #[arg(long = "calib", value_name = "NAME=FILE")]
    pub calib: Vec<String>,
    /// Skip the graph passes (constant folding, dead nodes, BN folding,
    /// reshape/transpose elimination).
    #[arg(long)]
    pub no_optimize: bool,
}

impl PrepareArgs {
    /// The `--precision` chosen.
    pub fn precision(&self) -> Result<lpu_compiler::passes::Precision> {
        self.precision
            .parse()
            .map_err(|e| anyhow::anyhow!("--precision: {e}"))
    }

    /// Runs the passes and the precision rewrite on `graph` (lower the
    /// result with [`lpu_compiler::compile_prepared`] and
    /// [`PrepareArgs::precision`]).
    pub fn prepare(&self, graph: Graph) -> Result<lpu_compiler::passes::PrecisionOutcome> {
        let precision = self.precision()?;
        let mut calibration = Vec::new();
        if !self.calib.is_empty() {
            let mut set = std::collections::BTreeMap::new();
            for spec in &self.calib {
                let (name, file) = spec
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--calib '{spec}': expected NAME=FILE.npy"))?;
                let t = lpu_graph::npy::read_npy(Path::new(file))?;
                let Some((_, info)) = graph.inputs.iter().find(|(n, _)| n == name) else {
                    anyhow::bail!("--calib: the model has no input '{name}'");
                };
                if t.dtype() != info.dtype || t.shape != info.shape {
                    anyhow::bail!(
                        "{file}: calibration input '{name}' must be {} {:?}, the file holds {} {:?}",
                        info.dtype,
                        info.shape,
                        t.dtype(),
                        t.shape
                    );
                }
                set.insert(name.to_string(), t);
            }
            for (name, _) in &graph.inputs {
                if !set.contains_key(name) {
                    anyhow::bail!("--calib: no file for input '{name}'");
                }
            }
            calibration.push(set);
        }
        let opts = lpu_compiler::CompileOptions {
            precision,
            optimize: !self.no_optimize,
            calib_samples: self.calib_samples,
            calibration,
            ..Default::default()
        };
        Ok(lpu_compiler::prepare(graph, &opts)?)
    }
}

/// Node counts per precision, as `int8 53, fp32 120`.
pub fn precision_summary(node_precision: &std::collections::BTreeMap<String, String>) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for p in node_precision.values() {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_read_in_pieces_is_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("lpu-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0usize, 1, 2, 3, 1000, 65_537] {
            let path = dir.join(format!("f{n}"));
            let bytes: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read_in_pieces(&path, 0).unwrap(), bytes, "{n} bytes");
            assert_eq!(read_file(&path).unwrap(), bytes, "{n} bytes");
        }
        let e = read_in_pieces(&dir.join("missing"), 0).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
