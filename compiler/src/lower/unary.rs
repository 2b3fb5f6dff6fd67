//! Elementwise operators that the VXM has no single instruction for, built
//! from the instructions it has (`add sub mul max min addi muli relu neg abs
//! exp tanh rsqrt`), as expression trees over lane vectors ([`Ex`]).
//!
//! A group is a tree (every value is consumed once), so an expression that
//! needs a value twice either rereads it from SRAM (an input is simply read
//! again) or computes it in an earlier *pass* that writes a temporary tensor
//! (`T0`, `T1`, ...), which the next pass reads as often as it needs. Costs
//! below are per output vector: VXM instructions, SRAM reads, passes (each
//! pass is one group ending in one write).
//!
//! | op | lowering | cost / vector | error vs the reference |
//! |---|---|---|---|
//! | Neg, Abs, Exp, Tanh | `neg`, `abs`, `exp`, `tanh` | 1 op | exact (same f32 functions) |
//! | Sigmoid | `0.5 * tanh(0.5 x) + 0.5` | 4 ops | a few ulp; underflows to 0 below about -17 where the reference gives < 4e-8 |
//! | Silu | `x * sigmoid(x)` (x read twice) | 5 ops, 2 reads | as Sigmoid |
//! | HardSigmoid, HardSwish | `relu(min(alpha x + beta, 1))` (a constant row of ones), HardSwish times x | 4 / 5 ops | exact / 1 rounding |
//! | LeakyRelu | `relu(x) - alpha * relu(-x)` | 5 ops, 2 reads | exact |
//! | Clip (float, int8, int32) | `min(max(x, lo), hi)` with constant rows | 2 ops | exact |
//! | Div by a constant | `mul` by the reciprocal (`muli` for a scalar, a row of reciprocals otherwise) | 1 op | the product `a * (1/b)` rounds twice: within about 1.5 ulp of `a / b` |
//! | Reciprocal, Div by a computed tensor | pass 1: `R = rsqrt(abs(b))`; pass 2: `(((b * R) * R) * R) * R` (= sign(b) / abs(b), no intermediate overflow), times `a` for Div | 2 passes, 6 ops, 5 reads | about 4 ulp (rsqrt rounds once, four products) |
//! | Sqrt | `x * rsqrt(x + 1e-30)` (0 gives 0, negatives NaN) | 3 ops, 2 reads | about 2 ulp; inputs below about 1e-22 are off by at most 1e-15 |
//! | Equal, Less, Greater (f32, f16, int8, int32; result int8 0/1; with the broadcast operand first, the mirrored comparison with the operands swapped) | `d = a - b` (`b - a` for Less), floats times 2^127 twice, then `min(max(., 0), 1)` (Greater, Less) or `1 - min(|d|, 1)` (Equal), `cvt` to int8: a nonzero float difference, even a subnormal one, reaches 1, an integer one is at least 1 (int8 subtraction saturates, keeping the sign); f32 `max`/`min` drop NaN, so NaN compares false | 4-7 ops | exact, except `inf == inf` (the difference is NaN: false) and int32 differences beyond 2^31 (they wrap) |
//! | Pow (constant exponent) | 1: copy; 2, 3, 4: products of rereads; 0.5: Sqrt; -0.5: `rsqrt`; -1: Reciprocal; 0.25, 0.75, 1.5 and their negatives: products of `rsqrt`/Sqrt of rereads (LRN's `beta`); -2: Reciprocal of the square | 1-6 ops | 1-4 roundings |
//! | Erf | Abramowitz-Stegun 7.1.26 (`|err| < 1.5e-7`): `t = 1/(1 + p|x|)` as `rsqrt(u)^2` (pass 1 writes `t`), pass 2: `erf(|x|) = 1 - t(a1 + t(a2 + t(a3 + t(a4 + t a5)))) e^(-x^2)`, sign restored by `clamp(1e30 x, -1, 1)` | 2 passes, ~22 ops, ~9 reads | < 1.5e-7 + f32 rounding (~5e-7 absolute) |
//! | Gelu (exact) | `relu(x) - 0.5 |x| q(x / sqrt 2)` with `q(z) = erfc(|z|)` from 7.1.26 as for Erf (equal to `x Phi(x)` for either sign) | 2 passes, ~22 ops, ~9 reads | < 1e-7 x |x| + rounding |
//! | Gelu (tanh) | `(0.5 x)(1 + tanh(c (x + 0.044715 x^3)))`, the reference's own order | 10 ops, 5 reads | exact (same f32 ops) |
//!
//! **Fusion.** The one-input single-pass forms (Neg, Abs, Exp, Tanh,
//! Sigmoid, HardSigmoid, Clip, Div by a constant) fuse into their
//! producer's chain as tail steps (a constant row is read beside the chain).

