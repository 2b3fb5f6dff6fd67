//! Elementwise ops: broadcast binary arithmetic and comparisons, variadic
//! `Sum`/`Max`/`Min`, `Where`, unary activations, `Clip`, `PRelu`, `Cast`,
//! and [`erf`]. The exact arithmetic is in the module doc of
//! [`crate::interp`].

use std::f32::consts::FRAC_1_SQRT_2;

use half::f16;
use lpu_isa::{DType, Values};

use super::{as_f32, bcast_offsets, from_f32, Ins};
use crate::infer::params;
use crate::ir::Node;
use crate::tensor::Tensor;

/// The error function, in f64: the Maclaurin series below 2.5 (terms
/// summed until they fall below 1e-17 of the sum), the classical continued
/// fraction for `erfc` (evaluated backwards from depth 120) from 2.5 to 6,
/// and ±1 beyond (where `erfc < 2.2e-17`). Accurate to about 1e-15
/// relative; odd; NaN passes through.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        let a2 = a * a;
        let (mut term, mut sum) = (a, a);
        for n in 1..400 {
            term *= -a2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        // erfc(a) = exp(-a²) / sqrt(pi) / (a + (1/2) / (a + (2/2) / (a + (3/2) / ...)))
        let mut f = a;
        for k in (1..=120).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        let erfc = (-a * a).exp() / (std::f64::consts::PI.sqrt() * f);
        1.0 - erfc
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// `erf` of an f32, through [`erf`] in f64, rounded once.
fn erf32(x: f32) -> f32 {
    erf(x as f64) as f32
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    // Not f32::clamp: NaN must pass through the same way in every backend.
    let v = alpha * x + beta;
    if v < 0.0 {
        return 0.0;
    }
    if v > 1.0 {
        return 1.0;
    }
    v
}

pub(super) fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// f32 arithmetic of a binary op.
fn float_op(op: &str) -> Result<fn(f32, f32) -> f32, String> {
    Ok(match op {
        "Add" => |a, b| a + b,
        "Sub" => |a, b| a - b,
        "Mul" => |a, b| a * b,
        "Div" => |a, b| a / b,
        "Max" => |a, b| if b > a { b } else { a },
        "Min" => |a, b| if b < a { b } else { a },
        other => return Err(format!("internal error: no float op {other}")),
    })
}

/// A fallible binary integer op.
type IntOp<T> = fn(T, T) -> Result<T, String>;

fn i8_op(op: &str) -> Result<IntOp<i8>, String> {
    Ok(match op {
        "Add" => |a: i8, b| Ok(a.saturating_add(b)),
        "Sub" => |a: i8, b| Ok(a.saturating_sub(b)),
        "Mul" => |a: i8, b| Ok(a.saturating_mul(b)),
        "Div" => |a: i8, b: i8| {
            if b == 0 {
                Err(format!("integer division by zero ({a} / 0)"))
            } else {
                Ok(a.saturating_div(b))
            }
        },
        "Max" => |a: i8, b| Ok(a.max(b)),
        "Min" => |a: i8, b| Ok(a.min(b)),
        other => return Err(format!("internal error: no i8 op {other}")),
    })
}

fn i32_op(op: &str) -> Result<IntOp<i32>, String> {
    Ok(match op {
        "Add" => |a: i32, b| Ok(a.wrapping_add(b)),
        "Sub" => |a: i32, b| Ok(a.wrapping_sub(b)),
        "Mul" => |a: i32, b| Ok(a.wrapping_mul(b)),
        "Div" => |a: i32, b: i32| {
            if b == 0 {
                Err(format!("integer division by zero ({a} / 0)"))
            } else {
                Ok(a.wrapping_div(b))
            }
        },
        "Max" => |a: i32, b| Ok(a.max(b)),
        "Min" => |a: i32, b| Ok(a.min(b)),
        other => return Err(format!("internal error: no i32 op {other}")),
    })
}

/// `acc[e] = op(acc[e], v[e])` for every element ([`float_op`]'s
/// arithmetic).
fn fold_same_shape(op: &str, acc: &mut [f32], v: &[f32]) -> Result<(), String> {
    let f = float_op(op)?;
    for (a, &b) in acc.iter_mut().zip(v) {
        *a = f(*a, b);
    }
    Ok(())
}

/// Left fold of `op` over the inputs broadcast to `out`.
fn fold(op: &str, ts: &[&Tensor], out: &[usize]) -> Result<Values, String> {
    // Float operands of the output's own shape (a residual connection's
    // Add): element by element, without broadcast offset tables.
    if ts.len() > 1
        && ts
            .iter()
            .all(|t| t.shape == out && t.dtype() == ts[0].dtype())
        && matches!(ts[0].dtype(), DType::F32 | DType::F16)
    {
        let mut acc = as_f32(&ts[0].values)?;
        for t in &ts[1..] {
            fold_same_shape(op, &mut acc, &as_f32(&t.values)?)?;
        }
        return Ok(from_f32(ts[0].dtype(), acc));
    }
    fold_broadcast(op, ts, out)
}

/// [`fold`] through broadcast offset tables (any shapes).
fn fold_broadcast(op: &str, ts: &[&Tensor], out: &[usize]) -> Result<Values, String> {
    let offs: Vec<Vec<usize>> = ts
        .iter()
        .map(|t| bcast_offsets(&t.shape, out))
        .collect::<Result<_, _>>()?;
    let n: usize = out.iter().product();
    let first = ts.first().ok_or("no inputs")?;
    let dtype = first.dtype();
    if ts.iter().any(|t| t.dtype() != dtype) {
        return Err("operand types differ".into());
    }
    match dtype {
        DType::F32 | DType::F16 => {
            let f = float_op(op)?;
            let vs: Vec<Vec<f32>> = ts
                .iter()
                .map(|t| as_f32(&t.values))
                .collect::<Result<_, _>>()?;
            let y = (0..n)
                .map(|e| {
                    let mut acc = vs[0][offs[0][e]];
                    for k in 1..vs.len() {
                        acc = f(acc, vs[k][offs[k][e]]);
                    }
                    acc
                })
                .collect();
            Ok(from_f32(dtype, y))
        }
        DType::I8 => {
            let f = i8_op(op)?;
            let vs: Vec<&Vec<i8>> = ts
                .iter()
                .map(|t| match &t.values {
                    Values::I8(v) => Ok(v),
                    _ => Err("operand types differ".to_string()),
                })
                .collect::<Result<_, _>>()?;
            Ok(Values::I8(fold_left(&vs, &offs, n, f)?))
        }
        DType::I32 => {
            let f = i32_op(op)?;
            let vs: Vec<&Vec<i32>> = ts
                .iter()
                .map(|t| match &t.values {
                    Values::I32(v) => Ok(v),
                    _ => Err("operand types differ".to_string()),
                })
                .collect::<Result<_, _>>()?;
            Ok(Values::I32(fold_left(&vs, &offs, n, f)?))
        }
    }
}

/// Element `e` of the result: `f` folded left to right over the operands'
/// elements at `offs[k][e]` (the variadic ops' integer rule).
fn fold_left<T: Copy>(
    vs: &[&Vec<T>],
    offs: &[Vec<usize>],
    n: usize,
    f: impl Fn(T, T) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    (0..n)
        .map(|e| {
            let mut acc = vs[0][offs[0][e]];
            for k in 1..vs.len() {
                acc = f(acc, vs[k][offs[k][e]])?;
            }
            Ok(acc)
        })
        .collect()
}

/// `Add`, `Sub`, `Mul`, `Div`, `Pow`, `Equal`, `Less`, `Greater`.
pub(super) fn binary(op: &str, a: &Tensor, b: &Tensor, out: &[usize]) -> Result<Values, String> {
    match op {
        "Pow" => {
            let (ia, ib) = (bcast_offsets(&a.shape, out)?, bcast_offsets(&b.shape, out)?);
            let x = as_f32(&a.values)?;
            let y: Vec<f32> = (0..b.len()).map(|i| b.values.get_f64(i) as f32).collect();
            Ok(from_f32(
                a.dtype(),
                ia.iter().zip(&ib).map(|(&i, &j)| x[i].powf(y[j])).collect(),
            ))
        }
        "Equal" | "Less" | "Greater" => {
            if a.dtype() != b.dtype() {
                return Err("operand types differ".into());
            }
            let (ia, ib) = (bcast_offsets(&a.shape, out)?, bcast_offsets(&b.shape, out)?);
            // f64 holds every f32, f16, i8 and i32 value exactly.
            let cmp: fn(f64, f64) -> bool = match op {
                "Equal" => |x, y| x == y,
                "Less" => |x, y| x < y,
                _ => |x, y| x > y,
            };
            Ok(Values::I8(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| cmp(a.values.get_f64(i), b.values.get_f64(j)) as i8)
                    .collect(),
            ))
        }
        _ => fold(op, &[a, b], out),
    }
}

