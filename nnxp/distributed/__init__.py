"""Data-parallel training over MPI (CPUs, several machines) or NCCL (GPUs).

Under ``mpiexec -n N``, every process (rank) holds the whole network, takes a
contiguous share of each global batch, and the gradients are averaged by one
all-reduce per step before the same update on every rank::

    mpiexec -n 2 nnxp train --distributed --epochs 5

or from Python (run the script under ``mpiexec -n 2 python script.py``)::

    import nnxp
    from nnxp.distributed import init

    dp = init(backend=net.backend)          # one clear error outside mpiexec
    history = nnxp.fit(net, x, y, batch_size=256, distributed=dp)
    if dp.is_root:
        net.save("model.safetensors")

Modules: :mod:`~nnxp.distributed.comm` (the MPI and NCCL communicators),
:mod:`~nnxp.distributed.data_parallel` (sharding, gradient averaging,
reduced metrics), :mod:`~nnxp.distributed.launch` (finding mpiexec, one GPU
per rank), :mod:`~nnxp.distributed.faults` (a failed or hung rank stops
the job).  mpi4py is imported only when a communicator is built:
``pip install 'nnxp[mpi]'``.
"""

from .data_parallel import DataParallel, shard_bounds
from .launch import device_for_rank, init, launched_by_mpi

__all__ = ["DataParallel", "device_for_rank", "init", "launched_by_mpi", "shard_bounds"]