use super::layout::{broadcast_kind, column_axis, Broadcast};
use super::{Gb, Lowerer, Place, TailKind, TailOp};
use crate::alloc::TensorLoc;
use crate::CompileError;
use lpu_graph::{Graph, Node};
use lpu_isa::{DType, Instr, Opcode, Values};
use std::collections::BTreeSet;

/// Operators lowered here.
const UNARY: &[&str] = &[
    "Sigmoid",
    "Tanh",
    "Exp",
    "Sqrt",
    "Reciprocal",
    "Div",
    "Erf",
    "Gelu",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Silu",
    "Clip",
    "Pow",
    "Neg",
    "Abs",
    "Equal",
    "Less",
    "Greater",
];

/// Abramowitz-Stegun 7.1.26: `p` and `a1..a5`.
const AS_P: f64 = 0.327_591_1;
const AS_A: [f64; 5] = [
    0.254_829_592,
    -0.284_496_736,
    1.421_413_741,
    -1.453_152_027,
    1.061_405_429,
];

/// Whether `op` is lowered by [`Lowerer::lower_elementwise`].
pub(super) fn is_unary(op: &str) -> bool {
    UNARY.contains(&op)
}

/// An elementwise expression over the lane vectors of one output position.
#[derive(Clone, Debug)]
pub(super) enum Ex {
    /// Input `k` (row-broadcast when it has a single row).
    In(usize),
    /// The temporary written by pass `k`.
    Tmp(usize),
    /// Temporary `k` holding one vector per row (read for every column
    /// tile).
    PerRow(usize),
    /// A constant row (one row of the output's columns), stored once or
    /// replicated ([`TensorLoc::replicated`]: row `r` reads copy
    /// `r % copies`).
    Row(TensorLoc),
    /// A one-operand VXM instruction.
    Un(Instr, Box<Ex>),
    /// A two-operand VXM instruction.
    Bin(Instr, Box<Ex>, Box<Ex>),
}

/// Expression builders for one element type.
#[derive(Clone, Copy)]
pub(super) struct B(pub(super) DType);

impl B {
    /// A one-operand instruction on `a`.
    pub(super) fn un(self, op: Opcode, a: Ex) -> Ex {
        Ex::Un(Instr::new(op).typed(self.0), Box::new(a))
    }
    /// A two-operand instruction on `a` and `b`.
    pub(super) fn bin(self, op: Opcode, a: Ex, b: Ex) -> Ex {
        Ex::Bin(Instr::new(op).typed(self.0), Box::new(a), Box::new(b))
    }
    /// An immediate-operand instruction (`addi`, `muli`) on `a`.
    pub(super) fn imm(self, op: Opcode, a: Ex, v: f64) -> Ex {
        Ex::Un(
            Instr {
                imm: v,
                ..Instr::new(op).typed(self.0)
            },
            Box::new(a),
        )
    }
    /// `a * v`.
    pub(super) fn muli(self, a: Ex, v: f64) -> Ex {
        self.imm(Opcode::MulImm, a, v)
    }
    /// `a + v`.
    pub(super) fn addi(self, a: Ex, v: f64) -> Ex {
        self.imm(Opcode::AddImm, a, v)
    }
    /// `a * b`.
    pub(super) fn mul(self, a: Ex, b: Ex) -> Ex {
        self.bin(Opcode::Mul, a, b)
    }
}

/// Whether `c`, consuming the chain value `t`, can be a fused tail step: a
/// float single-pass form of one input (see the module doc).
pub(super) fn fusible(g: &Graph, cl: &BTreeSet<String>, c: &Node, t: &str) -> bool {
    if c.input(0) != Some(t) || !g.info(t).is_some_and(|i| i.dtype.is_float()) {
        return false;
    }
    let konst = |k: usize| {
        c.input(k)
            .is_none_or(|x| x.is_empty() || g.initializers.get(x).is_some_and(|v| v.len() == 1))
    };
    match c.op_type.as_str() {
        "Neg" | "Abs" | "Exp" | "Tanh" | "Sigmoid" | "HardSigmoid" => true,
        "Clip" => konst(1) && konst(2),
        "Div" => {
            let Some(b) = c.input(1) else { return false };
            let shape = g.info(t).map(|i| i.shape.clone()).unwrap_or_default();
            g.initializers.contains_key(b)
                && broadcast_kind(g, cl, b, &shape, cl.contains(t)) == Broadcast::ConstRow
        }
        _ => false,
    }
}