/// `Sum`, `Max`, `Min`.
pub(super) fn variadic(op: &str, x: &Ins, out: &[usize]) -> Result<Values, String> {
    let ts: Vec<&Tensor> = (0..x.len()).map(|i| x.req(i)).collect::<Result<_, _>>()?;
    fold(if op == "Sum" { "Add" } else { op }, &ts, out)
}

/// `Where`.
pub(super) fn where_(x: &Ins, out: &[usize]) -> Result<Values, String> {
    let (c, a, b) = (x.req(0)?, x.req(1)?, x.req(2)?);
    let Values::I8(cv) = &c.values else {
        return Err("the condition must be i8 (bool)".into());
    };
    let ic = bcast_offsets(&c.shape, out)?;
    let ia = bcast_offsets(&a.shape, out)?;
    let ib = bcast_offsets(&b.shape, out)?;
    fn sel<T: Copy>(
        c: &[i8],
        a: &[T],
        b: &[T],
        ic: &[usize],
        ia: &[usize],
        ib: &[usize],
    ) -> Vec<T> {
        (0..ic.len())
            .map(|e| if c[ic[e]] != 0 { a[ia[e]] } else { b[ib[e]] })
            .collect()
    }
    Ok(match (&a.values, &b.values) {
        (Values::F32(p), Values::F32(q)) => Values::F32(sel(cv, p, q, &ic, &ia, &ib)),
        (Values::F16(p), Values::F16(q)) => Values::F16(sel(cv, p, q, &ic, &ia, &ib)),
        (Values::I8(p), Values::I8(q)) => Values::I8(sel(cv, p, q, &ic, &ia, &ib)),
        (Values::I32(p), Values::I32(q)) => Values::I32(sel(cv, p, q, &ic, &ia, &ib)),
        _ => return Err("X and Y types differ".into()),
    })
}

