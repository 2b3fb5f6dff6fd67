//! The text assembly form (`.lpa`) of a [`Program`]: a disassembler that
//! prints it and an assembler that parses it back, exactly.
//!
//! ```text
//! .format 1
//! .model "mlp"
//! .chip (name:"tiny",...)              ; the chip config, one RON line
//! .node 0 "fc1" MatMul                 ; provenance table
//! .perm 0 1,0,3,2,...                  ; permutation tables
//! .input "x" f32 [1,784] 1x784 mem@2:0x0 mem@3:0x0 ...
//! .output "y" f32 [1,10] 1x10 mem@4:0x40
//! .queue mem@2
//!   i5 sync
//!   i9 read.f32 a=0x0 ->s0e node=0       ; c=3 fc1
//!   i11 write.f32 a=0x40 s1w<i10 node=1 after=i3+1
//! .data mem@2 0x100 f32 0000803f...      ; one vector, little-endian hex
//! ```
//!
//! Each instruction line is `i<id> mnemonic[.type[.type]] operands... [node=N]
//! [after=i<id><+|-><gap>,...]`. Operands come in the order of the ISA table;
//! a source stream may name its producer (`s1w<i10`), which records a stream
//! dependence. Everything after `;` is a comment; the disassembler writes the
//! issue cycle and node name there.

