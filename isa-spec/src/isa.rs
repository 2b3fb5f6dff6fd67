//! The instruction set, declared once.
//!
//! [`OPCODES`] is the datasheet-shaped table every other part reads: the
//! assembler and disassembler take operand layouts from it, the scheduler and
//! simulator take functional delays from it (through [`crate::ChipConfig::delay`]),
//! and `ISA.md` documents the same rows. No latency literal lives anywhere else.
//!
//! An [`Instr`] is a generic record (opcode, types, stream operands, integer
//! and immediate arguments); which fields an opcode uses is given by its
//! [`OpInfo::operands`]. Unused fields are zero, which [`Instr::check_shape`]
//! enforces so that text and binary forms round-trip exactly.

use crate::DType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of unit whose queues execute an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Instruction control: available on every queue (NOP, SYNC, REPEAT) and
    /// on the ICU's own queue (NOTIFY).
    Icu,
    /// SRAM slices.
    Mem,
    /// Vector ALUs.
    Vxm,
    /// Matrix planes.
    Mxm,
    /// Shift/permute slices.
    Sxm,
}

impl Unit {
    /// Lower-case name as printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Icu => "icu",
            Unit::Mem => "mem",
            Unit::Vxm => "vxm",
            Unit::Mxm => "mxm",
            Unit::Sxm => "sxm",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Direction a stream flows along the east-west axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dir {
    /// Toward higher positions.
    East,
    /// Toward lower positions.
    West,
}

impl Dir {
    /// The direction a value must flow to go from position `from` to `to`
    /// (east when they are equal).
    pub fn between(from: u16, to: u16) -> Dir {
        if to >= from {
            Dir::East
        } else {
            Dir::West
        }
    }
}

/// A stream operand: the first of the `dtype.bytes()` consecutive streams a
/// vector occupies, and their direction. Printed `s3e`, `s12w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamRef {
    /// Stream number within its direction.
    pub id: u8,
    /// Flow direction.
    pub dir: Dir,
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match self.dir {
            Dir::East => 'e',
            Dir::West => 'w',
        };
        write!(f, "s{}{}", self.id, d)
    }
}

impl StreamRef {
    /// Parses `s3e` / `s12w`.
    pub fn parse(s: &str) -> Option<StreamRef> {
        let body = s.strip_prefix('s')?;
        // By suffix, not by byte position: the text may end in a
        // multi-byte character (found by fuzz/program_load).
        let (num, dir) = if let Some(n) = body.strip_suffix('e') {
            (n, Dir::East)
        } else {
            (body.strip_suffix('w')?, Dir::West)
        };
        Some(StreamRef {
            id: num.parse().ok()?,
            dir,
        })
    }
}

/// How an opcode's mnemonic carries element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typing {
    /// No type suffix.
    None,
    /// One suffix: `add.f32`.
    One,
    /// Source and result types: `cvt.f32.f16`.
    Two,
}

/// One operand slot of an opcode, naming the [`Instr`] field it uses and its
/// text syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `n=5`: a count (NOP cycles, REPEAT times) in `arg`.
    Count,
    /// `d=2`: a REPEAT stride in cycles, in `arg2`.
    Stride,
    /// `a=0x10`: an SRAM address in `arg`.
    Addr,
    /// `row=3`: a weight-buffer row in `arg`.
    Row,
    /// `acc=2`: an accumulator register in `arg`.
    Acc,
    /// `mode=set|add`: whether MM overwrites or adds to the accumulator.
    Mode,
    /// `k=-1`: a lane shift or rotation amount in `arg`.
    Shift,
    /// `tab=0`: a permutation table index in `arg`.
    Table,
    /// `imm=0.5`: an immediate scalar in `imm`.
    Imm,
    /// `scale=0.01`: a quantization scale in `imm`.
    Scale,
    /// `zp=0`: a quantization zero point in `arg2`.
    Zp,
    /// `rows=8`: how many weight rows one `lw` loads, in `arg2`.
    Rows,
    /// `fmt=e4m3fn`: a narrow format ([`crate::narrow::Format`]) by its code
    /// in `arg`.
    Format,
    /// `sat=1`: whether a narrow conversion saturates, in `arg2`.
    Sat,
    /// `lo=30000`: the first map value a gather window holds, in `arg2`.
    Lo,
    /// `n=1365`: how many vectors a gather window holds, an integer in
    /// `imm`.
    Window,
    /// First source stream.
    Src,
    /// Second source stream.
    Src2,
    /// Destination stream, printed `->s4e`.
    Dst,
}

