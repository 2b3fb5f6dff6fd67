//! Shared plumbing of the `lpc` and `lpsim` binaries: loading models and
//! programs by file type, writing outputs atomically, exit codes. The work
//! itself lives in the library crates; these binaries only parse flags and
//! print.

use anyhow::{bail, Context, Result};
use lpu_graph::Graph;
use lpu_isa::{ChipConfig, Program};
use std::path::Path;

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

/// Loads a `.graph`, `.lpb` or `.lpa` file, by extension (or, failing
/// that, by the binary program's magic bytes).
pub fn load(path: &Path) -> Result<Artifact> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "graph" | "ron" => Ok(Artifact::Graph(Box::new(lpu_graph::load_graph(path)?))),
        "lpa" => load_program(path).map(|p| Artifact::Program(Box::new(p))),
        "onnx" => bail!(
            "{}: ONNX import is not available yet; convert the model to .graph",
            path.display()
        ),
        _ => load_program(path).map(|p| Artifact::Program(Box::new(p))),
    }
}

/// Loads a binary or assembly program.
pub fn load_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
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