use crate::config::ChipConfig;
use crate::isa::{Operand, StreamRef, Typing};
use crate::program::{
    Binding, Dep, DepKind, MemInit, NodeInfo, Program, QueueId, QueueProgram, Slot, VecLoc,
    FORMAT_VERSION,
};
use crate::{DType, Instr, Opcode, Values};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// An assembly error with its 1-based line number.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AsmError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn quote(s: &str) -> String {
    ron::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn loc(v: &VecLoc) -> String {
    format!("mem@{}:{:#x}", v.slice, v.addr)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A source's producer: instruction id and which of its output stream groups.
pub type Producer = (u32, u8);

/// Prints one instruction (without id, node or order deps); `src_deps` and
/// `src2_deps` name the producers of each source's stream groups, printed
/// `s0e<i12` (or `s0e<i12,i13` for a multi-group `lw`, and `i12.3` for
/// output group 3 of a `trn`).
pub fn format_instr(i: &Instr, src_deps: &[Producer], src2_deps: &[Producer]) -> String {
    let info = i.op.info();
    let mut s = String::from(info.mnemonic);
    match info.typing {
        Typing::None => {}
        Typing::One => {
            let _ = write!(s, ".{}", i.ty);
        }
        Typing::Two => {
            let _ = write!(s, ".{}.{}", i.ty, i.to);
        }
    }
    let stream = |st: Option<StreamRef>, deps: &[Producer]| {
        let st = st.map(|x| x.to_string()).unwrap_or_else(|| "s?".into());
        if deps.is_empty() {
            st
        } else {
            let ids: Vec<String> = deps
                .iter()
                .map(|(d, g)| {
                    if *g == 0 {
                        format!("i{d}")
                    } else {
                        format!("i{d}.{g}")
                    }
                })
                .collect();
            format!("{st}<{}", ids.join(","))
        }
    };
    for o in info.operands {
        let tok = match o {
            Operand::Count => format!("n={}", i.arg),
            Operand::Stride => format!("d={}", i.arg2),
            Operand::Addr => format!("a={:#x}", i.arg),
            Operand::Row => format!("row={}", i.arg),
            Operand::Acc => format!("acc={}", i.arg),
            Operand::Mode => format!("mode={}", if i.accumulate { "add" } else { "set" }),
            Operand::Shift => format!("k={}", i.arg),
            Operand::Table => format!("tab={}", i.arg),
            Operand::Imm => format!("imm={:?}", i.imm),
            Operand::Scale => format!("scale={:?}", i.imm),
            Operand::Zp => format!("zp={}", i.arg2),
            Operand::Rows => format!("rows={}", i.arg2),
            Operand::Format => match crate::narrow::Format::from_code(i.arg) {
                Some(f) => format!("fmt={}", f.name()),
                None => format!("fmt={}", i.arg),
            },
            Operand::Sat => format!("sat={}", i.arg2),
            Operand::Lo => format!("lo={}", i.arg2),
            Operand::Window => format!("n={}", i.imm),
            Operand::Src => stream(i.src, src_deps),
            Operand::Src2 => stream(i.src2, src2_deps),
            Operand::Dst => format!("->{}", stream(i.dst, &[])),
        };
        s.push(' ');
        s.push_str(&tok);
    }
    s
}

/// Producers of a slot's first and second sources, in stream-group order.
pub fn source_deps(s: &Slot) -> (Vec<Producer>, Vec<Producer>) {
    let of = |k: DepKind| {
        s.deps
            .iter()
            .filter(|d| d.kind == k)
            .map(|d| (d.on, d.group))
            .collect()
    };
    (of(DepKind::Src), of(DepKind::Src2))
}

/// Prints a slot's instruction with the producers of its sources.
pub fn format_slot(s: &Slot) -> String {
    let (a, b) = source_deps(s);
    format_instr(&s.instr, &a, &b)
}

/// Prints a program as assembly.
pub fn disassemble(p: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "; lpu program, assembly form. See isa-spec/ISA.md.");
    let _ = writeln!(out, ".format {FORMAT_VERSION}");
    let _ = writeln!(out, ".model {}", quote(&p.model));
    let chip = ron::to_string(&p.chip).unwrap_or_default();
    let _ = writeln!(out, ".chip {chip}");
    for (k, n) in p.nodes.iter().enumerate() {
        let _ = writeln!(out, ".node {k} {} {}", quote(&n.name), quote(&n.op));
    }
    for (k, t) in p.perm_tables.iter().enumerate() {
        let list: Vec<String> = t.iter().map(|x| x.to_string()).collect();
        let _ = writeln!(out, ".perm {k} {}", list.join(","));
    }
    for (dir, bs) in [("input", &p.inputs), ("output", &p.outputs)] {
        for b in bs {
            let shape: Vec<String> = b.shape.iter().map(|x| x.to_string()).collect();
            let _ = write!(
                out,
                ".{dir} {} {} [{}] {}x{}",
                quote(&b.name),
                b.dtype,
                shape.join(","),
                b.rows,
                b.cols
            );
            if !b.view.is_empty() {
                let v: Vec<String> = b.view.iter().map(|x| x.to_string()).collect();
                let _ = write!(out, " view={}", v.join(","));
            }
            if !b.layout.is_empty() {
                let l: Vec<String> = b.layout.iter().map(|x| x.to_string()).collect();
                let _ = write!(out, " layout={}", l.join(","));
            }
            for v in &b.vectors {
                let _ = write!(out, " {}", loc(v));
            }
            out.push('\n');
        }
    }
    let times = p.issue_times().unwrap_or_default();
    let mut cycle_of = BTreeMap::new();
    for t in &times {
        if t.repeat == 0 {
            cycle_of.insert((t.queue, t.slot), t.cycle);
        }
    }
    for (qi, q) in p.queues.iter().enumerate() {
        let _ = writeln!(out, ".queue {}", q.queue);
        for (si, s) in q.slots.iter().enumerate() {
            let mut line = format!("  i{} {}", s.id, format_slot(s));
            if let Some(n) = s.node {
                let _ = write!(line, " node={n}");
            }
            let after: Vec<String> = s
                .deps
                .iter()
                .filter_map(|d| match d.kind {
                    DepKind::Order(g) => Some(format!("i{}{:+}", d.on, g)),
                    _ => None,
                })
                .collect();
            if !after.is_empty() {
                let _ = write!(line, " after={}", after.join(","));
            }
            let mut comment = Vec::new();
            if let Some(c) = cycle_of.get(&(qi as u32, si as u32)) {
                comment.push(format!("c={c}"));
            }
            if let Some(n) = s.node.and_then(|n| p.nodes.get(n as usize)) {
                comment.push(n.name.clone());
            }
            if !comment.is_empty() {
                let pad = 48usize.saturating_sub(line.len());
                let _ = write!(line, "{:pad$} ; {}", "", comment.join(" "));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    for m in &p.memory {
        let _ = writeln!(
            out,
            ".data {} {} {}",
            loc(&m.at).replace(':', " "),
            m.values.dtype(),
            hex(&m.values.to_le_bytes())
        );
    }
    out
}

/// Splits a line into tokens; a token starting with `"` runs to its closing
/// unescaped quote.
fn tokens(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated string".into());
            }
            i += 1;
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        out.push(&line[start..i]);
    }
    Ok(out)
}

fn unquote(tok: &str) -> Result<String, String> {
    ron::from_str::<String>(tok).map_err(|_| format!("expected a quoted string, found {tok}"))
}

fn parse_int(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = match body.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16),
        None => body.parse::<i64>(),
    }
    .map_err(|_| format!("expected an integer, found '{s}'"))?;
    Ok(if neg { -v } else { v })
}

