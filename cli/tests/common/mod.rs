//! Helpers shared by the integration tests: example paths, running the
//! binaries, and unique temporary directories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fp32 MLP example.
pub const MLP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mlp.graph");
/// The int8 MLP example.
pub const MLP_INT8: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mlp-int8.graph");
/// Checked-in test data.
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// A file under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

/// A `lpc` command.
pub fn lpc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lpc"))
}

/// A `lpsim` command.
pub fn lpsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lpsim"))
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Ran {
    let out = cmd.output().expect("spawn binary");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command and insists on exit code 0.
pub fn run_ok(cmd: &mut Command) -> Ran {
    let r = run(cmd);
    assert_eq!(r.code, 0, "command {cmd:?} failed: {r:?}");
    r
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name contains `tag`.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "lpu-cli-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads an example graph through the library.
pub fn load(path: &str) -> lpu_graph::Graph {
    lpu_graph::load_graph(Path::new(path)).expect("load example graph")
}

/// Compiles a graph for a preset chip through the library.
pub fn compile(graph: &lpu_graph::Graph, chip: &str) -> lpu_isa::Program {
    let chip = lpu_isa::ChipConfig::preset(chip).expect("preset");
    lpu_compiler::compile(graph, &chip)
        .expect("compile")
        .program
}

/// The little-endian bytes of every output tensor, for bit-exact comparison.
pub fn output_bits(
    outputs: &std::collections::BTreeMap<String, lpu_graph::Tensor>,
) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    outputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.values.to_le_bytes()))
        .collect()
}

/// Runs `cmd`, killing it after `secs` seconds; `None` if it had to be killed.
pub fn run_with_deadline(cmd: &mut std::process::Command, secs: u64) -> Option<Ran> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return Some(Ran {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
