# critical-path.awk: the dependence chain that ends at a program's last
# instruction, from a disassembled program (`lpc compile -o x.lpa`).
#
#   awk -f docs/labs/critical-path.awk x.lpa
#
# Each instruction line carries its producers (`s0w<i60`: stream sources;
# `after=i95+1`: order edges) and, in the comment, its issue cycle and node
# (`; c=19 fc1`). Starting from the last instruction, the walk steps to the
# producer that issued last, preferring producers that have producers of
# their own (a constant `read` with no edges was placed to meet its consumer
# and explains nothing). It prints the length of the chain, the steps where
# the chain waited more than 50 cycles (something other than data held it:
# a busy queue, stream or bank), the time on the chain per node, and its
# last 12 steps.
$0 ~ /; c=/ {
    id = $1
    text = $0
    sub(/ *;.*/, "", text)
    sub(/^ *i[0-9]+ /, "", text)
    c = $0
    sub(/.*; c=/, "", c)
    split(c, f, " ")
    cyc[id] = f[1] + 0
    nd[id] = f[2]
    short = text
    sub(/ node=.*/, "", short)
    asm[id] = short
    rest = text
    d = ""
    while (match(rest, /i[0-9]+/)) {
        d = d " " substr(rest, RSTART, RLENGTH)
        rest = substr(rest, RSTART + RLENGTH)
    }
    deps[id] = d
    if (cyc[id] >= best) { best = cyc[id]; last = id }
}
END {
    id = last
    while (id != "") {
        n++
        path[n] = id
        k = split(deps[id], ds, " ")
        nx = ""
        m = -1
        for (j = 1; j <= k; j++) {
            if (!(ds[j] in cyc)) continue
            s = cyc[ds[j]] + (deps[ds[j]] != "" ? 1000000000 : 0)
            if (s > m) { m = s; nx = ds[j] }
        }
        id = nx
    }
    printf "chain of %d instructions, cycle %d to %d\n", n, cyc[path[n]], cyc[path[1]]
    print "waits over 50 cycles:"
    for (j = n; j > 1; j--) {
        a = path[j]; b = path[j - 1]
        if (cyc[b] - cyc[a] > 50)
            printf "  %5d %-7s %-30s -> %5d %-7s %-30s %5d cycles\n", cyc[a], a, asm[a], cyc[b], b, asm[b], cyc[b] - cyc[a]
    }
    print "cycles on the chain per node (from the step before):"
    for (j = n - 1; j >= 1; j--) {
        x = nd[path[j]]
        if (!(x in span)) { order[++no] = x; span[x] = 0 }
        span[x] += cyc[path[j]] - cyc[path[j + 1]]
        cnt[x]++
    }
    for (j = 1; j <= no; j++) printf "  %-7s %4d steps %5d cycles\n", order[j], cnt[order[j]], span[order[j]]
    print "last 12 steps:"
    for (j = (n < 12 ? n : 12); j >= 1; j--) printf "  %5d %-7s %-7s %s\n", cyc[path[j]], nd[path[j]], path[j], asm[path[j]]
}
