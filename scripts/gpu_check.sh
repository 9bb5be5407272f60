#!/usr/bin/env bash
# The one command to run on a CUDA GPU machine (issue 18, items 6-7; none has run it yet):
#
#     scripts/gpu_check.sh [OUTPUT_DIR]     (default: $OUT where the device tool sets it, else ./gpu-results)
#
# Made for the project's H200 machine (no package registry there; python3 3.12 with cupy-cuda13x 14.2,
# torch, numpy, pytest, hypothesis): nnxp runs from this tree (PYTHONPATH), array-api-compat is installed
# from the carried wheel in .whl/ where it is missing, Fashion-MNIST is read from .gpu-data/fashion-mnist
# (scripts/gpu_prepare.sh puts both there; without the data the race runs on the bundled digits). Nothing
# is downloaded. With the device tool:
#
#     run(command="bash scripts/gpu_check.sh", carry=[".whl", ".gpu-data"], timeout_s=540)
#
# Stages, each under its own timeout, all under a deadline of NNXP_GPU_CHECK_SECONDS (default 450 s):
#  1. environment.txt: nvidia-smi, driver, CUDA, CuPy, PyTorch versions; whether nnxp can use the GPU;
#  2. pytest.txt: the CuPy-relevant tests on the real GPU (the cupy backend of test_kernels, test_train,
#     test_callbacks, test_network, test_optim; test_cuda_graphs' GPU tests: capture without fallback,
#     same seed -> same bits, graphs on and off);
#  3. bench.json + bench.md: the step at 784-256-10 and 784-800-10, batch 128, and 784-4096-4096-10,
#     batch 4096 in float32 and with TF32 (CUPY_TF32=1, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1): nnxp fused
#     eager and fused graph (SGD, Adam), the hand-written CuPy step, PyTorch eager and CUDA graph, the
#     cupy.matmul and torch.matmul GEMM floors; then nnxp's reference executor (NNXP_CUPY_FUSED=0);
#  4. race.json: the race to a fixed test accuracy, nnxp (fit) against PyTorch eager;
#  5. compare.json: every nnxp GPU path (graph, eager, reference) against the CPU after 2 epochs
#     (test accuracy within 0.01; scripts/gpu_compare.py);
#  log.txt: every stage's output, then one line per stage (passed / FAILED / timed out / skipped).
# At most 7 files in OUTPUT_DIR. The exit status is 1 if any stage failed.
# NNXP_GPU_CHECK_DEVICE=cpu dry-runs every stage on the CPU with small sizes (the plumbing, not numbers).
# PYTHON chooses the interpreter (default: python3).

set -u -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-./gpu-results}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
DEVICE="${NNXP_GPU_CHECK_DEVICE:-cuda}"
DEADLINE="${NNXP_GPU_CHECK_SECONDS:-450}"
LOG="$OUT_DIR/log.txt"
WORK="$(mktemp -d)"
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
results=()
failed=0

if ! "$PY" -c 'import array_api_compat' 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        .whl/array_api_compat-*.whl >> "$LOG" 2>&1 || echo "array-api-compat: no wheel in .whl/ (scripts/gpu_prepare.sh)" | tee -a "$LOG"
    export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"

DATA_DIR=.gpu-data/fashion-mnist
if [ "$(ls "$DATA_DIR"/*-ubyte.gz 2>/dev/null | wc -l)" -eq 4 ]; then
    DATA=(--dataset fashion-mnist --data-dir "$DATA_DIR")
    RACE=(--target 0.85)
else
    echo "no Fashion-MNIST in $DATA_DIR (scripts/gpu_prepare.sh): the bundled digits instead" | tee -a "$LOG"
    DATA=(--dataset bundled)
    RACE=()
fi
if [ "$DEVICE" = cpu ]; then  # dry run: the plumbing on small sizes
    SMALL=(--sizes 784-64-10 --batches 32) BIG=(--sizes 784-128-10 --batches 64)
    SAMPLES=(--repeats 3 --min-sample-ms 3 --warmup-ms 10 --settle-ms 0) BIG_SAMPLES=("${SAMPLES[@]}")
    EPOCHS=(--epochs 1) DATA=(--dataset bundled) RACE=()
else
    SMALL=(--sizes 784-256-10,784-800-10 --batches 128) BIG=(--sizes 784-4096-4096-10 --batches 4096)
    SAMPLES=(--repeats 9 --min-sample-ms 20 --warmup-ms 200 --settle-ms 0)
    BIG_SAMPLES=(--repeats 5 --min-sample-ms 20 --warmup-ms 200 --settle-ms 0) EPOCHS=(--epochs 2)
fi
QUIET=(--max-foreign-load 1000 --max-wait 5)  # never wait for a quiet machine (it is ours)
ALL=nnxp-sgd,nnxp-adam,nnxp-sgd-graph,nnxp-adam-graph,numpy-ref,torch-sgd,torch-adam,torch-sgd-graph,torch-adam-graph,gemm-floor,torch-gemm-floor
started=$SECONDS

