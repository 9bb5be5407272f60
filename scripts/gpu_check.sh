#!/usr/bin/env bash
# The one command to run on a CUDA GPU machine:
#
#     scripts/gpu_check.sh [OUTPUT_DIR]        (default: ./gpu-results)
#
# 1. records the environment (nvidia-smi, driver, CUDA, CuPy, PyTorch versions),
# 2. runs the whole test-suite (the CuPy backend tests run when CuPy sees a GPU),
# 3. runs the step benchmark on the GPU (nnxp on CuPy vs PyTorch CUDA, eager and
#    CUDA-graph, and the cupy.matmul floor) with raw samples in JSON,
# 4. runs the race on Fashion-MNIST on the GPU.
# Everything goes to OUTPUT_DIR; each step's output is also shown. A failing step
# does not stop the others; the exit status is 1 if any step failed.
# Set PYTHON to choose the interpreter (default: python). Extra options for the
# step benchmark can be given in BENCH_ARGS (e.g. BENCH_ARGS="--repeats 15").

set -u -o pipefail
OUT="${1:-./gpu-results}"
PY="${PYTHON:-python}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
failed=()

step() {  # step NAME LOGFILE COMMAND...: run, show and keep the output, remember failures
    local name="$1" log="$2"
    shift 2
    echo
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$OUT/$log"
    local rc="${PIPESTATUS[0]}"
    if [ "$rc" -ne 0 ]; then
        echo "=== $name FAILED (exit status $rc)"
        failed+=("$name")
    fi
}

{
    echo "date: $(date -Is)"
    echo "host: $(hostname)"
    echo "repository: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
    echo
    echo "--- nvidia-smi"
    nvidia-smi || echo "nvidia-smi not found"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null
    echo
    echo "--- versions"
    "$PY" - <<'PYEOF'
import os, platform
import numpy
print("python", platform.python_version(), "| numpy", numpy.__version__)
try:
    import nnxp
    print("nnxp", nnxp.__version__, "| CUDA available to nnxp:", nnxp.cuda_available())
except Exception as exc:
    print("nnxp: cannot import:", exc)
try:
    import cupy
    rt = cupy.cuda.runtime
    print("cupy", cupy.__version__, "| CUDA runtime", rt.runtimeGetVersion(), "| driver", rt.driverGetVersion(),
          "| GPUs", rt.getDeviceCount(), "| CUPY_TF32", os.environ.get("CUPY_TF32", "(unset)"))
except Exception as exc:
    print("cupy: not usable:", exc)
try:
    import torch
    print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| available", torch.cuda.is_available(),
          "| cuDNN", torch.backends.cudnn.version() if torch.cuda.is_available() else None,
          "| TF32 matmul", torch.backends.cuda.matmul.allow_tf32)
    if torch.cuda.is_available():
        print("torch sees", torch.cuda.get_device_name(0))
except Exception as exc:
    print("torch: not usable:", exc)
PYEOF
} 2>&1 | tee "$OUT/environment.txt"

step "tests" pytest.txt "$PY" -m pytest -ra
# shellcheck disable=SC2086  # BENCH_ARGS is split on purpose
step "step benchmark (cuda)" gpu-bench.txt \
    "$PY" scripts/bench.py --device cuda --json "$OUT/gpu-bench.json" ${BENCH_ARGS:-}
if [ -f "$OUT/gpu-bench.json" ]; then
    "$PY" scripts/bench.py --from-json "$OUT/gpu-bench.json" --markdown > "$OUT/gpu-bench.md"
fi
step "race (cuda, fashion-mnist)" race-cuda.txt \
    "$PY" scripts/race.py --device cuda --dataset fashion-mnist --json "$OUT/race-cuda.json"

echo
echo "results in $OUT:"
ls -l "$OUT"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
