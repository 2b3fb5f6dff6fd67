//! The program loaders never panic: arbitrary or damaged bytes and text give
//! an error or a valid program.

use lpu_isa::{asm, ChipConfig, Instr, Opcode, Program};
use proptest::prelude::*;

fn sample() -> Program {
    let chip = ChipConfig::preset("tiny").expect("tiny");
    let text = format!(
        "{}.queue icu\n  i0 notify\n.queue mem@5\n  i1 sync\n  i2 read.i8 a=0x0 ->s0e\n  i3 repeat n=2 d=3\n.data mem@5 0x0 i8 {}\n",
        asm::disassemble(&Program {
            model: "m".into(),
            chip,
            nodes: vec![],
            perm_tables: vec![],
            inputs: vec![],
            outputs: vec![],
            queues: vec![],
            memory: vec![],
        }),
        "00".repeat(16)
    );
    asm::assemble(&text).expect("sample assembles")
}

/// Found by `fuzz/` (`program_load`): a stream operand ending in a
/// multi-byte character made `StreamRef::parse` slice inside it.
#[test]
fn non_ascii_operands_do_not_panic() {
    let text = asm::disassemble(&sample());
    for junk in [
        "->s\u{2c8}",
        "->s0\u{2c8}",
        "->\u{2c8}",
        "a=\u{2c8} ->s0e",
        "s\u{2c8}w",
    ] {
        let t = text.replace("->s0e", junk);
        assert!(asm::assemble(&t).is_err(), "{junk}");
    }
    assert!(lpu_isa::StreamRef::parse("s\u{2c8}").is_none());
    assert!(lpu_isa::StreamRef::parse("s12w").is_some());
}

/// Found by `fuzz/` (`program_load`): a binding whose shape's element count
/// overflows `usize` made `Program::validate` overflow (a panic in debug
/// builds, a wrapped count in release ones).
#[test]
fn binding_shape_overflow_is_an_error() {
    let bytes = include_bytes!("data/fuzz-binding-shape-overflow.lpb");
    // It decodes (format version 5; version 4 had the same bytes, no memory image) and fails validation, without a panic.
    assert!(matches!(
        Program::from_bytes(bytes),
        Err(lpu_isa::program::ProgramError::Invalid(_))
    ));
}

#[test]
fn binary_and_text_round_trip() {
    let p = sample();
    let bytes = p.to_bytes();
    assert_eq!(Program::from_bytes(&bytes).expect("decodes"), p);
    let text = asm::disassemble(&p);
    assert_eq!(asm::assemble(&text).expect("assembles"), p);
    assert_eq!(
        asm::disassemble(&asm::assemble(&text).expect("assembles")),
        text
    );
    let issues = p.issue_times().expect("timed");
    // notify at 0; read at 1 and its repeats at 4 and 7.
    let cycles: Vec<u64> = issues.iter().map(|i| i.cycle).collect();
    assert_eq!(cycles, vec![0, 1, 4, 7]);
    assert_eq!(Instr::nop(3).issue_cycles(), 3);
    assert!(Opcode::Read.writes_stream());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_binaries_do_not_panic(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
        let mut bytes = sample().to_bytes();
        let n = bytes.len();
        bytes[pos % n] = byte;
        let _ = Program::from_bytes(&bytes);
        bytes.truncate(cut % n);
        let _ = Program::from_bytes(&bytes);
    }

    #[test]
    fn random_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut b = lpu_isa::program::MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend(bytes.iter());
        let _ = Program::from_bytes(&b);
        let _ = Program::from_bytes(&bytes);
    }

    #[test]
    fn damaged_text_does_not_panic(line in 0usize..64, junk in "[ -~]{0,40}") {
        let text = asm::disassemble(&sample());
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let k = line % lines.len();
        lines[k] = junk;
        let _ = asm::assemble(&lines.join("\n"));
    }
}

/// A dependence on an id no instruction has is an error, whether the ids
/// are dense (the compiler's numbering) or sparse.
#[test]
fn dependences_on_unknown_ids_are_refused() {
    use lpu_isa::program::{Dep, DepKind};
    let base = sample();
    for (renumber, missing) in [(0u32, 7u32), (1_000_000, 999_999)] {
        let mut p = base.clone();
        for q in &mut p.queues {
            for s in &mut q.slots {
                s.id += renumber;
            }
        }
        p.validate().expect("the renumbered sample is valid");
        let last = p
            .queues
            .last_mut()
            .and_then(|q| q.slots.last_mut())
            .expect("a slot");
        last.deps.push(Dep {
            on: missing,
            kind: DepKind::Order(0),
            group: 0,
        });
        let e = p.validate().expect_err("unknown dependence").to_string();
        assert!(
            e.contains(&format!("unknown instruction i{missing}")),
            "{e}"
        );
    }
}

/// An id used twice is an error, whether the ids are dense or sparse.
#[test]
fn reused_ids_are_refused() {
    let base = sample();
    for renumber in [0u32, 1_000_000] {
        let mut p = base.clone();
        for q in &mut p.queues {
            for s in &mut q.slots {
                s.id += renumber;
            }
        }
        let first = p.queues[0].slots[0].id;
        let last = p
            .queues
            .last_mut()
            .and_then(|q| q.slots.last_mut())
            .expect("a slot");
        last.id = first;
        let e = p.validate().expect_err("reused id").to_string();
        assert!(e.contains(&format!("i{first} is used twice")), "{e}");
    }
}

/// A writer that takes `room` bytes, then fails like a full disk.
struct Full {
    room: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::other("No space left on device"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writing a program to a full disk reports the disk's error, not the
/// serializer's ("the serialize buffer is full", which is what `lpc
/// compile` used to print).
#[test]
fn a_failed_write_reports_the_writers_error() {
    let p = sample();
    for room in [0, 8, 20, 100] {
        let e = p.write_to(Full { room }).expect_err("fails");
        assert!(e.to_string().contains("No space left"), "{room}: {e}");
    }
    let mut all = Vec::new();
    p.write_to(&mut all).expect("writes");
    assert_eq!(all, p.to_bytes());
}
