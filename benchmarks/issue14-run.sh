#!/bin/bash
# As run for issue 14 (paths of that machine): /work/wt/cpu-before = main 96155b3 with this branch's nnxp/bench/, cli/bench.py and
# cli/args.py copied over it (contenders/race without blas=), /work/wt/cpu = branch cpu. Output JSON went to /tmp/cpu-m/.
# Issue 14 measurements: before (main 96155b3 numerics = 48b3cef, with the new harness overlaid) and after (branch cpu).
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: unset in this command (they were not set in this environment anyway).
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
PY=/work/venv/bin/python
C=nnxp-sgd,nnxp-adam,numpy-ref,torch-sgd,torch-adam,gemm-floor
COMMON="--processes --contenders $C --repeats 15 --max-wait 30 --threads 1"
for round in 1; do
  for tree in before after; do
    dir=/work/wt/cpu; [ $tree = before ] && dir=/work/wt/cpu-before
    (cd $dir && $PY -m nnxp bench $COMMON --sizes 784-256-10 --batches 32,128,1024 --json benchmarks/issue14-$tree-256.json) > benchmarks/issue14-$tree-256.log 2>&1
    (cd $dir && $PY -m nnxp bench $COMMON --sizes 784-800-10 --batches 128 --json benchmarks/issue14-$tree-800.json) > benchmarks/issue14-$tree-800.log 2>&1
  done
done
(cd /work/wt/cpu && $PY -m nnxp bench --processes --contenders nnxp-sgd,nnxp-adam,gemm-floor --repeats 15 --max-wait 20 --threads 1 --blas mkl --sizes 784-256-10 --batches 128 --json benchmarks/issue14-after-mkl.json) > benchmarks/issue14-after-mkl.log 2>&1
for tree in before after; do
  dir=/work/wt/cpu; [ $tree = before ] && dir=/work/wt/cpu-before
  (cd $dir && $PY -m nnxp bench --race --dataset fashion-mnist --race-repeats 2 --max-wait 20 --threads 1 --json benchmarks/issue14-race-$tree.json) > benchmarks/issue14-race-$tree.log 2>&1
done
echo done > benchmarks/issue14-DONE
