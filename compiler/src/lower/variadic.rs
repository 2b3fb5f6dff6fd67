//! Lowering of the multi-operand elementwise operators and broadcasts.
//!
//! | op | lowering |
//! |---|---|
//! | Sum, Max, Min | per output vector, read every operand (each the result's shape, a row, or a constant row) and fold them left to right with VXM `add`/`max`/`min`, as the interpreter does. |
//! | Where | in two groups per vector (a single one needs more streams than `tiny` has): `t = x * c` written to the result's place, then `t + y * (1 - c)`, with `c = cvt(cond)` (0 or 1). Exact for finite `x` and `y`; an infinite or NaN operand that is not selected poisons the result (`inf * 0`), where the interpreter would not. |
//! | PRelu | `relu(x) + slope * min(x, 0)`: exact (`x + 0` and `0 + s*x` round to themselves), with the slope as a row and `0` as the zero vector. |
//! | Expand | a copy of the operand's row for every result row (row broadcasts only: along the rows, each result row reads the operand row it broadcasts from). |

use super::{Lowerer, Place};
use crate::alloc::TensorLoc;
use crate::CompileError;
use lpu_graph::Node;
use lpu_isa::{DType, Instr, Opcode};

impl<'a> Lowerer<'a> {
    /// The result's shape, type and whether it is stored channels-last.
    fn result_info(&self, n: &Node) -> Result<(Vec<usize>, DType, bool), CompileError> {
        let name = n.outputs.first().cloned().unwrap_or_default();
        let Some(info) = self.g.info(&name) else {
            return self.unsupported("output has no inferred type");
        };
        Ok((info.shape.clone(), info.dtype, self.cl.contains(&name)))
    }

    /// The operand `name` of shape `from`, stored as `loc` (its own storage
    /// or its lane broadcast), with one row per row of a result of shape
    /// `to` ([`Broadcast::Rows`](super::layout::Broadcast::Rows)).
    pub(super) fn rows_of(
        &self,
        loc: TensorLoc,
        name: &str,
        from: &[usize],
        to: &[usize],
    ) -> Result<TensorLoc, CompileError> {
        match super::layout::rows_view(loc, from, to) {
            Some(l) => Ok(l),
            None => self.unsupported(&format!(
                "operand '{name}' of shape {from:?} is not stored as the row-major rows that broadcast to {to:?}"
            )),
        }
    }

