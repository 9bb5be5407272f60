"""CuPy's own compiled cuBLAS wrapper, and nnxp's capture route, against a stub libcublas (no GPU).

A stub ``libcublas.so.N`` (C, compiled here into a temporary folder, named by the
soname CuPy's extension ``cupy_backends.cuda.libs.cublas`` links) exports every
cuBLAS function that extension needs and logs the calls nnxp cares about with
their arguments.  The capture state the wrapper asks for is controlled by
replacing ``runtime.streamIsCapturing`` (and ``getDeviceCount``/``getDevice``,
which the current-stream lookup calls) in the runtime module's C-API table
(``__pyx_capi__``, which the wrapper and the stream module read when they are
imported) with stub functions.  In a subprocess, so nothing here touches the rest of the suite:

- outside capture, CuPy's ``sgemm`` asks the capture state, binds the stream and
  reaches ``cublasSgemm_v2`` with its arguments unchanged;
- while "capturing", CuPy's ``sgemm``, ``dgemm`` and ``gemmEx`` raise
  ``NotImplementedError`` (cupy issue 6290) and reach nothing: this is why
  nnxp's earlier graph route (the raw ``sgemm`` inside capture) failed;
- nnxp's :class:`~nnxp.kernels.cublas_capture.CaptureBlas`, on the library found
  in the process, never goes through the wrapper: ``cublasCreate_v2``,
  ``cublasSetStream_v2`` and ``cublasSetWorkspace_v2`` before capture, then
  ``cublasGemmEx`` with the intended transposes, sizes, leading dimensions,
  alpha 1, beta 0 and compute type (32F, or 32F_FAST_TF32 where CuPy's setting
  says TF32; 64F for float64).  CuPy decides TF32 from ``CUPY_TF32`` only on a GPU
  of compute capability 8.0 or more, so with TF32 asked its answer is stood in
  for here (tests/test_cuda_graphs.py checks on the emulation that graph and
  eager products follow the same setting).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_LOGGED = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
static void say(const char* line) {
    FILE* f = fopen(getenv("NNXP_STUB_LOG"), "a");
    if (f) { fputs(line, f); fputc('\n', f); fclose(f); }
}
#define LOG(...) do { char line_[512]; snprintf(line_, sizeof line_, __VA_ARGS__); say(line_); } while (0)
static int capturing = 0;
void nnxp_stub_set_capturing(int on) { capturing = on; }
int nnxp_stub_stream_is_capturing(intptr_t stream, int skip_dispatch) {
    LOG("streamIsCapturing %ld", (long)stream); return capturing;
}
int nnxp_stub_device_count(int skip_dispatch) { return 1; }
int nnxp_stub_device(int skip_dispatch) { return 0; }
int cublasCreate_v2(void** handle) { *handle = (void*)0x4242; LOG("cublasCreate_v2"); return 0; }
int cublasSetStream_v2(void* h, void* s) { LOG("cublasSetStream_v2 %ld %ld", (long)h, (long)s); return 0; }
int cublasSetWorkspace_v2(void* h, void* w, size_t n) {
    LOG("cublasSetWorkspace_v2 %ld %ld %zu", (long)h, (long)w, n); return 0;
}
int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const void* A, int lda,
                   const void* B, int ldb, const float* beta, void* C, int ldc) {
    LOG("cublasSgemm_v2 %ld %d %d %d %d %d %g %ld %d %ld %d %g %ld %d", (long)h, ta, tb, m, n, k, *alpha, (long)A,
        lda, (long)B, ldb, *beta, (long)C, ldc);
    return 0;
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A, int at, int lda,
                 const void* B, int bt, int ldb, const void* beta, void* C, int ct, int ldc, int compute, int algo) {
    double a = compute == 70 ? *(const double*)alpha : *(const float*)alpha;
    double b = compute == 70 ? *(const double*)beta : *(const float*)beta;
    LOG("cublasGemmEx %ld %d %d %d %d %d %g %ld %d %d %ld %d %d %g %ld %d %d %d %d", (long)h, ta, tb, m, n, k, a,
        (long)A, at, lda, (long)B, bt, ldb, b, (long)C, ct, ldc, compute, algo);
    return 0;
}
"""

