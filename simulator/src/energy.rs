//! Energy of one run on the LPU, from the instructions it issued and the
//! chip's `energy` parameters ([`lpu_isa::EnergyConfig`]).
//!
//! ```text
//! E = instructions x instruction_pj
//!   + MXM MACs x mac_pj[dtype]            (an `mm` is mxm.size^2 MACs)
//!   + VXM/SXM lane ops x vxm_lane_op_pj   (lanes per instruction)
//!   + SRAM bytes x sram_pj_per_byte       (`read`/`write`: lanes x dtype bytes)
//!   + stream byte-hops x stream_pj_per_byte_hop
//!   + static_w x latency
//! ```
//!
//! Stream byte-hops count, for every stream operand an instruction reads,
//! the vector's bytes times the slice positions between its producer and
//! the reader. The counts follow the issues the run executed (up to a
//! hazard, if one stopped it); `nop`, `sync`, `repeat` and `notify` are
//! control and count as nothing.

use crate::engine::Outcome;
use lpu_isa::program::{DepKind, IdMap};
use lpu_isa::{Opcode, Program, Unit};
use rayon::prelude::*;
use serde::Serialize;

/// The LPU's energy for one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnergyReport {
    /// Where the parameters come from, from the chip config.
    pub technology: String,
    /// Instructions counted (control excluded).
    pub instructions: u64,
    /// MXM multiply-accumulates.
    pub macs: u64,
    /// VXM and SXM lane operations.
    pub lane_ops: u64,
    /// SRAM bytes read and written.
    pub sram_bytes: u64,
    /// Stream bytes x slice positions travelled.
    pub stream_byte_hops: u64,
    /// Instruction energy, J.
    pub instructions_j: f64,
    /// MXM energy, J.
    pub mxm_j: f64,
    /// VXM and SXM energy, J.
    pub vxm_j: f64,
    /// SRAM energy, J.
    pub sram_j: f64,
    /// Stream energy, J.
    pub stream_j: f64,
    /// Static power x latency, J.
    pub static_j: f64,
    /// Energy per inference, J.
    pub total_j: f64,
    /// `1 / total_j`.
    pub inferences_per_j: f64,
}

/// What the energy terms count, summed over issues: the work a run did,
/// before it is priced. [`completed_work`] gives that of a run that
/// completes from the program alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    instrs: u64,
    macs_i8: u64,
    macs_f16: u64,
    lane_ops: u64,
    sram: u64,
    hops: u64,
}

impl Counts {
    /// Adds `times` issues of slot `si` of queue `qi`, on a chip of
    /// `lanes` lanes whose `mm` makes `macs_per_mm` MACs; `slice_of` gives
    /// each instruction's slice (without it, no stream hops are counted).
    fn add(
        &mut self,
        p: &Program,
        slice_of: Option<&IdMap<u16>>,
        (lanes, macs_per_mm): (u64, u64),
        (qi, si, times): (usize, usize, u64),
    ) {
        let q = &p.queues[qi];
        let slot = &q.slots[si];
        let op = slot.instr.op;
        if matches!(
            op,
            Opcode::Nop | Opcode::Sync | Opcode::Repeat | Opcode::Notify
        ) {
            return;
        }
        self.instrs += times;
        let bytes = lanes * slot.instr.ty.bytes() as u64;
        match op {
            Opcode::Matmul => {
                if slot.instr.ty == lpu_isa::DType::I8 {
                    self.macs_i8 += macs_per_mm * times;
                } else {
                    self.macs_f16 += macs_per_mm * times;
                }
            }
            Opcode::Read | Opcode::Write | Opcode::Gather => self.sram += bytes * times,
            _ if matches!(q.queue.unit, Unit::Vxm | Unit::Sxm) => self.lane_ops += lanes * times,
            _ => {}
        }
        let Some(slice_of) = slice_of else {
            return;
        };
        for d in &slot.deps {
            if matches!(d.kind, DepKind::Src | DepKind::Src2) {
                if let Some(from) = slice_of.get(d.on) {
                    let hops = operand_hops(slot.instr.src_width(), from, q.queue.slice, times);
                    self.hops += lanes * hops;
                }
            }
        }
    }

    fn sum(a: Counts, b: Counts) -> Counts {
        Counts {
            instrs: a.instrs + b.instrs,
            macs_i8: a.macs_i8 + b.macs_i8,
            macs_f16: a.macs_f16 + b.macs_f16,
            lane_ops: a.lane_ops + b.lane_ops,
            sram: a.sram + b.sram,
            hops: a.hops + b.hops,
        }
    }
}

/// The stream hops of one operand, per lane: its width in streams (a
/// `src_width()`: a gather's int32 map whatever the type it reads) times
/// the positions from its producer at `from` to its consumer at `to`,
/// times the consumer's issues. The one rule for both counts of a run's
/// hops: [`Counts::add`]'s and the lower bound's edge pass
/// ([`crate::bound::lower_bound_and_hops`]).
pub(crate) fn operand_hops(width: usize, from: u16, to: u16, issues: u64) -> u64 {
    width as u64 * u64::from(from.abs_diff(to)) * issues
}

