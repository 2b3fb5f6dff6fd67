//! Elementwise semantics of the VXM, MXM arithmetic and SXM lane moves, on
//! [`Values`] vectors. These follow `isa-spec/ISA.md` and are written apart
//! from the reference interpreter on purpose, so that the two check each
//! other.

use half::f16;
use half::slice::HalfFloatSliceExt;
use lpu_isa::{DType, Opcode, Values};
use std::borrow::Cow;

fn sat8(x: i64) -> i8 {
    x.clamp(i8::MIN as i64, i8::MAX as i64) as i8
}

/// `e.run(f)` with `f` the float operation of `op` (`a + b`, `a - b`,
/// `a * b`, max, min; NaN for any other opcode), chosen once per vector
/// rather than per element, so that each loop is a plain one the compiler
/// can vectorize.
fn with_float_op<E: Elementwise<f32>>(op: Opcode, e: E) -> E::Out {
    match op {
        Opcode::Add | Opcode::AddImm => e.run(|a, b| a + b),
        Opcode::Sub => e.run(|a, b| a - b),
        Opcode::Mul | Opcode::MulImm => e.run(|a, b| a * b),
        Opcode::Max => e.run(f32::max),
        Opcode::Min => e.run(f32::min),
        _ => e.run(|_, _| f32::NAN),
    }
}

/// [`with_float_op`] for integers, computed in i64: add, subtract and
/// multiply wrap; max, min; 0 for any other opcode.
fn with_int_op<E: Elementwise<i64>>(op: Opcode, e: E) -> E::Out {
    match op {
        Opcode::Add | Opcode::AddImm => e.run(i64::wrapping_add),
        Opcode::Sub => e.run(i64::wrapping_sub),
        Opcode::Mul | Opcode::MulImm => e.run(i64::wrapping_mul),
        Opcode::Max => e.run(i64::max),
        Opcode::Min => e.run(i64::min),
        _ => e.run(|_, _| 0),
    }
}

/// A loop over a vector, generic in the operation `f` it applies, computed
/// in type `C`.
trait Elementwise<C> {
    type Out;
    fn run(self, f: impl Fn(C, C) -> C) -> Self::Out;
}

/// Elementwise over `x` and `y`, or over `x` and the scalar `imm` when `y`
/// is `None`: each element converted `into` the computing type, combined,
/// and converted `out`.
struct Zip<'a, T, C, In, Out> {
    x: &'a [T],
    y: Option<&'a [T]>,
    imm: C,
    into: In,
    out: Out,
}

impl<T, C, U, In, Out> Elementwise<C> for Zip<'_, T, C, In, Out>
where
    T: Copy,
    C: Copy,
    U: Copy + Default,
    In: Fn(T) -> C,
    Out: Fn(C) -> U,
{
    type Out = Vec<U>;

    fn run(self, f: impl Fn(C, C) -> C) -> Vec<U> {
        let (into, out) = (&self.into, &self.out);
        match self.y {
            Some(y) => zip_wide(self.x, y, |a, b| out(f(into(a), into(b)))),
            None => {
                let b = self.imm;
                map_wide(self.x, |a| out(f(into(a), b)))
            }
        }
    }
}

/// `f` of each element of `x`, the loop compiled for the widest vectors
/// this CPU has: `pulp` picks AVX2 on x86-64 at run time, where the build
/// itself targets the baseline CPU (SSE2). For operations whose result per
/// element is the same at any width (integer arithmetic, and single IEEE
/// f32 operations and roundings: Rust never fuses a multiply and an add),
/// so the bits do not depend on the machine.
fn map_wide<A: Copy, B: Copy + Default>(x: &[A], f: impl Fn(A) -> B) -> Vec<B> {
    struct Map<'a, A, B, F> {
        x: &'a [A],
        out: &'a mut [B],
        f: F,
    }
    impl<A: Copy, B, F: Fn(A) -> B> pulp::WithSimd for Map<'_, A, B, F> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            for (o, &a) in self.out.iter_mut().zip(self.x) {
                *o = (self.f)(a);
            }
        }
    }
    let mut out = vec![B::default(); x.len()];
    pulp::Arch::new().dispatch(Map {
        x,
        out: &mut out,
        f,
    });
    out
}

/// [`map_wide`] over the pairs of `x` and `y` (as many as the shorter has).
fn zip_wide<A: Copy, B: Copy + Default>(x: &[A], y: &[A], f: impl Fn(A, A) -> B) -> Vec<B> {
    struct Map2<'a, A, B, F> {
        x: &'a [A],
        y: &'a [A],
        out: &'a mut [B],
        f: F,
    }
    impl<A: Copy, B, F: Fn(A, A) -> B> pulp::WithSimd for Map2<'_, A, B, F> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) {
            for ((o, &a), &b) in self.out.iter_mut().zip(self.x).zip(self.y) {
                *o = (self.f)(a, b);
            }
        }
    }
    let mut out = vec![B::default(); x.len().min(y.len())];
    pulp::Arch::new().dispatch(Map2 {
        x,
        y,
        out: &mut out,
        f,
    });
    out
}

/// An int8 element as the i64 it is computed in.
fn wide8(v: i8) -> i64 {
    v as i64
}

/// An int32 element as the i64 it is computed in.
fn wide32(v: i32) -> i64 {
    v as i64
}

/// An int32 result: the low 32 bits (int32 arithmetic wraps).
fn wrap32(v: i64) -> i32 {
    v as i32
}

/// An f32 element, computed as it is.
fn same32(v: f32) -> f32 {
    v
}

/// An fp16 element, computed in f32.
fn wide16(v: f16) -> f32 {
    v.to_f32()
}

