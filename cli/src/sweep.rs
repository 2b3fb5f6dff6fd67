//! `lpsim sweep`: a grid of chip configurations, compiled and simulated in
//! parallel, written as CSV and drawn as an SVG plot of latency (and energy
//! when the chip has an energy section) against the first swept parameter.

use anyhow::{bail, Context, Result};
use lpu_isa::{ChipConfig, DynamicConfig, SliceKind};
use rayon::prelude::*;
use std::path::PathBuf;

/// `lpsim sweep MODEL --set KEY=V1,V2,... [--set ...]`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model (.graph or .onnx), compiled for every configuration.
    pub model: PathBuf,
    /// Base chip: a preset (tsp, tiny) or a RON file.
    #[arg(long, default_value = "tiny")]
    pub chip: String,
    /// A swept parameter and its values (repeatable; the grid is their
    /// product). Keys: clock_mhz, superlanes, lanes_per_superlane, streams,
    /// mem_slices, mem_banks, addresses_per_bank, accumulators, load_rows,
    /// vxm_alus, window, latency.MNEMONIC (e.g. latency.read).
    #[arg(long = "set", value_name = "KEY=V1,V2,...", required = true)]
    pub sets: Vec<String>,
    /// Schedule each point `static` or `dynamic` (on-chip SRAM, the
    /// chip's or the swept window).
    #[arg(long, default_value = "static", value_name = "static|dynamic")]
    pub schedule: String,
    /// Seed of the random inputs (and of the dynamic mode's memory jitter).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CSV output (default: MODEL-sweep.csv in the current directory).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// SVG plot (default: the CSV path with .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Run only shard K of N (1-based) of the grid, for a batch system's
    /// job array; merge the CSVs afterwards (same header).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// No progress bar and no summary line on stderr (errors still print).
    /// The bar is drawn only when stderr is a terminal anyway.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Static points timed without values (`lpsim run --timing-only`):
    /// the same cycles, energy and instructions, faster.
    #[arg(long)]
    pub timing_only: bool,
    /// Graph passes and precision, as for `lpsim run`.
    #[command(flatten)]
    pub prepare: crate::PrepareArgs,
}

/// One swept parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Key, as given.
    pub key: String,
    /// Values, as given.
    pub values: Vec<f64>,
}

/// Parses `KEY=V1,V2,...`.
pub fn parse_set(s: &str) -> Result<Param> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--set '{s}': expected KEY=V1,V2,..."))?;
    let values = v
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| anyhow::anyhow!("--set {k}: '{x}' is not a number"))
        })
        .collect::<Result<Vec<_>>>()?;
    if values.is_empty() {
        bail!("--set {k}: no values");
    }
    Ok(Param {
        key: k.trim().to_string(),
        values,
    })
}

fn whole(key: &str, v: f64) -> Result<u32> {
    if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        bail!("{key}: {v} is not a whole number");
    }
    Ok(v as u32)
}

