"""Training on every Array API library: in place where the library allows it, rebinding where not.

Each backend of the fixture (NumPy, array-api-strict on a non-default device
and at the 2023.12 standard, dask (no in-place operators, lazy), JAX when
installed (immutable), PyTorch when installed) trains the same network from
the same seed, and must reproduce NumPy's loss history and final weights.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import nnxp

from conftest import assert_on, host

OPTIMIZERS = {
    "momentum": lambda: nnxp.SGD(lr=0.1, momentum=0.9),
    "adam": lambda: nnxp.Adam(lr=0.01),
}


def _train(device, optimizer, dropout=0.0):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    net = nnxp.Network([5, 6, 3], hidden="tanh", seed=3, device=device, dropout=dropout)
    history = net.fit(x, y, epochs=2, batch_size=16, optimizer=OPTIMIZERS[optimizer](), verbose=0)
    return net, history


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fit_reproduces_numpy_on_every_library(backend, optimizer):
    reference, ref_history = _train("cpu", optimizer)
    net, history = _train(backend, optimizer)
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-5)
    assert history["loss"][-1] < history["loss"][0], "the loss must go down: the weights must move"
    for p, r in zip(net.parameters(), reference.parameters()):
        assert_on(backend, p, "float32")
        np.testing.assert_allclose(host(p), host(r), rtol=1e-5, atol=1e-6)


def test_dropout_masks_are_the_same_on_host_drawn_backends(backend):
    if backend.name in ("torch", "cupy"):
        pytest.skip("PyTorch and CuPy draw masks with their own generators")
    reference, ref_history = _train("cpu", "adam", dropout=0.3)
    net, history = _train(backend, "adam", dropout=0.3)
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-5)


def test_backend_knows_whether_inplace_updates_are_visible(backend):
    expected = backend.name in ("numpy", "cupy", "cupy-emulated", "torch", "array_api_strict")
    assert backend.inplace is expected


def test_a_module_that_is_not_an_array_library_is_refused():
    with pytest.raises(nnxp.ConfigError, match="is not an Array API array library"):
        nnxp.get_backend(types.ModuleType("notarrays"))


def test_namespaces_older_than_2023_12_are_refused():
    xps = pytest.importorskip("array_api_strict")
    try:
        xps.set_array_api_strict_flags(api_version="2022.12")
        with pytest.raises(nnxp.BackendError, match="needs 2023.12 or newer"):
            nnxp.get_backend(xps)
    finally:
        xps.reset_array_api_strict_flags()


def test_dask_and_jax_are_selectable_by_name():
    for name, module in (("dask", "dask.array"), ("jax", "jax.numpy")):
        pytest.importorskip(module)
        assert nnxp.get_backend(name).name == name.split(".")[0]