/// A binary elementwise op on two vectors of the same type. int8 saturates,
/// int32 wraps, fp16 computes in fp32 and rounds once.
pub fn binary(op: Opcode, a: &Values, b: &Values) -> Result<Values, String> {
    Ok(match (a, b) {
        (Values::F32(x), Values::F32(y)) => Values::F32(with_float_op(
            op,
            Zip {
                x,
                y: Some(y),
                imm: 0.0,
                into: same32,
                out: same32,
            },
        )),
        (Values::F16(x), Values::F16(y)) => Values::F16(with_float_op(
            op,
            Zip {
                x,
                y: Some(y),
                imm: 0.0,
                into: wide16,
                out: f16::from_f32,
            },
        )),
        (Values::I8(x), Values::I8(y)) => Values::I8(with_int_op(
            op,
            Zip {
                x,
                y: Some(y),
                imm: 0,
                into: wide8,
                out: sat8,
            },
        )),
        (Values::I32(x), Values::I32(y)) => Values::I32(with_int_op(
            op,
            Zip {
                x,
                y: Some(y),
                imm: 0,
                into: wide32,
                out: wrap32,
            },
        )),
        _ => {
            return Err(format!(
                "operands of different types {} and {}",
                a.dtype(),
                b.dtype()
            ))
        }
    })
}

/// An accumulating `mm`: `acc = acc + v`, as [`binary`]'s add gives it
/// (`v` replaces `acc` when their types differ). An int32 or f32 sum of
/// equal lengths, the MXM's accumulators, is added in place rather than
/// into a new vector per `mm`.
pub fn accumulate(acc: &mut Values, v: Values) {
    match (&mut *acc, &v) {
        (Values::I32(a), Values::I32(x)) if a.len() == x.len() => {
            for (o, b) in a.iter_mut().zip(x) {
                *o = o.wrapping_add(*b);
            }
        }
        (Values::F32(a), Values::F32(x)) if a.len() == x.len() => {
            for (o, b) in a.iter_mut().zip(x) {
                *o += *b;
            }
        }
        _ => *acc = binary(Opcode::Add, acc, &v).unwrap_or(v),
    }
}

/// A binary op against an immediate scalar (as f32 for floats, truncated
/// to an integer for integers).
pub fn binary_imm(op: Opcode, a: &Values, imm: f64) -> Values {
    let (fimm, iimm) = (imm as f32, imm as i64);
    match a {
        Values::F32(x) => Values::F32(with_float_op(
            op,
            Zip {
                x,
                y: None,
                imm: fimm,
                into: same32,
                out: same32,
            },
        )),
        Values::F16(x) => Values::F16(with_float_op(
            op,
            Zip {
                x,
                y: None,
                imm: fimm,
                into: wide16,
                out: f16::from_f32,
            },
        )),
        Values::I8(x) => Values::I8(with_int_op(
            op,
            Zip {
                x,
                y: None,
                imm: iimm,
                into: wide8,
                out: sat8,
            },
        )),
        Values::I32(x) => Values::I32(with_int_op(
            op,
            Zip {
                x,
                y: None,
                imm: iimm,
                into: wide32,
                out: wrap32,
            },
        )),
    }
}

/// [`with_float_op`] for the unary ops (the second operand unused):
/// relu (`-0.0` and NaN kept), neg, abs, exp, tanh, `1 / sqrt`; NaN for
/// any other opcode.
fn with_float_unary<E: Elementwise<f32>>(op: Opcode, e: E) -> E::Out {
    match op {
        Opcode::Relu => e.run(|a, _| if a < 0.0 { 0.0 } else { a }),
        Opcode::Neg => e.run(|a, _| -a),
        Opcode::Abs => e.run(|a, _| a.abs()),
        Opcode::Exp => e.run(|a, _| a.exp()),
        Opcode::Tanh => e.run(|a, _| a.tanh()),
        Opcode::Rsqrt => e.run(|a, _| 1.0 / a.sqrt()),
        _ => e.run(|_, _| f32::NAN),
    }
}

/// [`with_int_op`] for the unary ops, computed in i64: relu, neg, abs; 0
/// for any other opcode.
fn with_int_unary<E: Elementwise<i64>>(op: Opcode, e: E) -> E::Out {
    match op {
        Opcode::Relu => e.run(|a, _| a.max(0)),
        Opcode::Neg => e.run(|a, _| -a),
        Opcode::Abs => e.run(|a, _| a.abs()),
        _ => e.run(|_, _| 0),
    }
}

/// An int32 unary result: saturated (`neg` and `abs` of `i32::MIN`).
fn sat32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// A unary elementwise op, picked once per vector (as [`binary`]'s):
/// int8 and int32 saturate, fp16 computes in fp32 and rounds once.
pub fn unary(op: Opcode, a: &Values) -> Values {
    match a {
        Values::F32(x) => Values::F32(with_float_unary(
            op,
            Zip {
                x,
                y: None,
                imm: 0.0,
                into: same32,
                out: same32,
            },
        )),
        Values::F16(x) => Values::F16(with_float_unary(
            op,
            Zip {
                x,
                y: None,
                imm: 0.0,
                into: wide16,
                out: f16::from_f32,
            },
        )),
        Values::I8(x) => Values::I8(with_int_unary(
            op,
            Zip {
                x,
                y: None,
                imm: 0,
                into: wide8,
                out: sat8,
            },
        )),
        Values::I32(x) => Values::I32(with_int_unary(
            op,
            Zip {
                x,
                y: None,
                imm: 0,
                into: wide32,
                out: sat32,
            },
        )),
    }
}

/// Element conversion (`cvt`): float to float rounds to nearest even; float
/// to int rounds toward zero and saturates (NaN to 0); int to float rounds to
/// nearest; int to int saturates.
pub fn convert(a: &Values, to: DType) -> Values {
    let n = a.len();
    match (a, to) {
        (_, DType::F32) => Values::F32(floats(a)),
        (Values::F32(x), DType::F16) => Values::F16(x.iter().map(|v| f16::from_f32(*v)).collect()),
        (Values::I8(x), DType::F16) => {
            Values::F16(x.iter().map(|v| f16::from_f32(*v as f32)).collect())
        }
        (Values::I32(x), DType::F16) => {
            Values::F16(x.iter().map(|v| f16::from_f64(*v as f64)).collect())
        }
        // Typed loops for the common cases; each gives what the general
        // rule below gives (every f32 and integer value is exact in f64).
        (Values::F32(x), DType::I8) => Values::I8(map_wide(x, |v| v.clamp(-128.0, 127.0) as i8)),
        (Values::I32(x), DType::I8) => Values::I8(map_wide(x, |v| v.clamp(-128, 127) as i8)),
        (Values::F32(x), DType::I32) => Values::I32(map_wide(x, |v| v as i32)),
        (Values::I8(x), DType::I32) => Values::I32(map_wide(x, |v| v as i32)),
        (_, DType::I8) => Values::I8(
            (0..n)
                .map(|i| a.get_f64(i).clamp(-128.0, 127.0) as i8)
                .collect(),
        ),
        (_, DType::I32) => Values::I32((0..n).map(|i| a.get_f64(i) as i32).collect()),
        _ => a.clone(),
    }
}