impl<'a> Lowerer<'a> {
    /// A constant row of `cols` elements all equal to `v`, replicated
    /// ([`Lowerer::const_row`]) because every vector of a chain reads it.
    pub(super) fn fill_row(&mut self, v: f32, cols: usize, ty: DType) -> TensorLoc {
        let key = format!("#fill{v:e}x{cols}{ty}");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let values = match ty {
            DType::F16 => Values::F16(vec![half::f16::from_f32(v); cols]),
            _ => Values::F32(vec![v; cols]),
        };
        let loc = self.const_row(&format!("constant row {v}"), &values);
        self.locs.insert(key, loc.clone());
        loc
    }

    /// [`Lowerer::fill_row`] for any element type (integers: `v` truncated).
    fn typed_row(&mut self, v: f32, cols: usize, ty: DType) -> TensorLoc {
        if ty.is_float() {
            return self.fill_row(v, cols, ty);
        }
        let key = format!("#fill{v:e}x{cols}{ty}");
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let values = match ty {
            DType::I8 => Values::I8(vec![v as i8; cols]),
            _ => Values::I32(vec![v as i32; cols]),
        };
        let loc = self.const_row(&format!("constant row {v} ({ty})"), &values);
        self.locs.insert(key, loc.clone());
        loc
    }

    /// The columns of a result of `shape` stored like tensor `t`.
    fn cols_of(&self, t: &str, shape: &[usize]) -> usize {
        let col = column_axis(shape.len(), self.cl.contains(t));
        shape.get(col).copied().unwrap_or(1)
    }

    /// The fused tail steps of elementwise node `n` applied to chain value
    /// `t`, or `None` when `n` is not lowered here.
    pub(super) fn unary_tail(
        &mut self,
        n: &Node,
        t: &str,
    ) -> Result<Option<Vec<TailOp>>, CompileError> {
        if !is_unary(&n.op_type) {
            return Ok(None);
        }
        let shape = self.shape_vec(t)?;
        let ty = self.g.info(t).map(|i| i.dtype).unwrap_or(DType::F32);
        let cols = self.cols_of(t, &shape);
        let (passes, extra) = self.recipe(n, ty, cols, &shape, self.cl.contains(t))?;
        if passes.len() != 1 || !extra.is_empty() {
            return self.unsupported("internal: a multi-pass form was fused");
        }
        let mut steps = Vec::new();
        flatten(&passes[0], &mut steps)?;
        Ok(Some(
            steps
                .into_iter()
                .map(|kind| TailOp {
                    node: self.node,
                    kind,
                })
                .collect(),
        ))
    }

