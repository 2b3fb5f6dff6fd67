#!/usr/bin/env bash
# Interleaved A/B timing of whole commands, for machines whose speed drifts
# (the 2-core Xeon of the later sessions varied by up to 2x from one minute
# to the next, in user time as well as in wall time). Each round runs every
# command once, in turn, so a slow phase of the machine falls on all of
# them; the minimum and the median of each are printed, with user and
# system CPU seconds and the peak resident memory (GNU time).
#
# Usage: benches/ab.sh ROUNDS 'label=command' 'label=command' ...
# Example, a simulator before and after a change:
#   benches/ab.sh 5 "before=/tmp/lpsim.old run r50.lpb --gpu none" \
#                   "after=target/release/lpsim run r50.lpb --gpu none"
# Each command's own output is discarded; a command that fails stops the
# script (exit 1) after printing its standard error.
set -euo pipefail

if [ $# -lt 2 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 ROUNDS 'label=command' ['label=command' ...]" >&2
    exit 2
fi
if ! [ -x /usr/bin/time ]; then
    echo "error: $0 needs GNU time at /usr/bin/time (Debian: apt-get install time)" >&2
    exit 2
fi
rounds=$1
shift
labels=()
commands=()
for arg in "$@"; do
    if [[ "$arg" != *=* ]]; then
        echo "error: '$arg' is not label=command" >&2
        exit 2
    fi
    labels+=("${arg%%=*}")
    commands+=("${arg#*=}")
done

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for ((r = 1; r <= rounds; r++)); do
    for k in "${!commands[@]}"; do
        # wall seconds, user seconds, system seconds, peak KB
        if ! /usr/bin/time -f '%e %U %S %M' -a -o "$dir/$k" \
            bash -c "${commands[$k]}" >/dev/null 2>"$dir/err"; then
            echo "error: '${labels[$k]}' failed in round $r:" >&2
            cat "$dir/err" >&2
            exit 1
        fi
    done
done

# The minimum and the median (the lower middle one) of column $2 of file $1.
min_median() {
    sort -g -k"$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {printf "%.2f / %.2f", v[1], v[int((NR + 1) / 2)]}'
}
printf '%-12s %-18s %-18s %-18s %s\n' label 'wall min / med' 'user min / med' 'sys min / med' 'peak MB (max)'
for k in "${!commands[@]}"; do
    peak=$(sort -g -k4,4 "$dir/$k" | tail -1 | awk '{printf "%.0f", $4 / 1024}')
    printf '%-12s %-18s %-18s %-18s %s\n' "${labels[$k]}" "$(min_median "$dir/$k" 1)" \
        "$(min_median "$dir/$k" 2)" "$(min_median "$dir/$k" 3)" "$peak"
done
