"""Every CuPy kernel nnxp uses compiles as CuPy compiles it, for sm_90 and sm_80, without a GPU.

The CUDA source is produced by CuPy's own code generator
(``cupy._core._kernel._get_elementwise_kernel_code``: the ``typedef`` for the
type placeholder ``T``, the ``CArray``/``CIndexer`` parameters, the
``CUPY_FOR`` loop, inputs bound as ``const T &b = _raw_b[_ind.get()]``), with
the headers CuPy prepends (``cupy/carray.cuh`` ...), and compiled by NVRTC
(from pip) with the options CuPy assembles, plus the ones its compiler adds
(``-ftz=true``, ``-arch=sm_XX``, ``--device-as-default-execution-space``).
A body that references an undefined name, mixes types badly or calls a
function CUDA lacks fails here, as it would on the first GPU call.

What is *not* CuPy's own here: the argument descriptions (dimensions and
contiguity after broadcasting, which CuPy works out at call time on a device)
are written below for the shapes nnxp passes, and CuPy's device-bound
wrappers (``compile_using_nvrtc`` asks the driver for the GPU's architecture)
are bypassed by calling its ``_NVRTCProgram`` directly with the architecture
given.  Loading the module (``cuModuleLoadData``) needs a GPU and is not done.

Needs ``pip install 'nnxp[test-gpu]'`` (CuPy 14 for CUDA 12 and NVRTC, no
GPU); skipped with the reason otherwise.  Numbers are checked by the CPU
emulation in tests/test_cupy_emulation.py and, on a GPU, in tests/test_kernels.py.
"""

from __future__ import annotations

import pytest

from nnxp.kernels.cupy_kernels import KERNELS, KernelSpec
from nnxp.kernels.cupy_fused import raw_kernels

ARCHS = ("90", "80")  # H100, A100
DTYPES = ("float32", "float64")


def _cupy_compiler():
    """(cupy, its kernel module, its compiler module) or a skip with the reason."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: pip install 'nnxp[test-gpu]'")
    from cupy._core import _kernel, core
    from cupy.cuda import compiler

    try:
        compiler._get_nvrtc_version()
    except Exception as exc:  # noqa: BLE001 - a missing libnvrtc raises anything
        pytest.skip(f"NVRTC is not available ({exc}): pip install 'nnxp[test-gpu]'")
    return cupy, _kernel, core, compiler


def describe_call(name: str, spec: KernelSpec, dtype: str, device_scalars: bool = False) -> tuple:
    """How nnxp calls kernel ``name`` on ``dtype`` data, in the emulation's format (support.cupy_emulation.SIGNATURES).

    Forward kernels add a bias (out,) to z (B, out): b broadcasts, so CuPy keeps
    2 dimensions (b not contiguous).  Every other call has operands of one
    shape, all contiguous: CuPy reduces them to 1 dimension.  Scalars are cast
    to their parameter's type; with ``device_scalars`` (the flat updates in a
    CUDA graph) the ``T`` ones are 1-element arrays, broadcast (not contiguous).
    tests/test_cupy_emulation.py checks that the calls nnxp makes in training
    are exactly these.
    """
    forward = name.startswith("nnxp_forward_")
    out = []
    for param in (p.strip() for part in (spec.in_params, spec.out_params) for p in part.split(",")):
        ptype, pname = param.split()
        ptype = dtype if ptype == "T" else ptype
        if pname in spec.scalars and device_scalars and param.split()[0] == "T":
            out.append(("array", ptype, 1, False))
        elif pname in spec.scalars:
            out.append(("scalar", ptype))
        else:
            out.append(("array", ptype, 2 if forward else 1, not (forward and pname == "b")))
    return tuple(out)


def _arginfos(cupy, _kernel, description: tuple):
    """CuPy's _ArgInfo tuple (arrays, scalars, then the indexer) for a call description."""
    import numpy as np

    ndarray, indexer, scalar = 1, 2, 3  # cupy/_core/_kernel.pxd: _ArgKind
    infos, ndim = [], 0
    for desc in description:
        if desc[0] == "array":
            _, dtype, ndim, contiguous = desc
            infos.append(_kernel._ArgInfo(ndarray, cupy.ndarray, np.dtype(dtype), ndim, contiguous, True))
        else:
            infos.append(_kernel._ArgInfo(scalar, cupy._core._scalar.CScalar, np.dtype(desc[1]), 0, True, True))
    infos.append(_kernel._ArgInfo(indexer, cupy._core._carray.Indexer, None, ndim, True, True))
    return tuple(infos)