/// The chip with `key` set to `v` (not yet validated).
pub fn apply(chip: &mut ChipConfig, key: &str, v: f64) -> Result<()> {
    match key {
        "clock_mhz" => chip.clock_mhz = v,
        "superlanes" => chip.superlanes = whole(key, v)?,
        "lanes_per_superlane" => {
            chip.lanes_per_superlane = whole(key, v)?;
            chip.mem.word_bytes = chip.lanes_per_superlane;
        }
        "streams" => chip.streams_per_direction = whole(key, v)?,
        "mem_banks" => chip.mem.banks = whole(key, v)?,
        "addresses_per_bank" => chip.mem.addresses_per_bank = whole(key, v)?,
        "accumulators" => chip.mxm.accumulators = whole(key, v)?,
        "load_rows" => chip.mxm.load_rows = whole(key, v)?,
        "vxm_alus" => chip.queues.vxm_alus = whole(key, v)?,
        "window" => {
            chip.dynamic
                .get_or_insert_with(DynamicConfig::default)
                .window = whole(key, v)?
        }
        "mem_slices" => {
            // Spread the MEM slices over the layout's MEM runs, in order.
            let n = whole(key, v)?;
            let runs: Vec<usize> = (0..chip.layout.len())
                .filter(|&i| chip.layout[i].0 == SliceKind::Mem)
                .collect();
            if runs.is_empty() || n < runs.len() as u32 {
                bail!("mem_slices: needs at least one slice per MEM run ({})", runs.len());
            }
            let (each, extra) = (n / runs.len() as u32, n % runs.len() as u32);
            for (k, &i) in runs.iter().enumerate() {
                chip.layout[i].1 = each + u32::from((k as u32) < extra);
            }
        }
        _ => match key.strip_prefix("latency.") {
            Some(mn) if lpu_isa::Opcode::from_mnemonic(mn).is_some() => {
                chip.latency_overrides
                    .insert(mn.to_string(), whole(key, v)?);
            }
            _ => bail!(
                "unknown sweep key '{key}': expected clock_mhz, superlanes, lanes_per_superlane, streams, mem_slices, mem_banks, addresses_per_bank, accumulators, load_rows, vxm_alus, window or latency.MNEMONIC"
            ),
        },
    }
    // The MXM plane is one vector wide in this model.
    if matches!(key, "superlanes" | "lanes_per_superlane") {
        chip.mxm.size = chip.lanes();
        chip.mxm.load_rows = chip.mxm.load_rows.min(chip.mxm.size);
    }
    Ok(())
}

/// The grid: every combination of the values, first parameter slowest.
pub fn grid(params: &[Param]) -> Vec<Vec<f64>> {
    let mut out = vec![vec![]];
    for p in params {
        out = out
            .into_iter()
            .flat_map(|row| {
                p.values.iter().map(move |v| {
                    let mut r = row.clone();
                    r.push(*v);
                    r
                })
            })
            .collect();
    }
    out
}

/// One grid point's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The swept values, in `--set` order.
    pub values: Vec<f64>,
    /// Cycles, latency (us), energy (J), instructions; `None` on error.
    pub result: Option<(u64, f64, Option<f64>, u64)>,
    /// Why the point has no result (does not fit, invalid chip, hazard).
    pub error: String,
}

fn run_point(
    base: &ChipConfig,
    params: &[Param],
    values: &[f64],
    graph: &lpu_graph::Graph,
    args: &Args,
) -> Point {
    let out = |result, error: String| Point {
        values: values.to_vec(),
        result,
        error,
    };
    let mut chip = base.clone();
    for (p, v) in params.iter().zip(values) {
        if let Err(e) = apply(&mut chip, &p.key, *v) {
            return out(None, e.to_string());
        }
    }
    if let Err(e) = chip.validate() {
        return out(None, e.to_string());
    }
    // `prepare` has checked the precision already.
    let precision = args.prepare.precision().unwrap_or_default();
    let c = match lpu_compiler::compile_prepared(graph, &chip, precision, false) {
        Ok(c) => c,
        Err(e) => return out(None, e.to_string()),
    };
    let p = c.program;
    let inputs = match random_inputs(&p, args.seed) {
        Ok(i) => i,
        Err(e) => return out(None, e.to_string()),
    };
    let outcome = if args.schedule == "dynamic" {
        let o = lpu_sim::DynamicOptions::for_chip(&p.chip, args.seed);
        lpu_sim::simulate_dynamic(&p, &inputs, &o).map(|d| d.outcome)
    } else {
        let opts = lpu_sim::SimOptions {
            timing_only: args.timing_only,
            ..lpu_sim::SimOptions::default()
        };
        lpu_sim::simulate(&p, &inputs, &opts)
    };
    match outcome {
        Err(e) => out(None, e.to_string()),
        Ok(o) if o.hazard.is_some() => out(
            None,
            format!(
                "hazard: {}",
                o.hazard.map(|h| h.message).unwrap_or_default()
            ),
        ),
        Ok(o) => {
            let r = lpu_sim::report::build(&p, &o, None, None);
            out(
                Some((
                    r.cycles,
                    r.latency_us,
                    r.energy.map(|e| e.total_j),
                    r.instructions,
                )),
                String::new(),
            )
        }
    }
}

