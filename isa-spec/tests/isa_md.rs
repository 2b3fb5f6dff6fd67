//! `ISA.md` embeds the opcode table generated from [`lpu_isa::isa::OPCODES`];
//! this test keeps the two identical. `BLESS=1` rewrites the section.

#[test]
fn isa_md_table_matches_the_opcode_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ISA.md");
    let text = std::fs::read_to_string(&path).expect("ISA.md exists");
    let (begin, end) = ("<!-- opcode-table:begin -->\n", "<!-- opcode-table:end -->");
    let a = text.find(begin).expect("begin marker") + begin.len();
    let b = text.find(end).expect("end marker");
    let table = lpu_isa::isa::markdown_table();
    if std::env::var_os("BLESS").is_some() {
        let new = format!("{}{}{}", &text[..a], table, &text[b..]);
        std::fs::write(&path, new).expect("write ISA.md");
        return;
    }
    assert_eq!(
        &text[a..b],
        table,
        "ISA.md's opcode table is out of date: run BLESS=1 cargo test -p lpu-isa --test isa_md"
    );
}