stage() {  # stage NAME SECONDS COMMAND...: run under a timeout within the deadline, log it, note the result
    local name="$1" limit="$2" left
    shift 2
    left=$((DEADLINE - (SECONDS - started) - 5))
    [ "$limit" -gt "$left" ] && limit="$left"
    if [ "$limit" -lt 10 ]; then
        results+=("skipped (deadline): $name")
        failed=1
        return
    fi
    echo "=== $name (at most ${limit} s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc="${PIPESTATUS[0]}"
    local took=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("passed (${took} s): $name")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        results+=("timed out (${took} s): $name")
        failed=1
    else
        results+=("FAILED, exit status $rc (${took} s): $name")
        failed=1
    fi
}

environment() {
    echo "date: $(date -Is)"
    echo "repository: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
    "$PY" - <<'PYEOF'
import os, platform
import numpy
print("python", platform.python_version(), "| numpy", numpy.__version__)
import array_api_compat
print("array-api-compat", array_api_compat.__version__)
try:
    import cupy
    rt = cupy.cuda.runtime
    print("cupy", cupy.__version__, "| CUDA runtime", rt.runtimeGetVersion(), "| driver", rt.driverGetVersion(),
          "| GPUs", rt.getDeviceCount(), "| CUPY_TF32", os.environ.get("CUPY_TF32", "(unset)"))
    print("GPU 0:", rt.getDeviceProperties(0)["name"].decode())
except Exception as exc:
    print("cupy: not usable:", exc)
try:
    import torch
    print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| available", torch.cuda.is_available())
except Exception as exc:
    print("torch: not usable:", exc)
import nnxp
print("nnxp", nnxp.__version__, "from", os.path.dirname(nnxp.__file__), "| CUDA available to nnxp:",
      nnxp.cuda_available())
from nnxp.backend import _cupy_gpu_count
print("nnxp's CuPy check:", _cupy_gpu_count())
PYEOF
}
export -f environment
export PY ROOT OUT_DIR
stage "environment" 60 bash -c 'environment > "$OUT_DIR/environment.txt" 2>&1; rc=$?; cat "$OUT_DIR/environment.txt"; exit $rc'

stage "CuPy tests on the GPU" 150 bash -c "'$PY' -m pytest -q -rs -p no:cacheprovider \
    tests/test_cuda_graphs.py tests/test_kernels.py tests/test_train.py tests/test_callbacks.py \
    tests/test_network.py tests/test_optim.py -k 'on_the_gpu or (cupy and not emulated)' \
    > '$OUT_DIR/pytest.txt' 2>&1; rc=\$?; tail -25 '$OUT_DIR/pytest.txt'; exit \$rc"

stage "step benchmark, 784-256-10 and 784-800-10" 90 env CUPY_TF32=0 \
    "$PY" -m nnxp bench --device "$DEVICE" "${SMALL[@]}" --contenders "$ALL" "${SAMPLES[@]}" "${QUIET[@]}" \
    --json "$WORK/small.json"
stage "step benchmark, 784-4096-4096-10 float32" 75 env CUPY_TF32=0 \
    "$PY" -m nnxp bench --device "$DEVICE" "${BIG[@]}" --contenders "$ALL" "${BIG_SAMPLES[@]}" "${QUIET[@]}" \
    --json "$WORK/big-float32.json"
stage "step benchmark, 784-4096-4096-10 TF32" 60 env CUPY_TF32=1 TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 \
    "$PY" -m nnxp bench --device "$DEVICE" "${BIG[@]}" --contenders "$ALL" "${BIG_SAMPLES[@]}" "${QUIET[@]}" \
    --json "$WORK/big-tf32.json"
stage "step benchmark, nnxp's reference executor (NNXP_CUPY_FUSED=0)" 45 env NNXP_CUPY_FUSED=0 CUPY_TF32=0 \
    "$PY" -m nnxp bench --device "$DEVICE" "${SMALL[@]}" --contenders nnxp-sgd,nnxp-adam "${SAMPLES[@]}" \
    "${QUIET[@]}" --json "$WORK/reference.json"
"$PY" - "$WORK" "$OUT_DIR" >> "$LOG" 2>&1 <<'PYEOF'
import json, subprocess, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
runs = {name: f"{name}.json" for name in ("small", "big-float32", "big-tf32", "reference")}
merged, markdown = {}, []
for name, file in runs.items():
    path = work / file
    if not path.exists():
        markdown.append(f"## {name}\n\n(no result)\n")
        continue
    merged[name] = json.loads(path.read_text())
    table = subprocess.run([sys.executable, "-m", "nnxp", "bench", "--from-json", str(path), "--markdown"],
                           capture_output=True, text=True).stdout
    markdown.append(f"## {name}\n\n{table}\n")
(out / "bench.json").write_text(json.dumps(merged))
(out / "bench.md").write_text("\n".join(markdown))
PYEOF

stage "race to a test accuracy, nnxp against PyTorch" 90 \
    "$PY" -m nnxp bench --race --device "$DEVICE" "${DATA[@]}" "${RACE[@]}" --race-repeats 1 --max-epochs 15 \
    "${QUIET[@]}" --json "$OUT_DIR/race.json"
stage "every GPU path against the CPU after 2 epochs" 120 \
    "$PY" scripts/gpu_compare.py --device "$DEVICE" "${DATA[@]}" "${EPOCHS[@]}" --json "$OUT_DIR/compare.json"

{
    echo
    echo "=== summary ($((SECONDS - started)) s in all)"
    printf '%s\n' "${results[@]}"
} | tee -a "$LOG"
rm -rf "$WORK"
exit "$failed"
