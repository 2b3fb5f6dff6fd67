//! The course labs in `docs/labs/` run, and their answer keys match.
//!
//! Each lab is a markdown file whose commands sit in fenced `sh` blocks
//! under a marker line, and whose answer key holds the output of each block
//! under a matching marker:
//!
//! ````text
//! <!-- run:trace -->
//! ```sh
//! cargo run --release --bin lpsim -- run examples/mlp.graph --chip tiny
//! ```
//! ...
//! <!-- answer:trace -->
//! ```text
//! (the block's stdout, exactly)
//! ```
//! <!-- /answer -->
//! ````
//!
//! This test parses the blocks out of the markdown and runs exactly those
//! commands with `sh`, in order, in a scratch directory that links to the
//! repository's `examples/` and `docs/` (so the commands are written as a
//! student types them in the repository root, and write under `out/`),
//! with `cargo run --release --bin lpsim --` (and `lpc`) replaced by the
//! binaries this test was built with, and `LC_ALL=C`. It compares each
//! block's stdout with its answer (stderr is not compared: it has cargo's
//! and the progress messages). `<!-- artifact: out/FILE = NAME -->` also
//! compares a file a command wrote with `docs/labs/NAME`. `BLESS=1` rewrites
//! the answers and artifacts.
//!
//! The prose of an answer key cites figures from the blocks; so that it
//! cannot go stale silently when the compiler changes, every number of
//! three or more digits in the answer key's prose (outside code) must occur
//! in one of the lab's outputs or commands.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const LABS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/labs");

/// A fenced `sh` block under `<!-- run:NAME -->`.
struct RunBlock {
    name: String,
    script: String,
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// The `<!-- KIND:NAME -->` marker on a line, if any.
fn marker<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    let rest = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let name = rest.strip_prefix(kind)?.strip_prefix(':')?.trim();
    (!name.is_empty()).then_some(name)
}

fn run_blocks(md: &str, file: &str) -> Vec<RunBlock> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(name) = marker(lines[i], "run") {
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "{file}: `<!-- run:{name} -->` must be followed by a ```sh block"
            );
            let mut j = i + 2;
            let mut script = String::new();
            while j < lines.len() && lines[j].trim() != "```" {
                script.push_str(lines[j]);
                script.push('\n');
                j += 1;
            }
            assert!(j < lines.len(), "{file}: unterminated block {name}");
            assert!(
                out.iter().all(|b: &RunBlock| b.name != name),
                "{file}: two blocks named {name}"
            );
            out.push(RunBlock {
                name: name.to_string(),
                script,
            });
            i = j;
        }
        i += 1;
    }
    out
}

/// The byte range of the answer block `name` (between the marker line and
/// `<!-- /answer -->`).
fn answer_range(md: &str, name: &str) -> Option<(usize, usize)> {
    let mut pos = 0;
    for line in md.split_inclusive('\n') {
        if marker(line, "answer") == Some(name) {
            let start = pos + line.len();
            let end = md[start..].find("<!-- /answer -->")? + start;
            return Some((start, end));
        }
        pos += line.len();
    }
    None
}

/// The script as this test runs it: the binaries under test in place of
/// `cargo run`.
fn resolve(script: &str, file: &str, name: &str) -> String {
    let lpsim = env!("CARGO_BIN_EXE_lpsim");
    let lpc = env!("CARGO_BIN_EXE_lpc");
    let s = script
        .replace("cargo run --release --bin lpsim --", &format!("'{lpsim}'"))
        .replace("cargo run --release --bin lpc --", &format!("'{lpc}'"));
    assert!(
        !s.contains("cargo "),
        "{file} block {name}: run the tools as `cargo run --release --bin lpsim -- ...` (or lpc)"
    );
    s
}

/// A scratch directory standing in for the repository root.
fn workdir(tag: &str) -> common::TempDir {
    let dir = common::TempDir::new(tag);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for sub in ["examples", "docs"] {
        let target = root.join(sub).canonicalize().expect("repository folder");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, dir.join(sub)).expect("symlink");
        #[cfg(not(unix))]
        let _ = target;
    }
    dir
}