macro_rules! opcodes {
    ($( $variant:ident = $mn:literal, $unit:ident, $q:literal, $typing:ident, [$($operand:ident),*], $delay:literal, $doc:literal; )*) => {
        /// Every opcode of the machine.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Opcode {
            $( #[doc = $doc] $variant, )*
        }

        /// The ISA table: one row per opcode, in [`Opcode`] order.
        #[rustfmt::skip]
        pub static OPCODES: &[OpInfo] = &[
            $( OpInfo {
                op: Opcode::$variant,
                mnemonic: $mn,
                unit: Unit::$unit,
                queue: $q,
                typing: Typing::$typing,
                operands: &[$(Operand::$operand),*],
                operand_mask: operand_mask(&[$(Operand::$operand),*]),
                delay: $delay,
                doc: $doc,
            }, )*
        ];
    };
}

// Functional delays (cycles from issue to result at the producing slice) are
// this model's own: no per-opcode table has been published (reference/tsp.md,
// "Timing contract"). They are of the order the ISCA 2020 paper's examples
// suggest and can be overridden per chip (`latency_overrides`).
opcodes! {
    Nop       = "nop",    Icu, 0, None, [Count],                   1, "Idle the queue for n cycles (n >= 1).";
    Sync      = "sync",   Icu, 0, None, [],                        0, "Park the queue until the next NOTIFY; it resumes on the cycle after the NOTIFY's delay.";
    Notify    = "notify", Icu, 0, None, [],                        1, "Release every parked queue (ICU queue only).";
    Repeat    = "repeat", Icu, 0, None, [Count, Stride],           0, "Issue the previous instruction n more times, one every d cycles.";
    Read      = "read",   Mem, 0, One,  [Addr, Dst],               3, "Read the vector at address a (dtype.bytes() consecutive addresses, one byte-plane each) onto the destination streams. Occupies the bank's port for dtype.bytes() cycles.";
    Write     = "write",  Mem, 0, One,  [Addr, Src],               1, "Write the vector passing on the source streams to address a. The data is readable delay cycles after issue. Occupies the bank's port for dtype.bytes() cycles.";
    Add       = "add",    Vxm, 0, One,  [Src, Src2, Dst],          2, "Elementwise a + b (int8 saturating, int32 wrapping, floats rounded to the type).";
    Sub       = "sub",    Vxm, 0, One,  [Src, Src2, Dst],          2, "Elementwise a - b (int8 saturating, int32 wrapping).";
    Mul       = "mul",    Vxm, 0, One,  [Src, Src2, Dst],          3, "Elementwise a * b (int8 saturating, int32 wrapping).";
    Max       = "max",    Vxm, 0, One,  [Src, Src2, Dst],          1, "Elementwise maximum.";
    Min       = "min",    Vxm, 0, One,  [Src, Src2, Dst],          1, "Elementwise minimum.";
    AddImm    = "addi",   Vxm, 0, One,  [Src, Imm, Dst],           2, "Elementwise a + imm.";
    MulImm    = "muli",   Vxm, 0, One,  [Src, Imm, Dst],           3, "Elementwise a * imm.";
    Mov       = "mov",    Vxm, 0, One,  [Src, Dst],                1, "Copy the vector unchanged (used to retime an operand by one ALU pass).";
    Relu      = "relu",   Vxm, 0, One,  [Src, Dst],                1, "Elementwise max(a, 0).";
    Neg       = "neg",    Vxm, 0, One,  [Src, Dst],                1, "Elementwise -a (int8 saturating).";
    Abs       = "abs",    Vxm, 0, One,  [Src, Dst],                1, "Elementwise |a| (int8 saturating).";
    Exp       = "exp",    Vxm, 0, One,  [Src, Dst],                6, "Elementwise e^a (floats only).";
    Tanh      = "tanh",   Vxm, 0, One,  [Src, Dst],                6, "Elementwise tanh(a) (floats only).";
    Rsqrt     = "rsqrt",  Vxm, 0, One,  [Src, Dst],                6, "Elementwise 1/sqrt(a) (floats only).";
    Convert   = "cvt",    Vxm, 0, Two,  [Src, Dst],                2, "Convert each element: float to float rounds to nearest even; float to int rounds toward zero and saturates; int to float rounds to nearest.";
    Quantize  = "qnt",    Vxm, 0, Two,  [Src, Scale, Zp, Dst],     3, "QuantizeLinear: clamp(round_half_even(x / scale) + zp) to the integer type.";
    Dequantize= "dqnt",   Vxm, 0, Two,  [Src, Scale, Zp, Dst],     3, "DequantizeLinear: ((x - zp) as f32) * scale.";
    LoadWeights = "lw",   Mxm, 0, One,  [Row, Rows, Src],          1, "Load `rows` vectors, carried on `rows` consecutive stream groups from the source on, into rows `row`.. of the plane's staging weight buffer.";
    InstallWeights = "iw", Mxm, 0, None, [],                       2, "Install the staging buffer as the plane's active weights (after delay cycles) and clear the staging buffer to zeros.";
    Matmul    = "mm",     Mxm, 1, One,  [Src, Acc, Mode],          4, "Multiply the activation vector (one K-tile) by the active weights; set or add the product (one N-tile, int32 or fp32) into accumulator acc after delay cycles.";
    Emit      = "emit",   Mxm, 1, One,  [Acc, Dst],                2, "Stream accumulator acc out, converted to the suffix type (i32, f32 or f16).";
    Shift     = "shl",    Sxm, 0, One,  [Src, Shift, Dst],         2, "Lane shift: out[i] = in[i - k], zero where i - k is outside the vector.";
    Rotate    = "rot",    Sxm, 0, One,  [Src, Shift, Dst],         2, "Lane rotation: out[i] = in[(i - k) mod lanes].";
    Permute   = "perm",   Sxm, 0, One,  [Src, Table, Dst],         3, "Permutation: out[i] = in[table[i]] using the program's permutation table tab.";
    Transpose = "trn",    Sxm, 0, One,  [Rows, Src, Dst],          4, "Transpose: reads `rows` (= lanes per superlane) vectors on consecutive stream groups from the source on and writes `rows` vectors on consecutive groups from the destination on; within each superlane s, out[k][s*rows + i] = in[i][s*rows + k].";
    NarrowConvert = "ncvt", Vxm, 0, Two, [Src, Format, Sat, Dst],   2, "Convert each element to a narrow format held widened in the destination type (fp8/fp4/bf16 in f32, int4/int2 in i8; see `narrow`): floats round to nearest even onto the format's grid, overflowing per `sat`; small integers truncate and wrap.";
    Gather    = "gather", Mem, 0, One,  [Addr, Lo, Window, Src, Dst], 3, "Per-lane read (the TSP's `Gather s,map`): with m the lane's value in the int32 map vector on the source streams (4 streams), each lane of the result is that lane of the vector at address a + (m - lo) * dtype.bytes() when lo <= m < lo + n, and 0 otherwise. The window of n vectors from a lies in one bank, whose port it occupies for dtype.bytes() cycles, as a read does.";
}

