"""EMULATION of the CuPy subset nnxp uses, on the CPU: it proves arithmetic and plumbing, never speed.

No GPU is available to this project, so the CuPy fast path
(:class:`nnxp.kernels.cupy.CuPyOps`) is run in CI against this stand-in for the
``cupy`` module.  What is emulated, and how:

- ``ElementwiseKernel(in_params, out_params, operation, name)``: the
  operation (CUDA C++) is compiled *as C++* by the system compiler (``g++``
  or ``$CXX``) inside a loop written like CuPy's generated one: inputs bound as
  ``const T &b``, outputs as ``T &z``, the loop index ``i``, ``typedef`` for the
  placeholder ``T``.  Calls follow CuPy's rules: the number of arguments
  (inputs, or inputs and outputs), arrays of one library (a NumPy array is
  adopted but counted as
  ``untracked``: CuPy would refuse it), ``T`` bound by the array arguments (a mismatch is
  a ``TypeError``), typed array parameters needing that exact dtype, Python
  scalars cast to the parameter's type (``T`` or ``float64``...), broadcasting
  of every non-raw array, outputs of exactly the broadcast shape, missing
  outputs allocated.
- ``RawKernel(code, name)``: compiled as C++ with ``threadIdx``/``blockIdx``
  set by a serial loop over the grid and block; ``atomicAdd`` is a plain add
  (the loop is serial; ``THREAD_ORDER.shuffle(seed)`` runs the threads in a
  shuffled order, as a GPU may, so atomic float sums change with it).
  Kernels using ``__shared__`` or ``__syncthreads``
  are refused: a serial loop would not emulate them.  Arguments follow CuPy:
  arrays as pointers, Python ``float`` as ``double``, ``int`` as ``long long``,
  NumPy scalars as their dtype; a scalar whose type differs from the kernel's
  declared parameter type raises ``TypeError`` (on a GPU it is silently
  misread).
- ``matmul``, ``dot``, ``sum``, ``take``, ``copyto``, ``empty``, ``zeros``, ``asarray``: by NumPy;
  the raw cuBLAS ``sgemm``/``dgemm`` on column-major pointers, as cuBLAS reads them.
- ``cupy.cuda.Stream`` capture: launches are recorded (host scalars baked in
  then, as in a CUDA graph) and ``Graph.launch`` replays them.  Refused in
  capture as CuPy refuses them: its cuBLAS wrappers, ``matmul`` and ``dot``
  (``NotImplementedError``, cupy issue 6290), host reads and pageable copies
  (``get``, ``float(x)``, ``set``), ``Stream.synchronize``.  Refused although
  CuPy allows them (stricter, labelled EMULATION): an allocation or a
  NumPy-level operation (memory may be reused while the graph runs, cupy
  issue 9655).
- ``cupy.cuda.cublas_library``: the libcublas C functions nnxp calls through
  ctypes in capture (``cublasCreate_v2``, ``cublasSetStream_v2``,
  ``cublasSetWorkspace_v2``, ``cublasGemmEx`` with compute types, TF32
  rounding); ``CUPY_TF32=1`` rounds float32 ``matmul`` inputs to TF32 as well.

Arrays are :class:`DeviceArray` (an ``ndarray`` subclass standing for device
memory).  :data:`COUNTERS` counts kernel launches (one per ``ElementwiseKernel``
/ ``RawKernel`` call, per ``matmul``/``sum``/``take``, and per NumPy operation
run on device arrays by the generic code), allocations of device arrays, host
reads (``float(x)``, ``int(x)``, ``bool(x)``), and arrays that met a
device array without having been created as one (``untracked``), host-to-device
copies and graph replays.  Not emulated: timing, concurrency between streams,
memory pools, cuBLAS workspaces, denormal flushing (``-ftz=true``), fused
multiply-add contraction, concurrent threads (the thread order can be shuffled).
"""

from __future__ import annotations

from .compiler import THREAD_ORDER, CompileException, ElementwiseKernel, RawKernel, compiler
from .device import COUNTERS, SIGNATURES, DeviceArray, EmulatedBackend, EmulationUnavailable, to_device
from .runtime import cupy
from .backend import emulated_cupy_backend

__all__ = ["COUNTERS", "SIGNATURES", "THREAD_ORDER", "DeviceArray", "ElementwiseKernel", "RawKernel", "CompileException",
           "EmulationUnavailable", "EmulatedBackend", "compiler", "cupy", "emulated_cupy_backend", "to_device"]
