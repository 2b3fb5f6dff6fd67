//! The SXM transpose on `tsp`: sixteen int8 rows read from sixteen MEM
//! slices arrive together at the SXM at position 2, `trn` swaps lanes and
//! rows within every 16-lane superlane, and sixteen writes store the result.

use lpu_isa::program::{Binding, Dep, DepKind, MemInit, QueueId, QueueProgram, Slot, VecLoc};
use lpu_isa::{ChipConfig, DType, Dir, Instr, Opcode, Program, StreamRef, Unit, Values};
use lpu_sim::{simulate, HazardKind, SimOptions};
use std::collections::BTreeMap;

const N: usize = 16; // lanes per superlane on tsp
const ARRIVE: u64 = 30; // cycle the rows reach the SXM

fn slot(id: u32, instr: Instr, deps: Vec<Dep>) -> Slot {
    Slot {
        id,
        instr,
        node: None,
        deps: deps.into(),
    }
}

fn queue(unit: Unit, slice: u16, slots: Vec<Slot>) -> QueueProgram {
    QueueProgram {
        queue: QueueId {
            unit,
            slice,
            index: 0,
        },
        slots,
    }
}

/// Row k lives in MEM slice 3 + k. `group_of(k)` says which output group of
/// the transpose the write into slice 3 + k names as its producer.
fn program(group_of: impl Fn(usize) -> u8) -> Program {
    let chip = ChipConfig::preset("tsp").expect("tsp");
    let (d_read, d_trn) = (
        chip.delay(Opcode::Read) as u64,
        chip.delay(Opcode::Transpose) as u64,
    );
    let lanes = chip.lanes() as usize;
    let sxm = 2u16;
    let trn_id = 1000;
    let mut queues = vec![queue(
        Unit::Icu,
        0,
        vec![slot(0, Instr::new(Opcode::Notify), vec![])],
    )];
    let mut memory = Vec::new();
    let mut trn_deps = Vec::new();
    let mut id = 1;
    let mut next = || {
        id += 1;
        id
    };
    for k in 0..N {
        let p = 3 + k as u16;
        let read_at = ARRIVE - d_read - (p - sxm) as u64;
        let write_at = ARRIVE + d_trn + (p - sxm) as u64;
        let (rid, sid) = (next(), next());
        let read = Instr {
            arg: 0,
            dst: Some(StreamRef {
                id: k as u8,
                dir: Dir::West,
            }),
            ..Instr::new(Opcode::Read).typed(DType::I8)
        };
        let write = Instr {
            arg: 0x10,
            src: Some(StreamRef {
                id: k as u8,
                dir: Dir::East,
            }),
            ..Instr::new(Opcode::Write).typed(DType::I8)
        };
        let g = group_of(k);
        queues.push(queue(
            Unit::Mem,
            p,
            vec![
                slot(sid, Instr::new(Opcode::Sync), vec![]),
                slot(next(), Instr::nop(read_at as u32 - 1), vec![]),
                slot(rid, read, vec![]),
                slot(next(), Instr::nop((write_at - read_at - 1) as u32), vec![]),
                slot(
                    next(),
                    write,
                    vec![Dep {
                        on: trn_id,
                        kind: DepKind::Src,
                        group: g,
                    }],
                ),
            ],
        ));
        trn_deps.push(Dep {
            on: rid,
            kind: DepKind::Src,
            group: 0,
        });
        let row: Vec<i8> = (0..lanes).map(|l| ((k * 31 + l * 7) % 251) as i8).collect();
        memory.push(MemInit {
            at: VecLoc { slice: p, addr: 0 },
            values: Values::I8(row),
        });
    }
    let trn = Instr {
        arg2: N as i64,
        src: Some(StreamRef {
            id: 0,
            dir: Dir::West,
        }),
        dst: Some(StreamRef {
            id: 0,
            dir: Dir::East,
        }),
        ..Instr::new(Opcode::Transpose).typed(DType::I8)
    };
    queues.push(QueueProgram {
        queue: QueueId {
            unit: Unit::Sxm,
            slice: sxm,
            index: 0,
        },
        slots: vec![
            slot(1, Instr::new(Opcode::Sync), vec![]),
            slot(999, Instr::nop(ARRIVE as u32 - 1), vec![]),
            slot(trn_id, trn, trn_deps),
        ],
    });
    queues.sort_by_key(|q| q.queue);
    let out = Binding {
        layout: vec![],
        view: vec![],
        name: "y".into(),
        dtype: DType::I8,
        shape: vec![N, lanes],
        rows: N,
        cols: lanes,
        vectors: (0..N)
            .map(|k| VecLoc {
                slice: 3 + k as u16,
                addr: 0x10,
            })
            .collect(),
    };
    let p = Program {
        model: "transpose".into(),
        chip,
        nodes: vec![],
        perm_tables: vec![],
        inputs: vec![],
        outputs: vec![out],
        queues,
        memory,
    };
    p.validate().unwrap_or_else(|e| panic!("{e}"));
    p
}

#[test]
fn transposes_every_superlane_block() {
    let p = program(|k| k as u8);
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let y = &o.outputs["y"];
    let lanes = 320;
    let input = |row: usize, lane: usize| ((row * 31 + lane * 7) % 251) as i8 as f64;
    for k in 0..N {
        for lane in 0..lanes {
            let (s, l) = (lane / N, lane % N);
            assert_eq!(
                y.values.get_f64(k * lanes + lane),
                input(l, s * N + k),
                "row {k} lane {lane}"
            );
        }
    }
    // The assembly names each output group: `s3e<i1000.3`.
    let text = lpu_isa::asm::disassemble(&p);
    assert!(text.contains("s3e<i1000.3"), "{text}");
    assert!(text.contains("trn.i8 rows=16 s0w<i"), "{text}");
    assert_eq!(lpu_isa::asm::assemble(&text).expect("assembles"), p);
}

#[test]
fn reading_the_wrong_output_group_is_caught() {
    // The write into slice 3 + 5 claims group 6 but its stream carries group 5.
    let p = program(|k| if k == 5 { 6 } else { k as u8 });
    let o = simulate(&p, &BTreeMap::new(), &SimOptions::default()).expect("runs");
    let h = o.hazard.expect("hazard");
    assert_eq!(h.kind, HazardKind::WrongProducer);
    assert!(h.message.contains("group 5 of i1000"), "{}", h.message);
}

#[test]
fn trn_must_cover_a_whole_superlane() {
    let mut p = program(|k| k as u8);
    for q in &mut p.queues {
        for s in &mut q.slots {
            if s.instr.op == Opcode::Transpose {
                s.instr.arg2 = 8;
            }
        }
    }
    let e = p.validate().expect_err("rows=8").to_string();
    assert!(e.contains("rows must be 16"), "{e}");
}