_SCRIPT = r"""
import ctypes, json, os, sys, types
import numpy as np

stub = ctypes.CDLL(os.environ["NNXP_STUB"], mode=ctypes.RTLD_GLOBAL)  # the libcublas the wrapper links
from cupy_backends.cuda.api import runtime

# The runtime functions CuPy's stream and cuBLAS modules call (through runtime's C-API table, read
# when they are imported), replaced by stub functions: a controlled capture state, one device.
name = ctypes.pythonapi.PyCapsule_GetName
name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
new = ctypes.pythonapi.PyCapsule_New
new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
keep = []
for function, signature, replacement in (
        ("streamIsCapturing", "int (intptr_t, int __pyx_skip_dispatch)", stub.nnxp_stub_stream_is_capturing),
        ("getDeviceCount", "int (int __pyx_skip_dispatch)", stub.nnxp_stub_device_count),
        ("getDevice", "int (int __pyx_skip_dispatch)", stub.nnxp_stub_device)):
    found = name(runtime.__pyx_capi__[function]).decode()
    if found != signature:
        print(json.dumps({"skip": f"runtime.{function} has another C signature: {found}"}))
        raise SystemExit(0)
    keep.append(signature.encode())
    runtime.__pyx_capi__[function] = new(ctypes.cast(replacement, ctypes.c_void_p).value, keep[-1], None)
assert "cupy_backends.cuda.stream" not in sys.modules
from cupy_backends.cuda.libs import cublas  # imports the stream module and itself with the stubs in place

out = {"library": cublas.__file__}
one, half = np.array(2.0, np.float32), np.array(0.5, np.float32)
log = lambda what: open(os.environ["NNXP_STUB_LOG"], "a").write("--- " + what + "\n")

log("wrapper outside capture")
cublas.sgemm(0x4242, 1, 0, 3, 4, 5, one.ctypes.data, 0x1000, 7, 0x2000, 8, half.ctypes.data, 0x3000, 9)
log("wrapper while capturing")
stub.nnxp_stub_set_capturing(1)
out["refused"] = []
for call in (lambda: cublas.sgemm(0x4242, 0, 0, 3, 4, 5, one.ctypes.data, 0x1000, 3, 0x2000, 5, half.ctypes.data,
                                  0x3000, 3),
             lambda: cublas.dgemm(0x4242, 0, 0, 3, 4, 5, one.ctypes.data, 0x1000, 3, 0x2000, 5, half.ctypes.data,
                                  0x3000, 3),
             lambda: cublas.gemmEx(0x4242, 0, 0, 3, 4, 5, one.ctypes.data, 0x1000, 0, 3, 0x2000, 0, 5,
                                   half.ctypes.data, 0x3000, 0, 3, 68, -1)):
    try:
        call()
        out["refused"].append(None)
    except NotImplementedError as exc:
        out["refused"].append(str(exc))

log("nnxp's route while capturing")
import cupy
from nnxp.kernels import cublas_capture

linalg = cupy._core._routines_linalg
if os.environ["CUPY_TF32"] == "1":  # CuPy checks the GPU's compute capability (>= 8.0) before it says TF32
    linalg = types.SimpleNamespace(COMPUTE_TYPE_TF32=linalg.COMPUTE_TYPE_TF32, get_compute_type=lambda dtype: (
        linalg.COMPUTE_TYPE_TF32 if np.dtype(dtype).char == "f" else linalg.COMPUTE_TYPE_DEFAULT))
cp = types.SimpleNamespace(cuda=types.SimpleNamespace(),  # no GPU: no arrays from CuPy
                           _core=types.SimpleNamespace(_routines_linalg=linalg))
library = cublas_capture.loaded_cublas(cp)
if os.path.realpath(library._name) != os.path.realpath(os.environ["NNXP_STUB"]):
    print(json.dumps({"skip": "a real libcublas is loaded beside the stub: " + library._name}))
    raise SystemExit(0)
workspace = np.empty(64, np.uint8)
blas = cublas_capture.CaptureBlas(cp, library=library, workspace=workspace)
blas.bind(0x5151)
out["workspace"] = workspace.ctypes.data
arrays = {}
for dtype in ("float32", "float64"):
    a = np.zeros((6, 4), dtype)             # (m, k) = (6, 4), C-contiguous: op N, lda 4
    w = np.zeros((3, 4), dtype)             # w.T: (k, n) = (4, 3), F-contiguous: op T, ldb 4
    c = np.zeros((6, 3), dtype)
    blas.gemm(a, w.T, c)
    arrays[dtype] = [a.ctypes.data, w.ctypes.data, c.ctypes.data]
out["arrays"] = arrays
print(json.dumps(out))
"""


def _cublas_extension() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("cupy_backends.cuda.libs.cublas")
    if spec is None or spec.origin is None:
        pytest.skip("CuPy is not installed (the test extra installs cupy-cuda12x)")
    return Path(spec.origin)


