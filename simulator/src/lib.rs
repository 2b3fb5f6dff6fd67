//! `lpsim`, the lpu simulator: executes a [`lpu_isa::Program`]
//! cycle-accurately with real values, stops on hazards, and reports.
//!
//! - [`engine`]: the cycle engine ([`simulate`]).
//! - [`bound`]: a lower bound on a program's cycles (critical path and
//!   busiest resource).
//! - [`dynamic`]: dynamic (interlocked) execution of the dependence DAG,
//!   seeded HBM memory jitter and multi-seed latency distributions.
//! - [`vxm`]: elementwise, MXM and SXM arithmetic.
//! - [`hazard`]: what the engine stops on.
//! - [`check`]: comparison with the reference interpreter.
//! - [`energy`]: the LPU's energy per inference from the issued instructions.
//! - [`report`]: the JSON and terminal report.
//! - [`trace`]: per-cycle text trace and Chrome trace-event JSON.
//! - [`perturb`]: moves one instruction one cycle later (the hazard lab).
//!
//! The library never calls the compiler: the program is the contract.

pub mod bound;
pub mod check;
pub mod dynamic;
pub mod energy;
pub mod engine;
pub mod hazard;
pub mod perturb;
pub mod report;
pub mod trace;
pub mod vxm;

pub use bound::{lower_bound, Bound};
pub use dynamic::{simulate_dynamic, DynamicOptions, DynamicOutcome};
pub use engine::{simulate, simulate_beside, Outcome, SimError, SimOptions};
pub use hazard::{Hazard, HazardKind};