    /// The passes computing node `n` on input 0 (`In(0)`) of type `ty` and
    /// `cols` columns (result `shape`, channels-last when `cl`), and any
    /// further inputs (`In(1)`, ...).
    fn recipe(
        &mut self,
        n: &Node,
        ty: DType,
        cols: usize,
        shape: &[usize],
        cl: bool,
    ) -> Result<(Vec<Ex>, Vec<TensorLoc>), CompileError> {
        let b = B(ty);
        let x = || Ex::In(0);
        let sigmoid = |x: Ex| b.addi(b.muli(b.un(Opcode::Tanh, b.muli(x, 0.5)), 0.5), 0.5);
        let mut extra = Vec::new();
        let passes = match n.op_type.as_str() {
            "Neg" => vec![b.un(Opcode::Neg, x())],
            "Abs" => vec![b.un(Opcode::Abs, x())],
            "Exp" => vec![b.un(Opcode::Exp, x())],
            "Tanh" => vec![b.un(Opcode::Tanh, x())],
            "Sigmoid" => vec![sigmoid(x())],
            "Silu" => vec![b.mul(x(), sigmoid(x()))],
            "HardSigmoid" | "HardSwish" => {
                let (alpha, beta) = if n.op_type == "HardSigmoid" {
                    (
                        n.attr_float("alpha", 0.2)? as f64,
                        n.attr_float("beta", 0.5)? as f64,
                    )
                } else {
                    ((1.0f32 / 6.0) as f64, 0.5)
                };
                let one = Ex::Row(self.fill_row(1.0, cols, ty));
                let hs = b.un(
                    Opcode::Relu,
                    b.bin(Opcode::Min, b.addi(b.muli(x(), alpha), beta), one),
                );
                if n.op_type == "HardSwish" {
                    vec![b.mul(x(), hs)]
                } else {
                    vec![hs]
                }
            }
            "LeakyRelu" => {
                let alpha = n.attr_float("alpha", 0.01)? as f64;
                let neg = b.muli(b.un(Opcode::Relu, b.un(Opcode::Neg, x())), alpha);
                vec![b.bin(Opcode::Sub, b.un(Opcode::Relu, x()), neg)]
            }
            "Clip" => {
                let lo = self.scalar_const(n.input(1).filter(|s| !s.is_empty()), "min")?;
                let hi = self.scalar_const(n.input(2).filter(|s| !s.is_empty()), "max")?;
                let mut e = x();
                if let Some(lo) = lo {
                    e = b.bin(Opcode::Max, e, Ex::Row(self.typed_row(lo as f32, cols, ty)));
                }
                if let Some(hi) = hi {
                    e = b.bin(Opcode::Min, e, Ex::Row(self.typed_row(hi as f32, cols, ty)));
                }
                vec![e]
            }
            "Equal" | "Less" | "Greater" => {
                // The VXM has no compare: a difference pushed to +-inf (two
                // multiplies by 2^127, so that even a subnormal difference
                // passes 1) and clamped to 0..1 is the step function; f32
                // `max`/`min` drop a NaN, so a NaN operand compares false.
                // Integers: the difference itself is at least 1 when the
                // operands differ (int8 subtraction saturates, keeping the
                // sign; int32 wraps beyond 2^31).
                let bn = self.input_name(n, 1)?;
                extra.push(self.broadcast_operand(&bn, shape, cl)?);
                let float = ty.is_float();
                let big = |e: Ex| {
                    if float {
                        b.muli(b.muli(e, 2f64.powi(127)), 2f64.powi(127))
                    } else {
                        e
                    }
                };
                let (zero, one) = (self.typed_row(0.0, cols, ty), self.typed_row(1.0, cols, ty));
                let clamp01 = |e: Ex| {
                    b.bin(
                        Opcode::Min,
                        b.bin(Opcode::Max, e, Ex::Row(zero.clone())),
                        Ex::Row(one.clone()),
                    )
                };
                let r = match n.op_type.as_str() {
                    "Greater" => clamp01(big(b.bin(Opcode::Sub, x(), Ex::In(1)))),
                    "Less" => clamp01(big(b.bin(Opcode::Sub, Ex::In(1), x()))),
                    // 1 - min(|a - b| * 2^254, 1).
                    _ => b.addi(
                        b.muli(
                            b.bin(
                                Opcode::Min,
                                big(b.un(Opcode::Abs, b.bin(Opcode::Sub, x(), Ex::In(1)))),
                                Ex::Row(one.clone()),
                            ),
                            -1.0,
                        ),
                        1.0,
                    ),
                };
                if ty == DType::I8 {
                    vec![r]
                } else {
                    let mut cvt = Instr::new(Opcode::Convert).typed(ty);
                    cvt.to = DType::I8;
                    vec![Ex::Un(cvt, Box::new(r))]
                }
            }
            "Reciprocal" => reciprocal(b, x(), None),
            "Sqrt" => vec![sqrt(b, x())],
            "Pow" => {
                let Some(p) = self.scalar_const(n.input(1), "exponent")? else {
                    return self.unsupported("Pow needs an exponent");
                };
                match p {
                    1.0 => vec![b.un(Opcode::Mov, x())],
                    2.0 => vec![b.mul(x(), x())],
                    3.0 => vec![b.mul(b.mul(x(), x()), x())],
                    4.0 => vec![b.mul(b.mul(x(), x()), b.mul(x(), x()))],
                    0.5 => vec![sqrt(b, x())],
                    -0.5 => vec![b.un(Opcode::Rsqrt, x())],
                    -1.0 => reciprocal(b, x(), None),
                    0.25 => vec![sqrt(b, sqrt(b, x()))],
                    -0.25 => vec![sqrt(b, b.un(Opcode::Rsqrt, x()))],
                    0.75 => vec![b.mul(sqrt(b, x()), sqrt(b, sqrt(b, x())))],
                    -0.75 => vec![b.mul(
                        b.un(Opcode::Rsqrt, x()),
                        sqrt(b, b.un(Opcode::Rsqrt, x())),
                    )],
                    1.5 => vec![b.mul(x(), sqrt(b, x()))],
                    -1.5 => vec![b.mul(
                        b.mul(b.un(Opcode::Rsqrt, x()), b.un(Opcode::Rsqrt, x())),
                        b.un(Opcode::Rsqrt, x()),
                    )],
                    -2.0 => reciprocal(b, b.mul(x(), x()), None),
                    _ => {
                        return self.unsupported(&format!(
                            "Pow with exponent {p} (lowered: 1, 2, 3, 4, +-0.25, +-0.5, +-0.75, -1, +-1.5, -2)"
                        ))
                    }
                }
            }
            "Div" => {
                let bn = self.input_name(n, 1)?;
                if let Some(c) = self.constant(&bn) {
                    if c.len() == 1 {
                        vec![b.muli(x(), 1.0 / c.values.get_f64(0))]
                    } else {
                        match broadcast_kind(self.g, &self.cl, &bn, shape, cl) {
                            Broadcast::ConstRow => {
                                let varies = c.len() > 1;
                                let idx: Vec<usize> =
                                    (0..cols).map(|i| if varies { i } else { 0 }).collect();
                                let v = c.values.gather(&idx);
                                let r: Vec<f32> =
                                    (0..cols).map(|i| (1.0 / v.get_f64(i)) as f32).collect();
                                let values = match ty {
                                    DType::F16 => Values::F16(
                                        r.iter().map(|x| half::f16::from_f32(*x)).collect(),
                                    ),
                                    _ => Values::F32(r),
                                };
                                let row =
                                    self.const_row(&format!("{bn} (reciprocal row)"), &values);
                                vec![b.mul(x(), Ex::Row(row))]
                            }
                            _ => {
                                extra.push(self.broadcast_operand(&bn, shape, cl)?);
                                reciprocal(b, Ex::In(1), Some(x()))
                            }
                        }
                    }
                } else {
                    extra.push(self.broadcast_operand(&bn, shape, cl)?);
                    reciprocal(b, Ex::In(1), Some(x()))
                }
            }
            "Erf" => {
                // t = 1 / (1 + p|x|) as rsqrt(u)^2.
                let u = || b.addi(b.muli(b.un(Opcode::Abs, x()), AS_P), 1.0);
                let t = b.mul(b.un(Opcode::Rsqrt, u()), b.un(Opcode::Rsqrt, u()));
                let q = erfc_tail(b, b.muli(b.mul(x(), x()), -1.0));
                let sign = b.bin(
                    Opcode::Max,
                    b.bin(
                        Opcode::Min,
                        b.muli(x(), 1e30),
                        Ex::Row(self.fill_row(1.0, cols, ty)),
                    ),
                    Ex::Row(self.fill_row(-1.0, cols, ty)),
                );
                vec![t, b.mul(sign, b.addi(b.un(Opcode::Neg, q), 1.0))]
            }
            "Gelu" => match n.attr_string("approximate", "none")? {
                "tanh" => {
                    let c = (0.797_884_6f32) as f64;
                    let cube = b.mul(b.mul(x(), x()), x());
                    let inner = b.muli(
                        b.bin(Opcode::Add, x(), b.muli(cube, (0.044715f32) as f64)),
                        c,
                    );
                    vec![b.mul(b.muli(x(), 0.5), b.addi(b.un(Opcode::Tanh, inner), 1.0))]
                }
                "none" => {
                    // z = x / sqrt 2; t = 1 / (1 + p|z|).
                    let k = AS_P * std::f64::consts::FRAC_1_SQRT_2;
                    let u = || b.addi(b.muli(b.un(Opcode::Abs, x()), k), 1.0);
                    let t = b.mul(b.un(Opcode::Rsqrt, u()), b.un(Opcode::Rsqrt, u()));
                    // -z^2 = -x^2 / 2
                    let q = erfc_tail(b, b.muli(b.mul(x(), x()), -0.5));
                    let half_abs = b.muli(b.un(Opcode::Abs, x()), 0.5);
                    vec![
                        t,
                        b.bin(Opcode::Sub, b.un(Opcode::Relu, x()), b.mul(half_abs, q)),
                    ]
                }
                other => return self.unsupported(&format!("Gelu approximate '{other}'")),
            },
            other => {
                return self.unsupported(&format!("internal: no elementwise form for {other}"))
            }
        };
        Ok((passes, extra))
    }