@pytest.fixture(scope="module")
def stub_library(tmp_path_factory) -> Path:
    """The stub libcublas: every cuBLAS symbol the wrapper links (unlogged ones return an error), soname as linked."""
    extension = _cublas_extension()
    compiler = next((shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)),
                    None)
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang)")
    binary = extension.read_bytes()
    sonames = set(re.findall(rb"libcublas\.so\.\d+", binary))
    assert len(sonames) == 1, sonames
    soname = sonames.pop().decode()
    wanted = sorted({s.decode() for s in re.findall(rb"\x00(cublas\w+)\x00", binary)})
    logged = set(re.findall(r"^int (cublas\w+)\(", _LOGGED, re.M))
    assert {"cublasSgemm_v2", "cublasSetStream_v2", "cublasGemmEx"} <= set(wanted)
    others = "".join(f'int {name}(void) {{ LOG("{name} (not stubbed)"); return 14; }}\n'
                     for name in wanted if name not in logged)
    folder = tmp_path_factory.mktemp("stub-cublas")
    (folder / "stub.c").write_text(_LOGGED + others)
    (folder / "stub.map").write_text(f"{soname} {{ global: *; }};\n")
    library = folder / soname
    done = subprocess.run([compiler, "-shared", "-fPIC", "-O0", "-o", str(library), str(folder / "stub.c"),
                           f"-Wl,-soname,{soname}", f"-Wl,--version-script={folder / 'stub.map'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return library


def run_stub(stub_library: Path, tmp_path: Path, tf32: str) -> tuple[dict, list[list[str]]]:
    log = tmp_path / "calls.log"
    env = {**os.environ, "NNXP_STUB": str(stub_library), "NNXP_STUB_LOG": str(log), "CUPY_TF32": tf32,
           "LD_LIBRARY_PATH": f"{stub_library.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           "CUPY_CI": "1",  # CuPy's own switch: its library finder (cuda.pathfinder) finding no libcublas is no error
           "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    sections, current = {}, None
    for line in log.read_text().splitlines():
        if line.startswith("--- "):
            current = sections.setdefault(line[4:], [])
        elif current is not None:
            current.append(line.split())
    return out, sections


@pytest.mark.parametrize("tf32", ["0", "1"])
def test_cupys_wrapper_refuses_in_capture_and_nnxps_route_reaches_cublas(stub_library, tmp_path, tf32):
    out, calls = run_stub(stub_library, tmp_path, tf32)
    assert out["library"].endswith(".so")
    # CuPy's compiled wrapper, outside capture: capture state asked, stream bound, arguments unchanged.
    assert calls["wrapper outside capture"] == [
        ["streamIsCapturing", "0"], ["cublasSetStream_v2", str(0x4242), "0"],
        ["cublasSgemm_v2", str(0x4242), "1", "0", "3", "4", "5", "2", str(0x1000), "7", str(0x2000), "8", "0.5",
         str(0x3000), "9"]]
    # ... while capturing: it raises before reaching cuBLAS (cupy issue 6290).
    assert out["refused"] == ["calling cuBLAS API during stream capture is currently unsupported"] * 3
    assert calls["wrapper while capturing"] == [["streamIsCapturing", "0"]] * 3
    # nnxp's route: its own handle, bound before capture, then cublasGemmEx; never the wrapper.
    route = calls["nnxp's route while capturing"]
    handle = str(0x4242)
    assert route[:3] == [["cublasCreate_v2"], ["cublasSetStream_v2", handle, str(0x5151)],
                         ["cublasSetWorkspace_v2", handle, str(out["workspace"]), "64"]]
    compute32 = "77" if tf32 == "1" else "68"
    gemms = []
    for dtype, kind, compute in (("float32", "0", compute32), ("float64", "1", "70")):
        a, w, c = (str(p) for p in out["arrays"][dtype])
        # C^T (3, 6) = op(w.T as column-major) (3, 4) x op(a) (4, 6): w.T is F-contiguous (op T, ldb 4),
        # a C-contiguous (op N, lda 4), C leading dimension 3; alpha 1, beta 0, CUBLAS_GEMM_DEFAULT.
        gemms.append(["cublasGemmEx", handle, "1", "0", "3", "6", "4", "1", w, kind, "4", a, kind, "4", "0", c, kind,
                      "3", compute, "-1"])
    assert route[3:] == gemms
    assert not any(line[0] in ("streamIsCapturing", "cublasSgemm_v2") for line in route)