/// `ncvt`: each element converted to the narrow format `f` and held in its
/// container ([`lpu_isa::narrow`] states the rules).
pub fn narrow_convert(a: &Values, f: lpu_isa::narrow::Format, saturate: bool) -> Values {
    let n = a.len();
    match f.container() {
        DType::I8 => Values::I8(
            (0..n)
                .map(|i| f.convert(a.get_f64(i), saturate) as i8)
                .collect(),
        ),
        _ => Values::F32(
            (0..n)
                .map(|i| f.convert(a.get_f64(i), saturate) as f32)
                .collect(),
        ),
    }
}

/// QuantizeLinear: `clamp(round_half_even(x / scale) + zp)`, NaN to 0.
pub fn quantize(a: &Values, scale: f64, zp: i64, to: DType) -> Values {
    let (s, z) = (scale as f32, zp as f32);
    let q = move |x: f32| -> f32 { (x / s).round_ties_even() + z };
    // The clamped value is a whole number in [-128, 127] or NaN (which the
    // cast makes 0). A float-to-int `as` is a saturating conversion, which
    // the compiler does not vectorize (it was 2 ns an element); adding
    // 1.5 x 2^23 puts such a whole number in the low bits of the sum's
    // bits, exactly, and the loop vectorizes.
    let to_i8 = move |x: f32| {
        let v = q(x).clamp(-128.0, 127.0);
        if v.is_nan() {
            0
        } else {
            ((v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i8
        }
    };
    // f32 elements read in place, others converted first.
    let xs: Cow<[f32]> = match a {
        Values::F32(x) => Cow::Borrowed(x),
        _ => Cow::Owned(floats(a)),
    };
    match to {
        DType::I32 => Values::I32(map_wide(&xs, |x| q(x) as i32)),
        _ => Values::I8(map_wide(&xs, to_i8)),
    }
}

/// 1.5 x 2^23: a whole number `v` with `|v| < 2^22` is `(v + MAGIC)`'s
/// bits less `MAGIC`'s (the sum's unit in the last place is 1).
const MAGIC: f32 = 12_582_912.0;

/// DequantizeLinear: `((x - zp) as f32) * scale`, the subtraction exact.
pub fn dequantize(a: &Values, scale: f64, zp: i64) -> Values {
    let s = scale as f32;
    let d = |v: i64| (v.wrapping_sub(zp) as f32) * s;
    // For a zero point of 32 bits (as every `dqnt` has), `x - zp` is exact
    // in f64, and rounding it to f32 gives what the integer's conversion
    // gives (one rounding to nearest); the compiler vectorizes an i32 to
    // f64 conversion, not an i64 to f32 one (1 ns an element).
    let z = zp as f64;
    let wide = move |v: i32| ((f64::from(v) - z) as f32) * s;
    let narrow = i32::try_from(zp).is_ok();
    Values::F32(match a {
        Values::I8(x) if narrow => map_wide(x, |v| wide(i32::from(v))),
        Values::I32(x) if narrow => map_wide(x, wide),
        Values::I8(x) => map_wide(x, |v| d(v as i64)),
        Values::I32(x) => map_wide(x, |v| d(v as i64)),
        _ => (0..a.len()).map(|i| d(a.get_f64(i) as i64)).collect(),
    })
}

/// Each element as an f32, as `a.get_f64(i) as f32` gives it: exactly for
/// every type but int32, which rounds to nearest once either way (its
/// values are exact in f64). A NaN stays a NaN.
fn floats(a: &Values) -> Vec<f32> {
    match a {
        Values::F32(x) => x.clone(),
        Values::F16(x) => map_wide(x, f16::to_f32),
        Values::I8(x) => map_wide(x, |v| v as f32),
        Values::I32(x) => map_wide(x, |v| v as f32),
    }
}

/// Replaces every NaN of an fp16 product's f32 sums with the positive quiet
/// NaN. Which NaN a sum of NaNs gives (`0 * inf` is negative on x86 and
/// positive on ARM, and a sum keeps one operand's) depends on the platform
/// and on the order the compiler puts the operands of an addition in: the
/// vectorized [`matvec_wide`] and [`matvec`] disagreed on the sign in a
/// release build. The products' NaNs are made one, so results are the same
/// bytes everywhere.
fn canonical_nans(out: &mut [f32]) {
    for o in out {
        if o.is_nan() {
            *o = f32::from_bits(0x7fc0_0000);
        }
    }
}

/// One MXM pass: the activation vector `x` (a K-tile) times the weight rows
/// (`rows[k]` is a row of N-tile outputs). int8 accumulates in int32
/// (wrapping); fp16 accumulates in fp32 from 0.0, k ascending, every NaN
/// sum made the positive quiet NaN ([`canonical_nans`]).
pub fn matvec(x: &Values, rows: &[Values], lanes: usize) -> Result<Values, String> {
    match x {
        Values::I8(xv) => {
            let mut out = vec![0i32; lanes];
            for (k, r) in rows.iter().enumerate() {
                let Values::I8(w) = r else {
                    return Err("int8 activations against non-int8 weights".into());
                };
                let xk = xv[k] as i32;
                if xk == 0 {
                    // Adds exactly zero: skipping it changes nothing.
                    continue;
                }
                for (o, wv) in out.iter_mut().zip(w) {
                    *o = o.wrapping_add(xk.wrapping_mul(*wv as i32));
                }
            }
            Ok(Values::I32(out))
        }
        Values::F16(xv) => {
            let mut out = vec![0f32; lanes];
            for (k, r) in rows.iter().enumerate() {
                let Values::F16(w) = r else {
                    return Err("fp16 activations against non-fp16 weights".into());
                };
                let xk = xv[k].to_f32();
                // A zero input adds +-0 to every lane (the sum starts at +0,
                // so that changes nothing) unless a weight is infinite or
                // NaN, which must still poison the sum.
                if xk == 0.0 && w.iter().all(|v| v.is_finite()) {
                    continue;
                }
                for (o, wv) in out.iter_mut().zip(w) {
                    *o += xk * wv.to_f32();
                }
            }
            canonical_nans(&mut out);
            Ok(Values::F32(out))
        }
        _ => Err(format!("the MXM does not multiply {}", x.dtype())),
    }
}

/// Installed weight rows widened once at install, for [`matvec_wide`]: a
/// plane's weights serve many passes, and widening each weight on every
/// pass was most of a BERT run's time (fp16) and a seventh of a ResNet-50
/// run's (int8).
#[derive(Clone, Debug, PartialEq)]
pub enum WideWeights {
    /// fp16 rows as f32.
    F16 {
        /// Each row, as f32.
        rows: Vec<Vec<f32>>,
        /// Whether each row is all finite (a zero input may then be skipped).
        finite: Vec<bool>,
        /// Each row's lanes up to its last nonzero weight: a finite input
        /// times the zeros after it adds `±0.0`, which leaves a sum that
        /// starts at `+0.0` unchanged, so only a non-finite input (whose
        /// product with zero is NaN) needs the whole row.
        nonzero: Vec<usize>,
    },
    /// int8 rows as i16. An int8 product fits in i16, so the products
    /// are taken in i16 (eight lanes per SSE2 multiply, where an i32
    /// multiply needs SSE4.1) and widened to i32 to be summed; the sum is
    /// the same in any order because i32 addition wraps.
    I8 {
        /// Each row, as i16, cut after its last nonzero weight (the lanes
        /// after it add nothing: a product with fewer output channels than
        /// lanes leaves the rest of each row zero).
        rows: Vec<Vec<i16>>,
        /// No weight is -128. Then two products sum exactly in i16
        /// (`|x w| <= 128 * 127`, and twice that is below 2^15), so rows
        /// go two at a time, with one widening and one i32 add per lane
        /// for both; the sum is the same because i32 addition wraps.
        /// (Weights quantized symmetrically, as `lpc` does, never are.)
        paired: bool,
    },
}

/// The length of `w` up to and including its last element that is not
/// `zero`.
fn nonzero_len<T: PartialEq>(w: &[T], zero: &T) -> usize {
    w.iter().rposition(|v| v != zero).map_or(0, |i| i + 1)
}

impl WideWeights {
    /// The widened form of `rows` when they are all fp16 or all int8, else
    /// `None`.
    pub fn new(rows: &[Values]) -> Option<WideWeights> {
        match rows.first()? {
            Values::F16(_) => {
                let mut wide = Vec::with_capacity(rows.len());
                let mut finite = Vec::with_capacity(rows.len());
                let mut nonzero = Vec::with_capacity(rows.len());
                for r in rows {
                    let Values::F16(w) = r else { return None };
                    finite.push(w.iter().all(|v| v.is_finite()));
                    // Exact either way; the slice form converts several
                    // elements per instruction where the CPU can.
                    let mut row = vec![0f32; w.len()];
                    w.convert_to_f32_slice(&mut row);
                    nonzero.push(nonzero_len(&row, &0.0));
                    wide.push(row);
                }
                Some(WideWeights::F16 {
                    rows: wide,
                    finite,
                    nonzero,
                })
            }
            Values::I8(_) => {
                let mut wide = Vec::with_capacity(rows.len());
                let mut paired = true;
                for r in rows {
                    let Values::I8(w) = r else { return None };
                    let len = nonzero_len(w, &0);
                    paired &= !w.contains(&i8::MIN);
                    wide.push(w[..len].iter().map(|&v| i16::from(v)).collect());
                }
                Some(WideWeights::I8 { rows: wide, paired })
            }
            _ => None,
        }
    }
}

/// [`matvec`] against weights widened by [`WideWeights::new`]: the same
/// arithmetic, in the same order; `None` when `x` is not of the weights'
/// type (then [`matvec`] gives the error).
pub fn matvec_wide(x: &Values, w: &WideWeights, lanes: usize) -> Option<Values> {
    match (x, w) {
        (
            Values::F16(xv),
            WideWeights::F16 {
                rows,
                finite,
                nonzero,
            },
        ) => {
            let mut out = vec![0f32; lanes];
            pulp::Arch::new().dispatch(MatvecF16 {
                xv,
                rows,
                finite,
                nonzero,
                out: &mut out,
            });
            canonical_nans(&mut out);
            Some(Values::F32(out))
        }
        (Values::I8(xv), WideWeights::I8 { rows, paired }) => {
            let mut out = vec![0i32; lanes];
            pulp::Arch::new().dispatch(MatvecI8 {
                xv,
                rows,
                paired: *paired,
                out: &mut out,
            });
            Some(Values::I32(out))
        }
        _ => None,
    }
}

/// The int8 body of [`matvec_wide`], `out += xv . rows`, run at the
/// widest vectors the CPU has, as for [`map_wide`] (a struct rather than a
/// closure: `pulp` compiles only what is inlined into `with_simd` for the
/// wider vectors, and a closure this large was not). Integer arithmetic,
/// so the bits do not depend on the width.
struct MatvecI8<'a> {
    xv: &'a [i8],
    rows: &'a [Vec<i16>],
    paired: bool,
    out: &'a mut [i32],
}

impl pulp::WithSimd for MatvecI8<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let (xv, rows, out) = (self.xv, self.rows, self.out);
        let n = xv.len().min(rows.len());
        let mut k = 0;
        if self.paired {
            while k + 1 < n {
                let (xa, xb) = (i16::from(xv[k]), i16::from(xv[k + 1]));
                let (ra, rb) = (&rows[k], &rows[k + 1]);
                k += 2;
                match (xa, xb) {
                    (0, 0) => continue,
                    (_, 0) => add_row(out, xa, ra),
                    (0, _) => add_row(out, xb, rb),
                    _ => {
                        let both = ra.len().min(rb.len());
                        for ((o, &wa), &wb) in out.iter_mut().zip(&ra[..both]).zip(&rb[..both]) {
                            let sum = xa.wrapping_mul(wa).wrapping_add(xb.wrapping_mul(wb));
                            *o = o.wrapping_add(i32::from(sum));
                        }
                        add_row(&mut out[both..], xa, &ra[both..]);
                        add_row(&mut out[both..], xb, &rb[both..]);
                    }
                }
            }
        }
        for (&x, row) in xv[k..n].iter().zip(&rows[k..n]) {
            let xk = i16::from(x);
            if xk != 0 {
                add_row(out, xk, row);
            }
        }
    }
}