/// One row of the ISA table.
#[derive(Debug)]
pub struct OpInfo {
    /// The opcode.
    pub op: Opcode,
    /// Assembly mnemonic.
    pub mnemonic: &'static str,
    /// Unit kind that executes it ([`Unit::Icu`]: any queue).
    pub unit: Unit,
    /// For MXM opcodes, the plane's queue that executes it (0: weights,
    /// 1: compute); 0 elsewhere.
    pub queue: u8,
    /// How the mnemonic carries types.
    pub typing: Typing,
    /// Operand layout, in text order.
    pub operands: &'static [Operand],
    /// The same operands as a set: bit `o as u32` for each operand `o`
    /// ([`OpInfo::has`]), so that the checks every loaded slot goes
    /// through test a bit instead of searching the list.
    pub operand_mask: u32,
    /// Default functional delay in cycles.
    pub delay: u32,
    /// What it does.
    pub doc: &'static str,
}

/// The set of `operands` as bits ([`OpInfo::operand_mask`]).
const fn operand_mask(operands: &[Operand]) -> u32 {
    const _: () = assert!((Operand::Dst as u32) < 32, "an operand is a bit of a u32");
    let mut mask = 0u32;
    let mut k = 0;
    while k < operands.len() {
        mask |= 1 << (operands[k] as u32);
        k += 1;
    }
    mask
}

