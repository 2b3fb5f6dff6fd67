#!/usr/bin/env bash
# Scaling: grows an MLP in depth and in width and prints, per size, the
# program's instruction count beside the compile and simulation costs
# (wall and CPU seconds, peak RSS), so that the curve of time and memory
# against instructions can be read off (the issue asks for near-linear).
#
#   benches/scaling.sh [CHIP]            # default chip: tsp
#
# Each model is `depth` x (MatMul [width, width] + bias Add + Relu) on a
# [1, width] fp32 input, generated here as a .graph with seeded weights
# (deterministic). Compile: `lpc compile --stats`; simulate: `lpsim run` on
# the compiled program, with values and `--timing-only`. Needs GNU time
# (/usr/bin/time) and Python 3. LPU_BIN=DIR uses prebuilt binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
chip=${1:-tsp}
if [ -n "${LPU_BIN:-}" ]; then
  bin=$LPU_BIN
else
  cargo build --release -q -p lpu-cli
  bin=target/release
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen() { # depth width file
  python3 - "$1" "$2" >"$3" <<'EOF'
import sys
depth, width = int(sys.argv[1]), int(sys.argv[2])
std = 1.0 / width ** 0.5
print(f'Graph(name: "mlp-d{depth}-w{width}",')
print(f'  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {width}])],')
print(f'  outputs: [ValueInfo(name: "h{depth}")],')
print('  initializers: [')
for i in range(depth):
    print(f'    Initializer(name: "w{i}", dtype: F32, shape: [{width}, {width}], '
          f'data: Random(seed: {2 * i + 1}, dist: Normal(mean: 0.0, std: {std}))),')
    print(f'    Initializer(name: "b{i}", dtype: F32, shape: [{width}], '
          f'data: Random(seed: {2 * i + 2}, dist: Uniform(low: -0.1, high: 0.1))),')
print('  ],')
print('  nodes: [')
for i in range(depth):
    x = "x" if i == 0 else f"h{i}"
    print(f'    Node(name: "fc{i}", op_type: "MatMul", inputs: ["{x}", "w{i}"], outputs: ["m{i}"]),')
    print(f'    Node(name: "bias{i}", op_type: "Add", inputs: ["m{i}", "b{i}"], outputs: ["a{i}"]),')
    print(f'    Node(name: "relu{i}", op_type: "Relu", inputs: ["a{i}"], outputs: ["h{i + 1}"]),')
print('  ],')
print(')')
EOF
}

# "s cpu_s rss_MiB" from a GNU time -f "%e %U %S %M" file.
cost() { awk '{ printf "%.2f %.2f %.0f", $1, $2 + $3, $4 / 1024 }' "$1"; }

echo "| model | instructions | cycles | lpc wall s | lpc CPU s | lpc MiB | lpsim wall s | lpsim CPU s | lpsim MiB | timing-only wall s | timing-only MiB | lpc us/instr | lpsim us/instr |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for size in 2:1024 4:1024 8:1024 16:1024 32:1024 4:512 4:2048 4:4096; do
  IFS=: read -r depth width <<<"$size"
  g="$tmp/mlp-d$depth-w$width.graph"
  p="$tmp/mlp-d$depth-w$width.lpb"
  gen "$depth" "$width" "$g"
  if ! /usr/bin/time -f "%e %U %S %M" -o "$tmp/c.t" "$bin/lpc" compile "$g" --chip "$chip" \
      -o "$p" --stats >"$tmp/stats" 2>"$tmp/err"; then
    echo "| d$depth w$width | compile failed: $(head -c 200 "$tmp/err" | tr '\n|' '  ') |"
    continue
  fi
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/s.t" "$bin/lpsim" run "$p" --gpu none -q >/dev/null
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/q.t" "$bin/lpsim" run "$p" --gpu none -q \
    --timing-only >/dev/null
  instr=$(awk '$1 == "instructions" { print $2 }' "$tmp/stats")
  cycles=$(awk '$1 == "cycles" { print $2 }' "$tmp/stats")
  read -r cw cc cm <<<"$(cost "$tmp/c.t")"
  read -r sw sc sm <<<"$(cost "$tmp/s.t")"
  read -r qw _ qm <<<"$(cost "$tmp/q.t")"
  awk -v m="d$depth w$width" -v i="$instr" -v c="$cycles" -v cw="$cw" -v cc="$cc" -v cm="$cm" \
      -v sw="$sw" -v sc="$sc" -v sm="$sm" -v qw="$qw" -v qm="$qm" 'BEGIN {
    printf "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f |\n",
      m, i, c, cw, cc, cm, sw, sc, sm, qw, qm, cc * 1e6 / i, sc * 1e6 / i }'
done
