//! `zoo`: regenerates the model zoo's `.graph` files (see
//! `lpu_graph::zoo`).
//!
//! ```text
//! cargo run -p lpu-graph --example zoo                      # every bundled model into examples/
//! cargo run -p lpu-graph --example zoo -- --check           # exit 1 if a bundled file is stale
//! cargo run -p lpu-graph --example zoo -- --only gpt2 --context 1024 --layers 2 --out /tmp
//! cargo run -p lpu-graph --example zoo -- --only llama2-7b --context 4096
//! ```
//!
//! Files are written atomically (a temporary file in the same directory,
//! then a rename), and only when their bytes change; the same arguments give
//! the same bytes on every run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use lpu_graph::zoo::{self, Entry, Model, Sizes};

/// Regenerates the example models of lpu's model zoo as .graph files.
#[derive(Debug, Parser)]
#[command(name = "zoo", version)]
struct Args {
    /// Directory to write into [default: the workspace's examples/].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Only this model: lenet, resnet50, bert-base, transformer-block,
    /// gpt2-decode or llama2-7b (aliases: resnet, bert, block, gpt2, llama).
    /// Without size options, its bundled files (llama2-7b: context 4096).
    #[arg(long, value_name = "MODEL", value_parser = parse_model)]
    only: Option<Model>,
    /// Batch size (lenet, resnet50, bert-base, transformer-block).
    #[arg(long, requires = "only")]
    batch: Option<usize>,
    /// Input image size, square (resnet50).
    #[arg(long, requires = "only")]
    image: Option<usize>,
    /// Sequence length (bert-base, transformer-block).
    #[arg(long, requires = "only")]
    seq: Option<usize>,
    /// Number of layers (bert-base, gpt2-decode, llama2-7b).
    #[arg(long, requires = "only")]
    layers: Option<usize>,
    /// Tokens in the KV cache (gpt2-decode, llama2-7b).
    #[arg(long, requires = "only")]
    context: Option<usize>,
    /// Check that the files exist with the bytes the generator gives, writing
    /// nothing; exit 1 if any differs.
    #[arg(long)]
    check: bool,
    /// List the models and their bundled files, then exit.
    #[arg(long)]
    list: bool,
}

fn parse_model(s: &str) -> Result<Model, String> {
    Model::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
        format!("unknown model '{s}'; the models are {}", names.join(", "))
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn run(args: Args) -> Result<bool, String> {
    if args.list {
        let bundled = zoo::bundled();
        for m in Model::ALL {
            let files: Vec<String> = bundled
                .iter()
                .filter(|e| e.model == m)
                .map(Entry::file_name)
                .collect();
            let files = if files.is_empty() {
                "(not bundled)".to_string()
            } else {
                files.join(", ")
            };
            println!("{:<18} {:<60} {files}", m.name(), m.description());
        }
        return Ok(true);
    }
    let out = args.out.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("examples")
    });
    let entries = match args.only {
        None => zoo::bundled(),
        Some(model) => {
            let sizes = Sizes {
                batch: args.batch,
                image: args.image,
                seq: args.seq,
                layers: args.layers,
                context: args.context,
            };
            zoo::entries(model, sizes)?
        }
    };
    if !args.check {
        std::fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    }
    let mut ok = true;
    for e in entries {
        let path = out.join(e.file_name());
        let text = e.render();
        let old = std::fs::read(&path).ok();
        let same = old.as_deref() == Some(text.as_bytes());
        if args.check {
            if !same {
                ok = false;
                let why = if old.is_none() {
                    "missing"
                } else {
                    "out of date"
                };
                eprintln!(
                    "{}: {why}; regenerate with `{}`",
                    path.display(),
                    e.command()
                );
            }
            continue;
        }
        if same {
            println!("unchanged {}", path.display());
        } else {
            write_atomic(&path, text.as_bytes())
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            println!("wrote     {} ({} bytes)", path.display(), text.len());
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("zoo: error: {e}");
            ExitCode::from(2)
        }
    }
}
