//! `lpc`: the lpu compiler's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use lpu_cli::{report_error, write_atomic, write_atomic_with, Artifact, EXIT_ERROR, EXIT_OK};
use std::path::PathBuf;
use std::process::ExitCode;

/// Compiles operator graphs into statically scheduled lpu programs.
#[derive(Parser)]
#[command(name = "lpc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model (.graph or .onnx) into a program.
    Compile {
        /// The model file.
        model: PathBuf,
        /// Bind a symbolic dimension of an .onnx model: NAME=VALUE.
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
        /// Give an .onnx model input's whole shape: NAME=1x3x224x224.
        #[arg(long = "input-shape", value_name = "NAME=SHAPE")]
        input_shapes: Vec<String>,
        /// Output file (default: the model's name with .lpb or .lpa).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Target chip: a preset (tsp, tiny) or a RON config file.
        #[arg(long, default_value = "tsp")]
        chip: String,
        /// Output form (default: from the output's extension, else bin).
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// Print compile statistics.
        #[arg(long)]
        stats: bool,
        #[command(flatten)]
        prepare: lpu_cli::PrepareArgs,
    },
    /// Import an ONNX model (.onnx) into a .graph file. Initializers over
    /// 4 KiB go to raw little-endian files in `<output>.data/`.
    Import {
        /// The .onnx file.
        model: PathBuf,
        /// Output .graph file (default: the model's name with .graph).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Bind a symbolic dimension: NAME=VALUE.
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
        /// Give an input's whole shape: NAME=1x3x224x224.
        #[arg(long = "input-shape", value_name = "NAME=SHAPE")]
        input_shapes: Vec<String>,
    },
    /// Print a program (.lpb or .lpa) as assembly.
    Disasm {
        /// The program file.
        program: PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Assemble a .lpa file into a binary program.
    Asm {
        /// The assembly file.
        input: PathBuf,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// List the chip presets.
    Chips,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Emit {
    /// Binary program (.lpb).
    Bin,
    /// Text assembly (.lpa).
    Asm,
}

/// The `--stats` text.
fn stats_text(
    model: &str,
    chip: &lpu_isa::ChipConfig,
    out: &std::path::Path,
    s: &lpu_compiler::CompileStats,
) -> String {
    let total: usize = s.instructions.values().sum();
    let per: Vec<String> = s
        .instructions
        .iter()
        .map(|(u, n)| format!("{u} {n}"))
        .collect();
    let mut t = format!(
        "model {model} on chip {}: wrote {}\n",
        chip.name,
        out.display()
    );
    t += &format!(
        "  cycles        {} ({:.3} us at {} MHz)\n",
        s.cycles,
        s.cycles as f64 / chip.clock_mhz,
        chip.clock_mhz
    );
    t += &format!("  instructions  {total} ({})\n", per.join(", "));
    t += &format!("  groups        {}\n", s.groups);
    t += &format!(
        "  SRAM peak     {} of {} bytes ({:.2}%)\n",
        s.sram_bytes,
        s.sram_capacity_bytes,
        100.0 * s.sram_bytes as f64 / s.sram_capacity_bytes as f64
    );
    t
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Compile {
            model,
            dims,
            input_shapes,
            output,
            chip,
            emit,
            stats,
            prepare,
        } => {
            let chip = lpu_cli::chip(&chip)?;
            let opts = lpu_cli::import_options(&dims, &input_shapes)?;
            let graph = match lpu_cli::load_with(&model, &opts)? {
                Artifact::Graph(g) => g,
                Artifact::Program(_) => bail!("{}: already a compiled program", model.display()),
            };
            let prepared = prepare
                .prepare(*graph)
                .with_context(|| model.display().to_string())?;
            let graph = prepared.graph;
            let compiled =
                lpu_compiler::compile_prepared(&graph, &chip, prepare.precision()?, false)
                    .with_context(|| model.display().to_string())?;
            let emit = emit.unwrap_or_else(|| match output.as_ref().and_then(|o| o.extension()) {
                Some(e) if e == "lpa" => Emit::Asm,
                _ => Emit::Bin,
            });
            let out = output.unwrap_or_else(|| {
                model.with_extension(if emit == Emit::Asm { "lpa" } else { "lpb" })
            });
            match emit {
                Emit::Bin => write_atomic_with(&out, |w| compiled.program.write_to(w))?,
                Emit::Asm => write_atomic(
                    &out,
                    lpu_isa::asm::disassemble(&compiled.program).as_bytes(),
                )?,
            }
            if stats {
                let mut text = stats_text(&graph.name, &chip, &out, &compiled.stats);
                text += &format!(
                    "  precision     {} ({})\n",
                    prepare.precision,
                    lpu_cli::precision_summary(&prepared.node_precision)
                );
                let b = lpu_sim::lower_bound(&compiled.program);
                text += &format!(
                    "  lower bound   {} cycles ({}); schedule is {:.2}x the bound\n",
                    b.cycles,
                    b.kind,
                    b.ratio(compiled.stats.cycles)
                );
                lpu_cli::print_stdout(&text)?;
            }
        }
        Command::Import {
            model,
            output,
            dims,
            input_shapes,
        } => {
            let opts = lpu_cli::import_options(&dims, &input_shapes)?;
            let imported = lpu_onnx::import_with_notes(&model, &opts)?;
            for n in &imported.notes {
                eprintln!("note: {}: {n}", model.display());
            }
            let out = output.unwrap_or_else(|| model.with_extension("graph"));
            // Validate before writing: the file must load as it is written.
            let base = model.parent().unwrap_or(std::path::Path::new("."));
            lpu_graph::load::build(imported.graph.clone(), &model.display().to_string(), base)?;
            lpu_onnx::write_graph(&imported.graph, &out)?;
        }
        Command::Disasm { program, output } => {
            let p = lpu_cli::load_program(&program)?;
            let text = lpu_isa::asm::disassemble(&p);
            match output {
                Some(o) => write_atomic(&o, text.as_bytes())?,
                None => lpu_cli::print_stdout(&text)?,
            }
        }
        Command::Asm { input, output } => {
            let p = lpu_cli::load_program(&input)?;
            write_atomic(&output, &p.to_bytes())?;
        }
        Command::Chips => {
            let mut text = String::new();
            for name in lpu_isa::ChipConfig::PRESETS {
                if let Some(c) = lpu_isa::ChipConfig::preset(name) {
                    text.push_str(&format!("{name:<6} {}\n", c.description));
                }
            }
            lpu_cli::print_stdout(&text)?;
        }
    }
    Ok(())
}

/// mimalloc: see the workspace `Cargo.toml` (a seventh of a compile or a
/// simulation was glibc's malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            report_error("lpc", &e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
