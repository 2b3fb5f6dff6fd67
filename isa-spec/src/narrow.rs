//! Narrow number formats: the 8-, 4- and 2-bit types (and bfloat16) that ONNX
//! models carry but the chip does not store natively.
//!
//! lpu keeps a narrow-format value *widened* in a container type the chip has
//! ([`Format::container`]: f32 for the float formats, i8 for the small
//! integers): every value of the format is exact there, so only the
//! conversion *to* the format does arithmetic. That conversion is the VXM's
//! `ncvt` ([`crate::Opcode::NarrowConvert`]): it rounds each element onto the
//! format's value grid with the format's overflow rule and writes it in the
//! container, one ALU pass like `cvt`.
//!
//! This is a modelling extension, stated as such: the TSP's published types
//! are int8, fp16 and fp32 (`reference/tsp.md`), and an fp8 (or fp4) chip
//! would also store the values in 1 byte (or half of one) where lpu spends the
//! container's width. The converter is modelled on the fp8 conversion
//! instructions of Hopper-class GPUs (one instruction per element vector).
//!
//! The rounding rules are the ONNX `Cast` rules (opset 23/24, as its
//! reference implementation and `ml_dtypes` compute them):
//!
//! - float formats round to nearest, ties to even, with subnormals;
//! - the four fp8 formats take `saturate`: out-of-range values (and
//!   infinities) become the largest finite value when set; when clear they
//!   become infinity (E5M2) or NaN (the formats without infinities);
//! - FLOAT4E2M1 always saturates (it has no infinity nor NaN; NaN becomes 0);
//! - BFLOAT16 never saturates (overflow gives infinity);
//! - the `fnuz` formats have no negative zero;
//! - FLOAT8E8M0 keeps only the exponent of the f32 value (its sign is
//!   dropped), rounding the significand up, down or to nearest;
//! - INT4/UINT4/INT2/UINT2 truncate a float toward zero and wrap to the
//!   type's width (two's complement), as C and numpy casts do.

use crate::DType;

/// A narrow number format, held widened in [`Format::container`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// FLOAT8E4M3FN: 4 exponent bits (bias 7), 3 mantissa bits, NaN, no
    /// infinity; largest 448.
    E4m3fn,
    /// FLOAT8E4M3FNUZ: bias 8, no infinity, no negative zero; largest 240.
    E4m3fnuz,
    /// FLOAT8E5M2: bias 15, with infinities; largest 57344.
    E5m2,
    /// FLOAT8E5M2FNUZ: bias 16, no infinity, no negative zero; largest 57344.
    E5m2fnuz,
    /// FLOAT8E8M0, rounding the significand up (the ONNX default).
    E8m0Up,
    /// FLOAT8E8M0, rounding the significand down (truncating it).
    E8m0Down,
    /// FLOAT8E8M0, rounding to the nearest power of two.
    E8m0Nearest,
    /// FLOAT4E2M1: 2 exponent bits (bias 1), 1 mantissa bit; largest 6.
    E2m1,
    /// BFLOAT16: f32's exponent, 7 mantissa bits.
    Bf16,
    /// INT4, in i8.
    I4,
    /// UINT4, in i8.
    U4,
    /// INT2, in i8.
    I2,
    /// UINT2, in i8.
    U2,
}

/// Parameters of a binary floating-point format.
struct FloatParams {
    /// Explicit mantissa bits.
    man: i32,
    /// Exponent of the smallest normal number.
    emin: i32,
    /// Largest finite value.
    max: f64,
    /// Has infinities.
    inf: bool,
    /// No negative zero (the `fnuz` formats).
    uz: bool,
}

impl Format {
    /// Every format, in a fixed order (the order of their codes).
    pub const ALL: [Format; 13] = [
        Format::E4m3fn,
        Format::E4m3fnuz,
        Format::E5m2,
        Format::E5m2fnuz,
        Format::E8m0Up,
        Format::E8m0Down,
        Format::E8m0Nearest,
        Format::E2m1,
        Format::Bf16,
        Format::I4,
        Format::U4,
        Format::I2,
        Format::U2,
    ];

