"""The benchmark harness: one training step timed side by side with references, and the race.

**Step benchmark** (``nnxp bench``).  For each layer-size list and batch size
it times ONE training step (forward, loss gradient, backward, optimizer update;
float32; ReLU hidden layers, softmax + cross-entropy output) of:

``nnxp-sgd`` / ``nnxp-adam``
    ``net.train_step(x, y, optimizer, ops)`` with ``ops = ops_for(net.backend)``
    (the fast path), SGD lr 0.01 / Adam lr 0.001, data already on the device.
``numpy-ref`` (``cupy-ref`` on a GPU)
    :class:`ReferenceMLP`: the step as a competent person writes it with plain
    ``@`` and allocating expressions, SGD lr 0.01, the same maths.
``torch-sgd`` / ``torch-adam``
    PyTorch eager: ``nn.Sequential``, ``F.cross_entropy``, ``backward()``,
    ``torch.optim.SGD`` / ``Adam``, ``zero_grad(set_to_none=True)``.  On a GPU
    also ``torch-sgd-graph`` / ``torch-adam-graph``: the same step captured
    once in a CUDA graph and replayed.
``gemm-floor``
    Only the step's matrix products (NumPy's ``matmul(..., out=)`` into
    preallocated arrays): forward per layer, weight gradient per layer, input
    gradient for every layer but the first.  No NumPy step can be faster.
``torch-gemm-floor``
    The same products with ``torch.matmul(..., out=)``: PyTorch's BLAS (MKL on
    x86, cuBLAS on a GPU), so that a torch step faster than ``gemm-floor`` can
    be traced to the BLAS rather than to the step's code.

How it is timed (see :func:`measure`): every contender gets the same initial
weights and the same few pre-made batches (cycled); after a warm-up that also
picks, per contender, how many consecutive steps ``k`` one sample times (so a
sample lasts at least ``--min-sample-ms``), the contenders are sampled
round-robin within each repeat (the starting contender rotates), with the
garbage collector off.  Before each sample the contender's weights are put back
to the initial ones (outside the timed region), so every sample times the same
k steps.  The device is synchronised before and after each sample.  Reported:
the median time per step and the inter-quartile range over the samples.

**Race** (``nnxp bench --race``, ``scripts/race.py``): 784-256-10, ReLU,
softmax cross-entropy, SGD lr 0.1, batch 512, test accuracy after every epoch,
until it reaches the target (96% MNIST, 85% Fashion-MNIST), nnxp (``Network.fit``
with a stopping callback) against the same loop written in PyTorch.

Modules: :mod:`.contenders` (the ways of doing the step), :mod:`.timing`
(calibration, interleaved samples, machine load), :mod:`.machine` (CPU, BLAS,
versions, threads), :mod:`.step` (the step benchmark), :mod:`.race`,
:mod:`.report` (tables, markdown, targets, README section, JSON).  The
``nnxp bench`` command is :mod:`nnxp.cli.bench`.
"""

from .contenders import (CONTENDERS, GemmFloor, NnxpStep, ReferenceMLP, ReferenceStep, TorchGemmFloor,
                         TorchStep, build_contenders)
from .machine import code_fingerprint, machine_info
from .race import run_race
from .report import (SCHEMA, TARGETS, add_ratios, check_targets, format_markdown, format_race, format_table,
                     update_readme)
from .step import run_step_bench, step_flops
from .timing import CpuMonitor, measure

__all__ = [
    "CONTENDERS",
    "SCHEMA",
    "TARGETS",
    "CpuMonitor",
    "GemmFloor",
    "NnxpStep",
    "ReferenceMLP",
    "ReferenceStep",
    "TorchGemmFloor",
    "TorchStep",
    "add_ratios",
    "build_contenders",
    "check_targets",
    "code_fingerprint",
    "format_markdown",
    "format_race",
    "format_table",
    "machine_info",
    "measure",
    "run_race",
    "run_step_bench",
    "step_flops",
    "update_readme",
]
