"""Communicators: the collectives data-parallel training needs, over MPI or NCCL.

A :class:`Communicator` connects the ``size`` processes (ranks) of one job.
Data-parallel training needs only four things from it:

- ``allreduce_sum(buf)``: the element-wise sum of a flat 1-D array over all
  ranks, on every rank (in place where the library allows; always use the
  returned array).  Gradients are pre-weighted by each rank's share of the
  global batch, so a sum is the global mean even when shards differ in size.
- ``broadcast(buf, root=0)``: rank ``root``'s array on every rank.
- ``allreduce_host(values)``: the sum of a few Python floats (epoch metrics).
- ``allgather_bytes(data)``: every rank's bytes, on every rank (the start-up
  agreement check, :mod:`nnxp.distributed.agree`); lengths are gathered
  first, so the receive buffer is sized from them.
- ``abort(code)``: end the whole job now, without waiting for anyone (a rank
  that failed cannot take part in a barrier; see :mod:`nnxp.distributed.faults`).

:class:`MPICommunicator` runs on the host through mpi4py's buffer-protocol
collectives (``Allreduce``/``Bcast``, no pickling).  NumPy arrays are reduced
in place; arrays of other libraries go through a host copy.

:class:`NCCLCommunicator` reduces CuPy arrays on their GPU with NCCL through
CuPy's documented ``cupyx.distributed.init_process_group(n_devices, rank,
backend="nccl", use_mpi=True)`` communicator (``all_reduce(in, out, "sum")``,
``broadcast(buf, root)``), enqueued on the current stream: no host copy and no
host synchronisation.  The NCCL id is exchanged over MPI, so it runs under the
same ``mpiexec`` as the CPU path; host scalars also go over MPI.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import BackendError

__all__ = ["Communicator", "MPICommunicator", "NCCLCommunicator", "import_mpi"]

MPI_INSTALL_HINT = "pip install 'nnxp[mpi]'"


@runtime_checkable
class Communicator(Protocol):
    """What :class:`~nnxp.distributed.DataParallel` needs from a process group."""

    rank: int
    size: int
    #: this rank's place among the ranks on its machine (selects the GPU: cuda:local_rank)
    local_rank: int
    #: how many ranks run on this machine
    local_size: int

    def allreduce_sum(self, buf: Any) -> Any:
        """Sum of the flat array ``buf`` over all ranks (in place where possible; use the result)."""

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``buf`` on every rank (in place where possible; use the result)."""

    def allreduce_host(self, values: Sequence[float]) -> list[float]:
        """Sums of a few host numbers over all ranks (float64)."""

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank."""

    def abort(self, code: int) -> None:
        """End every rank of the job now; does not return."""


def import_mpi() -> Any:
    """``mpi4py.MPI``, or one clear error naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise BackendError(f"distributed training needs mpi4py and an MPI library: {MPI_INSTALL_HINT}") from None
    return MPI


class MPICommunicator:
    """Collectives over an mpi4py communicator (default ``MPI.COMM_WORLD``)."""

    name = "mpi"

    def __init__(self, comm: Any = None):
        # A rank waiting in a collective yields its core instead of spinning (unless the
        # user chose otherwise).  Spinning costs little on idle dedicated cores but, on a
        # shared or oversubscribed machine, starves the rank it waits for: measured on a
        # busy 2-core VM, 24 ms instead of 0.12 ms per 0.8 MB all-reduce.  Open MPI reads
        # this when MPI starts, i.e. at the first import of mpi4py.MPI.
        os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
        MPI = import_mpi()
        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = int(local.Get_rank()), int(local.Get_size())
        local.Free()

    def allreduce_sum(self, buf: Any) -> Any:
        host = _host_buffer(buf)
        self.comm.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
        return buf if host is buf else _from_host(buf, host)

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        host = _host_buffer(buf)
        self.comm.Bcast(host, root=root)
        return buf if host is buf else _from_host(buf, host)

    def allreduce_host(self, values: Sequence[float]) -> list[float]:
        buf = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return [float(v) for v in buf]

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        lengths = np.zeros(self.size, dtype=np.int64)  # first the lengths: the buffer is sized from them
        self.comm.Allgather(np.array([len(data)], dtype=np.int64), lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        gathered = np.empty(max(1, int(lengths.sum())), dtype=np.uint8)
        self.comm.Allgatherv(np.frombuffer(data, dtype=np.uint8),
                             [gathered, lengths.tolist(), offsets.tolist(), self._MPI.BYTE])
        return [gathered[o:o + n].tobytes() for o, n in zip(offsets.tolist(), lengths.tolist())]

    def abort(self, code: int) -> None:
        _flush()
        if "OMPI_COMM_WORLD_RANK" in os.environ:
            # Open MPI's mpiexec ends the job when a rank exits without MPI_Finalize,
            # keeps this exit status and prints a shorter notice than MPI_Abort's.
            os._exit(code)
        self.comm.Abort(code)
        os._exit(code)  # pragma: no cover - Abort does not return


class NCCLCommunicator:
    """Gradient collectives on CuPy arrays with NCCL; host scalars over MPI.

    One GPU per rank: call with the rank's GPU current (``cuda:local_rank``;
    :func:`nnxp.distributed.launch.init` does it).  Written against CuPy's
    documented ``cupyx.distributed`` API; CI (no GPU) tests the same
    :class:`~nnxp.distributed.DataParallel` code path with :class:`MPICommunicator`.
    """

    name = "nccl"

    def __init__(self, mpi: MPICommunicator | None = None):
        self.mpi = mpi or MPICommunicator()
        self.rank, self.size = self.mpi.rank, self.mpi.size
        self.local_rank, self.local_size = self.mpi.local_rank, self.mpi.local_size
        try:
            import cupyx.distributed
        except ImportError:
            raise BackendError("NCCL training needs CuPy: pip install 'nnxp[cuda12]' "
                               "(or run on the CPU with --device cpu)") from None
        self.nccl = cupyx.distributed.init_process_group(self.size, self.rank, backend="nccl", use_mpi=True)

    def allreduce_sum(self, buf: Any) -> Any:
        self.nccl.all_reduce(buf, buf, "sum")  # in place on the current stream; no sync
        return buf

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        self.nccl.broadcast(buf, root)
        return buf

    def allreduce_host(self, values: Sequence[float]) -> list[float]:
        return self.mpi.allreduce_host(values)

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        return self.mpi.allgather_bytes(data)

    def abort(self, code: int) -> None:
        comm = getattr(self.nccl, "_comm", None)
        if comm is not None:  # unblock this GPU's pending NCCL kernels (ncclCommAbort)
            try:
                comm.abort()
            except Exception:  # noqa: BLE001 - aborting anyway
                pass
        self.mpi.abort(code)


def _host_buffer(buf: Any) -> np.ndarray:
    """``buf`` itself when MPI can write into it (a contiguous, writeable NumPy array),
    else a writeable host copy (another library, a read-only or lazy array)."""
    if isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable:
        return buf
    from ..backend import to_numpy

    return np.array(to_numpy(buf), order="C", copy=True)


def _from_host(like: Any, host: np.ndarray) -> Any:
    """``host`` as an array of ``like``'s library, dtype and device."""
    from ..backend import backend_of

    return backend_of(like).asarray(host, like.dtype)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not stop the abort
            pass
