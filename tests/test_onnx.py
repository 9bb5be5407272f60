"""ONNX export: onnxruntime runs the exported graph and gives nnxp's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[onnx]')")

import onnx  # noqa: E402

import nnxp  # noqa: E402
from nnxp.activations import ReLU  # noqa: E402
from nnxp.data import image_inputs, load_dataset  # noqa: E402
from nnxp.onnx import export_onnx, to_onnx  # noqa: E402

from conftest import host  # noqa: E402


def run_onnx(path_or_model, x: np.ndarray) -> np.ndarray:
    data = path_or_model if isinstance(path_or_model, (str, bytes)) else str(path_or_model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x})
    return out


def test_trained_digits_model_gives_nnxp_probabilities(tmp_path):
    digits = load_dataset("bundled")
    net = nnxp.Network([784, 64, 10], hidden="relu", output="softmax", device="cpu", seed=0)
    net.fit(image_inputs(digits.train_images), digits.train_labels, epochs=2, batch_size=64,
            optimizer="adam", lr=1e-3, verbose=0)
    x_test = image_inputs(digits.test_images)
    path = export_onnx(net, tmp_path / "digits.onnx")
    got = run_onnx(path, x_test)
    want = host(net.predict(x_test))
    assert got.shape == (1000, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert (got.argmax(1) == want.argmax(1)).all()
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["nnxp.config"]) == net.config()


@pytest.mark.parametrize("hidden, output", [
    (["leaky_relu:0.1", "sigmoid"], "softmax"),
    (["tanh", "identity"], "sigmoid"),
    (["relu", "leaky_relu"], "identity"),
])
def test_every_activation_on_every_backend(backend, dtype_name, hidden, output):
    net = nnxp.Network([5, 7, 6, 3], hidden=hidden, output=output, loss="squared_error",
                       dtype=dtype_name, device=backend, seed=3, init="uniform")
    x = np.random.default_rng(0).normal(size=(11, 5)).astype(dtype_name) * 3
    got = run_onnx(to_onnx(net).SerializeToString(), x)
    assert got.dtype == np.dtype(dtype_name)
    np.testing.assert_allclose(got, host(net.predict(x)), atol=1e-5 if dtype_name == "float32" else 1e-12)


def test_a_changed_activation_is_refused_not_exported_wrongly():
    class Clipped(ReLU):
        def forward(self, z):
            return super().forward(z) - 1.0

    net = nnxp.Network([2, 2, 2], hidden=Clipped(), device="cpu")
    with pytest.raises(nnxp.ConfigError, match="no ONNX equivalent"):
        to_onnx(net)


def test_dropout_is_left_out_as_at_inference(tmp_path):
    net = nnxp.Network([6, 8, 8, 3], dropout=0.5, device="cpu", seed=1)
    assert any(type(layer).__name__ == "Dropout" for layer in net.layers)
    x = np.random.default_rng(1).normal(size=(9, 6)).astype(np.float32)
    got = run_onnx(to_onnx(net).SerializeToString(), x)
    np.testing.assert_allclose(got, host(net.predict(x)), atol=1e-6)
    ops = [node.op_type for node in to_onnx(net).graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax", "Identity"]


def test_export_command(capsys, tmp_path):
    from conftest import one_line_error, run_cli

    net = nnxp.Network([784, 32, 10], device="cpu", seed=2, dtype="float64")
    model, out = tmp_path / "m.safetensors", tmp_path / "m.onnx"
    net.save(model)
    code, printed, _ = run_cli(capsys, "export", model, out)
    assert code == 0 and printed == f"wrote {out} (784-32-10, float64, ONNX opset 17)\n"
    x = image_inputs(load_dataset("bundled").test_images).astype(np.float64)
    np.testing.assert_allclose(run_onnx(out, x), host(net.predict(x)), atol=1e-12)
    code, _, err = run_cli(capsys, "export", model, tmp_path / "m.txt")
    assert code == 2 and "must end in .onnx" in one_line_error(err)


def test_a_model_over_the_size_threshold_is_written_with_external_data(tmp_path):
    """Issue 19: a model over 2 GB gave protobuf's EncodeError.  The threshold is a parameter, so a
    small model stands in: .onnx plus a data file, which onnxruntime loads with the same outputs."""
    import nnxp.onnx as nnxp_onnx

    net = nnxp.Network([200, 16, 5], device="cpu", seed=4)
    assert nnxp_onnx.weight_bytes(net) == 4 * (200 * 16 + 16 + 16 * 5 + 5)
    path = export_onnx(net, tmp_path / "m.onnx", external_above=1000)
    data = nnxp_onnx.external_data_path(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert path.stat().st_size < 2000 and data.stat().st_size >= nnxp_onnx.weight_bytes(net)  # weights outside
    x = np.random.default_rng(0).uniform(size=(7, 200)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x), host(net.predict(x)), atol=1e-6, rtol=0)
    onnx.checker.check_model(str(path))
    small = export_onnx(net, tmp_path / "small.onnx")  # under the default threshold: one file
    assert not nnxp_onnx.external_data_path(small).exists()


def test_export_command_says_it_wrote_two_files(capsys, tmp_path, monkeypatch):
    from conftest import one_line_error, run_cli

    import nnxp.onnx as nnxp_onnx

    monkeypatch.setattr(nnxp_onnx, "EXTERNAL_DATA_THRESHOLD", 100)
    nnxp.Network([20, 16, 5], device="cpu").save(tmp_path / "m.safetensors")
    code, out, err = run_cli(capsys, "export", tmp_path / "m.safetensors", tmp_path / "m.onnx")
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'm.onnx'} and its weights {tmp_path / 'm.onnx.data'} ")
    x = np.ones((2, 20), np.float32)
    assert run_onnx(tmp_path / "m.onnx", x).shape == (2, 5)
    # the data file is an output too: a model file of that name is never written over
    model = tmp_path / "x.onnx.data"
    nnxp.Network([20, 16, 5], device="cpu").save(model)
    before = model.read_bytes()
    code, _, err = run_cli(capsys, "export", model, tmp_path / "x.onnx")
    assert code == 2 and "x.onnx.data" in one_line_error(err) and model.read_bytes() == before
    assert not (tmp_path / "x.onnx").exists()