/// Runs one lab: every block, every answer and artifact compared (or
/// rewritten with `BLESS=1`), then the prose check.
fn lab(file: &str) {
    if !cfg!(unix) {
        eprintln!("skipping {file}: the labs' commands need a POSIX shell");
        return;
    }
    let path = PathBuf::from(LABS).join(file);
    let mut md = std::fs::read_to_string(&path).expect("lab file");
    let blocks = run_blocks(&md, file);
    assert!(!blocks.is_empty(), "{file}: no `<!-- run:NAME -->` blocks");
    let dir = workdir(file.trim_end_matches(".md"));
    let mut outputs = String::new();
    let mut stale = Vec::new();
    for b in &blocks {
        let script = resolve(&b.script, file, &b.name);
        let t = std::time::Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{file} {}: {:.1} s", b.name, t.elapsed().as_secs_f64());
        outputs.push_str(&stdout);
        outputs.push_str(&b.script);
        let want = format!(
            "```text\n{}{}```\n",
            stdout,
            if stdout.ends_with('\n') || stdout.is_empty() {
                ""
            } else {
                "\n"
            }
        );
        let Some((a, z)) = answer_range(&md, &b.name) else {
            panic!(
                "{file}: block {} has no `<!-- answer:{} -->` ... `<!-- /answer -->`; its output:\n{stdout}\nstderr:\n{stderr}",
                b.name, b.name
            );
        };
        if md[a..z] != want {
            if bless() {
                md.replace_range(a..z, &want);
            } else {
                stale.push(format!(
                    "block {}: expected\n{}\ngot\n{want}\nstderr:\n{stderr}",
                    b.name,
                    &md[a..z]
                ));
            }
        }
    }
    // Files the commands wrote that the lab shows (a plot).
    for line in md.clone().lines() {
        let Some(spec) = marker(line, "artifact") else {
            continue;
        };
        let (made, kept) = spec
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .expect("artifact: out/FILE = NAME");
        let made = std::fs::read(dir.join(made))
            .unwrap_or_else(|e| panic!("{file}: artifact {made} was not written: {e}"));
        let kept_path = PathBuf::from(LABS).join(kept);
        if std::fs::read(&kept_path).ok().as_deref() != Some(&made[..]) {
            if bless() {
                std::fs::write(&kept_path, &made).expect("write artifact");
            } else {
                stale.push(format!(
                    "artifact docs/labs/{kept} differs from what the commands write"
                ));
            }
        }
    }
    if bless() {
        std::fs::write(&path, &md).expect("write lab");
    }
    assert!(
        stale.is_empty(),
        "docs/labs/{file} is out of date (run BLESS=1 cargo test -p lpu-cli --test labs, then re-read its answer key):\n{}",
        stale.join("\n")
    );
    let missing = prose_numbers_missing(&md, &outputs);
    assert!(
        missing.is_empty(),
        "docs/labs/{file}: the answer key's prose cites {missing:?}, which no command or output of the lab contains any more: update the prose to the regenerated blocks"
    );
}

/// Number-like tokens with three or more digits.
fn numbers(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| t.chars().filter(|c| c.is_ascii_digit()).count() >= 3)
        .map(str::to_string)
        .collect()
}

/// The numbers in the answer key's prose (after `## Answer key`, outside
/// fenced code and answer blocks) that no output, command or text before
/// the answer key contains.
fn prose_numbers_missing(md: &str, outputs: &str) -> Vec<String> {
    let Some(start) = md.find("## Answer key") else {
        return Vec::new();
    };
    let mut prose = String::new();
    let mut in_code = false;
    for line in md[start..].lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code && !line.trim_start().starts_with("<!--") {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    // Figures the lab states before its answer key (the model's shapes,
    // the flags) are inputs, not results.
    let mut known = numbers(outputs);
    known.extend(numbers(&md[..start]));
    numbers(&prose)
        .into_iter()
        .filter(|n| !known.contains(n))
        .collect()
}

#[test]
fn lab1_trace() {
    lab("lab1-trace.md");
}

#[test]
fn lab2_hazards() {
    lab("lab2-hazards.md");
}

#[test]
fn lab3_static_vs_dynamic() {
    lab("lab3-static-vs-dynamic.md");
}

#[test]
fn lab4_sweep() {
    lab("lab4-sweep.md");
}

/// Every lab is in the index, and the index's links resolve.
#[test]
fn index_lists_every_lab() {
    let index = std::fs::read_to_string(PathBuf::from(LABS).join("README.md")).expect("index");
    let mut labs: Vec<String> = std::fs::read_dir(LABS)
        .expect("docs/labs")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lab") && n.ends_with(".md"))
        .collect();
    labs.sort();
    assert!(labs.len() >= 4, "{labs:?}");
    for l in &labs {
        assert!(
            index.contains(&format!("({l})")),
            "docs/labs/README.md does not link {l}"
        );
    }
}

#[test]
fn markers_parse() {
    assert_eq!(marker("<!-- run:trace -->", "run"), Some("trace"));
    assert_eq!(marker("  <!-- answer: x-1 -->", "answer"), Some("x-1"));
    assert_eq!(marker("<!-- /answer -->", "answer"), None);
    assert_eq!(marker("<!-- run: -->", "run"), None);
    let md = "a\n<!-- answer:x -->\n```text\n1\n```\n<!-- /answer -->\n";
    let (a, z) = answer_range(md, "x").unwrap();
    assert_eq!(&md[a..z], "```text\n1\n```\n");
    assert_eq!(
        numbers("cycle 4402, 43.31%, i47 0x209a 1.5x."),
        ["209", "4402", "43.31"].map(String::from).into()
    );
}