    /// The name in assembly (`fmt=e4m3fn`) and `.graph` attributes.
    pub fn name(self) -> &'static str {
        match self {
            Format::E4m3fn => "e4m3fn",
            Format::E4m3fnuz => "e4m3fnuz",
            Format::E5m2 => "e5m2",
            Format::E5m2fnuz => "e5m2fnuz",
            Format::E8m0Up => "e8m0",
            Format::E8m0Down => "e8m0_down",
            Format::E8m0Nearest => "e8m0_nearest",
            Format::E2m1 => "e2m1",
            Format::Bf16 => "bf16",
            Format::I4 => "i4",
            Format::U4 => "u4",
            Format::I2 => "i2",
            Format::U2 => "u2",
        }
    }

    /// Parses [`Format::name`].
    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The format's code in an instruction's argument (its index in
    /// [`Format::ALL`]).
    pub fn code(self) -> i64 {
        Format::ALL.iter().position(|f| *f == self).unwrap_or(0) as i64
    }

    /// The format with code `c`.
    pub fn from_code(c: i64) -> Option<Format> {
        usize::try_from(c)
            .ok()
            .and_then(|i| Format::ALL.get(i).copied())
    }

    /// The chip type that holds this format's values exactly.
    pub fn container(self) -> DType {
        match self {
            Format::I4 | Format::U4 | Format::I2 | Format::U2 => DType::I8,
            _ => DType::F32,
        }
    }

    /// Whether `saturate` changes this format's conversion (the four fp8
    /// formats and FLOAT8E8M0).
    pub fn takes_saturate(self) -> bool {
        matches!(
            self,
            Format::E4m3fn
                | Format::E4m3fnuz
                | Format::E5m2
                | Format::E5m2fnuz
                | Format::E8m0Up
                | Format::E8m0Down
                | Format::E8m0Nearest
        )
    }

    fn float_params(self) -> Option<FloatParams> {
        let p = |man, emin, max, inf, uz| FloatParams {
            man,
            emin,
            max,
            inf,
            uz,
        };
        Some(match self {
            Format::E4m3fn => p(3, -6, 448.0, false, false),
            Format::E4m3fnuz => p(3, -7, 240.0, false, true),
            Format::E5m2 => p(2, -14, 57344.0, true, false),
            Format::E5m2fnuz => p(2, -15, 57344.0, false, true),
            Format::E2m1 => p(1, 0, 6.0, false, false),
            Format::Bf16 => p(7, -126, (2.0 - 2f64.powi(-7)) * 2f64.powi(127), true, false),
            _ => return None,
        })
    }

    /// Converts one value (an f32, f16 or integer value, given as f64) to
    /// this format, as ONNX `Cast` with `saturate` does, and returns it as
    /// its container holds it.
    pub fn convert(self, x: f64, saturate: bool) -> f64 {
        match self {
            Format::I4 | Format::U4 | Format::I2 | Format::U2 => {
                let (bits, signed) = match self {
                    Format::I4 => (4, true),
                    Format::U4 => (4, false),
                    Format::I2 => (2, true),
                    _ => (2, false),
                };
                if !x.is_finite() {
                    return 0.0;
                }
                let m = 1i64 << bits;
                let t = x
                    .trunc()
                    .clamp(i64::MIN as f64 / 2.0, i64::MAX as f64 / 2.0)
                    as i64;
                let u = t.rem_euclid(m);
                let v = if signed && u >= m / 2 { u - m } else { u };
                v as f64
            }
            Format::E8m0Up | Format::E8m0Down | Format::E8m0Nearest => e8m0(self, x, saturate),
            _ => match self.float_params() {
                Some(p) => round_float(&p, self, x, saturate),
                None => x,
            },
        }
    }
}

