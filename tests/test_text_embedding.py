"""The embedding layer and the next-token model: gradients against float64 finite differences,
on every backend, with repeated ids."""

from __future__ import annotations

import numpy as np
import pytest

from nnxp.kernels import ops_for
from nnxp.text.embedding import Embedding, scatter_add_rows, scatter_add_rows_generic
from nnxp.text.model import NextTokenModel, bigram_perplexity

from conftest import RTOL, host

# Repeated ids within a context (row 0) and across the batch (id 3 four times).
IDS = np.array([[3, 3, 0], [1, 3, 4], [4, 0, 3], [2, 2, 2]])
V, D = 6, 4


def _cost_weights(rng):
    return rng.normal(size=(IDS.shape[0], IDS.shape[1] * D))


def _finite_difference_grad(table: np.ndarray, r: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dC/dtable for C = sum(r * forward(ids)), by central differences in float64 on the host."""
    def cost(t):
        layer = Embedding(t, IDS.shape[1])
        return float(np.sum(r * layer.forward(IDS)[0]))

    grad = np.zeros_like(table)
    for i in np.ndindex(*table.shape):
        up, down = table.copy(), table.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (cost(up) - cost(down)) / (2 * eps)
    return grad


def test_forward_gathers_and_concatenates_rows(backend):
    rng = np.random.default_rng(0)
    layer = Embedding.create(V, D, 3, backend=backend, rng=rng)
    out, _ = layer.forward(backend.asarray(IDS, backend.index_dtype))
    table = host(layer.table)
    expected = np.concatenate([table[IDS[:, j]] for j in range(3)], axis=1)
    assert backend.owns(out)
    np.testing.assert_array_equal(host(out), expected)


def test_backward_is_a_scatter_add_matching_finite_differences(backend, dtype_name):
    rng = np.random.default_rng(1)
    table64 = rng.normal(size=(V, D))
    r = _cost_weights(rng)
    expected = _finite_difference_grad(table64, r)
    dtype = backend.dtype(dtype_name)
    layer = Embedding(backend.asarray(table64, dtype, copy=True), 3)
    _, saved = layer.forward(backend.asarray(IDS, backend.index_dtype))
    dx, (grad,) = layer.backward(backend.asarray(r, dtype), saved)
    assert dx is None and backend.owns(grad) and grad.dtype == dtype
    np.testing.assert_allclose(host(grad), expected, rtol=RTOL[dtype_name] * 10, atol=1e-6)
    # Id 5 never occurs: its row gets no gradient; id 3 collects four contributions.
    assert not np.any(host(grad)[5])


def test_fast_path_matches_the_generic_one_hot_product(backend):
    rng = np.random.default_rng(2)
    ids = backend.asarray(rng.integers(0, 7, 50), backend.index_dtype)
    g = backend.asarray(rng.normal(size=(50, 3)), backend.dtype("float32"))
    np.testing.assert_allclose(host(scatter_add_rows(ids, g, 9)), host(scatter_add_rows_generic(ids, g, 9)),
                               rtol=1e-5, atol=1e-6)


def test_model_gradients_match_finite_differences(backend):
    if not backend.supports("float64"):
        pytest.skip(f"{backend} has no float64 for finite differences")
    rng = np.random.default_rng(3)
    vocab, k = 7, 2
    ids = np.array([[1, 1], [6, 0], [2, 1], [1, 6], [3, 3]])
    targets = np.array([1, 0, 6, 1, 2])
    model = NextTokenModel(vocab, k, 3, 4, device=backend, dtype="float64", seed=5)
    x_dev = backend.asarray(ids, backend.index_dtype)
    y_dev = backend.asarray(targets, backend.index_dtype)
    _, grads = model.cost_and_gradients(x_dev, y_dev)
    _, fast = model.cost_and_gradients(x_dev, y_dev, ops_for(backend))
    fast = [host(g).copy() for g in fast]  # the fast path's buffers are reused by later calls
    reference = NextTokenModel(vocab, k, 3, 4, device="cpu", dtype="float64", seed=5)
    params = [host(p).copy() for p in reference.parameters()]

    def cost(ps):
        reference.set_parameters([np.array(p) for p in ps])
        return float(reference.cost_and_gradients(ids, targets)[0])

    eps = 1e-6
    for p_index, p in enumerate(params):
        fd = np.zeros_like(p)
        for i in np.ndindex(*p.shape):
            up = [q.copy() for q in params]
            down = [q.copy() for q in params]
            up[p_index][i] += eps
            down[p_index][i] -= eps
            fd[i] = (cost(up) - cost(down)) / (2 * eps)
        np.testing.assert_allclose(host(grads[p_index]), fd, rtol=1e-6, atol=1e-8,
                                   err_msg=f"parameter {p_index}")
        np.testing.assert_allclose(host(fast[p_index]), fd, rtol=1e-6, atol=1e-8,
                                   err_msg=f"parameter {p_index}, fast path")


def test_model_perplexity_is_exp_of_the_mean_cost(backend):
    model = NextTokenModel(5, 2, 3, 4, device=backend, dtype="float32", seed=0)
    ids = backend.asarray(np.array([[0, 1], [2, 3], [4, 4]]), backend.index_dtype)
    y = backend.asarray(np.array([1, 2, 3]), backend.index_dtype)
    cost, _ = model.cost_and_gradients(ids, y)
    assert model.perplexity(ids, y, batch_size=2) == pytest.approx(float(np.exp(float(cost))), rel=1e-5)


def test_bigram_perplexity_by_hand():
    # Training pairs: 0->1 twice, 0->2 once, 1->0 once.  V = 3, k = 1.
    # P(1|0) = (2+1)/(3+3) = 1/2, P(2|1) = (0+1)/(1+3) = 1/4.  Perplexity = (1/2 * 1/4) ** -1/2.
    prev, nxt = np.array([0, 0, 0, 1]), np.array([1, 1, 2, 0])
    ppl = bigram_perplexity(prev, nxt, np.array([0, 1]), np.array([1, 2]), 3, 1.0)
    assert ppl == pytest.approx((0.5 * 0.25) ** -0.5)


def test_embedding_config_round_trip(backend):
    layer = Embedding.create(V, D, 3, backend=backend, dtype="float32")
    again = Embedding.from_config(layer.config(), backend, "float32")
    assert again.config() == layer.config() == {"kind": "embedding", "vocabulary": V, "dimension": D, "context": 3}
    assert (again.in_features, again.out_features) == (3, 3 * D) and again.accepts_ids
    again.set_parameters(layer.parameters())
    assert again.parameters()[0] is layer.table


def test_model_file_round_trip_onto_the_cpu(backend, tmp_path):
    from nnxp.text import learn

    tokenizer, _ = learn("the cat the cat sat on the mat mat on", 3)
    model = NextTokenModel(len(tokenizer), 2, 3, 4, device=backend, dtype="float32", seed=1)
    model.save(tmp_path / "m.safetensors", tokenizer)
    again, tok, metadata = NextTokenModel.load(tmp_path / "m.safetensors", device="cpu")
    assert tok.symbols == tokenizer.symbols and again.config() == model.config()
    assert metadata["network"]["layers"][0]["kind"] == "embedding"
    for a, b in zip(again.parameters(), model.parameters()):
        np.testing.assert_array_equal(host(a), host(b))


def test_a_text_model_file_is_an_nnxp_network(tmp_path):
    import nnxp
    from nnxp.text import learn

    tokenizer, _ = learn("the cat the cat sat on the mat mat on", 3)
    model = NextTokenModel(len(tokenizer), 2, 3, 4, device="cpu", seed=1)
    model.save(tmp_path / "m.safetensors", tokenizer)
    net = nnxp.load(tmp_path / "m.safetensors", device="cpu")
    assert isinstance(net.layers[0], Embedding)
    probabilities = host(net.predict(np.array([[0, 1], [2, 2]])))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(nnxp.ShapeError, match="token ids from 0 to 99"):
        net.predict(np.array([[0, 99]]))


def test_files_of_the_earlier_three_layer_model_still_load(tmp_path):
    """Embedding -> Dense tanh -> Dense softmax, as `nnxp text train` wrote before the dropout layers."""
    from nnxp.layers import Dense
    from nnxp.network import Network
    from nnxp.text import learn

    tokenizer, _ = learn("the cat the cat sat on the mat mat on", 3)
    v, rng = len(tokenizer), np.random.default_rng(0)
    layers = [Embedding(rng.normal(size=(v, 3)), 2), Dense(rng.normal(size=(4, 6)), np.zeros(4), "tanh"),
              Dense(rng.normal(size=(v, 4)), np.zeros(v), "softmax")]
    net = Network.from_layers(layers, loss="cross_entropy", device="cpu", dtype="float32")
    NextTokenModel._wrap(net).save(tmp_path / "old.safetensors", tokenizer)
    model, tok, _ = NextTokenModel.load(tmp_path / "old.safetensors")
    assert len(model.net.layers) == 3 and len(tok) == v
    assert model.config() | {"vocabulary": 0} == {"vocabulary": 0, "context": 2, "dimension": 3, "hidden": 4,
                                                  "embedding_dropout": 0.0, "dropout": 0.0, "dtype": "float32"}
