"""Data-parallel training: 2 ranks under mpiexec give the numbers of one process."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nnxp
from nnxp.distributed import shard_bounds

import mpi_worker
from mpi_worker import DROPOUT_SCENARIO, SCENARIOS, train
from mpirun import mpiexec  # noqa: F401 - the fixture


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 61])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_row_once(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))  # contiguous, in rank order
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.fixture(scope="module")
def two_rank_results(mpiexec, tmp_path_factory):
    """Every scenario trained on 2 ranks (one mpiexec job): {(scenario, rank): arrays}."""
    out = tmp_path_factory.mktemp("mpi")
    done = mpiexec([sys.executable, mpi_worker.__file__, "equality", str(out)], n=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for name, *_ in [*SCENARIOS, DROPOUT_SCENARIO]:
        skipped = out / f"{name}.skipped"
        for rank in (0, 1):
            results[name, rank] = (skipped.read_text() if skipped.exists()
                                   else dict(np.load(out / f"{name}.rank{rank}.npz")))
    return results


@pytest.mark.parametrize("name,optimizer,dtype,backend_name", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_two_ranks_give_the_weights_of_one_process(two_rank_results, name, optimizer, dtype, backend_name):
    """Uneven shards (8 + 7 rows of 15) and a last batch of one row (rank 1 gets none) included."""
    if isinstance(two_rank_results[name, 0], str):
        pytest.skip(two_rank_results[name, 0])  # the library is not installed here
    net, history = train(optimizer, dtype, backend_name)  # one process, same global batches
    initial = nnxp.Network(net.sizes, hidden="tanh", seed=3, dtype=dtype).parameters()
    rank0, rank1 = two_rank_results[name, 0], two_rank_results[name, 1]
    assert int(rank0["size"]) == 2
    rtol = 1e-12 if dtype == "float64" else 2e-5
    for i, (p, p0) in enumerate(zip(net.parameters(), initial)):
        expected = nnxp.to_numpy(p)
        # Bit for bit the same on both ranks: the same reduced gradient, the same update.
        np.testing.assert_array_equal(rank0[f"p{i}"], rank1[f"p{i}"])
        # One process sums each batch in one BLAS call, two ranks in two halves then
        # MPI: equal up to that summation order.
        np.testing.assert_allclose(rank0[f"p{i}"], expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        assert not np.allclose(expected, nnxp.to_numpy(p0))  # training moved the weights
    last = history.last
    for key in ("loss", "val_loss"):
        assert float(rank0[key]) == pytest.approx(last[key], rel=rtol)
    for key in ("accuracy", "val_accuracy"):  # counts reduced over the ranks, divided by the total
        assert float(rank0[key]) == last[key]



def test_with_dropout_the_ranks_stay_identical(two_rank_results):
    """Each rank draws its own dropout masks; the averaged gradient keeps the replicas equal."""
    name = DROPOUT_SCENARIO[0]
    rank0, rank1 = two_rank_results[name, 0], two_rank_results[name, 1]
    keys = [k for k in rank0 if k.startswith("p")]
    assert keys
    for key in keys:
        np.testing.assert_array_equal(rank0[key], rank1[key])
    plain, _ = train(*DROPOUT_SCENARIO[1:])  # without dropout: different weights
    assert not all(np.allclose(rank0[f"p{i}"], nnxp.to_numpy(p)) for i, p in enumerate(plain.parameters()))