    /// Lowers an elementwise node of [`UNARY`] (see the module doc).
    pub(super) fn lower_elementwise(&mut self, n: &Node) -> Result<(), CompileError> {
        // A comparison whose first operand is the broadcast one (Less(min, x)
        // in an exported Clip) is the mirrored comparison with the operands
        // swapped.
        if let ("Equal" | "Less" | "Greater", Some(a), Some(b), Some(y)) = (
            n.op_type.as_str(),
            n.input(0),
            n.input(1),
            n.outputs.first(),
        ) {
            let (sa, sb, sy) = (self.shape_vec(a)?, self.shape_vec(b)?, self.shape_vec(y)?);
            if sa != sy && sb == sy {
                let mirrored = match n.op_type.as_str() {
                    "Less" => "Greater",
                    "Greater" => "Less",
                    op => op,
                };
                let swapped = Node {
                    op_type: mirrored.into(),
                    inputs: vec![b.to_string(), a.to_string()],
                    ..n.clone()
                };
                return self.lower_elementwise(&swapped);
            }
        }
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let shape = self.shape_vec(&yn)?;
        // Comparisons and Clip also work on integers (the VXM's integer
        // sub, max and min).
        let integer_ok = matches!(n.op_type.as_str(), "Equal" | "Less" | "Greater" | "Clip")
            && matches!(x.dtype, DType::I8 | DType::I32);
        if !(x.dtype.is_float() || integer_ok) {
            return self.unsupported(&format!("{} is lowered on float tensors only", n.op_type));
        }
        if self.shape_vec(&xn)? != shape {
            return self.unsupported(
                "the first input must have the output's shape (no broadcasting of it)",
            );
        }
        let cl = self.cl.contains(&yn);
        let cols = self.cols_of(&yn, &shape);
        let (passes, extra) = self.recipe(n, x.dtype, cols, &shape, cl)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if (x.rows, x.cols) != (out.rows, out.cols) {
            return self.unsupported("input and output storage differ");
        }
        let mut ins = vec![x];
        ins.extend(extra);
        self.run_passes(&ins, &passes, &out, x_ty(&ins), &tail);
        Ok(())
    }