/// The fp16 body of [`matvec_wide`], `out += xv . rows` in f32 with `k`
/// ascending, compiled like [`MatvecI8`]: each lane's sum is the same
/// sequence of IEEE multiplies and adds at any width (never fused).
struct MatvecF16<'a> {
    xv: &'a [f16],
    rows: &'a [Vec<f32>],
    finite: &'a [bool],
    nonzero: &'a [usize],
    out: &'a mut [f32],
}

impl pulp::WithSimd for MatvecF16<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let rows = self.rows.iter().zip(self.finite).zip(self.nonzero);
        for (x, ((row, finite), &len)) in self.xv.iter().zip(rows) {
            let xk = x.to_f32();
            if xk == 0.0 && *finite {
                continue;
            }
            let row = if xk.is_finite() { &row[..len] } else { row };
            for (o, wv) in self.out.iter_mut().zip(row) {
                *o += xk * wv;
            }
        }
    }
}

/// `out += xk * row` over `row`'s lanes. (|x * w| <= 2^14: the i16
/// product is exact.)
#[inline(always)]
fn add_row(out: &mut [i32], xk: i16, row: &[i16]) {
    for (o, &wv) in out.iter_mut().zip(row) {
        *o = o.wrapping_add(i32::from(xk.wrapping_mul(wv)));
    }
}