fn parse_loc(s: &str) -> Result<VecLoc, String> {
    let (q, a) = s
        .split_once(':')
        .ok_or_else(|| format!("expected mem@SLICE:ADDR, found '{s}'"))?;
    let slice = q
        .strip_prefix("mem@")
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("expected mem@SLICE, found '{q}'"))?;
    let addr = u32::try_from(parse_int(a)?).map_err(|_| format!("address out of range: {a}"))?;
    Ok(VecLoc { slice, addr })
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::from_name(s).ok_or_else(|| format!("unknown type '{s}' (expected f32, f16, i8 or i32)"))
}

fn parse_stream(s: &str) -> Result<(StreamRef, Vec<Producer>), String> {
    let (st, deps) = match s.split_once('<') {
        Some((a, b)) => {
            let ids = b
                .split(',')
                .map(|x| {
                    let body = x.strip_prefix('i')?;
                    let (id, group) = body.split_once('.').unwrap_or((body, "0"));
                    Some((id.parse().ok()?, group.parse().ok()?))
                })
                .collect::<Option<Vec<Producer>>>()
                .ok_or_else(|| {
                    format!("expected producer ids like <i12, <i12,i13 or <i12.3, found '<{b}'")
                })?;
            (a, ids)
        }
        None => (s, vec![]),
    };
    let r =
        StreamRef::parse(st).ok_or_else(|| format!("expected a stream like s3e, found '{st}'"))?;
    Ok((r, deps))
}

