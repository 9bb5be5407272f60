"""Kernel launches and allocations per training step: nnxp on CuPy (counted by the CPU EMULATION)
beside PyTorch's eager step (operators in its profiler's trace, on the CPU).

No GPU was available to this project, so nothing here is a time.  What is
counted, per steady-state step of a 784-H-10 network (ReLU, softmax +
cross-entropy, float32):

- nnxp: by the CPU EMULATION (tests/support/cupy_emulation) while ``Network.fit`` runs the
  real CuPy executor: every ``ElementwiseKernel``/``RawKernel`` launch, cuBLAS
  or ``cupy`` call, CUDA-graph launch and NumPy-level operation on device
  arrays (the reference path), and every device allocation.  One epoch of 3
  steps and one of 6 are counted; their difference over 3 is one step.
- PyTorch: the ``aten::`` operators its profiler records for one step after
  warm-up (``nn.Sequential``, ``F.cross_entropy``, ``backward()``,
  ``optimizer.step()`` with ``foreach=True``, its CUDA default;
  ``zero_grad(set_to_none=True)``): all of them, and the innermost ones that
  are not views or metadata (``view``, ``t``, ``empty``, ...), about one GPU
  kernel each (on a GPU some are fused or split differently: an estimate).

``python scripts/launches.py [--markdown]`` prints the table (test support: the product never imports it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["per_step_counts", "torch_operator_counts", "table", "main"]

SIZES = (784, 256, 10)
BATCH = 128

# PyTorch operators that move no data on a GPU (views, metadata, allocation-free bookkeeping).
_NO_KERNEL = {"aten::view", "aten::t", "aten::transpose", "aten::as_strided", "aten::empty", "aten::empty_like",
              "aten::empty_strided", "aten::detach", "aten::expand", "aten::reshape", "aten::_reshape_alias",
              "aten::result_type", "aten::resize_", "aten::unsqueeze", "aten::squeeze", "aten::alias",
              "aten::select", "aten::slice", "aten::permute", "aten::numpy_T", "aten::lift_fresh",
              "aten::_unsafe_view", "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense", "aten::to",
              "aten::_to_copy", "aten::scalar_tensor", "aten::size", "aten::stride", "aten::contiguous",
              "aten::resolve_conj", "aten::resolve_neg", "aten::detach_"}


def per_step_counts(backend: Any, optimizer: Any, *, fast: bool = True, sizes: tuple[int, ...] = SIZES,
                    batch: int = BATCH, graphs: bool | None = None) -> dict[str, Any]:
    """What one steady-state step of ``Network.fit`` does on ``backend`` (the ``cupy-emulated`` one).

    ``optimizer`` makes a new optimizer; ``graphs`` sets ``NNXP_CUDA_GRAPHS`` for the run
    (None leaves it).  Returns launches, allocations, host reads and writes, untracked
    arrays and graph nodes per step, and ``by_name`` (launches per step by kernel).
    """
    import numpy as np

    import nnxp
    from support import cupy_emulation as em

    saved = os.environ.get("NNXP_CUDA_GRAPHS")
    if graphs is not None:
        os.environ["NNXP_CUDA_GRAPHS"] = "1" if graphs else "0"
    try:
        counts = []
        for steps in (3, 6):
            rng = np.random.default_rng(0)
            x, y = rng.normal(size=(batch * steps, sizes[0])), rng.integers(0, sizes[-1], batch * steps)
            net = nnxp.Network(list(sizes), seed=1, device=backend, dtype="float32")
            x, y = net.inputs(x), net.targets(y, len(y))
            em.COUNTERS.reset()
            net.fit(x, y, epochs=1, batch_size=batch, optimizer=optimizer(), verbose=0, fast=fast)
            counts.append(em.COUNTERS.snapshot())
    finally:
        if graphs is not None:
            if saved is None:
                os.environ.pop("NNXP_CUDA_GRAPHS", None)
            else:
                os.environ["NNXP_CUDA_GRAPHS"] = saved
    keys = ("launches", "allocations", "host_reads", "host_writes", "untracked", "graph_nodes")
    out: dict[str, Any] = {k: (counts[1][k] - counts[0][k]) / 3 for k in keys}
    names = {k: (counts[1]["by_name"].get(k, 0) - counts[0]["by_name"].get(k, 0)) / 3 for k in counts[1]["by_name"]}
    out["by_name"] = {k: v for k, v in names.items() if v}
    return out


def torch_operator_counts(optimizer: str, sizes: tuple[int, ...] = SIZES, batch: int = BATCH) -> dict[str, Any]:
    """All aten operators in one eager PyTorch step on the CPU, and the innermost ones that are not
    views or metadata (``compute_operators``: about one GPU kernel each, a ``_foreach_`` operator
    counted once; their names in ``kernel_names``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, foreach=True) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.001, foreach=True))
    x, y = torch.randn(batch, sizes[0]), torch.randint(0, sizes[-1], (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    kernels: list[str] = []

    def visit(event: Any) -> None:
        children = [c for c in event.cpu_children if c.name.startswith("aten::")]
        if event.name.startswith("aten::_foreach_"):  # one multi-tensor kernel on a GPU (per chunk of tensors)
            kernels.append(event.name)
            return
        computing = [c for c in children if _computes(c)]
        if not computing and event.name not in _NO_KERNEL:
            kernels.append(event.name)
        for child in children:
            visit(child)

    def _computes(event: Any) -> bool:
        return event.name not in _NO_KERNEL or any(_computes(c) for c in event.cpu_children
                                                  if c.name.startswith("aten::"))

    for root in (e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
        visit(root)
    return {"operators": len(events), "compute_operators": len(kernels), "kernel_names": sorted(kernels)}


def table(markdown: bool = False) -> str:
    """The per-step counts of nnxp's CuPy paths (EMULATION) beside PyTorch's eager operators."""
    import nnxp
    from support.cupy_emulation import emulated_cupy_backend

    backend = emulated_cupy_backend()
    optimizers = {"SGD": lambda: nnxp.SGD(lr=0.01), "Adam": lambda: nnxp.Adam(lr=0.001)}
    rows = []
    for label, make in optimizers.items():
        for path, fast, graphs in (("reference (NNXP_CUPY_FUSED=0)", False, False),
                                   ("fused (NNXP_CUDA_GRAPHS=0)", True, False), ("fused + CUDA graph", True, True)):
            c = per_step_counts(backend, make, fast=fast, graphs=graphs)
            launches = f"{c['launches']:g}" + (f" (graph of {c['graph_nodes']:g})" if c["graph_nodes"] else "")
            rows.append((label, f"nnxp on CuPy, {path}", launches, f"{c['allocations']:g}"))
        try:
            t = torch_operator_counts(label.lower())
            rows.append((label, "PyTorch eager (profiler, CPU)",
                         f"{t['compute_operators']} innermost compute ops ({t['operators']} aten ops in all)", "(caching allocator)"))
        except ImportError:
            rows.append((label, "PyTorch eager", "torch not installed", ""))
    head = ("optimizer", "step", "launches per step", "device allocations per step")
    width = f"{SIZES[0]}-{SIZES[1]}-{SIZES[2]}, batch {BATCH}, float32"
    if markdown:
        lines = [f"Per training step, {width}; nnxp counted by the CPU EMULATION of CuPy, not timed on a GPU.", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        lines = [f"per training step, {width} (nnxp: CPU EMULATION of CuPy; not timed on a GPU)"]
        lines += ["  ".join(f"{c:<34}" for c in r).rstrip() for r in (head, *rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/launches.py", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    print(table(markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
