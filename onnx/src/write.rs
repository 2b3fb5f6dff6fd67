//! Writing an imported model as a `.graph` file: RON text, with every
//! initializer of more than [`INLINE_LIMIT_BYTES`] bytes moved to a raw
//! little-endian side file in `<model>.graph.data/` (an `InitData::File`
//! path relative to the `.graph` file's directory). Smaller ones stay
//! inline, floats written in their shortest round-tripping form.

use std::path::{Path, PathBuf};

use lpu_graph::format::{GraphFile, InitData};
use lpu_graph::DType;

use crate::error::ImportError;

/// Initializers larger than this many bytes go to side files (4 KiB: 1024
/// f32 values).
pub const INLINE_LIMIT_BYTES: usize = 4096;

/// A rendered `.graph` file: its text and the side files it names.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The RON text.
    pub text: String,
    /// Side files: path relative to the `.graph` file's directory, and bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Renders `file` for a `.graph` file whose side-file directory is named
/// `data_dir` (relative to the `.graph` file's directory).
pub fn render(file: &GraphFile, data_dir: &str) -> Result<Rendered, String> {
    let mut file = file.clone();
    let mut files = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for init in &mut file.initializers {
        let InitData::Inline(values) = &init.data else {
            continue;
        };
        if values.len().saturating_mul(init.dtype.bytes()) > INLINE_LIMIT_BYTES {
            let bytes = lpu_graph::random::convert_f64(init.dtype, values).to_le_bytes();
            let safe: String = init
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut stem = safe.clone();
            let mut k = 1;
            while !used.insert(stem.to_ascii_lowercase()) {
                stem = format!("{safe}_{k}");
                k += 1;
            }
            let rel = format!("{data_dir}/{stem}.bin");
            files.push((rel.clone(), bytes));
            init.data = InitData::File(rel);
        } else if matches!(init.dtype, DType::F32 | DType::F16) {
            // Shortest text that reads back to the same f32.
            let short: Vec<f64> = values
                .iter()
                .map(|&x| {
                    let f = x as f32;
                    if f.is_finite() {
                        f.to_string().parse().unwrap_or(x)
                    } else {
                        x
                    }
                })
                .collect();
            init.data = InitData::Inline(short);
        }
    }
    let cfg = ron::ser::PrettyConfig::new()
        .extensions(ron::extensions::Extensions::IMPLICIT_SOME)
        .compact_arrays(true);
    let text = ron::ser::to_string_pretty(&file, cfg).map_err(|e| e.to_string())? + "\n";
    Ok(Rendered { text, files })
}

/// Writes `file` to `path` as a `.graph` file, with side files in
/// `<path file name>.data/` next to it. Returns the side files written.
pub fn write_graph(file: &GraphFile, path: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let io = |p: &Path, e: std::io::Error| ImportError::Io {
        path: p.display().to_string(),
        message: format!("cannot write: {e}"),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model.graph");
    let data_dir = format!("{name}.data");
    let r = render(file, &data_dir).map_err(|message| ImportError::Io {
        path: path.display().to_string(),
        message,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut written = Vec::new();
    if !r.files.is_empty() {
        let dir = base.join(&data_dir);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        for (rel, bytes) in &r.files {
            let p = base.join(rel);
            std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
            written.push(p);
        }
    }
    std::fs::write(path, r.text.as_bytes()).map_err(|e| io(path, e))?;
    Ok(written)
}
