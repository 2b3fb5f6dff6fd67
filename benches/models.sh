#!/usr/bin/env bash
# Compile and simulate bundled models with the release binaries and print
# one Markdown row per run: compile wall time and peak memory (lpc), then
# simulation wall time and peak memory (lpsim on the compiled program), and
# the report's figures (cycles, latency, throughput, MXM utilisation, SRAM).
#
#   benches/models.sh [MODEL:CHIP:PRECISION ...]
#
# Default: the models the README's results table lists. Needs GNU time
# (/usr/bin/time) and jq-free Python 3 for the JSON. Figures depend on the
# machine; the cycle counts do not. `bound` is the report's lower bound
# (`lower_bound_cycles`, its kind in `bound_kind`) and `x bound` the
# schedule's cycles over it.
#
# LPU_BIN=DIR uses the `lpc` and `lpsim` in DIR as they are (no build);
# otherwise the release build is brought up to date first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LPU_BIN:-}" ]; then
  bin=$LPU_BIN
else
  cargo build --release -q -p lpu-cli
  bin=target/release
fi
runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
  runs=(lenet:tiny:fp32 lenet:tiny:int8 lenet:tsp:int8 resnet50:tsp:int8
        transformer-block:tiny:fp32 transformer-block:tsp:fp32
        transformer-block:tiny:int8 transformer-block:tsp:int8
        bert-base:tsp:int8 gpt2-decode-128:tsp:int8 gpt2-decode-1024:tsp:int8)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| model | chip | precision | lpc wall s | lpc peak MiB | lpsim wall s | lpsim peak MiB | cycles | bound | x bound | latency us | inferences/s | MXM util | SRAM MiB |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for run in "${runs[@]}"; do
  IFS=: read -r model chip prec <<<"$run"
  prog="$tmp/$model.$chip.$prec.lpb"
  if ! /usr/bin/time -v -o "$tmp/lpc.time" "$bin/lpc" compile "examples/$model.graph" \
      --chip "$chip" --precision "$prec" -o "$prog" >/dev/null 2>"$tmp/lpc.err"; then
    echo "| \`$model\` | $chip | $prec | compile failed: $(head -c 200 "$tmp/lpc.err" | tr '\n|' '  ') |"
    continue
  fi
  /usr/bin/time -v -o "$tmp/sim.time" "$bin/lpsim" run "$prog" --chip "$chip" \
    --gpu none --json >"$tmp/report.json" 2>/dev/null || true
  python3 - "$model" "$chip" "$prec" "$tmp/lpc.time" "$tmp/sim.time" "$tmp/report.json" <<'EOF'
import json, re, sys
model, chip, prec, lpc_t, sim_t, rep = sys.argv[1:]
def t(path):
    s = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", s).group(1)
    parts = [float(x) for x in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1)) / 1024
    return secs, rss
(cw, cr), (sw, sr) = t(lpc_t), t(sim_t)
r = json.load(open(rep))
mxm = r["units"]["mxm"]["utilization"] * 100
bound = r["lower_bound_cycles"]
print(f"| `{model}` | {chip} | {prec} | {cw:.2f} | {cr:.0f} | {sw:.2f} | {sr:.0f} | {r['cycles']} | "
      f"{bound} ({r['bound_kind']}) | {r['cycles'] / bound:.2f}x | "
      f"{r['latency_us']:.3f} | {r['inferences_per_s']:.0f} | {mxm:.1f}% | {r['sram_peak_bytes'] / 2**20:.1f} |")
EOF
done
