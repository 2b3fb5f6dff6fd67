//! The progress bar of `lpsim sweep` and `--seeds` runs: drawn only on a
//! terminal, so a piped stderr holds no bar; `--quiet` is accepted; stdout
//! and output files do not change with it.

mod common;

use common::{lpsim, run_ok, TempDir, MLP_INT8};

#[test]
fn sweep_output_is_the_same_with_and_without_the_bar() {
    let dir = TempDir::new("progress-sweep");
    let sweep = |csv: &str, quiet: bool| {
        let mut c = lpsim();
        c.args([
            "sweep",
            MLP_INT8,
            "--chip",
            "tiny",
            "--set",
            "streams=8,16",
            "-o",
        ])
        .arg(dir.join(csv));
        if quiet {
            c.arg("--quiet");
        }
        run_ok(&mut c)
    };
    let loud = sweep("a.csv", false);
    let quiet = sweep("b.csv", true);
    // stderr is a pipe here: no bar (indicatif draws with carriage returns).
    assert!(!loud.stderr.contains('\r'), "{:?}", loud.stderr);
    assert!(
        loud.stderr.contains("lpsim sweep: wrote"),
        "{}",
        loud.stderr
    );
    assert_eq!(quiet.stderr, "", "--quiet prints nothing on success");
    assert_eq!(loud.stdout, quiet.stdout);
    let read = |f: &str| std::fs::read(dir.join(f)).expect("output");
    assert_eq!(read("a.csv"), read("b.csv"));
    assert_eq!(read("a.svg"), read("b.svg"));
}

#[test]
fn seeds_output_is_the_same_with_and_without_the_bar() {
    let run = |quiet: bool| {
        let mut c = lpsim();
        c.args([
            "run",
            MLP_INT8,
            "--chip",
            "tiny",
            "--gpu",
            "none",
            "--schedule",
            "dynamic",
            "--memory",
            "hbm",
            "--seeds",
            "3",
            "--json",
        ]);
        if quiet {
            c.arg("-q");
        }
        run_ok(&mut c)
    };
    let (loud, quiet) = (run(false), run(true));
    assert!(!loud.stderr.contains('\r'), "{:?}", loud.stderr);
    assert_eq!(loud.stdout, quiet.stdout);
    assert!(loud.stdout.contains("\"p99\""), "{}", loud.stdout);
}