/// The common type of `rows`, `None` when they differ (or there are none).
pub fn uniform_dtype(rows: &[Values]) -> Option<DType> {
    let first = rows.first()?.dtype();
    rows.iter().all(|r| r.dtype() == first).then_some(first)
}

/// The accumulator type of a product of an `x`-typed activation vector and
/// weight rows of common type `rows` (`None`: mixed, see
/// [`uniform_dtype`]), or [`matvec`]'s error: the type checks of a
/// timing-only `mm`, O(1) once the rows' type is known.
pub fn product_type(x: DType, rows: Option<DType>) -> Result<DType, String> {
    let (acc, w) = match x {
        DType::I8 => (DType::I32, DType::I8),
        DType::F16 => (DType::F32, DType::F16),
        t => return Err(format!("the MXM does not multiply {t}")),
    };
    if rows != Some(w) {
        return Err(if w == DType::I8 {
            "int8 activations against non-int8 weights".into()
        } else {
            "fp16 activations against non-fp16 weights".into()
        });
    }
    Ok(acc)
}

/// Lane movement: `out[i] = in[src(i)]`, zero where `src` gives `None`.
pub fn move_lanes(a: &Values, src: impl Fn(usize) -> Option<usize>) -> Values {
    let n = a.len();
    let zero = Values::zeros(a.dtype(), 1);
    let idx: Vec<Option<usize>> = (0..n).map(&src).collect();
    match (a, zero) {
        (Values::F32(x), _) => Values::F32(idx.iter().map(|i| i.map_or(0.0, |i| x[i])).collect()),
        (Values::F16(x), _) => {
            Values::F16(idx.iter().map(|i| i.map_or(f16::ZERO, |i| x[i])).collect())
        }
        (Values::I8(x), _) => Values::I8(idx.iter().map(|i| i.map_or(0, |i| x[i])).collect()),
        (Values::I32(x), _) => Values::I32(idx.iter().map(|i| i.map_or(0, |i| x[i])).collect()),
    }
}

/// `f(elements, args..)` for `a` of any type, a vector of the same type
/// (`f` generic over the element type).
macro_rules! same_type {
    ($a:expr, $f:ident($($arg:expr),*)) => {
        match $a {
            Values::F32(x) => Values::F32($f(x, $($arg),*)),
            Values::F16(x) => Values::F16($f(x, $($arg),*)),
            Values::I8(x) => Values::I8($f(x, $($arg),*)),
            Values::I32(x) => Values::I32($f(x, $($arg),*)),
        }
    };
}

/// `shl`: `out[l] = in[l - k]` where `0 <= l - k < n` (the vector's `n`
/// lanes), zero elsewhere: [`move_lanes`]' result, as two slice copies.
pub fn shift_lanes(a: &Values, k: i64) -> Values {
    fn shift<T: Copy + Default>(x: &[T], k: i64) -> Vec<T> {
        let n = x.len();
        let m = usize::try_from(k.unsigned_abs()).map_or(n, |m| m.min(n));
        let mut out = vec![T::default(); n];
        if k >= 0 {
            out[m..].copy_from_slice(&x[..n - m]);
        } else {
            out[..n - m].copy_from_slice(&x[m..]);
        }
        out
    }
    same_type!(a, shift(k))
}