/// Unary activations and math functions.
pub(super) fn unary(node: &Node, x: &Tensor) -> Result<Values, String> {
    let op = node.op_type.as_str();
    if op == "Relu" {
        match &x.values {
            Values::I8(v) => return Ok(Values::I8(v.iter().map(|&x| x.max(0)).collect())),
            Values::I32(v) => return Ok(Values::I32(v.iter().map(|&x| x.max(0)).collect())),
            // Inlined, so the loop vectorizes (a call per element below).
            Values::F32(v) => return Ok(Values::F32(v.iter().map(|&x| relu(x)).collect())),
            _ => {}
        }
    }
    let f: Box<dyn Fn(f32) -> f32> = match op {
        "Relu" => Box::new(relu),
        "LeakyRelu" => {
            let alpha = params::float(node, "alpha", 0.01)?;
            Box::new(move |x| if x < 0.0 { alpha * x } else { x })
        }
        "Sqrt" => Box::new(f32::sqrt),
        "Reciprocal" => Box::new(|x| 1.0 / x),
        "Exp" => Box::new(f32::exp),
        "Sigmoid" => Box::new(sigmoid),
        "Tanh" => Box::new(f32::tanh),
        "Erf" => Box::new(erf32),
        "Silu" => Box::new(|x| x * sigmoid(x)),
        "HardSigmoid" => {
            let alpha = params::float(node, "alpha", 0.2)?;
            let beta = params::float(node, "beta", 0.5)?;
            Box::new(move |x| hard_sigmoid(x, alpha, beta))
        }
        "HardSwish" => Box::new(|x| x * hard_sigmoid(x, 1.0f32 / 6.0, 0.5)),
        "Gelu" => match params::string(node, "approximate", "none")?.as_str() {
            "none" => Box::new(|x| (0.5 * x) * (1.0 + erf32(x * FRAC_1_SQRT_2))),
            "tanh" => {
                const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                Box::new(|x| (0.5 * x) * (1.0 + (C * (x + 0.044715 * (x * x * x))).tanh()))
            }
            other => return Err(format!("Gelu approximate \"{other}\" is not supported")),
        },
        other => return Err(format!("internal error: no unary op {other}")),
    };
    let v = as_f32(&x.values)?;
    Ok(from_f32(x.dtype(), v.into_iter().map(f).collect()))
}