fn random_inputs(
    p: &lpu_isa::Program,
    seed: u64,
) -> Result<std::collections::BTreeMap<String, lpu_graph::Tensor>> {
    let mut out = std::collections::BTreeMap::new();
    for (i, b) in p.inputs.iter().enumerate() {
        let n: usize = b.shape.iter().product();
        let v = lpu_graph::random::random_input_values(
            b.dtype,
            n,
            lpu_graph::random::input_seed(seed, i),
        );
        out.insert(b.name.clone(), lpu_graph::Tensor::new(b.shape.clone(), v)?);
    }
    Ok(out)
}

/// The CSV text of a sweep: one header line, one line per point.
pub fn csv(params: &[Param], points: &[Point]) -> String {
    let mut s: String = params.iter().map(|p| format!("{},", p.key)).collect();
    s.push_str("cycles,latency_us,energy_j,instructions,error\n");
    for pt in points {
        for v in &pt.values {
            s.push_str(&format!("{v},"));
        }
        match &pt.result {
            Some((c, l, e, i)) => s.push_str(&format!(
                "{c},{l},{},{i},\n",
                e.map(|e| e.to_string()).unwrap_or_default()
            )),
            None => s.push_str(&format!(",,,,\"{}\"\n", pt.error.replace('"', "'"))),
        }
    }
    s
}

