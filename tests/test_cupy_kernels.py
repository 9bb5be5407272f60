"""The CuPy fused kernels compile: each body is built with nvcc where it is installed.

CuPy compiles an ElementwiseKernel on its first call, on a GPU.  CI has no GPU,
so this test wraps every kernel body the way CuPy does (inputs as const
values, outputs as references into the arrays) and compiles it for float and
double with nvcc, which catches typos and type errors without a device.
Their numbers are checked against the generic path in tests/test_ops.py on a GPU.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nnxp.kernels.cupy import KERNELS

C_TYPES = {"float64": "double", "float32": "float", "bool": "bool", "int32": "int"}


def cuda_source() -> str:
    lines = ["#include <cuda_runtime.h>"]
    for name, spec in KERNELS.items():
        params, body = [], []
        for kind, decl in (("in", spec.in_params), ("out", spec.out_params)):
            for param in decl.split(","):
                ptype, pname = param.split()
                if ptype == "T":
                    params.append(f"{'const ' if kind == 'in' else ''}T* {pname}_array")
                    body.append(f"{'const T' if kind == 'in' else 'T&'} {pname} = {pname}_array[i];")
                else:
                    params.append(f"{C_TYPES[ptype]} {pname}")
        lines += [
            "template <typename T>",
            f"__global__ void {name}({', '.join(params)}, int n) {{",
            "  int i = blockIdx.x * blockDim.x + threadIdx.x;",
            "  if (i >= n) return;",
            *("  " + b for b in body),
            f"  {spec.operation};",
            "}",
        ]
        for ctype in ("float", "double"):
            signature = ", ".join(p.replace("T*", f"{ctype}*") for p in params)
            lines.append(f"template __global__ void {name}<{ctype}>({signature}, int n);")
    return "\n".join(lines) + "\n"


def test_every_kernel_body_compiles_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    source = tmp_path / "kernels.cu"
    source.write_text(cuda_source())
    done = subprocess.run([nvcc, "-c", str(source), "-o", str(tmp_path / "kernels.o")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + "\n" + source.read_text()


def test_there_is_a_kernel_for_each_activation_and_optimizer():
    from nnxp.activations import ACTIVATIONS

    for name in ACTIVATIONS:
        if name != "softmax":  # softmax is row-wise, it stays on the generic path
            assert f"nnxp_forward_{name}" in KERNELS
    assert {"nnxp_update_sgd", "nnxp_update_momentum", "nnxp_update_adam"} <= set(KERNELS)