impl OpInfo {
    /// Whether the opcode takes operand `o`.
    pub fn has(&self, o: Operand) -> bool {
        self.operand_mask & 1 << (o as u32) != 0
    }
}

impl Opcode {
    /// This opcode's table row.
    pub fn info(self) -> &'static OpInfo {
        &OPCODES[self as usize]
    }

    /// Looks an opcode up by mnemonic.
    pub fn from_mnemonic(m: &str) -> Option<Opcode> {
        OPCODES.iter().find(|i| i.mnemonic == m).map(|i| i.op)
    }

    /// Whether the opcode reads streams.
    pub fn reads_streams(self) -> bool {
        let info = self.info();
        info.has(Operand::Src) || info.has(Operand::Src2)
    }

    /// Whether the opcode writes a stream.
    pub fn writes_stream(self) -> bool {
        self.info().has(Operand::Dst)
    }
}

/// One instruction. Fields an opcode does not use (per its operand list) are
/// zero / `None` / `false`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instr {
    /// The opcode.
    pub op: Opcode,
    /// Element type (the source type for [`Typing::Two`]); `I8` when unused.
    pub ty: DType,
    /// Result type for [`Typing::Two`]; equal to `ty` otherwise.
    pub to: DType,
    /// First source stream.
    pub src: Option<StreamRef>,
    /// Second source stream.
    pub src2: Option<StreamRef>,
    /// Destination stream.
    pub dst: Option<StreamRef>,
    /// Address, row, accumulator, count, shift or table index.
    pub arg: i64,
    /// Stride, zero point, row count or a gather window's first map value.
    pub arg2: i64,
    /// Immediate scalar, quantization scale or a gather window's length.
    pub imm: f64,
    /// MM mode: add into the accumulator (true) or overwrite it (false).
    pub accumulate: bool,
}

impl Instr {
    /// A bare instruction of opcode `op` with every operand zero.
    pub fn new(op: Opcode) -> Instr {
        Instr {
            op,
            ty: DType::I8,
            to: DType::I8,
            src: None,
            src2: None,
            dst: None,
            arg: 0,
            arg2: 0,
            imm: 0.0,
            accumulate: false,
        }
    }

    /// A NOP of `n` cycles.
    pub fn nop(n: u32) -> Instr {
        Instr {
            arg: n as i64,
            ..Instr::new(Opcode::Nop)
        }
    }

    /// Sets the element type (and the result type, for one-type opcodes).
    pub fn typed(mut self, ty: DType) -> Instr {
        self.ty = ty;
        self.to = ty;
        self
    }

    /// Cycles this instruction occupies its queue: n for NOP, 1 otherwise
    /// (REPEAT's own cycles are counted by the engine).
    pub fn issue_cycles(&self) -> u64 {
        match self.op {
            Opcode::Nop => self.arg.max(1) as u64,
            Opcode::Sync | Opcode::Repeat => 0,
            _ => 1,
        }
    }

    /// Width in streams of one vector this instruction reads from
    /// `src`/`src2`: the element type's, except for `gather`, whose map is
    /// int32 whatever the type it reads.
    pub fn src_width(&self) -> usize {
        self.src_type().bytes()
    }

    /// The element type of the vectors on `src`/`src2`.
    pub fn src_type(&self) -> DType {
        match self.op {
            Opcode::Gather => DType::I32,
            _ => self.ty,
        }
    }

    /// A gather's window: its first map value `lo` and its length in
    /// vectors (`None` for other opcodes, or a length that is not a
    /// non-negative integer below 2^31).
    pub fn gather_window(&self) -> Option<(i64, u32)> {
        let n = self.imm;
        (self.op == Opcode::Gather && n.fract() == 0.0 && (0.0..2f64.powi(31)).contains(&n))
            .then_some((self.arg2, n as u32))
    }

    /// How many vectors the first source carries, on consecutive stream
    /// groups of `src_width()` streams each: `rows` for `lw`, 1 otherwise.
    pub fn src_groups(&self) -> usize {
        match self.op {
            Opcode::LoadWeights | Opcode::Transpose => self.arg2.max(1) as usize,
            _ => 1,
        }
    }

    /// How many vectors the destination carries, on consecutive stream
    /// groups: `rows` for `trn`, 1 otherwise.
    pub fn dst_groups(&self) -> usize {
        match self.op {
            Opcode::Transpose => self.arg2.max(1) as usize,
            _ => 1,
        }
    }