    /// Evaluates `passes` for every vector of `out`: each pass but the last
    /// writes a temporary of `out`'s shape in `ty`; the last goes through
    /// `tail` to `out`.
    pub(super) fn run_passes(
        &mut self,
        ins: &[TensorLoc],
        passes: &[Ex],
        out: &TensorLoc,
        ty: DType,
        tail: &[TailOp],
    ) {
        let name = self.cur().name.clone();
        let mut tmps: Vec<TensorLoc> = Vec::new();
        for k in 0..passes.len().saturating_sub(1) {
            let t = self.alloc.tensor(
                &format!("{name} (temporary {k})"),
                &[out.rows, out.cols],
                ty,
            );
            let avoid: Vec<&TensorLoc> = ins.iter().chain(tmps.iter()).collect();
            let t = apart(t, &avoid);
            tmps.push(t);
        }
        for (k, p) in passes.iter().enumerate() {
            let last = k + 1 == passes.len();
            for r in 0..out.rows {
                for j in 0..out.vpr {
                    let mut gb = self.begin();
                    let v = self.eval(&mut gb, p, ins, &tmps, r, j);
                    if last {
                        let v = self.apply_tail(&mut gb, v, r, j, tail);
                        self.write_end(&mut gb, v, out.at(r, j), out.dtype, tail);
                    } else {
                        self.write(&mut gb, v, tmps[k].at(r, j), ty);
                    }
                    self.fin(gb);
                }
            }
        }
        for t in tmps {
            self.alloc.free(&t);
        }
    }