#: Every call form: (kernel, device scalars?), the flat updates both ways (eager and in a CUDA graph).
FORMS = sorted([(name, False) for name in KERNELS] + [(name, True) for name in KERNELS if name.endswith("_flat")])


def cuda_source(name: str, dtype: str, spec: KernelSpec | None = None, device_scalars: bool = False) -> str:
    """The CUDA C++ module CuPy would compile for kernel ``name`` (or ``spec``) on ``dtype`` arrays."""
    import numpy as np

    cupy, _kernel, core, _ = _cupy_compiler()
    spec = spec or KERNELS[name]
    kernel = cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, name)
    type_map = _kernel._TypeMap((("T", np.dtype(dtype)),))
    code = _kernel._get_elementwise_kernel_code(
        _arginfos(cupy, _kernel, describe_call(name, spec, dtype, device_scalars)), type_map, kernel.params,
        kernel.operation, kernel.name, kernel.preamble)
    headers = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    return headers + code


def nvrtc_compile(source: str, arch: str, ptx: bool = False) -> bytes:
    """NVRTC-compile ``source`` to a cubin for ``sm_<arch>`` (or PTX for ``compute_<arch>``) with CuPy's options."""
    _, _, core, compiler = _cupy_compiler()
    options = core.assemble_cupy_compiler_options(()) + (
        "-ftz=true", f"-arch={'compute' if ptx else 'sm'}_{arch}", "--device-as-default-execution-space")
    program = compiler._NVRTCProgram(source, "kern.cu", method="ptx" if ptx else "cubin")
    binary, _ = program.compile(options)
    return binary


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,device_scalars", FORMS)
def test_kernel_compiles_with_cupys_code_generator_and_nvrtc(name, device_scalars, dtype, arch):
    _, _, _, compiler = _cupy_compiler()
    source = cuda_source(name, dtype, device_scalars=device_scalars)
    try:
        cubin = nvrtc_compile(source, arch)
    except compiler.CompileException as exc:
        pytest.fail(f"{name} ({dtype}, sm_{arch}) does not compile:\n{exc}\n{source}")
    assert cubin[:4] == b"\x7fELF" and name.encode() in cubin


@pytest.mark.parametrize("name,device_scalars", FORMS)
def test_float32_kernels_do_no_double_precision_arithmetic(name, device_scalars):
    """A float32 kernel computing in double runs at 1/64 speed on consumer GPUs: its PTX has no f64 instruction."""
    ptx = nvrtc_compile(cuda_source(name, "float32", device_scalars=device_scalars), "90", ptx=True).decode()
    f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    assert not f64, f"{name} computes in double precision on float32 data:\n" + "\n".join(f64[:10])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(raw_kernels()))
def test_raw_kernel_compiles_with_nvrtc(name, arch):
    """The fused step's RawKernels: CuPy compiles a RawKernel's source as given, with its options."""
    _, _, _, compiler = _cupy_compiler()
    source = raw_kernels()[name]
    try:
        cubin = nvrtc_compile(source, arch)
    except compiler.CompileException as exc:
        pytest.fail(f"{name} (sm_{arch}) does not compile:\n{exc}\n{source}")
    assert cubin[:4] == b"\x7fELF" and name.encode() in cubin


@pytest.mark.parametrize("name", sorted(n for n in raw_kernels() if n.endswith("float32")))
def test_float32_raw_kernels_do_no_double_precision_arithmetic(name):
    ptx = nvrtc_compile(raw_kernels()[name], "90", ptx=True).decode()
    f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    assert not f64, f"{name} computes in double precision on float32 data:\n" + "\n".join(f64[:10])


def test_a_broken_body_fails_to_compile():
    """The check can fail: a body naming an undefined ``n`` (which nvcc's old harness accepted)."""
    _, _, _, compiler = _cupy_compiler()
    broken = KERNELS["nnxp_backward_relu"]._replace(operation="g = i < n ? g : (T)0")
    source = cuda_source("nnxp_backward_relu", "float32", broken)
    with pytest.raises(compiler.CompileException, match="identifier \"n\" is undefined"):
        nvrtc_compile(source, "90")


def test_there_is_a_kernel_for_each_activation_and_optimizer():
    from nnxp.activations import ACTIVATIONS

    for name in ACTIVATIONS:
        if name != "softmax":  # softmax is row-wise, it stays on the generic path
            assert f"nnxp_forward_{name}" in KERNELS
    assert {"nnxp_update_sgd", "nnxp_update_momentum", "nnxp_update_adam"} <= set(KERNELS)