/// Every instruction's slice, by id (for the stream hops).
fn slices_by_id(p: &Program) -> IdMap<u16> {
    IdMap::from_pairs(
        p.queues
            .iter()
            .flat_map(|q| q.slots.iter().map(|s| (s.id, q.queue.slice))),
    )
}

/// A closure that adds `times` issues of slot `si` of queue `qi` to a
/// [`Counts`], the stream hops through `slice_of` (none without it).
fn counter(
    p: &Program,
    slice_of: Option<IdMap<u16>>,
) -> impl Fn(&mut Counts, usize, usize, u64) + Sync + '_ {
    let lanes = p.chip.lanes() as u64;
    let macs_per_mm = (p.chip.mxm.size as u64).pow(2);
    move |c: &mut Counts, qi: usize, si: usize, times: u64| {
        c.add(p, slice_of.as_ref(), (lanes, macs_per_mm), (qi, si, times))
    }
}

/// The work of a run of `p` that completes: every slot and its REPEATs.
/// It depends on the program alone, so `lpsim` works it out beside the
/// simulation, with the lower bound; `None` when the chip has no `energy`
/// section (nothing to price).
pub fn completed_work(p: &Program) -> Option<Counts> {
    p.chip.energy.as_ref()?;
    Some(per_slot(p, counter(p, Some(slices_by_id(p)))))
}

/// [`completed_work`] with the stream operands' hops already counted by
/// [`crate::bound::lower_bound_and_hops`] (what `lpsim` does: the lower
/// bound finds every producer's position anyway), so that no table of
/// positions by id is built and no edge is looked up again.
pub(crate) fn completed_work_given_hops(p: &Program, hops: u64) -> Option<Counts> {
    p.chip.energy.as_ref()?;
    let mut c = per_slot(p, counter(p, None));
    c.hops = p.chip.lanes() as u64 * hops;
    Some(c)
}

/// The sum of `count` over every slot with its REPEATs' issues, queue by
/// queue on all cores (the sums do not depend on the order).
fn per_slot(p: &Program, count: impl Fn(&mut Counts, usize, usize, u64) + Sync) -> Counts {
    p.queues
        .par_iter()
        .enumerate()
        .map(|(qi, q)| {
            let mut c = Counts::default();
            for si in 0..q.slots.len() {
                let repeats = match q.slots.get(si + 1) {
                    Some(r) if r.instr.op == Opcode::Repeat => r.instr.arg.max(0) as u64,
                    _ => 0,
                };
                count(&mut c, qi, si, 1 + repeats);
            }
            c
        })
        .reduce(Counts::default, Counts::sum)
}

/// The energy of a run, or `None` when the chip has no `energy` section
/// (or the program cannot be timed).
pub fn lpu_energy(p: &Program, o: &Outcome) -> Option<EnergyReport> {
    lpu_energy_with(p, o, None)
}

/// [`lpu_energy`], given [`completed_work`]'s result when the caller
/// already has it (it is used only if the run completed).
pub fn lpu_energy_with(
    p: &Program,
    o: &Outcome,
    completed: Option<Counts>,
) -> Option<EnergyReport> {
    let e = p.chip.energy.as_ref()?;
    // Every issue of the run: the slots and their REPEATs when it
    // completed, the issues up to the hazard's cycle otherwise.
    let c = match o.hazard.as_ref() {
        None => match completed {
            Some(c) => c,
            None => completed_work(p)?,
        },
        Some(h) => {
            let count = counter(p, Some(slices_by_id(p)));
            let mut c = Counts::default();
            for iss in p
                .issue_times()
                .ok()?
                .iter()
                .take_while(|iss| iss.cycle <= h.cycle)
            {
                count(&mut c, iss.queue as usize, iss.slot as usize, 1);
            }
            c
        }
    };
    let Counts {
        instrs,
        macs_i8,
        macs_f16,
        lane_ops,
        sram,
        hops,
    } = c;
    let pj = 1e-12;
    let instructions_j = instrs as f64 * e.instruction_pj * pj;
    let mxm_j = (macs_i8 as f64 * e.mac_int8_pj + macs_f16 as f64 * e.mac_fp16_pj) * pj;
    let vxm_j = lane_ops as f64 * e.vxm_lane_op_pj * pj;
    let sram_j = sram as f64 * e.sram_pj_per_byte * pj;
    let stream_j = hops as f64 * e.stream_pj_per_byte_hop * pj;
    let static_j = e.static_w * o.cycles as f64 / (p.chip.clock_mhz * 1e6);
    let total_j = instructions_j + mxm_j + vxm_j + sram_j + stream_j + static_j;
    Some(EnergyReport {
        technology: e.technology.clone(),
        instructions: instrs,
        macs: macs_i8 + macs_f16,
        lane_ops,
        sram_bytes: sram,
        stream_byte_hops: hops,
        instructions_j,
        mxm_j,
        vxm_j,
        sram_j,
        stream_j,
        static_j,
        total_j,
        inferences_per_j: if total_j > 0.0 { 1.0 / total_j } else { 0.0 },
    })
}
