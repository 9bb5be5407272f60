"""Early stopping, keeping the best model, callbacks that stop training, validation_split."""

from __future__ import annotations

import numpy as np
import pytest

import nnxp
from nnxp.callbacks import EarlyStopping, SaveBest
from nnxp.split import stratified_split

from conftest import host


def noisy_blobs(n=120, seed=0):
    """Overlapping clusters with 30% flipped labels: a wide net overfits them within epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = np.eye(3, 6)[labels] + rng.normal(scale=0.9, size=(n, 6))
    flip = rng.random(n) < 0.3
    labels[flip] = rng.integers(0, 3, flip.sum())
    return x, labels


def make_net(backend):
    return nnxp.Network([6, 64, 3], device=backend, seed=0)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(backend):
    x, y = noisy_blobs()
    # Two steps an epoch: cheap on every backend (dask builds a graph per step).
    settings = dict(batch_size=45, optimizer="adam", lr=0.05, validation_split=0.25, verbose=0, seed=0)
    patience = 3
    net = make_net(backend)
    stopper = EarlyStopping(patience=patience)
    history = net.fit(x, y, epochs=30, callbacks=[stopper], **settings)
    val = history["val_loss"]
    # The rule applied to the recorded validation losses: where it should have stopped.
    best, wait, stop = 0, 0, None
    for e in range(1, len(val)):
        if val[e] < val[best]:
            best, wait = e, 0
        else:
            wait += 1
            if wait >= patience:
                stop = e
                break
    assert stop is not None, f"the validation loss never rose for {patience} epochs: {val}"
    assert len(history) == stop + 1 and stopper.stopped_epoch == stop + 1 < 30
    assert stopper.best_epoch == best + 1 and stopper.best == val[best] and stopper.restored
    # The restored weights are those after the best epoch (shuffles depend only on seed and epoch).
    reference = make_net(backend)
    reference.fit(x, y, epochs=best + 1, **settings)
    for (w, b), (w_ref, b_ref) in zip(net.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(w, w_ref)
        np.testing.assert_array_equal(b, b_ref)


def test_verbose_fit_says_where_it_stopped_early_and_which_epoch_it_kept():
    x, y = noisy_blobs()
    lines: list[str] = []
    stopper = EarlyStopping(patience=2)
    history = make_net("numpy").fit(x, y, epochs=30, batch_size=45, lr=0.05, validation_split=0.25, seed=0,
                                    callbacks=[stopper], verbose=1, progress=False, out=lines.append)
    val = history["val_loss"]
    best = int(np.argmin(val)) + 1
    assert stopper.stopped_epoch == len(history) < 30
    assert lines[:-1] == [line for line in lines if line.startswith("epoch")] and len(lines) == len(history) + 1
    assert lines[-1] == (f"stopped early after epoch {len(history)}: no better validation loss for 2 epochs; "
                         f"the weights of epoch {best} (lowest validation loss) are kept")
    # Quiet, or run to the end: no such line.
    quiet: list[str] = []
    make_net("numpy").fit(x, y, epochs=2, batch_size=45, lr=0.05, validation_split=0.25, seed=0,
                          callbacks=[EarlyStopping(patience=2)], verbose=1, progress=False, out=quiet.append)
    assert len(quiet) == 2 and all(line.startswith("epoch") for line in quiet)


def test_a_callback_can_stop_training():
    class StopAtTwo(nnxp.Callback):
        def on_epoch_end(self, net, optimizer, record, history):
            if record["epoch"] == 2:
                net.stop_training = True

    x, y = noisy_blobs()
    net = make_net("cpu")
    assert len(net.fit(x, y, epochs=10, callbacks=[StopAtTwo()], verbose=0)) == 2
    assert len(net.fit(x, y, epochs=3, verbose=0)) == 3  # the flag is reset by the next fit


def test_save_best_keeps_the_best_epochs_model(tmp_path):
    x, y = noisy_blobs()
    path = tmp_path / "best.safetensors"
    net = make_net("cpu")
    saver = SaveBest(path, monitor="val_accuracy")
    history = net.fit(x, y, epochs=8, batch_size=8, lr=0.02, validation_split=0.25, callbacks=[saver],
                      verbose=0)
    accuracies = history["val_accuracy"]
    assert saver.best_epoch == 1 + int(np.argmax(accuracies))  # the first of the best
    reference = make_net("cpu")
    reference.fit(x, y, epochs=saver.best_epoch, batch_size=8, lr=0.02, validation_split=0.25, verbose=0)
    loaded = nnxp.load(path, device="cpu")
    for (w, b), (w_ref, b_ref) in zip(loaded.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(w, w_ref)
    from nnxp.serialization import read_arrays

    arrays, metadata = read_arrays(path)
    assert not any(k.startswith("optimizer.") for k in arrays)  # a model, not a checkpoint
    assert metadata["best"] == {"epoch": saver.best_epoch, "val_accuracy": max(accuracies)}


def test_monitoring_a_missing_metric_is_a_clear_error():
    x, y = noisy_blobs()
    with pytest.raises(nnxp.ConfigError, match="cannot monitor 'val_loss'.*validation_split="):
        make_net("cpu").fit(x, y, epochs=2, callbacks=[EarlyStopping()], verbose=0)
    with pytest.raises(nnxp.ConfigError, match="patience must be a positive integer"):
        EarlyStopping(patience=0)


def test_stratified_split_keeps_each_class_share():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = stratified_split(labels, 0.2, seed=1)
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.2, seed=1)
    assert (again[1] == val).all() and not (stratified_split(labels, 0.2, seed=2)[1] == val).all()
    for bad in (0, 1, -0.1, 1.5, "x"):
        with pytest.raises(nnxp.ConfigError, match="fraction between 0 and 1"):
            stratified_split(labels, bad)


def test_validation_split_holds_out_training_rows(backend):
    x, y = noisy_blobs()
    net = make_net(backend)
    history = net.fit(x, y, epochs=1, validation_split=0.25, verbose=0, seed=3)
    train, val = stratified_split(y, 0.25, seed=3)
    expected = make_net(backend).evaluate(x[val], y[val])  # before training: same initial weights
    assert "val_loss" in history.last
    after = net.evaluate(x[val], y[val])
    assert history.last["val_loss"] == pytest.approx(after["loss"], rel=1e-5)
    assert history.last["val_accuracy"] == after["accuracy"]
    assert expected["loss"] != after["loss"]
    # Trained on the other rows only: the same as fitting on them directly without a split.
    direct = make_net(backend)
    direct.fit(x[train], y[train], epochs=1, verbose=0, seed=3)
    np.testing.assert_allclose(host(net.predict(x)), host(direct.predict(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(nnxp.ConfigError, match="not both"):
        make_net(backend).fit(x, y, validation_split=0.1, validation_data=(x, y))


def test_fit_defaults_are_the_commands():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(nnxp.fit).parameters.items()}
    assert (defaults["optimizer"], defaults["lr"], defaults["batch_size"], defaults["epochs"]) == \
        ("adam", None, 32, 20)
    assert nnxp.get_optimizer(defaults["optimizer"]).lr == 1e-3
