"""The training loop: learning real problems, determinism, resuming, device discipline."""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.checkpoint import load_checkpoint, save_checkpoint

from conftest import assert_on, make_backend

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


@pytest.mark.many_steps
def test_learns_xor(backend):
    net = nnxp.Network([2, 8, 1], hidden="tanh", output="sigmoid", loss="cross_entropy", seed=0,
                       device=backend)
    history = net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, optimizer=nnxp.Adam(lr=0.05), verbose=0)
    assert history.last["accuracy"] == 1.0
    assert history.last["loss"] < 0.05
    np.testing.assert_array_equal(nnxp.to_numpy(net.classify(XOR_X)), XOR_Y)


@pytest.mark.many_steps
def test_learns_xor_like_the_seed(backend):
    # The seed's setup: leaky ReLU (alpha 0.2) hidden, sigmoid out, squared error, plain SGD.
    net = nnxp.Network([2, 4, 1], hidden="leaky_relu", output="sigmoid", init="xavier", seed=1,
                       device=backend)
    net.fit(XOR_X, XOR_Y[:, None].astype(float), epochs=2000, batch_size=4, optimizer="sgd", lr=0.5,
            verbose=0)
    assert net.evaluate(XOR_X, XOR_Y[:, None].astype(float))["accuracy"] == 1.0