/// RNE onto a float format's grid, with its overflow rule.
fn round_float(p: &FloatParams, f: Format, x: f64, saturate: bool) -> f64 {
    let saturate = match f {
        Format::E2m1 => true,
        Format::Bf16 => false,
        _ => saturate,
    };
    let overflow = |neg: bool| -> f64 {
        let v = if saturate {
            p.max
        } else if p.inf {
            f64::INFINITY
        } else {
            return f64::NAN;
        };
        if neg {
            -v
        } else {
            v
        }
    };
    if x.is_nan() {
        // FLOAT4E2M1 has no NaN: ml_dtypes gives a zero.
        return if f == Format::E2m1 { 0.0 } else { f64::NAN };
    }
    if x.is_infinite() {
        return overflow(x < 0.0);
    }
    let a = x.abs();
    let r = if a == 0.0 {
        0.0
    } else {
        // a is an f32 (or an exact integer) value: its binade is exact.
        let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(p.emin);
        let q = 2f64.powi(e - p.man);
        (a / q).round_ties_even() * q
    };
    if r > p.max {
        return overflow(x < 0.0);
    }
    if x.is_sign_negative() && !(p.uz && r == 0.0) {
        -r
    } else {
        r
    }
}

/// FLOAT8E8M0 (the ONNX reference's `to_float8e8m0`): the f32 exponent
/// field, the significand rounded per the mode, saturating at 2^127.
fn e8m0(f: Format, x: f64, saturate: bool) -> f64 {
    let bits = (x as f32).to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return f64::NAN;
    }
    let frac = bits & 0x7f_ffff;
    let up = match f {
        Format::E8m0Up => frac > 0,
        Format::E8m0Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1f_ffff != 0;
            g && (r || s || exp > 0)
        }
        _ => false,
    };
    let exp = if up && !(saturate && exp == 0xfe) {
        exp + 1
    } else {
        exp
    };
    if exp == 0xff {
        return f64::NAN;
    }
    2f64.powi(exp as i32 - 127)
}

/// Decodes one element of an 8-bit float format from its bits (for reading
/// ONNX tensors; FLOAT8E8M0's rounding modes share one encoding).
pub fn decode8(f: Format, bits: u8) -> f64 {
    let b = bits as u32;
    match f {
        Format::E8m0Up | Format::E8m0Down | Format::E8m0Nearest => {
            if b == 0xff {
                f64::NAN
            } else {
                2f64.powi(b as i32 - 127)
            }
        }
        Format::E2m1 => decode_minifloat(b & 0xf, 2, 1, 1, false, false),
        Format::E4m3fn => {
            if b & 0x7f == 0x7f {
                f64::NAN
            } else {
                decode_minifloat(b, 4, 3, 7, false, false)
            }
        }
        Format::E4m3fnuz => decode_minifloat(b, 4, 3, 8, false, true),
        Format::E5m2 => decode_minifloat(b, 5, 2, 15, true, false),
        Format::E5m2fnuz => decode_minifloat(b, 5, 2, 16, false, true),
        _ => b as f64,
    }
}