fn parse_slot(toks: &[&str]) -> Result<Slot, String> {
    let id = toks[0]
        .strip_prefix('i')
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("expected an instruction id like i12, found '{}'", toks[0]))?;
    let m = toks.get(1).ok_or("missing mnemonic")?;
    let mut parts = m.split('.');
    let mn = parts.next().unwrap_or_default();
    let op = Opcode::from_mnemonic(mn).ok_or_else(|| format!("unknown mnemonic '{mn}'"))?;
    let info = op.info();
    let mut instr = Instr::new(op);
    let types: Vec<&str> = parts.collect();
    let want = match info.typing {
        Typing::None => 0,
        Typing::One => 1,
        Typing::Two => 2,
    };
    if types.len() != want {
        return Err(format!("{mn} takes {want} type suffix(es), found '{m}'"));
    }
    if want >= 1 {
        instr.ty = parse_dtype(types[0])?;
        instr.to = instr.ty;
    }
    if want == 2 {
        instr.to = parse_dtype(types[1])?;
    }
    let mut deps = crate::program::Deps::new();
    let mut rest = toks[2..].iter();
    for o in info.operands {
        let tok = *rest
            .next()
            .ok_or_else(|| format!("{mn}: missing operand {o:?}"))?;
        let kv = |key: &str| -> Result<&str, String> {
            tok.strip_prefix(key)
                .and_then(|x| x.strip_prefix('='))
                .ok_or_else(|| format!("{mn}: expected {key}=..., found '{tok}'"))
        };
        match o {
            Operand::Count => instr.arg = parse_int(kv("n")?)?,
            Operand::Stride => instr.arg2 = parse_int(kv("d")?)?,
            Operand::Addr => instr.arg = parse_int(kv("a")?)?,
            Operand::Row => instr.arg = parse_int(kv("row")?)?,
            Operand::Acc => instr.arg = parse_int(kv("acc")?)?,
            Operand::Shift => instr.arg = parse_int(kv("k")?)?,
            Operand::Table => instr.arg = parse_int(kv("tab")?)?,
            Operand::Zp => instr.arg2 = parse_int(kv("zp")?)?,
            Operand::Rows => instr.arg2 = parse_int(kv("rows")?)?,
            Operand::Format => {
                let v = kv("fmt")?;
                instr.arg = match crate::narrow::Format::from_name(v) {
                    Some(f) => f.code(),
                    None => {
                        parse_int(v).map_err(|_| format!("{mn}: unknown narrow format '{v}'"))?
                    }
                }
            }
            Operand::Sat => instr.arg2 = parse_int(kv("sat")?)?,
            Operand::Lo => instr.arg2 = parse_int(kv("lo")?)?,
            Operand::Window => instr.imm = parse_int(kv("n")?)? as f64,
            Operand::Mode => {
                instr.accumulate = match kv("mode")? {
                    "add" => true,
                    "set" => false,
                    x => return Err(format!("{mn}: mode must be set or add, found '{x}'")),
                }
            }
            Operand::Imm | Operand::Scale => {
                let key = if *o == Operand::Imm { "imm" } else { "scale" };
                let v = kv(key)?;
                instr.imm = v
                    .parse()
                    .map_err(|_| format!("{mn}: expected a number, found '{v}'"))?;
            }
            Operand::Src | Operand::Src2 => {
                let (st, dep) = parse_stream(tok)?;
                let multi = matches!(op, Opcode::LoadWeights | Opcode::Transpose);
                if dep.len() > 1 && (*o != Operand::Src || !multi) {
                    return Err(format!(
                        "{mn}: only the sources of lw and trn name several producers"
                    ));
                }
                let kind = if *o == Operand::Src {
                    instr.src = Some(st);
                    crate::program::DepKind::Src
                } else {
                    instr.src2 = Some(st);
                    crate::program::DepKind::Src2
                };
                deps.extend(dep.into_iter().map(|(on, group)| Dep { on, kind, group }));
            }
            Operand::Dst => {
                let s = tok
                    .strip_prefix("->")
                    .ok_or_else(|| format!("{mn}: expected ->stream, found '{tok}'"))?;
                instr.dst =
                    Some(StreamRef::parse(s).ok_or_else(|| format!("{mn}: bad stream '{s}'"))?);
            }
        }
    }
    let mut node = None;
    for tok in rest {
        if let Some(n) = tok.strip_prefix("node=") {
            node = Some(n.parse().map_err(|_| format!("bad node index '{n}'"))?);
        } else if let Some(list) = tok.strip_prefix("after=") {
            for item in list.split(',') {
                let body = item
                    .strip_prefix('i')
                    .ok_or_else(|| format!("expected i<id>+<gap>, found '{item}'"))?;
                let cut = body
                    .find(['+', '-'])
                    .ok_or_else(|| format!("expected i<id>+<gap>, found '{item}'"))?;
                let on = body[..cut]
                    .parse()
                    .map_err(|_| format!("bad id in '{item}'"))?;
                let gap = body[cut..]
                    .parse::<i32>()
                    .map_err(|_| format!("bad gap in '{item}'"))?;
                deps.push(Dep {
                    on,
                    kind: DepKind::Order(gap),
                    group: 0,
                });
            }
        } else {
            return Err(format!("{mn}: unexpected '{tok}'"));
        }
    }
    Ok(Slot {
        id,
        instr,
        node,
        deps,
    })
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err("hex data must have an even number of digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("bad hex byte '{}'", &s[i..i + 2]))
        })
        .collect()
}

