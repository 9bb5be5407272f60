#!/bin/bash
# Before/after measurement of the CPU step's BLAS providers and threaded optimizer updates, as it was
# taken on 2026-11-23 (benchmarks/README.md, "BLAS providers: before and after"), with the JSON names
# used in this directory.
#
#   benchmarks/blas-providers-run.sh PYTHON BEFORE_CHECKOUT AFTER_CHECKOUT
#
# BEFORE_CHECKOUT was main 96155b3 (numeric code identical to 48b3cef) with the after checkout's
# nnxp/bench/, nnxp/cli/bench.py and nnxp/cli/args.py copied over it, so that both sides are timed by
# the same --processes harness; AFTER_CHECKOUT was the branch that added the providers.  Results go
# to the current directory.  One BLAS thread per library: the machine was busy (see the README).
set -euo pipefail
PY=${1:?python} BEFORE=${2:?before checkout} AFTER=${3:?after checkout}
OUT=$(pwd)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
C=nnxp-sgd,nnxp-adam,numpy-ref,torch-sgd,torch-adam,gemm-floor
COMMON="--processes --contenders $C --repeats 15 --max-wait 30 --threads 1"
for tree in before after; do
  dir=$AFTER; [ $tree = before ] && dir=$BEFORE
  (cd "$dir" && $PY -m nnxp bench $COMMON --sizes 784-256-10 --batches 32,128,1024 \
      --json "$OUT/blas-providers-$tree-784-256-10-busy-1thread.json")
  (cd "$dir" && $PY -m nnxp bench $COMMON --sizes 784-800-10 --batches 128 \
      --json "$OUT/blas-providers-$tree-784-800-10-busy-1thread.json")
done
(cd "$AFTER" && $PY -m nnxp bench --processes --contenders nnxp-sgd,nnxp-adam,gemm-floor --repeats 15 --max-wait 20 \
    --threads 1 --blas mkl --sizes 784-256-10 --batches 128 --json "$OUT/blas-providers-after-mkl-784-256-10-busy-1thread.json")
for tree in before after; do
  dir=$AFTER; [ $tree = before ] && dir=$BEFORE
  (cd "$dir" && $PY -m nnxp bench --race --dataset fashion-mnist --race-repeats 2 --max-wait 20 --threads 1 \
      --json "$OUT/blas-providers-race-$tree-busy-1thread.json")
done