    /// Sum, Max and Min over any number of operands.
    pub(super) fn lower_variadic(&mut self, n: &Node) -> Result<(), CompileError> {
        let op = match n.op_type.as_str() {
            "Sum" => Opcode::Add,
            "Max" => Opcode::Max,
            _ => Opcode::Min,
        };
        let (shape, ty, cl) = self.result_info(n)?;
        let mut ops: Vec<TensorLoc> = Vec::new();
        for name in n.inputs.iter().filter(|i| !i.is_empty()) {
            ops.push(self.broadcast_operand(name, &shape, cl)?);
        }
        if ops.is_empty() {
            return self.unsupported("needs at least one operand");
        }
        let (_, out) = self.output(0)?;
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let mut acc = self.read(&mut gb, ops[0].for_row(r, j), ops[0].dtype);
                for o in &ops[1..] {
                    let v = self.read(&mut gb, o.for_row(r, j), o.dtype);
                    acc = self.op(
                        &mut gb,
                        Instr::new(op).typed(ty),
                        Place::Vxm,
                        &[acc, v],
                        vec![],
                    );
                }
                self.write(&mut gb, acc, out.at(r, j), out.dtype);
                self.fin(gb);
            }
        }
        Ok(())
    }

    /// PRelu as `relu(x) + slope * min(x, 0)`.
    pub(super) fn lower_prelu(&mut self, n: &Node) -> Result<(), CompileError> {
        let (shape, ty, cl) = self.result_info(n)?;
        if !ty.is_float() {
            return self.unsupported("PRelu needs a float input");
        }
        let x = self.broadcast_operand(&self.input_name(n, 0)?, &shape, cl)?;
        let slope = self.broadcast_operand(&self.input_name(n, 1)?, &shape, cl)?;
        let zero = self.zero_vector(ty);
        let (_, out) = self.output(0)?;
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let a = self.read(&mut gb, x.for_row(r, j), ty);
                let pos = self.op(
                    &mut gb,
                    Instr::new(Opcode::Relu).typed(ty),
                    Place::Vxm,
                    &[a],
                    vec![],
                );
                let b = self.read(&mut gb, x.for_row(r, j), ty);
                let z = self.read(&mut gb, zero, ty);
                let neg = self.op(
                    &mut gb,
                    Instr::new(Opcode::Min).typed(ty),
                    Place::Vxm,
                    &[b, z],
                    vec![],
                );
                let s = self.read(&mut gb, slope.for_row(r, j), ty);
                let sn = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    Place::Vxm,
                    &[s, neg],
                    vec![],
                );
                let y = self.op(
                    &mut gb,
                    Instr::new(Opcode::Add).typed(ty),
                    Place::Vxm,
                    &[pos, sn],
                    vec![],
                );
                self.write(&mut gb, y, out.at(r, j), ty);
                self.fin(gb);
            }
        }
        Ok(())
    }

    /// Where as `x * c + y * (1 - c)` (see the module doc).
    pub(super) fn lower_where(&mut self, n: &Node) -> Result<(), CompileError> {
        let (shape, ty, cl) = self.result_info(n)?;
        if !ty.is_float() {
            return self.unsupported("Where is lowered for float values");
        }
        let c = self.broadcast_operand(&self.input_name(n, 0)?, &shape, cl)?;
        let x = self.broadcast_operand(&self.input_name(n, 1)?, &shape, cl)?;
        let y = self.broadcast_operand(&self.input_name(n, 2)?, &shape, cl)?;
        let (_, out) = self.output(0)?;
        let mask = |l: &mut Self, gb: &mut super::Gb, r: usize, j: usize| {
            let cv = l.read(gb, c.for_row(r, j), c.dtype);
            let mut cvt = Instr::new(Opcode::Convert).typed(c.dtype);
            cvt.to = ty;
            l.op(gb, cvt, Place::Vxm, &[cv], vec![])
        };
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let cf = mask(self, &mut gb, r, j);
                let xv = self.read(&mut gb, x.for_row(r, j), ty);
                let t = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    Place::Vxm,
                    &[xv, cf],
                    vec![],
                );
                self.write(&mut gb, t, out.at(r, j), ty);
                self.fin(gb);
                let mut gb = self.begin();
                let cf = mask(self, &mut gb, r, j);
                let neg = Instr {
                    imm: -1.0,
                    ..Instr::new(Opcode::MulImm).typed(ty)
                };
                let m = self.op(&mut gb, neg, Place::Vxm, &[cf], vec![]);
                let one = Instr {
                    imm: 1.0,
                    ..Instr::new(Opcode::AddImm).typed(ty)
                };
                let nc = self.op(&mut gb, one, Place::Vxm, &[m], vec![]);
                let yv = self.read(&mut gb, y.for_row(r, j), ty);
                let ys = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    Place::Vxm,
                    &[yv, nc],
                    vec![],
                );
                let tv = self.read(&mut gb, out.at(r, j), ty);
                let v = self.op(
                    &mut gb,
                    Instr::new(Opcode::Add).typed(ty),
                    Place::Vxm,
                    &[tv, ys],
                    vec![],
                );
                self.write(&mut gb, v, out.at(r, j), ty);
                self.fin(gb);
            }
        }
        Ok(())
    }

    /// Expand of a row (or a constant) to the result's shape: a copy per
    /// result row.
    pub(super) fn lower_expand(&mut self, n: &Node) -> Result<(), CompileError> {
        let (shape, ty, cl) = self.result_info(n)?;
        let x = self.broadcast_operand(&self.input_name(n, 0)?, &shape, cl)?;
        let (_, out) = self.output(0)?;
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let v = self.read(&mut gb, x.for_row(r, j), ty);
                self.write(&mut gb, v, out.at(r, j), ty);
                self.fin(gb);
            }
        }
        Ok(())
    }
}