/// `rot`: `out[l] = in[(l - k) mod n]` over the vector's `n` lanes:
/// [`move_lanes`]' result, as one rotation.
pub fn rotate_lanes(a: &Values, k: i64) -> Values {
    fn rotate<T: Copy>(x: &[T], k: i64) -> Vec<T> {
        let mut out = x.to_vec();
        if let Ok(n) = i64::try_from(x.len()) {
            if n > 0 {
                out.rotate_right(k.rem_euclid(n) as usize);
            }
        }
        out
    }
    same_type!(a, rotate(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each element's bits as an f64 (NaN payloads and signed zeros kept),
    /// to compare vectors of any type exactly.
    fn bits(v: &Values) -> Vec<u64> {
        (0..v.len()).map(|k| v.get_f64(k).to_bits()).collect()
    }

    /// The slice forms of `shl` and `rot` against [`move_lanes`] with the
    /// per-lane rules, for every shift from past one end to past the
    /// other, in each type.
    #[test]
    fn shifts_and_rotations_match_the_per_lane_rules() {
        let n = 13usize;
        let vectors = [
            Values::F32((0..n).map(|v| v as f32 - 6.5).collect()),
            Values::F16((0..n).map(|v| f16::from_f32(v as f32 * 0.25)).collect()),
            Values::I8((0..n).map(|v| v as i8 - 6).collect()),
            Values::I32((0..n).map(|v| v as i32 * 1000 - 5).collect()),
        ];
        let n = n as i64;
        for a in &vectors {
            for k in -n - 3..=n + 3 {
                let shifted = move_lanes(a, |l| {
                    let s = l as i64 - k;
                    (0..n).contains(&s).then_some(s as usize)
                });
                assert_eq!(shift_lanes(a, k), shifted, "shl {k} of {a:?}");
                let rotated = move_lanes(a, |l| Some((l as i64 - k).rem_euclid(n) as usize));
                assert_eq!(rotate_lanes(a, k), rotated, "rot {k} of {a:?}");
            }
            assert_eq!(
                shift_lanes(a, i64::MIN),
                Values::zeros(a.dtype(), n as usize)
            );
            assert_eq!(
                shift_lanes(a, i64::MAX),
                Values::zeros(a.dtype(), n as usize)
            );
        }
    }

    /// The elementwise ops, element by element as ISA.md states them,
    /// against the vector loops (which pick the operation once per vector).
    #[test]
    fn elementwise_ops_match_the_per_element_rules() {
        let f = [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            f32::NAN,
            f32::INFINITY,
            3e38,
            -7.0,
        ];
        let g = [1.0f32, 0.0, -1.5, f32::NAN, 2.0, -f32::INFINITY, 3e38, 0.5];
        let i = [
            0i64,
            1,
            -1,
            127,
            -128,
            100,
            i32::MAX as i64,
            i32::MIN as i64,
        ];
        let j = [5i64, -7, 127, 1, -128, 100, 1, -1];
        let float = |op, a: f32, b: f32| match op {
            Opcode::Add | Opcode::AddImm => a + b,
            Opcode::Sub => a - b,
            Opcode::Mul | Opcode::MulImm => a * b,
            Opcode::Max => a.max(b),
            Opcode::Min => a.min(b),
            _ => f32::NAN,
        };
        let int = |op, a: i64, b: i64| match op {
            Opcode::Add | Opcode::AddImm => a.wrapping_add(b),
            Opcode::Sub => a.wrapping_sub(b),
            Opcode::Mul | Opcode::MulImm => a.wrapping_mul(b),
            Opcode::Max => a.max(b),
            Opcode::Min => a.min(b),
            _ => 0,
        };
        for op in [
            Opcode::Add,
            Opcode::Sub,
            Opcode::Mul,
            Opcode::Max,
            Opcode::Min,
            Opcode::AddImm,
            Opcode::MulImm,
            Opcode::Mov,
        ] {
            let (x, y) = (Values::F32(f.to_vec()), Values::F32(g.to_vec()));
            let want = Values::F32(f.iter().zip(&g).map(|(a, b)| float(op, *a, *b)).collect());
            assert_eq!(
                bits(&binary(op, &x, &y).unwrap()),
                bits(&want),
                "{op:?} f32"
            );
            let want = Values::F32(f.iter().map(|a| float(op, *a, -2.5)).collect());
            assert_eq!(
                bits(&binary_imm(op, &x, -2.5)),
                bits(&want),
                "{op:?} f32 imm"
            );
            let h = |v: &[f32]| Values::F16(v.iter().map(|a| f16::from_f32(*a)).collect());
            let want = Values::F16(
                f.iter()
                    .zip(&g)
                    .map(|(a, b)| {
                        let (a, b) = (f16::from_f32(*a).to_f32(), f16::from_f32(*b).to_f32());
                        f16::from_f32(float(op, a, b))
                    })
                    .collect(),
            );
            assert_eq!(
                bits(&binary(op, &h(&f), &h(&g)).unwrap()),
                bits(&want),
                "{op:?} f16"
            );
            let x8 = Values::I8(i.iter().map(|a| *a as i8).collect());
            let y8 = Values::I8(j.iter().map(|a| *a as i8).collect());
            let want = Values::I8(
                i.iter()
                    .zip(&j)
                    .map(|(a, b)| sat8(int(op, *a as i8 as i64, *b as i8 as i64)))
                    .collect(),
            );
            assert_eq!(binary(op, &x8, &y8).unwrap(), want, "{op:?} i8");
            let want = Values::I8(
                i.iter()
                    .map(|a| sat8(int(op, *a as i8 as i64, -3)))
                    .collect(),
            );
            assert_eq!(binary_imm(op, &x8, -3.7), want, "{op:?} i8 imm");
            let x32 = Values::I32(i.iter().map(|a| *a as i32).collect());
            let y32 = Values::I32(j.iter().map(|a| *a as i32).collect());
            let want = Values::I32(
                i.iter()
                    .zip(&j)
                    .map(|(a, b)| int(op, *a as i32 as i64, *b as i32 as i64) as i32)
                    .collect(),
            );
            assert_eq!(binary(op, &x32, &y32).unwrap(), want, "{op:?} i32");
        }
        // Accumulation in place is `binary`'s add, every type and length.
        let vectors = [
            Values::F32(f.to_vec()),
            Values::F32(g.to_vec()),
            Values::F32(g[..3].to_vec()),
            Values::I32(i.iter().map(|a| *a as i32).collect()),
            Values::I32(j.iter().map(|a| *a as i32).collect()),
            Values::I8(i.iter().map(|a| *a as i8).collect()),
            Values::F16(g.iter().map(|a| f16::from_f32(*a)).collect()),
        ];
        for a in &vectors {
            for b in &vectors {
                let want = binary(Opcode::Add, a, b).unwrap_or_else(|_| b.clone());
                let mut acc = a.clone();
                accumulate(&mut acc, b.clone());
                assert_eq!(bits(&acc), bits(&want), "{a:?} + {b:?}");
                assert_eq!(acc.dtype(), want.dtype());
            }
        }
        // The typed conversions give the general rule's values.
        for v in [
            Values::F32(f.to_vec()),
            Values::I32(i.iter().map(|a| *a as i32).collect()),
            Values::I8(j.iter().map(|a| *a as i8).collect()),
        ] {
            let n = v.len();
            let to8 = Values::I8(
                (0..n)
                    .map(|k| v.get_f64(k).clamp(-128.0, 127.0) as i8)
                    .collect(),
            );
            assert_eq!(convert(&v, DType::I8), to8);
            let to32 = Values::I32((0..n).map(|k| v.get_f64(k) as i32).collect());
            assert_eq!(convert(&v, DType::I32), to32);
            let q = |x: f32| (x / 0.37f32).round_ties_even() + 3.0;
            let want = Values::I8(
                (0..n)
                    .map(|k| q(v.get_f64(k) as f32).clamp(-128.0, 127.0) as i8)
                    .collect(),
            );
            assert_eq!(quantize(&v, 0.37, 3, DType::I8), want);
            if v.dtype() != DType::F32 {
                let want = Values::F32(
                    (0..n)
                        .map(|k| ((v.get_f64(k) as i64 - 5) as f32) * 0.25)
                        .collect(),
                );
                assert_eq!(dequantize(&v, 0.25, 5), want);
            }
        }
    }

    /// The unary ops, element by element as ISA.md states them, against
    /// the vector loops (which pick the operation once per vector), in
    /// every type: NaNs, signed zeros and the int extremes among the
    /// elements, over whole AVX2 vectors and a remainder.
    #[test]
    fn unary_ops_match_the_per_element_rules() {
        let float = |op, x: f32| match op {
            Opcode::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Opcode::Neg => -x,
            Opcode::Abs => x.abs(),
            Opcode::Exp => x.exp(),
            Opcode::Tanh => x.tanh(),
            Opcode::Rsqrt => 1.0 / x.sqrt(),
            _ => f32::NAN,
        };
        let int = |op, x: i64| match op {
            Opcode::Relu => x.max(0),
            Opcode::Neg => -x,
            Opcode::Abs => x.abs(),
            _ => 0,
        };
        let specials = [0.0f32, -0.0, 1.5, -2.25, f32::NAN, -f32::NAN, f32::INFINITY];
        let f: Vec<f32> = specials.iter().cycle().take(19).copied().collect();
        let h: Vec<f16> = f.iter().map(|v| f16::from_f32(*v)).collect();
        let extremes = [0i64, 1, -1, 127, -128, i32::MAX as i64, i32::MIN as i64];
        let i: Vec<i64> = extremes.iter().cycle().take(19).copied().collect();
        for op in [
            Opcode::Relu,
            Opcode::Neg,
            Opcode::Abs,
            Opcode::Exp,
            Opcode::Tanh,
            Opcode::Rsqrt,
            Opcode::Mov,
        ] {
            let want: Vec<u32> = f.iter().map(|x| float(op, *x).to_bits()).collect();
            let got: Vec<u32> = match unary(op, &Values::F32(f.clone())) {
                Values::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
                other => panic!("{op:?} gave {other:?}"),
            };
            assert_eq!(got, want, "{op:?} f32");
            let want = Values::F16(
                h.iter()
                    .map(|x| f16::from_f32(float(op, x.to_f32())))
                    .collect(),
            );
            assert_eq!(
                bits(&unary(op, &Values::F16(h.clone()))),
                bits(&want),
                "{op:?} f16"
            );
            let want = Values::I8(i.iter().map(|&x| sat8(int(op, x as i8 as i64))).collect());
            let got = unary(op, &Values::I8(i.iter().map(|&x| x as i8).collect()));
            assert_eq!(got, want, "{op:?} i8");
            let want = Values::I32(i.iter().map(|&x| sat32(int(op, x as i32 as i64))).collect());
            let got = unary(op, &Values::I32(i.iter().map(|&x| x as i32).collect()));
            assert_eq!(got, want, "{op:?} i32");
        }
    }

    #[test]
    fn int8_saturates_and_int32_wraps() {
        let a = Values::I8(vec![100, -100]);
        assert_eq!(
            binary(Opcode::Add, &a, &a).unwrap(),
            Values::I8(vec![127, -128])
        );
        let b = Values::I32(vec![i32::MAX]);
        assert_eq!(
            binary(Opcode::Add, &b, &Values::I32(vec![1])).unwrap(),
            Values::I32(vec![i32::MIN])
        );
    }

    #[test]
    fn quantize_rounds_half_to_even() {
        let x = Values::F32(vec![2.5, -2.5, 3.5, 1000.0, f32::NAN]);
        assert_eq!(
            quantize(&x, 1.0, 0, DType::I8),
            Values::I8(vec![2, -2, 4, 127, 0])
        );
    }

    #[test]
    fn matvec_int8() {
        let x = Values::I8(vec![1, 2]);
        let rows = vec![Values::I8(vec![3, 4]), Values::I8(vec![5, 6])];
        assert_eq!(matvec(&x, &rows, 2).unwrap(), Values::I32(vec![13, 16]));
    }

    use proptest::prelude::*;

    /// An fp16 value, often zero (so rows end in zeros) and sometimes
    /// -0.0, infinite or NaN.
    fn f16_value() -> impl Strategy<Value = f16> {
        prop_oneof![
            4 => Just(f16::ZERO),
            1 => Just(f16::NEG_ZERO),
            1 => Just(f16::INFINITY),
            1 => Just(f16::NAN),
            6 => (-8.0f32..8.0).prop_map(f16::from_f32),
        ]
    }

    /// int8 values, zero with weight `zeros` out of 8 and the extremes
    /// (-128, -127, 127) often: with and without a -128 weight, rows are
    /// summed in pairs or one at a time.
    fn int8_value(zeros: u32) -> impl Strategy<Value = i8> {
        prop_oneof![
            zeros => Just(0i8),
            1 => Just(i8::MIN),
            1 => Just(-127i8),
            1 => Just(i8::MAX),
            5 - zeros.min(4) => any::<i8>(),
        ]
    }

    /// The timing-only type check gives `matvec`'s verdict and message for
    /// every activation type against uniform and mixed weight rows.
    #[test]
    fn product_type_agrees_with_matvec() {
        let rows_of = |types: &[DType]| -> Vec<Values> {
            types.iter().map(|&t| Values::zeros(t, 4)).collect()
        };
        for x in DType::ALL {
            for rows in [
                rows_of(&[DType::I8, DType::I8]),
                rows_of(&[DType::F16, DType::F16]),
                rows_of(&[DType::I8, DType::F16]),
                rows_of(&[DType::F32, DType::F32]),
            ] {
                let xs = Values::zeros(x, 2);
                let want = matvec(&xs, &rows, 4).map(|v| v.dtype());
                assert_eq!(
                    product_type(x, uniform_dtype(&rows)),
                    want,
                    "{x} against {rows:?}"
                );
            }
        }
    }

    /// The extremes that summing two products in i16 must survive: every
    /// product is 128 * 127 in magnitude (paired rows), or 128 * 128 (a
    /// -128 weight: one row at a time).
    #[test]
    fn wide_matvec_int8_extremes() {
        for w in [-127i8, 127, i8::MIN] {
            for x in [i8::MIN, i8::MAX] {
                let xs = Values::I8(vec![x; 12]);
                let rows: Vec<Values> = (0..12).map(|_| Values::I8(vec![w; 12])).collect();
                let wide = WideWeights::new(&rows).expect("int8 rows");
                assert_eq!(
                    matvec_wide(&xs, &wide, 12),
                    Some(matvec(&xs, &rows, 12).unwrap())
                );
            }
        }
    }

    proptest! {
        /// The widened product, rows cut after their last nonzero weight,
        /// equals the plain one bit for bit. (40 lanes: whole AVX2 vectors
        /// and a remainder, where `pulp` picks AVX2 for the wide one and
        /// the plain one is built for the baseline CPU.)
        #[test]
        fn wide_matvec_equals_plain_int8(
            x in prop::collection::vec(int8_value(2), 40),
            w in prop::collection::vec(prop::collection::vec(int8_value(3), 40), 38..41),
            symmetric in any::<bool>(),
        ) {
            let x = Values::I8(x);
            // Half the cases without a -128 weight, as lpc quantizes: the
            // rows are then summed two at a time.
            let lift = |v: i8| if symmetric { v.max(-127) } else { v };
            let rows: Vec<Values> = w
                .into_iter()
                .map(|r| Values::I8(r.into_iter().map(lift).collect()))
                .collect();
            let wide = WideWeights::new(&rows).expect("int8 rows");
            prop_assert_eq!(matvec_wide(&x, &wide, 40), Some(matvec(&x, &rows, 40).unwrap()));
        }

        #[test]
        fn wide_matvec_equals_plain_fp16(
            x in prop::collection::vec(f16_value(), 10),
            w in prop::collection::vec(prop::collection::vec(f16_value(), 20), 10),
        ) {
            let x = Values::F16(x);
            let rows: Vec<Values> = w.into_iter().map(Values::F16).collect();
            let wide = WideWeights::new(&rows).expect("fp16 rows");
            let got = matvec_wide(&x, &wide, 20).expect("fp16");
            let want = matvec(&x, &rows, 20).unwrap();
            prop_assert_eq!(got.to_le_bytes(), want.to_le_bytes());
        }

        /// `qnt` and `dqnt` element by element as ISA.md states them,
        /// against the vector loops (whose conversions avoid saturating
        /// casts), over whole AVX2 vectors and a remainder: every float,
        /// NaNs, infinities and rounding ties among them, and zero points
        /// inside and outside 32 bits.
        #[test]
        fn quantize_and_dequantize_match_the_per_element_rules(
            floats in prop::collection::vec(prop_oneof![
                2 => any::<f32>(),
                2 => (-300i32..300).prop_map(|v| v as f32 * 0.5),
                1 => prop::sample::select(vec![f32::NAN, f32::INFINITY, -f32::INFINITY, -0.0, 0.0]),
            ], 0..41),
            ints in prop::collection::vec(any::<i32>(), 0..41),
            scale in prop_oneof![Just(1.0f64), Just(0.5), 1e-6f64..1e3],
            zp in prop_oneof![-300i64..300, any::<i32>().prop_map(i64::from), any::<i64>()],
        ) {
            let (s, z) = (scale as f32, zp as f32);
            let q = |x: f32| (x / s).round_ties_even() + z;
            let x = Values::F32(floats.clone());
            let want = Values::I8(floats.iter().map(|&x| q(x).clamp(-128.0, 127.0) as i8).collect());
            prop_assert_eq!(quantize(&x, scale, zp, DType::I8).to_le_bytes(), want.to_le_bytes());
            let want = Values::I32(floats.iter().map(|&x| q(x) as i32).collect());
            prop_assert_eq!(quantize(&x, scale, zp, DType::I32).to_le_bytes(), want.to_le_bytes());
            let d = |v: i64| (v.wrapping_sub(zp) as f32) * s;
            let wide = Values::I32(ints.clone());
            let want = Values::F32(ints.iter().map(|&v| d(v.into())).collect());
            prop_assert_eq!(dequantize(&wide, scale, zp).to_le_bytes(), want.to_le_bytes());
            let narrow = Values::I8(ints.iter().map(|&v| v as i8).collect());
            let want = Values::F32(ints.iter().map(|&v| d((v as i8).into())).collect());
            prop_assert_eq!(dequantize(&narrow, scale, zp).to_le_bytes(), want.to_le_bytes());
        }
    }
}
