//! Renders `lpsim onnx-test --json` results as the per-operator
//! conformance tables of `docs/onnx-conformance.md`.
//!
//! ```sh
//! lpsim onnx-test --json target/onnx-tests/data/node > node.json
//! cargo run --release -p lpu-cli --example onnx_conformance_table -- \
//!     node.json target/onnx-tests/data/node --update docs/onnx-conformance.md
//! ```
//!
//! Each case is attributed to one operator: the op type of its model's
//! nodes (every node-suite case has one op type), or, for a function-body
//! case `X_expanded*`, the operator of case `X`. The tables:
//!
//! - per operator: cases, cases with all operators supported (not
//!   `UNSUPPORTED`), `PASS`, `FAIL`, `UNSUPPORTED`, `ERROR`, and the most
//!   common reasons the others did not pass;
//! - the reasons, normalised (tensor names and numbers blanked), of the
//!   cases with all operators supported that do not pass, with counts;
//! - the compiler's "not lowered" reasons and the unsupported op types,
//!   with counts.
//!
//! Without `--update` the tables go to stdout; with it they replace the
//! text between `<!-- generated:begin -->` and `<!-- generated:end -->` in
//! the file, leaving the hand-written rest as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lpu_cli::onnx_test::{case_from_json, CaseResult, Status};

const BEGIN: &str = "<!-- generated:begin -->";
const END: &str = "<!-- generated:end -->";

/// Op types of a case's model, sorted, with non-default domains prefixed.
fn op_types(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("model.onnx");
    let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    let m =
        lpu_onnx::decode_model(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut ops: Vec<String> = m
        .graph
        .unwrap_or_default()
        .node
        .iter()
        .map(|n| {
            if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}:{}", n.domain, n.op_type)
            }
        })
        .collect();
    ops.sort();
    ops.dedup();
    Ok(ops)
}

