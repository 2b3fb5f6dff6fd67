//! `docs/gpu-model.md` embeds the calibration table computed by
//! [`lpu_gpu::calib::markdown_table`]; this test keeps the two identical,
//! so the committed errors are always the model's current errors.
//! `BLESS=1` rewrites the section.

#[test]
fn calibration_table_matches_the_model() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/gpu-model.md");
    let text = std::fs::read_to_string(&path).expect("docs/gpu-model.md exists");
    let (begin, end) = (
        "<!-- calibration-table:begin -->\n",
        "<!-- calibration-table:end -->",
    );
    let a = text.find(begin).expect("begin marker") + begin.len();
    let b = text.find(end).expect("end marker");
    let table = lpu_gpu::calib::markdown_table();
    if std::env::var_os("BLESS").is_some() {
        let new = format!("{}{}{}", &text[..a], table, &text[b..]);
        std::fs::write(&path, new).expect("write docs/gpu-model.md");
        return;
    }
    assert_eq!(
        &text[a..b],
        table,
        "docs/gpu-model.md's calibration table is out of date: run BLESS=1 cargo test -p lpu-gpu --test calibration_md"
    );
    let rows = lpu_gpu::calib::evaluate();
    assert!(lpu_gpu::calib::median_abs_error(&rows) < 0.25);
}