/// Parses assembly into a validated program.
pub fn assemble(text: &str) -> Result<Program, AsmError> {
    let mut model = None;
    let mut chip: Option<ChipConfig> = None;
    let mut nodes = Vec::new();
    let mut perm_tables = Vec::new();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut queues: Vec<QueueProgram> = Vec::new();
    let mut memory = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let fail = |message: String| AsmError {
            line: line_no,
            message,
        };
        let body = raw.trim();
        if let Some(rest) = body.strip_prefix(".chip ") {
            chip = Some(
                ChipConfig::parse(rest, "assembly .chip line").map_err(|e| fail(e.to_string()))?,
            );
            continue;
        }
        // Strings in .model/.node/.input lines never contain ';' unescaped
        // outside quotes in practice; strip comments outside quotes.
        let code = strip_comment(body);
        if code.is_empty() {
            continue;
        }
        let toks = tokens(code).map_err(fail)?;
        let r: Result<(), String> = (|| {
            match toks[0] {
                ".format" => {
                    let v = toks.get(1).and_then(|v| v.parse::<u32>().ok());
                    if v != Some(FORMAT_VERSION) {
                        return Err(format!("this build reads .format {FORMAT_VERSION}"));
                    }
                }
                ".model" => model = Some(unquote(toks.get(1).ok_or("missing model name")?)?),
                ".node" => {
                    if toks.len() != 4 || toks[1].parse::<usize>().ok() != Some(nodes.len()) {
                        return Err(format!(".node lines must be numbered from 0 in order: expected .node {} \"name\" \"Op\"", nodes.len()));
                    }
                    nodes.push(NodeInfo {
                        name: unquote(toks[2])?,
                        op: unquote(toks[3])?,
                    });
                }
                ".perm" => {
                    if toks.len() != 3 || toks[1].parse::<usize>().ok() != Some(perm_tables.len()) {
                        return Err(".perm lines must be numbered from 0 in order".into());
                    }
                    let t = toks[2]
                        .split(',')
                        .map(|x| x.parse::<u16>().map_err(|_| format!("bad lane '{x}'")))
                        .collect::<Result<Vec<_>, _>>()?;
                    perm_tables.push(t);
                }
                ".input" | ".output" => {
                    if toks.len() < 5 {
                        return Err(format!(
                            "{} needs name, type, shape and rows x cols",
                            toks[0]
                        ));
                    }
                    let shape_s = toks[3]
                        .strip_prefix('[')
                        .and_then(|x| x.strip_suffix(']'))
                        .ok_or("shape must look like [1,784]")?;
                    let shape = if shape_s.is_empty() {
                        vec![]
                    } else {
                        shape_s
                            .split(',')
                            .map(|x| {
                                x.parse::<usize>()
                                    .map_err(|_| format!("bad dimension '{x}'"))
                            })
                            .collect::<Result<Vec<_>, _>>()?
                    };
                    let (r, c) = toks[4].split_once('x').ok_or("expected ROWSxCOLS")?;
                    let list = |l: &str, what: &str| {
                        l.split(',')
                            .map(|x| {
                                x.parse::<usize>()
                                    .map_err(|_| format!("bad {what} value '{x}'"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    };
                    let (mut view, mut layout, mut first_loc) = (vec![], vec![], 5);
                    while let Some(t) = toks.get(first_loc) {
                        if let Some(v) = t.strip_prefix("view=") {
                            view = list(v, "view")?;
                        } else if let Some(l) = t.strip_prefix("layout=") {
                            layout = list(l, "layout")?;
                        } else {
                            break;
                        }
                        first_loc += 1;
                    }
                    let b = Binding {
                        layout,
                        view,
                        name: unquote(toks[1])?,
                        dtype: parse_dtype(toks[2])?,
                        shape,
                        rows: r.parse().map_err(|_| "bad rows")?,
                        cols: c.parse().map_err(|_| "bad cols")?,
                        vectors: toks[first_loc..]
                            .iter()
                            .map(|t| parse_loc(t))
                            .collect::<Result<_, _>>()?,
                    };
                    if toks[0] == ".input" {
                        inputs.push(b)
                    } else {
                        outputs.push(b)
                    }
                }
                ".queue" => {
                    let q = toks
                        .get(1)
                        .and_then(|q| QueueId::parse(q))
                        .ok_or("expected a queue like mem@3, vxm@47.2 or icu")?;
                    queues.push(QueueProgram {
                        queue: q,
                        slots: vec![],
                    });
                }
                ".data" => {
                    if toks.len() != 5 {
                        return Err(".data needs mem@SLICE ADDR TYPE HEX".into());
                    }
                    let at = parse_loc(&format!("{}:{}", toks[1], toks[2]))?;
                    let dtype = parse_dtype(toks[3])?;
                    let values = Values::from_le_bytes(dtype, &parse_hex(toks[4])?)
                        .ok_or("data length is not a whole number of elements")?;
                    memory.push(MemInit { at, values });
                }
                t if t.starts_with('i') => {
                    let q = queues
                        .last_mut()
                        .ok_or("instruction before any .queue line")?;
                    q.slots.push(parse_slot(&toks)?);
                }
                t => return Err(format!("unknown directive '{t}'")),
            }
            Ok(())
        })();
        r.map_err(fail)?;
    }
    let p = Program {
        model: model.ok_or(AsmError {
            line: 0,
            message: "missing .model line".into(),
        })?,
        chip: chip.ok_or(AsmError {
            line: 0,
            message: "missing .chip line".into(),
        })?,
        nodes,
        perm_tables,
        inputs,
        outputs,
        queues,
        memory,
    };
    p.validate().map_err(|e| AsmError {
        line: 0,
        message: e.to_string(),
    })?;
    Ok(p)
}

fn strip_comment(s: &str) -> &str {
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            ';' if !in_str => return s[..i].trim_end(),
            _ => {}
        }
    }
    s
}