/// Blanks what differs between cases that fail alike: text in single
/// quotes, the model path in front, and free-standing numbers.
fn normalise(msg: &str) -> String {
    let msg = match msg.find("model.onnx: ") {
        Some(i) => &msg[i + "model.onnx: ".len()..],
        None => msg,
    };
    let msg = match msg.find("test_data_set_") {
        Some(0) => msg.split_once(": ").map_or(msg, |(_, r)| r),
        _ => msg,
    };
    let mut out = String::with_capacity(msg.len());
    let chars: Vec<char> = msg.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if let Some(j) = chars[i + 1..].iter().position(|&d| d == '\'') {
                out.push_str("'…'");
                i += j + 2;
                continue;
            }
        }
        let prev_alnum = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if (c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            && !prev_alnum
        {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || chars[j] == '.'
                    || chars[j] == 'e'
                    || (chars[j] == '-' && chars[j - 1] == 'e'))
            {
                j += 1;
            }
            // Keep "2-D" and the like.
            let dim_word = j < chars.len()
                && chars[j] == '-'
                && chars.get(j + 1).is_some_and(|c| c.is_alphabetic());
            if j == chars.len() || !(chars[j].is_alphabetic() || chars[j] == '_' || dim_word) {
                out.push('N');
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The order of magnitude of an error, as `1e-4`.
fn magnitude(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return format!("{x}");
    }
    format!("1e{}", x.log10().ceil() as i32)
}

/// Why a case did not pass, in a form shared by cases that fail alike.
fn reason(r: &CaseResult) -> Option<String> {
    Some(match &r.status {
        Status::Pass { .. } => return None,
        Status::Fail {
            max_abs_err,
            detail,
        } => {
            if detail.contains(" element ") && max_abs_err.is_finite() {
                format!(
                    "FAIL: values outside rtol 1e-3 (max abs error ≤ {})",
                    magnitude(*max_abs_err)
                )
            } else {
                format!("FAIL: {}", normalise(detail))
            }
        }
        Status::Unsupported(ops) => {
            let lowered: Vec<&String> = ops.iter().filter(|o| o.contains("not lowered")).collect();
            if lowered.is_empty() {
                format!("UNSUPPORTED op: {}", ops.join(", "))
            } else {
                format!(
                    "NOT LOWERED: {}",
                    lowered
                        .iter()
                        .map(|o| normalise(o))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        Status::Error(m) => format!("ERROR: {}", normalise(m)),
    })
}

/// The operator a case tests.
fn case_op(name: &str, ops: &BTreeMap<String, Vec<String>>) -> String {
    let own = &ops[name];
    if own.len() == 1 {
        return own[0].clone();
    }
    if let Some(i) = name.find("_expanded") {
        if let Some(base) = ops.get(&name[..i]).filter(|b| b.len() == 1) {
            return base[0].clone();
        }
    }
    if own.is_empty() {
        "(no nodes)".into()
    } else {
        own.join("+")
    }
}

#[derive(Default)]
struct Row {
    total: usize,
    supported: usize,
    pass: usize,
    fail: usize,
    unsupported: usize,
    error: usize,
    reasons: BTreeMap<String, usize>,
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Reasons by count (descending), then by text.
fn ranked(m: &BTreeMap<String, usize>) -> Vec<(&String, &usize)> {
    let mut v: Vec<(&String, &usize)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v
}

fn render(results: &[CaseResult], suite_dir: &Path) -> Result<String> {
    let mut ops = BTreeMap::new();
    for r in results {
        let case = r.name.rsplit('/').next().unwrap_or(&r.name).to_string();
        ops.insert(case.clone(), op_types(&suite_dir.join(&case))?);
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut total = Row::default();
    // Reasons of the supported-but-not-passing cases, with example cases.
    let mut triage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lowering: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        let case = r.name.rsplit('/').next().unwrap_or(&r.name).to_string();
        let op = case_op(&case, &ops);
        for row in [rows.entry(op).or_default(), &mut total] {
            row.total += 1;
            match &r.status {
                Status::Pass { .. } => row.pass += 1,
                Status::Fail { .. } => row.fail += 1,
                Status::Unsupported(_) => row.unsupported += 1,
                Status::Error(_) => row.error += 1,
            }
            if !matches!(r.status, Status::Unsupported(_)) {
                row.supported += 1;
            }
            if let Some(why) = reason(r) {
                *row.reasons.entry(why).or_default() += 1;
            }
        }
        match &r.status {
            Status::Fail { .. } | Status::Error(_) => {
                triage
                    .entry(reason(r).unwrap_or_default())
                    .or_default()
                    .push(case);
            }
            Status::Unsupported(list) => {
                for o in list {
                    if o.contains("not lowered") {
                        lowering.entry(normalise(o)).or_default().push(case.clone());
                    } else {
                        *unsupported.entry(o.clone()).or_default() += 1;
                    }
                }
            }
            Status::Pass { .. } => {}
        }
    }

    let mut s = String::new();
    s += &format!(
        "{BEGIN}\n<!-- Written by `cargo run --release -p lpu-cli --example onnx_conformance_table`; edit the text outside these markers only. -->\n\n"
    );
    s += "### Summary\n\n| cases | all ops supported | pass | fail | unsupported | error | pass / all ops supported |\n|---|---|---|---|---|---|---|\n";
    let pct = |p: usize, n: usize| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * p as f64 / n as f64)
        }
    };
    s += &format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n\n",
        total.total,
        total.supported,
        total.pass,
        total.fail,
        total.unsupported,
        total.error,
        pct(total.pass, total.supported)
    );

    s += "### Per operator\n\n";
    s += "A case counts toward the operator it tests (`X_expanded` cases, which run an operator's function body, toward `X`'s operator). \"All ops supported\" is every case not `UNSUPPORTED`.\n\n";
    s += "| operator | cases | all ops supported | pass | fail | unsupported | error | top reasons for not passing |\n|---|---|---|---|---|---|---|---|\n";
    for (op, row) in &rows {
        let top: Vec<String> = ranked(&row.reasons)
            .into_iter()
            .take(2)
            .map(|(w, n)| format!("{n}× {}", md_escape(w)))
            .collect();
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_escape(op),
            row.total,
            row.supported,
            row.pass,
            row.fail,
            row.unsupported,
            row.error,
            top.join("<br>")
        );
    }

    let bucket_table = |s: &mut String, m: &BTreeMap<String, Vec<String>>| {
        let mut v: Vec<(&String, &Vec<String>)> = m.iter().collect();
        v.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        *s += "| cases | reason | examples |\n|---|---|---|\n";
        for (why, cases) in v {
            let ex: Vec<String> = cases.iter().take(3).map(|c| format!("`{c}`")).collect();
            let more = if cases.len() > 3 { ", ..." } else { "" };
            *s += &format!(
                "| {} | {} | {}{more} |\n",
                cases.len(),
                md_escape(why),
                ex.join(", ")
            );
        }
    };
    let n_triage: usize = triage.values().map(Vec::len).sum();
    s += &format!(
        "\n### Cases with all ops supported that do not pass ({n_triage})\n\nGrouped by the runner's message, with tensor names (`'…'`) and numbers (`N`) blanked.\n\n"
    );
    bucket_table(&mut s, &triage);
    let n_lowering: usize = lowering.values().map(Vec::len).sum();
    s += &format!(
        "\n### Not lowered by the compiler ({n_lowering})\n\nCases whose operators all import but which the compiler does not lower (counted as `UNSUPPORTED`).\n\n"
    );
    bucket_table(&mut s, &lowering);
    s += "\n### Unsupported operators\n\nOp types the importer rejects, by the number of cases that use them.\n\n| cases | op type |\n|---|---|\n";
    for (op, n) in ranked(&unsupported) {
        s += &format!("| {n} | {} |\n", md_escape(op));
    }
    s += &format!("\n{END}\n");
    Ok(s)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut pos, mut update) = (Vec::new(), None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--update" {
            update = Some(PathBuf::from(it.next().context("--update needs a file")?));
        } else {
            pos.push(a);
        }
    }
    let [json, suite] = &pos[..] else {
        bail!("usage: onnx_conformance_table RESULTS.json SUITE_DIR [--update DOC.md]");
    };
    let text = std::fs::read_to_string(json).with_context(|| json.clone())?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| json.clone())?;
    let results: Vec<CaseResult> = v["cases"]
        .as_array()
        .context("no \"cases\" array: not `lpsim onnx-test --json` output")?
        .iter()
        .filter_map(case_from_json)
        .collect();
    let tables = render(&results, Path::new(suite))?;
    match update {
        None => print!("{tables}"),
        Some(doc) => {
            let old = std::fs::read_to_string(&doc).with_context(|| doc.display().to_string())?;
            let (Some(b), Some(e)) = (old.find(BEGIN), old.find(END)) else {
                bail!("{}: no {BEGIN} ... {END} markers", doc.display());
            };
            let rest = old[e + END.len()..].trim_start_matches('\n');
            let new = format!("{}{tables}\n{rest}", &old[..b]);
            std::fs::write(&doc, new).with_context(|| doc.display().to_string())?;
        }
    }
    Ok(())
}