/// An SVG plot: latency (and energy) against the first parameter, one line
/// per combination of the others.
pub fn svg(model: &str, params: &[Param], points: &[Point]) -> Result<String> {
    use plotters::prelude::*;
    let mut text = String::new();
    {
        let ok: Vec<&Point> = points.iter().filter(|p| p.result.is_some()).collect();
        let xs = || ok.iter().map(|p| p.values[0]);
        let lat = |p: &Point| p.result.map_or(0.0, |r| r.1);
        let (x0, x1) = (
            xs().fold(f64::INFINITY, f64::min),
            xs().fold(f64::NEG_INFINITY, f64::max),
        );
        let y1 = ok.iter().map(|p| lat(p)).fold(0.0, f64::max);
        let (x0, x1) = if ok.is_empty() {
            (0.0, 1.0)
        } else if x0 == x1 {
            (x0 - 1.0, x1 + 1.0)
        } else {
            (x0, x1)
        };
        let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
        let has_energy = ok.iter().any(|p| p.result.is_some_and(|r| r.2.is_some()));
        let height = if has_energy { 720 } else { 400 };
        let root = SVGBackend::with_string(&mut text, (720, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = if has_energy {
            root.split_evenly((2, 1))
        } else {
            vec![root.clone()]
        };
        let series = |pick: &dyn Fn(&Point) -> Option<f64>| {
            let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
            for p in &ok {
                let label = params[1..]
                    .iter()
                    .zip(&p.values[1..])
                    .map(|(q, v)| format!("{}={v}", q.key))
                    .collect::<Vec<_>>()
                    .join(" ");
                let Some(y) = pick(p) else { continue };
                match lines.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, pts)) => pts.push((p.values[0], y)),
                    None => lines.push((label, vec![(p.values[0], y)])),
                }
            }
            lines
        };
        type Lines = Vec<(String, Vec<(f64, f64)>)>;
        let panels: Vec<(&str, Lines, f64)> = {
            let mut v = vec![("latency (us)", series(&|p| p.result.map(|r| r.1)), y1)];
            if has_energy {
                let e = series(&|p| p.result.and_then(|r| r.2).map(|j| j * 1e6));
                let emax = e
                    .iter()
                    .flat_map(|(_, p)| p.iter().map(|q| q.1))
                    .fold(0.0, f64::max);
                v.push(("energy (uJ)", e, if emax > 0.0 { emax * 1.1 } else { 1.0 }));
            }
            v
        };
        for (area, (ylabel, lines, ymax)) in areas.iter().zip(panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{model}: {ylabel} vs {}", params[0].key),
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, 0.0..ymax)?;
            chart
                .configure_mesh()
                .x_desc(params[0].key.as_str())
                .y_desc(ylabel)
                .draw()?;
            for (k, (label, mut pts)) in lines.into_iter().enumerate() {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let color = Palette99::pick(k).to_rgba();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                    .label(if label.is_empty() { "-".into() } else { label })
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(text)
}

/// Runs `lpsim sweep`.
pub fn main(args: Args) -> Result<u8> {
    let params = args
        .sets
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>>>()?;
    if !matches!(args.schedule.as_str(), "static" | "dynamic") {
        bail!("--schedule '{}': expected static or dynamic", args.schedule);
    }
    if args.timing_only && args.schedule == "dynamic" {
        bail!("--timing-only times static schedules only: drop --schedule dynamic");
    }
    let base = crate::chip(&args.chip)?;
    // Reject unknown keys before any work.
    for p in &params {
        let mut c = base.clone();
        apply(&mut c, &p.key, p.values[0])?;
    }
    let graph = match crate::load(&args.model)? {
        crate::Artifact::Graph(g) => {
            args.prepare
                .prepare(*g)
                .with_context(|| args.model.display().to_string())?
                .graph
        }
        crate::Artifact::Program(_) => {
            bail!("sweep needs a model (.graph or .onnx): a program is compiled for one chip")
        }
    };
    let mut all = grid(&params);
    if let Some(sh) = &args.shard {
        let (k, n) = sh
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .filter(|(k, n)| *n >= 1 && (1..=*n).contains(k))
            .ok_or_else(|| anyhow::anyhow!("--shard '{sh}': expected K/N with 1 <= K <= N"))?;
        all = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, r)| r)
            .collect();
    }
    // A progress bar on a terminal's stderr only (logs and CI stay clean);
    // the points are still collected in grid order.
    let progress = crate::progress::Progress::new(all.len() as u64, "points", args.quiet);
    let points: Vec<Point> = all
        .par_iter()
        .map(|values| {
            let p = run_point(&base, &params, values, &graph, &args);
            progress.inc();
            p
        })
        .collect();
    progress.finish();
    let name = args
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}-sweep.csv")));
    let plot = args
        .plot
        .clone()
        .unwrap_or_else(|| out.with_extension("svg"));
    crate::write_atomic(&out, csv(&params, &points).as_bytes())?;
    crate::write_atomic(&plot, svg(&name, &params, &points)?.as_bytes())?;
    let failed = points.iter().filter(|p| p.result.is_none()).count();
    if args.quiet {
        return Ok(crate::EXIT_OK);
    }
    eprintln!(
        "lpsim sweep: wrote {} and {} ({} points, {failed} without a result)",
        out.display(),
        plot.display(),
        points.len()
    );
    Ok(crate::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_the_product_in_order() {
        let p = vec![
            parse_set("streams=4,8").unwrap(),
            parse_set("clock_mhz=900,1000,1100").unwrap(),
        ];
        let g = grid(&p);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], vec![4.0, 900.0]);
        assert_eq!(g[5], vec![8.0, 1100.0]);
        assert!(parse_set("streams").is_err());
        assert!(parse_set("streams=a").is_err());
    }

    #[test]
    fn keys_change_the_chip() {
        let mut c = ChipConfig::preset("tiny").unwrap();
        apply(&mut c, "mem_slices", 6.0).unwrap();
        let mems = c.slices().iter().filter(|k| **k == SliceKind::Mem).count();
        assert_eq!(mems, 6);
        apply(&mut c, "latency.read", 5.0).unwrap();
        assert_eq!(c.delay(lpu_isa::Opcode::Read), 5);
        apply(&mut c, "window", 2.0).unwrap();
        assert_eq!(c.dynamic.as_ref().unwrap().window, 2);
        c.validate().unwrap();
        assert!(apply(&mut c, "nope", 1.0).is_err());
        assert!(apply(&mut c, "streams", 1.5).is_err());
    }
}