/// A sign-exponent-mantissa value of `1 + ebits + mbits` bits.
fn decode_minifloat(b: u32, ebits: u32, mbits: u32, bias: i32, ieee: bool, uz: bool) -> f64 {
    let sign = (b >> (ebits + mbits)) & 1 == 1;
    let e = ((b >> mbits) & ((1 << ebits) - 1)) as i32;
    let m = (b & ((1 << mbits) - 1)) as f64;
    if uz && sign && e == 0 && m == 0.0 {
        return f64::NAN;
    }
    if ieee && e == (1 << ebits) - 1 {
        return if m == 0.0 {
            if sign {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        } else {
            f64::NAN
        };
    }
    let scale = 2f64.powi(mbits as i32);
    let v = if e == 0 {
        m / scale * 2f64.powi(1 - bias)
    } else {
        (1.0 + m / scale) * 2f64.powi(e - bias)
    };
    if sign {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_code(f.code()), Some(f));
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        assert_eq!(Format::from_code(13), None);
        assert_eq!(Format::from_code(-1), None);
    }

    #[test]
    fn every_fp8_encoding_is_a_fixed_point_of_the_conversion() {
        for f in [
            Format::E4m3fn,
            Format::E4m3fnuz,
            Format::E5m2,
            Format::E5m2fnuz,
        ] {
            for b in 0..=255u8 {
                let v = decode8(f, b);
                if v.is_finite() {
                    assert_eq!(f.convert(v, true), v, "{f:?} {b:#x}");
                    assert_eq!(f.convert(v, false), v, "{f:?} {b:#x}");
                }
            }
        }
    }

    #[test]
    fn onnx_cast_examples() {
        // The ONNX backend test `cast_FLOAT_to_FLOAT8E4M3FN` and friends.
        let e4 = |x: f64| Format::E4m3fn.convert(x, true);
        assert_eq!(e4(0.47892547), 0.46875);
        assert_eq!(e4(0.8191054), 0.8125);
        assert_eq!(e4(1e6), 448.0);
        assert_eq!(e4(f64::INFINITY), 448.0);
        assert_eq!(e4(f64::NEG_INFINITY), -448.0);
        assert_eq!(e4(1e-7), 0.0);
        assert!(Format::E4m3fn.convert(1e6, false).is_nan());
        assert_eq!(Format::E5m2.convert(1e6, false), f64::INFINITY);
        assert_eq!(Format::E5m2.convert(0.8191054, true), 0.875);
        assert_eq!(Format::E5m2fnuz.convert(f64::INFINITY, true), 57344.0);
        assert_eq!(
            Format::E4m3fnuz.convert(-0.0, true).to_bits(),
            0.0f64.to_bits()
        );
        // FLOAT4E2M1: ties to even, saturating.
        let e2 = |x: f64| Format::E2m1.convert(x, true);
        assert_eq!(e2(0.25), 0.0);
        assert_eq!(e2(-3.5), -4.0);
        assert_eq!(e2(9.0), 6.0);
        assert_eq!(e2(f64::NAN), 0.0);
        // BFLOAT16.
        assert_eq!(Format::Bf16.convert(0.47892547, true), 0.478515625);
        assert_eq!(Format::Bf16.convert(0.81910545, true), 0.8203125);
        // Small integers: truncate, then wrap.
        assert_eq!(Format::I4.convert(-9.0, true), 7.0);
        assert_eq!(Format::I4.convert(8.5, true), -8.0);
        assert_eq!(Format::U4.convert(-1.5, true), 15.0);
        assert_eq!(Format::U2.convert(-3.0, true), 1.0);
        assert_eq!(Format::I2.convert(2.0, true), -2.0);
        // FLOAT8E8M0.
        assert_eq!(Format::E8m0Up.convert(0.0, true), 2f64.powi(-127));
        assert_eq!(Format::E8m0Up.convert(0.124, true), 0.125);
        assert_eq!(Format::E8m0Up.convert(1.1, true), 2.0);
        assert_eq!(Format::E8m0Down.convert(1.9, true), 1.0);
        assert_eq!(Format::E8m0Nearest.convert(1.4, true), 1.0);
        assert_eq!(Format::E8m0Nearest.convert(1.6, true), 2.0);
    }

    #[test]
    fn decoding_known_bits() {
        assert_eq!(decode8(Format::E4m3fn, 0x7e), 448.0);
        assert!(decode8(Format::E4m3fn, 0xff).is_nan());
        assert_eq!(decode8(Format::E4m3fn, 0x01), 2f64.powi(-9));
        assert_eq!(decode8(Format::E5m2, 0x7c), f64::INFINITY);
        assert_eq!(decode8(Format::E5m2, 0x7b), 57344.0);
        assert!(decode8(Format::E5m2fnuz, 0x80).is_nan());
        assert_eq!(decode8(Format::E4m3fnuz, 0x7f), 240.0);
        assert_eq!(decode8(Format::E2m1, 0x7), 6.0);
        assert_eq!(decode8(Format::E2m1, 0xf), -6.0);
        assert_eq!(decode8(Format::E8m0Up, 127), 1.0);
    }
}