def blobs(n=300, seed=0):
    """Three Gaussian clusters in 4-D, a small linearly separable problem."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(scale=0.5, size=(n, 4)), labels


def test_history_and_validation(backend):
    x, y = blobs()
    net = nnxp.Network([4, 16, 3], seed=0, device=backend)
    history = net.fit(x[:200], y[:200], epochs=5, batch_size=32, optimizer="adam", lr=0.01,
                      validation_data=(x[200:], y[200:]), verbose=0)
    assert len(history) == 5 and history["epoch"] == [1, 2, 3, 4, 5]
    assert history["loss"][-1] < history["loss"][0]
    assert history.last["val_accuracy"] > 0.95
    scores = net.evaluate(x[200:], y[200:])
    assert scores["accuracy"] == pytest.approx(history.last["val_accuracy"])
    assert scores["loss"] == pytest.approx(history.last["val_loss"], rel=1e-5)


def test_epoch_loss_is_the_mean_over_samples(backend):
    # With lr tiny the weights barely move, so the epoch's training loss must equal
    # the loss evaluated over the whole set (batch means weighted by batch size).
    x, y = blobs(50)
    net = nnxp.Network([4, 5, 3], seed=3, dtype="float32", device=backend)
    before = net.evaluate(x, y)
    history = net.fit(x, y, epochs=1, batch_size=16, optimizer="sgd", lr=1e-9, verbose=0)
    assert history.last["loss"] == pytest.approx(before["loss"], rel=1e-5)
    assert history.last["accuracy"] == pytest.approx(before["accuracy"])


def test_same_seed_same_result_and_backends_agree(backend):
    x, y = blobs(120)
    results = []
    for _ in range(2):
        net = nnxp.Network([4, 8, 3], seed=5, device=backend)
        net.fit(x, y, epochs=3, batch_size=16, optimizer="momentum", lr=0.05, seed=9, verbose=0)
        results.append(net.get_weights())
    for (w0, b0), (w1, b1) in zip(*results):
        np.testing.assert_array_equal(w0, w1)
        np.testing.assert_array_equal(b0, b1)
    reference = nnxp.Network([4, 8, 3], seed=5, device="cpu")
    reference.fit(x, y, epochs=3, batch_size=16, optimizer="momentum", lr=0.05, seed=9, verbose=0)
    for (w, b), (rw, rb) in zip(results[0], reference.get_weights()):
        np.testing.assert_allclose(w, rw, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path, backend, optimizer):
    x, y = blobs(100)
    straight = nnxp.Network([4, 6, 3], seed=2, device=backend)
    straight.fit(x, y, epochs=4, batch_size=16, optimizer=optimizer, lr=0.02, seed=1, verbose=0)

    net = nnxp.Network([4, 6, 3], seed=2, device=backend)
    opt = nnxp.get_optimizer(optimizer, lr=0.02)
    history = net.fit(x, y, epochs=2, batch_size=16, optimizer=opt, seed=1, verbose=0)
    save_checkpoint(tmp_path / "ck.safetensors", net, opt, history, {"seed": 1})
    ck = load_checkpoint(tmp_path / "ck.safetensors", device=backend)
    assert ck.epoch == 2 and ck.settings == {"seed": 1} and ck.optimizer.t == opt.t
    ck.net.fit(x, y, epochs=4, batch_size=16, optimizer=ck.optimizer, seed=1, verbose=0,
               initial_epoch=ck.epoch, history=ck.history)
    assert len(ck.history) == 4
    for (w, b), (sw, sb) in zip(ck.net.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(w, sw)
        np.testing.assert_array_equal(b, sb)


def test_divergence_is_reported(backend):
    x, y = blobs(60)
    net = nnxp.Network([4, 8, 1], hidden="relu", output="identity", seed=0, device=backend)
    with pytest.raises(nnxp.DivergenceError, match="learning rate"):
        net.fit(x * 1e3, (y * 1e3).astype(float), epochs=5, batch_size=8, optimizer="sgd", lr=10.0,
                verbose=0)


def test_training_reads_the_device_once_per_epoch(monkeypatch):
    """On array-api-strict's device1 any implicit transfer fails; count the explicit reads.

    Every float()/int()/bool() of a device array is a host sync.  Their number must
    not depend on how many steps an epoch has: the loop reads only per epoch.
    """
    from array_api_strict._array_object import Array

    strict = make_backend("strict")
    reads = {"n": 0}
    for method in ("__float__", "__int__", "__bool__", "__index__"):
        original = getattr(Array, method)

        def counting(self, _original=original):
            reads["n"] += 1
            return _original(self)

        monkeypatch.setattr(Array, method, counting)

    x, y = blobs(128)
    xd = strict.asarray(x, strict.dtype("float32"))
    yd = strict.asarray(y, strict.xp.int64)

    def reads_for(epochs, batch_size):
        reads["n"] = 0
        net = nnxp.Network([4, 8, 3], seed=0, device=strict)
        net.fit(xd, yd, epochs=epochs, batch_size=batch_size, optimizer="adam", verbose=0,
                validation_data=(xd, yd), progress=False)
        for p in net.parameters():
            assert_on(strict, p, "float32")
        return reads["n"]

    per_epoch = reads_for(2, 8) - reads_for(1, 8)
    assert per_epoch == reads_for(2, 64) - reads_for(1, 64), "reads grow with the number of steps"
    # training loss and count, validation loss and count, all-finite and probe outputs (divergence)
    assert per_epoch <= 6


def test_bad_fit_arguments(backend):
    net = nnxp.Network([2, 3, 2], device=backend)
    for kwargs, message in [({"epochs": 0}, "epochs must be a positive integer"),
                            ({"batch_size": 2.5}, "batch_size must be a positive integer"),
                            ({"optimizer": "lbfgs"}, "unknown optimizer"),
                            ({"lr": -1.0}, "learning rate must be finite and > 0")]:
        with pytest.raises(nnxp.NnxpError, match=message):
            net.fit(XOR_X, XOR_Y, verbose=0, **kwargs)


def test_cosine_schedule_sets_each_epochs_learning_rate():
    seen = []

    class Record(nnxp.Callback):
        def on_epoch_end(self, net, optimizer, record, history):
            seen.append(optimizer.lr)

    x, y = blobs(40)
    opt = nnxp.SGD(lr=0.2)
    nnxp.Network([4, 3, 3], device="cpu").fit(x, y, epochs=4, optimizer=opt, schedule="cosine",
                                               callbacks=[Record()], verbose=0)
    np.testing.assert_allclose(seen, [0.2, 0.2 * (1 + np.cos(np.pi / 4)) / 2, 0.1,
                                      0.2 * (1 + np.cos(3 * np.pi / 4)) / 2])
    assert opt.config()["lr"] == 0.2, "the schedule must not change the saved base rate"
    with pytest.raises(nnxp.ConfigError, match="unknown schedule"):
        nnxp.Network([4, 3, 3], device="cpu").fit(x, y, schedule="linear", verbose=0)


def test_epoch_lines_end_with_the_runs_eta(monkeypatch):
    from nnxp.train import _clock, format_record

    assert _clock(65) == "1:05" and _clock(3723) == "1:02:03"
    record = {"epoch": 2, "loss": 0.5, "accuracy": 0.75, "seconds": 1.0, "samples_per_second": 10.0}
    assert format_record(record, 4, eta=125.0).endswith("10 samples/s  ETA 2:05")
    assert "ETA" not in format_record(record, 4)
    x, y = blobs()
    lines: list[str] = []
    nnxp.Network([4, 8, 3], device="cpu").fit(x, y, epochs=3, out=lines.append, progress=False)
    assert [("ETA" in line) for line in lines] == [True, True, False]  # nothing left after the last


def test_progress_bar_comes_from_tqdm_auto(monkeypatch):
    import tqdm.auto

    made = []
    real = tqdm.auto.tqdm

    def spy(*args, **kwargs):
        made.append(kwargs["desc"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", spy)
    x, y = blobs()
    nnxp.Network([4, 8, 3], device="cpu").fit(x, y, epochs=2, out=lambda line: None, progress=True)
    assert made[0] == "epoch 1/2" and made[1].startswith("epoch 2/2 (run ETA ")


def test_network_fit_shows_the_signature_of_train_fit():
    # help(Network.fit) and IDEs see every option, not **kwargs; a new option of
    # nnxp.train.fit that Network.fit does not pass on fails here.
    import inspect

    from nnxp.train import fit

    method = list(inspect.signature(nnxp.Network.fit).parameters.values())
    function = list(inspect.signature(fit).parameters.values())
    assert [p.name for p in method[:3]] == ["self", "x", "y"]
    assert not any(p.kind is p.VAR_KEYWORD for p in method)
    assert [(p.name, p.kind, p.default, p.annotation) for p in method[1:]] == \
           [(p.name, p.kind, p.default, p.annotation) for p in function[1:]]
    assert inspect.signature(nnxp.Network.fit).return_annotation == "History"


def test_network_fit_passes_every_option_on(monkeypatch):
    import inspect

    import nnxp.network

    seen = {}
    monkeypatch.setattr(nnxp.network, "fit_network", lambda net, x, y, **kw: seen.update(kw))
    names = [p for p in inspect.signature(nnxp.Network.fit).parameters if p not in ("self", "x", "y")]
    values = {name: object() for name in names}  # a distinct value per option
    nnxp.Network([2, 2]).fit(None, None, **values)
    assert seen == values


def test_network_is_a_trainable():
    from nnxp.trainable import Trainable

    assert isinstance(nnxp.Network([3, 4, 2]), Trainable)
    assert not isinstance(object(), Trainable)