    /// Adds the members computing `e` for vector `(r, j)`; returns the root.
    pub(super) fn eval(
        &mut self,
        gb: &mut Gb,
        e: &Ex,
        ins: &[TensorLoc],
        tmps: &[TensorLoc],
        r: usize,
        j: usize,
    ) -> u32 {
        match e {
            Ex::In(k) => {
                let t = &ins[*k];
                let at = t.for_row(r, j);
                self.read(gb, at, t.dtype)
            }
            Ex::Tmp(k) => self.read(gb, tmps[*k].at(r, j), tmps[*k].dtype),
            Ex::PerRow(k) => self.read(gb, tmps[*k].at(r, 0), tmps[*k].dtype),
            Ex::Row(t) => {
                let at = Self::row_copy(gb, t, r, j);
                self.read(gb, at, t.dtype)
            }
            Ex::Un(i, a) => {
                let a = self.eval(gb, a, ins, tmps, r, j);
                self.op(gb, i.clone(), Place::Vxm, &[a], vec![])
            }
            Ex::Bin(i, a, b) => {
                let a = self.eval(gb, a, ins, tmps, r, j);
                let b = self.eval(gb, b, ins, tmps, r, j);
                self.op(gb, i.clone(), Place::Vxm, &[a, b], vec![])
            }
        }
    }
}

/// The element type of the first input.
fn x_ty(ins: &[TensorLoc]) -> DType {
    ins[0].dtype
}

/// `sqrt(x) = x * rsqrt(x + 1e-30)` (0 at 0, NaN below 0).
fn sqrt(b: B, x: Ex) -> Ex {
    let xc = x.clone();
    b.mul(x, b.un(Opcode::Rsqrt, b.addi(xc, 1e-30)))
}

/// `1 / d` (times `num` when given) in two passes: `R = rsqrt(|d|)`, then
/// `(((d R) R) R) R` = sign(d) / |d|.
fn reciprocal(b: B, d: Ex, num: Option<Ex>) -> Vec<Ex> {
    let r = || Ex::Tmp(0);
    let first = b.un(Opcode::Rsqrt, b.un(Opcode::Abs, d.clone()));
    let mut e = b.mul(b.mul(b.mul(b.mul(d, r()), r()), r()), r());
    if let Some(num) = num {
        e = b.mul(num, e);
    }
    vec![first, e]
}

/// `q = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(neg_sq)` with `t` the
/// temporary of pass 0 (Abramowitz-Stegun 7.1.26: `erfc(|z|)` for
/// `neg_sq = -z^2`).
fn erfc_tail(b: B, neg_sq: Ex) -> Ex {
    let t = || Ex::Tmp(0);
    let mut h = b.addi(b.muli(t(), AS_A[4]), AS_A[3]);
    for a in [AS_A[2], AS_A[1], AS_A[0]] {
        h = b.addi(b.mul(h, t()), a);
    }
    let poly = b.mul(h, t());
    b.mul(poly, b.un(Opcode::Exp, neg_sq))
}

