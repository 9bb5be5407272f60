"""Starting a data-parallel run: find the launcher, pick the GPU, build the communicator.

nnxp does not start processes itself; MPI's launcher does, as Horovod users
expect::

    mpiexec -n 4 nnxp train --distributed ...

:func:`launched_by_mpi` recognises a process started by ``mpiexec``/``mpirun``
(Open MPI: ``OMPI_COMM_WORLD_RANK``; MPICH, Intel MPI, Slurm's PMI:
``PMI_RANK``; PMIx: ``PMIX_RANK``).  :func:`init` checks both conditions
before touching MPI, so a missing mpi4py or a plain ``nnxp train
--distributed`` ends with one clear :class:`~nnxp.errors.ConfigError` /
:class:`~nnxp.errors.BackendError` line instead of a one-rank "distributed" run.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import BackendError, ConfigError
from .comm import MPI_INSTALL_HINT, MPICommunicator, NCCLCommunicator

__all__ = ["launched_by_mpi", "init", "local_rank_from_env", "local_size_from_env", "device_for_rank"]

_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK")
_LOCAL_SIZE_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE")


def launched_by_mpi(environ: Any = None) -> bool:
    """Whether this process was started by an MPI launcher."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in _RANK_VARIABLES)


def _int_from_env(names: tuple[str, ...], environ: Any) -> int | None:
    """The first of ``names`` set to an integer in ``environ`` (None if none is)."""
    environ = os.environ if environ is None else environ
    for name in names:
        if name in environ:
            try:
                return int(environ[name])
            except ValueError:
                pass
    return None


def local_rank_from_env(environ: Any = None) -> int:
    """This process's rank among those on its machine (0 when unknown)."""
    rank = _int_from_env(_LOCAL_RANK_VARIABLES, environ)
    return 0 if rank is None else rank


def local_size_from_env(environ: Any = None) -> int | None:
    """How many ranks run on this machine, where the launcher says (None when it does not)."""
    return _int_from_env(_LOCAL_SIZE_VARIABLES, environ)


def device_for_rank(device: Any, local_rank: int, local_size: int | None = None) -> Any:
    """The device selector for this rank: ``"cuda"`` (or ``"auto"`` on a GPU
    machine) becomes ``"cuda:<local_rank>"``, one GPU per rank; others are unchanged.

    CuPy's self-test runs on this rank's GPU, not on GPU 0.  More ranks on a
    machine than GPUs (``local_size``, default from the launcher's variables)
    is one clear :class:`~nnxp.errors.BackendError` on every rank, not an NCCL
    failure later (NCCL refuses two ranks on one GPU).
    """
    if not isinstance(device, str) or device.strip().lower() not in ("auto", "cuda"):
        return device
    from ..backend import _cupy_gpu_count

    count, why = _cupy_gpu_count(local_rank)
    if count == 0:
        if device.strip().lower() == "cuda":
            raise BackendError(why)
        return "cpu"
    local_size = local_size_from_env() if local_size is None else local_size
    ranks = max(local_size or 0, local_rank + 1)
    if ranks > count:
        raise BackendError(f"{ranks} ranks on this machine but CuPy sees {count} GPU(s): one GPU per rank; "
                           f"start at most {count} rank(s) per machine (e.g. mpiexec -n {count}), "
                           "or use --device cpu")
    return f"cuda:{local_rank}"


def check_environment() -> None:
    """Raise one clear error unless mpi4py is installed and mpiexec started this process."""
    try:
        import mpi4py  # noqa: F401 - the package only: MPI itself starts in MPICommunicator
    except ImportError:
        raise BackendError(f"--distributed needs mpi4py and an MPI library: {MPI_INSTALL_HINT}")
    if not launched_by_mpi():
        raise ConfigError("--distributed must run under MPI's launcher, one process per rank: "
                          "mpiexec -n 2 nnxp train --distributed ...")


def init(backend: Any = None, timeout: float | None = None):
    """The :class:`~nnxp.distributed.DataParallel` for this process (checks the environment first).

    ``backend``: where the network lives; CuPy gets the NCCL communicator, every
    other library the MPI one.  ``timeout``: seconds a rank may wait in one
    collective before the job is stopped (default
    :data:`~nnxp.distributed.faults.DEFAULT_TIMEOUT`).
    """
    from .data_parallel import DataParallel

    check_environment()
    mpi = MPICommunicator()
    if getattr(backend, "name", None) == "cupy":
        with backend.context():  # NCCL binds the communicator to the current GPU
            comm = NCCLCommunicator(mpi)
    else:
        comm = mpi
        share_cores(mpi.local_size)
    return DataParallel(comm, timeout=timeout)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def share_cores(local_size: int) -> int | None:
    """Give each of the ``local_size`` ranks on this machine its share of the cores for BLAS.

    Every rank's BLAS would otherwise start one thread per core: N ranks on
    C cores run N*C threads and each step waits for the slowest.  Uses
    threadpoolctl; does nothing when the user set a *_NUM_THREADS variable
    (``mpiexec -x OMP_NUM_THREADS=4 ...``) or threadpoolctl is missing.
    Returns the thread count set, or None.
    """
    if any(name in os.environ for name in _THREAD_VARIABLES):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    threads = max(1, (os.cpu_count() or 1) // max(1, local_size))
    if hasattr(os, "sched_getaffinity"):  # mpiexec may bind each rank to fewer cores
        threads = min(threads, len(os.sched_getaffinity(0)))
    threadpool_limits(threads)
    return threads
