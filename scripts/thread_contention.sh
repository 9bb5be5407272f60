#!/bin/bash
# nnxp train (bundled) wall time with the default thread choice and with --threads N_CORES
# ("before": what OpenBLAS picks by itself), first as the machine is, then with two
# CPU-bound processes competing.  Usage: scripts/thread_contention.sh [PYTHON]
# Run on a quiet machine; benchmarks/README.md ("Threads under contention") has the results.
set -u
PY=${1:-python3}
CORES=$(nproc)
run() {
    local t0 t1
    t0=$(date +%s.%N)
    "$PY" -m nnxp train --device cpu --no-save -q "$@" >/dev/null || echo "(failed)"
    t1=$(date +%s.%N)
    printf '%.1f' "$(echo "$t1 - $t0" | bc)"
}
echo "machine: $(uptime)"
echo "as it is:       default $(run) s, $(run) s;   --threads $CORES $(run --threads "$CORES") s, $(run --threads "$CORES") s"
"$PY" -c 'while True: pass' & busy1=$!
"$PY" -c 'while True: pass' & busy2=$!
trap 'kill $busy1 $busy2 2>/dev/null' EXIT
sleep 1
echo "2 busy loops:   default $(run) s, $(run) s;   --threads $CORES $(run --threads "$CORES") s, $(run --threads "$CORES") s"
