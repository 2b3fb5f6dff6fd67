//! Writes a [`GraphFile`] as `.graph` text in the layout of the hand-written
//! examples: a `//` comment header, then one line per input, output,
//! initializer and node. The text is a pure function of the file (maps are
//! ordered, floats printed in their shortest round-trip form), so the same
//! model gives the same bytes on every run and platform, and parsing it
//! gives back an equal [`GraphFile`].

use std::fmt::Write;

use lpu_isa::DType;

use crate::format::{Dist, GraphFile, InitData, Initializer, ValueInfo};
use crate::ir::{AttrValue, Node};

/// `g` as `.graph` text, preceded by `header` with every line commented
/// (`// `; an empty line becomes `//`).
pub fn render(g: &GraphFile, header: &str) -> String {
    let mut s = String::new();
    for line in header.lines() {
        if line.is_empty() {
            s.push_str("//\n");
        } else {
            let _ = writeln!(s, "// {line}");
        }
    }
    let _ = writeln!(s, "Graph(");
    let _ = writeln!(s, "  name: {},", string(&g.name));
    list(&mut s, "inputs", g.inputs.iter().map(value_info));
    list(&mut s, "outputs", g.outputs.iter().map(value_info));
    list(
        &mut s,
        "initializers",
        g.initializers.iter().map(initializer),
    );
    list(&mut s, "nodes", g.nodes.iter().map(node));
    s.push_str(")\n");
    s
}

fn list(s: &mut String, field: &str, items: impl Iterator<Item = String>) {
    let _ = writeln!(s, "  {field}: [");
    for item in items {
        let _ = writeln!(s, "    {item},");
    }
    s.push_str("  ],\n");
}

/// A RON string literal.
fn string(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A float in its shortest round-trip decimal form, always with a `.`.
fn float(v: f64) -> String {
    let s = format!("{v}");
    if v.is_finite() && !s.contains('.') {
        format!("{s}.0")
    } else {
        s
    }
}

/// Like [`float`] for an `f32` attribute.
fn float32(v: f32) -> String {
    let s = format!("{v}");
    if v.is_finite() && !s.contains('.') {
        format!("{s}.0")
    } else {
        s
    }
}

fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(", ")
}

fn dims(shape: &[usize]) -> String {
    format!("[{}]", join(shape, |d| d.to_string()))
}

fn value_info(v: &ValueInfo) -> String {
    let mut s = format!("ValueInfo(name: {}", string(&v.name));
    if let Some(d) = v.dtype {
        let _ = write!(s, ", dtype: {d:?}");
    }
    if let Some(shape) = &v.shape {
        let _ = write!(s, ", shape: {}", dims(shape));
    }
    s.push(')');
    s
}

fn dist(d: &Dist) -> String {
    match d {
        Dist::Uniform { low, high } => {
            format!("Uniform(low: {}, high: {})", float(*low), float(*high))
        }
        Dist::Normal { mean, std } => {
            format!("Normal(mean: {}, std: {})", float(*mean), float(*std))
        }
    }
}

/// Inline values: integers for integer element types.
fn data(dtype: DType, d: &InitData) -> String {
    match d {
        InitData::Inline(v) => {
            let int = matches!(dtype, DType::I8 | DType::I32);
            format!(
                "Inline([{}])",
                join(v, |x| if int && x.fract() == 0.0 {
                    format!("{}", *x as i64)
                } else {
                    float(*x)
                })
            )
        }
        InitData::File(p) => format!("File({})", string(p)),
        InitData::Random { seed, dist: d } => format!("Random(seed: {seed}, dist: {})", dist(d)),
    }
}

fn initializer(i: &Initializer) -> String {
    format!(
        "Initializer(name: {}, dtype: {:?}, shape: {}, data: {})",
        string(&i.name),
        i.dtype,
        dims(&i.shape),
        data(i.dtype, &i.data)
    )
}

fn attr(v: &AttrValue) -> String {
    match v {
        AttrValue::Int(x) => format!("Int({x})"),
        AttrValue::Float(x) => format!("Float({})", float32(*x)),
        AttrValue::Ints(x) => format!("Ints([{}])", join(x, |i| i.to_string())),
        AttrValue::Floats(x) => format!("Floats([{}])", join(x, |f| float32(*f))),
        AttrValue::String(x) => format!("String({})", string(x)),
        // Kinds the zoo does not write, in RON's compact form.
        other => ron::to_string(other).expect("attribute values serialize"),
    }
}

fn node(n: &Node) -> String {
    let mut s = format!(
        "Node(name: {}, op_type: {}, inputs: [{}], outputs: [{}]",
        string(&n.name),
        string(&n.op_type),
        join(&n.inputs, |i| string(i)),
        join(&n.outputs, |o| string(o)),
    );
    if !n.attributes.is_empty() {
        let attrs: Vec<String> = n
            .attributes
            .iter()
            .map(|(k, v)| format!("{}: {}", string(k), attr(v)))
            .collect();
        let _ = write!(s, ", attributes: {{{}}}", attrs.join(", "));
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip() {
        for v in [
            0.0,
            1.0,
            -0.1,
            1e-12,
            123456789.0,
            0.03571428571428571,
            1e300,
        ] {
            assert_eq!(float(v).parse::<f64>().unwrap(), v);
            assert!(float(v).contains('.'));
        }
        for v in [1e-12f32, 1e-5, 0.5, 3.0] {
            assert_eq!(float32(v).parse::<f32>().unwrap(), v);
        }
        assert_eq!(string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
