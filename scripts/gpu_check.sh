#!/usr/bin/env bash
# The one command to run on a CUDA GPU machine (none has been available to this project):
#
#     scripts/gpu_check.sh [OUTPUT_DIR]        (default: ./gpu-results)
#
# 1. records the environment (nvidia-smi, driver, CUDA, CuPy, PyTorch versions, and
#    whether nnxp can use the GPU: cuda_available() runs a kernel and a product),
# 2. runs the whole test-suite (the CuPy backend tests run when CuPy sees a GPU; the
#    NVRTC compile and CPU-emulation tests run everywhere),
# 3. writes the launch and allocation counts per step (launches.md; CPU emulation),
# 4. runs the step benchmark on the GPU at 784-800-10 and 784-4096-4096-10, batches
#    128 and 4096: nnxp on CuPy (fused step) against PyTorch eager and torch.cuda.graph,
#    and the cupy.matmul / torch.matmul floors, raw samples in JSON, the table in Markdown,
# 5. races nnxp (fit: fused step in CUDA graphs) against PyTorch on Fashion-MNIST to 89%
#    test accuracy, with TF32 off (CUPY_TF32=0) and on (CUPY_TF32=1), and once with
#    nnxp's CUDA graphs off (NNXP_CUDA_GRAPHS=0).
# Everything goes to OUTPUT_DIR; each step's output is also shown. A failing step
# does not stop the others; the exit status is 1 if any step failed.
# Set PYTHON to choose the interpreter (default: python). Extra options for the
# step benchmark can be given in BENCH_ARGS (e.g. BENCH_ARGS="--repeats 15").
# Fashion-MNIST is read from --data-dir / the cache, or downloaded (DATA_ARGS,
# default "--download").

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
step "launch counts (CPU emulation)" launches.txt \
    "$PY" scripts/launches.py --markdown
cp "$OUT/launches.txt" "$OUT/launches.md" 2>/dev/null
# shellcheck disable=SC2086  # BENCH_ARGS is split on purpose
step "step benchmark (cuda)" gpu-bench.txt \
    "$PY" -m nnxp bench --device cuda --sizes 784-800-10,784-4096-4096-10 --batches 128,4096 \
    --json "$OUT/gpu-bench.json" ${BENCH_ARGS:-}
if [ -f "$OUT/gpu-bench.json" ]; then
    "$PY" -m nnxp bench --from-json "$OUT/gpu-bench.json" --markdown > "$OUT/gpu-bench.md"
fi
# shellcheck disable=SC2086
for tf32 in 0 1; do
    step "race (cuda, fashion-mnist to 89%, CUPY_TF32=$tf32)" "race-tf32-$tf32.txt" \
        env CUPY_TF32=$tf32 "$PY" -m nnxp bench --race --device cuda --dataset fashion-mnist --target 0.89 \
        ${DATA_ARGS:---download} --json "$OUT/race-tf32-$tf32.json"
done
# shellcheck disable=SC2086
step "race (cuda, fashion-mnist to 89%, nnxp's CUDA graphs off)" race-no-graphs.txt \
    env NNXP_CUDA_GRAPHS=0 "$PY" -m nnxp bench --race --device cuda --dataset fashion-mnist --target 0.89 \
    ${DATA_ARGS:---download} --json "$OUT/race-no-graphs.json"

echo
echo "results in $OUT:"
ls -l "$OUT"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