/// `PRelu`.
pub(super) fn prelu(x: &Tensor, slope: &Tensor) -> Result<Values, String> {
    let idx = bcast_offsets(&slope.shape, &x.shape)?;
    let (v, s) = (as_f32(&x.values)?, as_f32(&slope.values)?);
    Ok(from_f32(
        x.dtype(),
        v.iter()
            .zip(&idx)
            .map(|(&x, &i)| if x < 0.0 { s[i] * x } else { x })
            .collect(),
    ))
}

/// `Clip`.
pub(super) fn clip(node: &Node, x: &Ins) -> Result<Values, String> {
    let t = x.req(0)?;
    let bound = |i: usize, attr: &str| -> Result<Option<f64>, String> {
        match x.opt(i) {
            Some(b) if b.len() == 1 => Ok(Some(b.values.get_f64(0))),
            Some(b) => Err(format!("bound {:?} is not a scalar", b.shape)),
            None => Ok(if node.attributes.contains_key(attr) {
                Some(params::float(node, attr, 0.0)? as f64)
            } else {
                None
            }),
        }
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    fn c<T: Copy + PartialOrd>(v: &[T], lo: Option<T>, hi: Option<T>) -> Vec<T> {
        v.iter()
            .map(|&x| match (lo, hi) {
                (Some(l), _) if x < l => l,
                (_, Some(h)) if x > h => h,
                _ => x,
            })
            .collect()
    }
    Ok(match &t.values {
        Values::I8(v) => Values::I8(c(v, lo.map(|b| b as i8), hi.map(|b| b as i8))),
        Values::I32(v) => Values::I32(c(v, lo.map(|b| b as i32), hi.map(|b| b as i32))),
        other => {
            let v = as_f32(other)?;
            from_f32(t.dtype(), c(&v, lo.map(|b| b as f32), hi.map(|b| b as f32)))
        }
    })
}

/// `Cast` (see the module doc for the conversions).
pub(super) fn cast_node(node: &Node, x: &Tensor) -> Result<Values, String> {
    let (code, to) = params::cast_target(node)?;
    if code == 9 {
        return Ok(Values::I8(
            (0..x.len())
                .map(|i| (x.values.get_f64(i) != 0.0) as i8)
                .collect(),
        ));
    }
    Ok(cast(&x.values, to))
}

/// `NarrowCast`: each element converted to the narrow format, held in its
/// container (the rules are [`lpu_isa::narrow`]'s, which the simulator's
/// `ncvt` shares).
pub(super) fn narrow_cast(node: &Node, x: &Tensor) -> Result<Values, String> {
    let (f, saturate) = params::narrow_format(node)?;
    let n = x.len();
    Ok(match f.container() {
        DType::I8 => Values::I8(
            (0..n)
                .map(|i| f.convert(x.values.get_f64(i), saturate) as i8)
                .collect(),
        ),
        _ => Values::F32(
            (0..n)
                .map(|i| f.convert(x.values.get_f64(i), saturate) as f32)
                .collect(),
        ),
    })
}

/// Converts `v` to `to` (see the module doc).
pub(crate) fn cast(v: &Values, to: DType) -> Values {
    fn sat_i8(x: i32) -> i8 {
        x.clamp(i8::MIN as i32, i8::MAX as i32) as i8
    }
    match (v, to) {
        (Values::F32(x), DType::F32) => Values::F32(x.clone()),
        (Values::F32(x), DType::F16) => Values::F16(x.iter().map(|&x| f16::from_f32(x)).collect()),
        (Values::F32(x), DType::I8) => Values::I8(x.iter().map(|&x| x as i8).collect()),
        (Values::F32(x), DType::I32) => Values::I32(x.iter().map(|&x| x as i32).collect()),
        (Values::F16(x), DType::F32) => Values::F32(x.iter().map(|x| x.to_f32()).collect()),
        (Values::F16(x), DType::F16) => Values::F16(x.clone()),
        (Values::F16(x), DType::I8) => Values::I8(x.iter().map(|x| x.to_f32() as i8).collect()),
        (Values::F16(x), DType::I32) => Values::I32(x.iter().map(|x| x.to_f32() as i32).collect()),
        (Values::I8(x), DType::F32) => Values::F32(x.iter().map(|&x| x as f32).collect()),
        (Values::I8(x), DType::F16) => {
            Values::F16(x.iter().map(|&x| f16::from_f32(x as f32)).collect())
        }
        (Values::I8(x), DType::I8) => Values::I8(x.clone()),
        (Values::I8(x), DType::I32) => Values::I32(x.iter().map(|&x| x as i32).collect()),
        (Values::I32(x), DType::F32) => Values::F32(x.iter().map(|&x| x as f32).collect()),
        (Values::I32(x), DType::F16) => {
            Values::F16(x.iter().map(|&x| f16::from_f64(x as f64)).collect())
        }
        (Values::I32(x), DType::I8) => Values::I8(x.iter().map(|&x| sat_i8(x)).collect()),
        (Values::I32(x), DType::I32) => Values::I32(x.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::{binary, erf, fold, fold_broadcast, Tensor, Values};

    #[test]
    fn erf_values() {
        // Reference values (Abramowitz & Stegun table 7.1 / mpmath).
        let cases = [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.5, 0.999_593_047_982_555),
            (3.0, 0.999_977_909_503_001_4),
            (4.0, 0.999_999_984_582_742_1),
        ];
        for (x, want) in cases {
            let got = erf(x);
            assert!(
                (got - want).abs() <= 1e-15 * want.max(1e-300),
                "erf({x}) = {got}, want {want}"
            );
            assert_eq!(erf(-x), -got);
        }
        assert_eq!(erf(7.0), 1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    proptest::proptest! {
        /// Operands of the output's shape take a loop without offset
        /// tables; it gives the broadcasting fold's values for every float
        /// op, infinities and signed zeros included, in f32 and f16.
        #[test]
        fn same_shape_fold_matches_broadcast_fold(
            op in proptest::sample::select(vec!["Add", "Sub", "Mul", "Div", "Max", "Min"]),
            f16 in proptest::bool::ANY,
            vals in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        -3.0f32..3.0,
                        proptest::sample::select(vec![0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
                    ],
                    6,
                ),
                2..4,
            ),
        ) {
            let shape = vec![2usize, 3];
            let ts: Vec<Tensor> = vals
                .into_iter()
                .map(|v| {
                    let values = if f16 {
                        Values::F16(v.into_iter().map(half::f16::from_f32).collect())
                    } else {
                        Values::F32(v)
                    };
                    Tensor::new(shape.clone(), values).expect("tensor")
                })
                .collect();
            let refs: Vec<&Tensor> = ts.iter().collect();
            let fast = fold(op, &refs, &shape).expect("fold");
            let slow = fold_broadcast(op, &refs, &shape).expect("fold");
            // The same bits, except which NaN: IEEE leaves a NaN result's
            // sign and payload open, and x86 gives a different one
            // depending on which operand the compiler puts first.
            let bits = |v: &Values| -> Vec<u32> {
                super::as_f32(v)
                    .expect("floats")
                    .iter()
                    .map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() })
                    .collect()
            };
            proptest::prop_assert_eq!(fast.dtype(), slow.dtype());
            proptest::prop_assert_eq!(bits(&fast), bits(&slow));
        }
    }

    /// The float binary ops' arithmetic (the module contract), through the
    /// same-shape path and through broadcasting: Max and Min keep the first
    /// operand unless the second is strictly greater (smaller), so a NaN
    /// first is kept, a NaN second ignored, and +0 vs -0 keeps the first.
    #[test]
    fn float_binary_ops_follow_the_contract() {
        let a = [3.0f32, -2.0, 0.0, f32::NAN, 1.0];
        let b = [2.0f32, 4.0, -0.0, 1.0, f32::NAN];
        let t = |v: &[f32]| Tensor::new(vec![v.len()], Values::F32(v.to_vec())).expect("tensor");
        type Op = fn(f32, f32) -> f32;
        let cases: [(&str, Op); 4] = [
            ("Add", |x, y| x + y),
            ("Sub", |x, y| x - y),
            ("Mul", |x, y| x * y),
            ("Div", |x, y| x / y),
        ];
        let bits = |v: Values| -> Vec<u32> {
            match v {
                Values::F32(v) => v
                    .iter()
                    .map(|x| {
                        if x.is_nan() {
                            f32::NAN.to_bits()
                        } else {
                            x.to_bits()
                        }
                    })
                    .collect(),
                other => panic!("{other:?}"),
            }
        };
        let want = |f: Op| -> Vec<u32> {
            bits(Values::F32(
                a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect(),
            ))
        };
        for (op, f) in cases {
            assert_eq!(
                bits(binary(op, &t(&a), &t(&b), &[5]).expect(op)),
                want(f),
                "{op}"
            );
        }
        let max = binary("Max", &t(&a), &t(&b), &[5]).expect("max");
        let min = binary("Min", &t(&a), &t(&b), &[5]).expect("min");
        let (Values::F32(max), Values::F32(min)) = (max, min) else {
            panic!("f32 expected");
        };
        assert_eq!(&max[..3], &[3.0, 4.0, 0.0]);
        assert_eq!(&min[..3], &[2.0, -2.0, 0.0]);
        assert!(
            max[2].is_sign_positive() && min[2].is_sign_positive(),
            "the first zero is kept"
        );
        assert!(max[3].is_nan() && min[3].is_nan(), "a NaN first is kept");
        assert_eq!((max[4], min[4]), (1.0, 1.0), "a NaN second is ignored");
        // Broadcasting a scalar goes through the offset tables.
        let s = Tensor::new(vec![1], Values::F32(vec![2.0])).expect("scalar");
        assert_eq!(
            binary("Sub", &t(&[5.0, 1.0]), &s, &[2]).expect("sub"),
            Values::F32(vec![3.0, -1.0])
        );
    }
}