/// Turns a single-input chain (each binary step's other operand a constant
/// row) into tail steps, innermost first.
fn flatten(e: &Ex, out: &mut Vec<TailKind>) -> Result<(), CompileError> {
    let bad = || CompileError::Unsupported {
        model: String::new(),
        node: String::new(),
        op: String::new(),
        message: "internal: expression is not a single-input chain".into(),
    };
    match e {
        Ex::In(0) => Ok(()),
        Ex::Un(i, a) => {
            flatten(a, out)?;
            out.push(TailKind::Unary(i.clone()));
            Ok(())
        }
        Ex::Bin(i, a, b) => {
            let (chain, row, chain_first) = match (&**a, &**b) {
                (c, Ex::Row(r)) => (c, r, true),
                (Ex::Row(r), c) => (c, r, false),
                _ => return Err(bad()),
            };
            flatten(chain, out)?;
            out.push(TailKind::Binary {
                instr: i.clone(),
                other: row.clone(),
                chain_first,
            });
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// Spreads a group's stream traffic: while more values would pass one
/// point on one diagonal in one direction than the chip has streams (say
/// four f32 operands arriving at the VXM on one cycle from the same side,
/// which `tiny`'s 8 streams cannot carry), a `mov` on the VXM is put after
/// one of the SRAM reads involved, so it arrives a cycle earlier and the
/// last hop is local to the VXM (either direction).
#[allow(clippy::type_complexity)] // a local traffic tuple, used twice
pub(super) fn stagger(
    g: &mut crate::group::Group,
    chip: &lpu_isa::ChipConfig,
    fp: &crate::group::Floorplan,
) {
    use crate::group::{insert_mov, offsets, position};
    use lpu_isa::Dir;
    for _ in 0..16 + 8 * g.members.len() {
        let Ok(off) = offsets(g, chip, fp) else {
            return;
        };
        // (link index, dir, diagonal, segment, width)
        let traffic: Vec<(usize, Dir, i64, (u16, u16), u32)> = g
            .links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let f = &g.members[l.from as usize];
                let t = &g.members[l.to as usize];
                let (pf, pt) = (position(&f.place, fp), position(&t.place, fp));
                if pf == pt || t.instr.op == Opcode::LoadWeights {
                    return None;
                }
                let ready = off[l.from as usize] + chip.delay(f.instr.op) as i64;
                let dir = Dir::between(pf, pt);
                let diag = match dir {
                    Dir::East => ready - pf as i64,
                    Dir::West => ready + pf as i64,
                };
                Some((
                    i,
                    dir,
                    diag,
                    (pf.min(pt), pf.max(pt)),
                    f.instr.dst_width() as u32,
                ))
            })
            .collect();
        let mut fix = None;
        for a in &traffic {
            let together: Vec<&(usize, Dir, i64, (u16, u16), u32)> = traffic
                .iter()
                .filter(|b| b.1 == a.1 && b.2 == a.2 && b.3 .0 <= a.3 .1 && a.3 .0 <= b.3 .1)
                .collect();
            if together.iter().map(|b| b.4).sum::<u32>() > fp.streams {
                fix = together
                    .iter()
                    .map(|b| b.0)
                    .find(|&li| g.members[g.links[li].from as usize].instr.op == Opcode::Read);
                if fix.is_some() {
                    break;
                }
            }
        }
        let Some(li) = fix else { return };
        insert_mov(g, li);
    }
}

impl<'a> Lowerer<'a> {
    /// [`stagger`]s the group's stream traffic, then finishes it.
    pub(super) fn fin(&mut self, mut gb: Gb) -> u32 {
        stagger(&mut gb.g, self.chip, &self.fp);
        self.finish(gb)
    }

    /// A VXM step of the current node, to run on a chain's value (a tail
    /// of [`Lowerer::apply_tail`] or a fold's finishing step).
    pub(super) fn step(&self, i: Instr) -> TailOp {
        TailOp {
            node: self.node,
            kind: TailKind::Unary(i),
        }
    }

    /// For every vector `(r, j)` of `out`, one group: `value` builds the
    /// vector's result in it, the fused `tail` follows, the result is
    /// written to `out` and the group is finished with [`Lowerer::fin`].
    pub(super) fn emit_vectors(
        &mut self,
        out: &TensorLoc,
        tail: &[TailOp],
        mut value: impl FnMut(&mut Self, &mut Gb, usize, usize) -> u32,
    ) {
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let v = value(self, &mut gb, r, j);
                let v = self.apply_tail(&mut gb, v, r, j, tail);
                self.write_end(&mut gb, v, out.at(r, j), out.dtype, tail);
                self.fin(gb);
            }
        }
    }
}

/// Rearranges the vectors of freshly allocated `t` so that vector `(r, j)`
/// sits in another MEM slice than vector `(r, j)` of each of `avoid` where
/// the slices allow: a group reading both then gets two read ports instead
/// of queueing on one (the allocator's round-robin puts equal-shaped tensors
/// allocated at the same cursor in the same slices).
pub(super) fn apart(mut t: TensorLoc, avoid: &[&TensorLoc]) -> TensorLoc {
    let mut pool: std::collections::BTreeMap<u16, Vec<lpu_isa::program::VecLoc>> =
        std::collections::BTreeMap::new();
    for v in t.vectors.iter().rev() {
        pool.entry(v.slice).or_default().push(*v);
    }
    for r in 0..t.rows {
        for j in 0..t.vpr {
            let bad: Vec<u16> = avoid
                .iter()
                .filter(|a| a.vpr == t.vpr && a.rows > r)
                .map(|a| a.at(r, j).slice)
                .collect();
            let pick = pool
                .iter()
                .filter(|(s, l)| !l.is_empty() && !bad.contains(s))
                .max_by_key(|(s, l)| (l.len(), std::cmp::Reverse(**s)))
                .or_else(|| {
                    pool.iter()
                        .filter(|(_, l)| !l.is_empty())
                        .max_by_key(|(_, l)| l.len())
                })
                .map(|(s, _)| *s);
            if let Some(s) = pick {
                if let Some(v) = pool.get_mut(&s).and_then(Vec::pop) {
                    t.vectors[r * t.vpr + j] = v;
                }
            }
        }
    }
    t
}