    /// Width in streams of the vector it writes to `dst`.
    pub fn dst_width(&self) -> usize {
        self.to.bytes()
    }

    /// Checks that unused fields are zero and used stream fields are present.
    pub fn check_shape(&self) -> Result<(), String> {
        let info = self.op.info();
        // A bit test per question (this runs for every slot a program
        // loads).
        let has = |o: Operand| info.has(o);
        let uses_arg = [
            Operand::Count,
            Operand::Addr,
            Operand::Row,
            Operand::Acc,
            Operand::Shift,
            Operand::Table,
            Operand::Format,
        ]
        .into_iter()
        .any(has);
        let uses_arg2 = has(Operand::Stride)
            || has(Operand::Zp)
            || has(Operand::Rows)
            || has(Operand::Sat)
            || has(Operand::Lo);
        let uses_imm = has(Operand::Imm) || has(Operand::Scale) || has(Operand::Window);
        let problems = [
            (has(Operand::Src) != self.src.is_some(), "source stream"),
            (
                has(Operand::Src2) != self.src2.is_some(),
                "second source stream",
            ),
            (
                has(Operand::Dst) != self.dst.is_some(),
                "destination stream",
            ),
            (!uses_arg && self.arg != 0, "argument"),
            (!uses_arg2 && self.arg2 != 0, "second argument"),
            (!uses_imm && self.imm.to_bits() != 0, "immediate"),
            (!has(Operand::Mode) && self.accumulate, "mode"),
            (
                info.typing == Typing::None && (self.ty != DType::I8 || self.to != DType::I8),
                "type",
            ),
            (
                info.typing == Typing::One && self.ty != self.to,
                "result type",
            ),
        ];
        for (bad, what) in problems {
            if bad {
                return Err(format!("{}: {what} does not fit the opcode", info.mnemonic));
            }
        }
        Ok(())
    }
}

/// The ISA table as a Markdown table, as `ISA.md` embeds it (a test keeps
/// the two identical).
pub fn markdown_table() -> String {
    let mut s = String::from("| mnemonic | unit | queue | types | operands | delay | semantics |\n|---|---|---|---|---|---|---|\n");
    for i in OPCODES {
        let types = match i.typing {
            Typing::None => "-",
            Typing::One => "`.T`",
            Typing::Two => "`.FROM.TO`",
        };
        let queue = match i.unit {
            Unit::Mxm if i.queue == 0 => "weights (0)",
            Unit::Mxm => "compute (1)",
            Unit::Icu => "any",
            _ => "any of the slice",
        };
        let ops: Vec<&str> = i
            .operands
            .iter()
            .map(|o| match o {
                Operand::Count => "`n=`",
                Operand::Stride => "`d=`",
                Operand::Addr => "`a=`",
                Operand::Row => "`row=`",
                Operand::Acc => "`acc=`",
                Operand::Mode => "`mode=set|add`",
                Operand::Shift => "`k=`",
                Operand::Table => "`tab=`",
                Operand::Imm => "`imm=`",
                Operand::Scale => "`scale=`",
                Operand::Zp => "`zp=`",
                Operand::Rows => "`rows=`",
                Operand::Format => "`fmt=`",
                Operand::Sat => "`sat=0|1`",
                Operand::Lo => "`lo=`",
                Operand::Window => "`n=`",
                Operand::Src => "src",
                Operand::Src2 => "src2",
                Operand::Dst => "`->dst`",
            })
            .collect();
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            i.mnemonic,
            i.unit,
            queue,
            types,
            if ops.is_empty() {
                "-".to_string()
            } else {
                ops.join(" ").replace('|', "\\|")
            },
            i.delay,
            i.doc.replace('|', "\\|")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_opcode_order_and_unique() {
        for (i, info) in OPCODES.iter().enumerate() {
            assert_eq!(info.op as usize, i, "{}", info.mnemonic);
            assert_eq!(Opcode::from_mnemonic(info.mnemonic), Some(info.op));
        }
    }

    #[test]
    fn stream_refs_round_trip() {
        for s in ["s0e", "s31w", "s7e"] {
            assert_eq!(StreamRef::parse(s).expect(s).to_string(), s);
        }
        assert_eq!(StreamRef::parse("s"), None);
        assert_eq!(StreamRef::parse("x3e"), None);
        assert_eq!(StreamRef::parse("s999e"), None);
    }
}
