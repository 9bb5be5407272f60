"""The CUDA sources of nnxp's CuPy elementwise kernels, and which formula each one runs.

Each kernel is a :class:`KernelSpec` as ``cupy.ElementwiseKernel`` takes it:
the forward ``a = f(z + b)`` and backward ``g *= f'(a)`` of every elementwise
activation, and every optimizer's update (per parameter, and over the fused
step's flat buffers).  :mod:`nnxp.kernels.cupy` and
:mod:`nnxp.kernels.cupy_fused` launch them; ``tests/test_cupy_kernels.py``
compiles each one with CuPy's code generator and NVRTC.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh

__all__ = ["KERNELS", "KernelSpec", "kernel"]


class KernelSpec(NamedTuple):
    """An elementwise kernel as ``cupy.ElementwiseKernel`` takes it.

    ``scalars`` names the parameters nnxp passes Python floats for (the others
    get arrays); the compile test describes the calls with it.
    """

    in_params: str
    out_params: str
    operation: str
    scalars: tuple[str, ...] = ()


# Scalars are declared ``T`` (CuPy casts the Python float to the arrays' dtype), as
# the generic path multiplies a float32 array by a Python float in float32: no kernel
# computes in double precision on float32 data (tests/test_cupy_kernels.py reads the PTX).

# Forward: a = f(z + b), in place on the GEMM output z; b broadcasts over rows.
# ReLU is written so that NaN stays NaN (as maximum(z, 0) in the generic path).
# The sigmoid takes e = exp(-|v|) so neither branch can overflow.
_FORWARD = {
    "relu": KernelSpec("T b", "T z", "T v = z + b; z = v < (T)0 ? (T)0 : v"),
    "leaky_relu": KernelSpec("T b, T alpha", "T z", "T v = z + b; z = v > (T)0 ? v : alpha * v", ("alpha",)),
    "sigmoid": KernelSpec("T b", "T z",
                          "T v = z + b; T e = exp(-fabs(v)); z = v >= (T)0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e)"),
    "tanh": KernelSpec("T b", "T z", "z = tanh(z + b)"),
    "identity": KernelSpec("T b", "T z", "z = z + b"),
}

# Backward: g <- g * f'(a), f' written from the output a exactly as Activation.derivative
# (so a NaN in g stays NaN, as in the reference; c = 1 - alpha is computed on the host).
_BACKWARD = {
    "relu": KernelSpec("T a", "T g", "g = g * (T)(a > (T)0)"),
    "leaky_relu": KernelSpec("T a, T alpha, T c", "T g", "g = g * (alpha + c * (T)(a > (T)0))", ("alpha", "c")),
    "sigmoid": KernelSpec("T a", "T g", "g = g * (a * ((T)1 - a))"),
    "tanh": KernelSpec("T a", "T g", "g = g * ((T)1 - a * a)"),
}

# Optimizers (nnxp.optim's formulas; wd is L2 added to g, decay the AdamW factor;
# c1 = 1 - b1 and c2 = 1 - b2 are computed on the host).
_UPDATES = {
    "sgd": KernelSpec("T g, T lr, T wd", "T p",
                      "T grad = g + wd * p; p = p - lr * grad", ("lr", "wd")),
    "momentum": KernelSpec(
        "T g, T lr, T wd, T mu, bool nesterov", "T p, T v",
        "T grad = g + wd * p; v = mu * v + grad; "
        "p = p - lr * (nesterov ? grad + mu * v : v)", ("lr", "wd", "mu", "nesterov")),
    "adam": KernelSpec(
        "T g, T step, T b1, T c1, T b2, T c2, T eps, T inv_sqrt_bc2, T wd, T decay", "T p, T m, T v",
        "p = p * decay; T grad = g + wd * p; "
        "m = b1 * m + c1 * grad; v = b2 * v + c2 * (grad * grad); "
        "p = p - step * m / (sqrt(v) * inv_sqrt_bc2 + eps)",
        ("step", "b1", "c1", "b2", "c2", "eps", "inv_sqrt_bc2", "wd", "decay")),
}



def _flat(spec: KernelSpec) -> KernelSpec:
    """The update over the fused step's flat buffers: it also zeroes the gradient it read.

    (Needed while the bias gradients were sums built by atomic adds; now every
    gradient of the fused step is written, not added to, and the zeroing only
    costs one write of the gradients per step: left for a GPU measurement to
    weigh against changing the compiled kernels.)"""
    ins = ", ".join(p for p in spec.in_params.split(", ") if p != "T g")
    return KernelSpec(ins, spec.out_params + ", T g", spec.operation + "; g = (T)0", spec.scalars)


#: Every kernel by name (tests/test_cupy_kernels.py compiles each one).
KERNELS: dict[str, KernelSpec] = {
    **{f"nnxp_forward_{k}": v for k, v in _FORWARD.items()},
    **{f"nnxp_backward_{k}": v for k, v in _BACKWARD.items()},
    **{f"nnxp_update_{k}": v for k, v in _UPDATES.items()},
    **{f"nnxp_update_{k}_flat": _flat(v) for k, v in _UPDATES.items()},
}

# The formula each kernel runs, by exact class (never by name: a subclass runs the reference).
_FORWARD_OF = {ReLU: "relu", LeakyReLU: "leaky_relu", Sigmoid: "sigmoid", Tanh: "tanh", Identity: "identity"}
_BACKWARD_OF = {ReLU: "relu", LeakyReLU: "leaky_relu", Sigmoid: "sigmoid", Tanh: "tanh"}


@lru_cache(maxsize=None)
def kernel(cupy: Any, name: str) -> Any:
    spec = KERNELS[name]
    return cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, name)
