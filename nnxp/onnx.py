"""Export a Network to ONNX, so onnxruntime (or any ONNX runtime) can run it.

``pip install 'nnxp[onnx]'`` (in a clone: ``pip install '.[onnx]'``)::

    from nnxp.onnx import export_onnx
    export_onnx(net, "digits.onnx")          # or: nnxp export digits.safetensors digits.onnx

The graph has one input ``input`` of shape (batch, n_0) (the batch size is
free) in the network's dtype and one output ``output`` (batch, n_L): the
network's outputs, i.e. class probabilities after a softmax.  Each dense
layer is ``Gemm(x, W, b, transB=1)`` (W stays (out, in), as nnxp stores
it) followed by its activation:

=============  ==========================
nnxp           ONNX operator
=============  ==========================
relu           Relu
leaky_relu     LeakyRelu (alpha)
sigmoid        Sigmoid
tanh           Tanh
softmax        Softmax (axis 1)
identity       (none: the Gemm's output)
=============  ==========================

Dropout layers are inference no-ops and are left out.

A model whose weights take more than :data:`EXTERNAL_DATA_THRESHOLD` bytes
(protobuf cannot write a message over 2 GB) is written in ONNX's
external-data format: the graph in ``OUT.onnx`` and the weights in
``OUT.onnx.data`` beside it (:func:`external_data_path`), which onnxruntime
reads from the model's directory; keep the two files together.  The network's
description (:meth:`Network.config`) is stored in the model's metadata as
``nnxp.config``.  Activations are matched by exact type, so a user subclass
that changes the maths is refused instead of exported wrongly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._extras import require
from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .backend import to_numpy
from ._files import atomic_open, write_file
from .errors import ConfigError
from .layers import Dense, Dropout

__all__ = ["to_onnx", "export_onnx", "external_data_path", "weight_bytes", "OPSET", "EXTERNAL_DATA_THRESHOLD"]

#: the ONNX opset the graph declares (every operator used exists unchanged since opset 13)
OPSET = 17

#: weights above this many bytes go to an external data file (protobuf's limit is 2 GiB per message)
EXTERNAL_DATA_THRESHOLD = 1 << 30

_SIMPLE = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}


def _import_onnx() -> Any:
    try:
        return require("onnx", "onnx", "ONNX export")
    except ImportError as exc:
        raise ConfigError(str(exc)) from None


def to_onnx(net: Any, *, name: str = "nnxp", check: bool = True) -> Any:
    """The network as an ``onnx.ModelProto`` (checked by ``onnx.checker`` unless ``check`` is
    False: a model over 2 GB can only be checked from its files, see :func:`export_onnx`)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    float64 = net.dtype_name == "float64"
    elem = TensorProto.DOUBLE if float64 else TensorProto.FLOAT
    np_dtype = np.float64 if float64 else np.float32
    nodes, inits = [], []
    x = "input"
    for i, layer in enumerate(net.layers):
        if type(layer) is Dropout:  # inference: the identity
            continue
        if type(layer) is not Dense:
            raise ConfigError(f"layer {i} ({layer!r}) has no ONNX export here; export supports Dense "
                              "and Dropout layers")
        weight, bias = layer.parameters()
        w = numpy_helper.from_array(np.ascontiguousarray(to_numpy(weight), np_dtype), f"layers.{i}.weight")
        b = numpy_helper.from_array(np.ascontiguousarray(to_numpy(bias), np_dtype), f"layers.{i}.bias")
        inits += [w, b]
        z = f"layers.{i}.z"
        nodes.append(helper.make_node("Gemm", [x, w.name, b.name], [z], name=f"layers.{i}.gemm", transB=1))
        x = _activation(helper, layer.activation, z, f"layers.{i}", nodes, i)
    # The last value is renamed "output" through an Identity (cheap; keeps node names regular).
    nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", elem, ["batch", net.sizes[0]])],
        [helper.make_tensor_value_info("output", elem, ["batch", net.sizes[-1]])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nnxp", doc_string=repr(net))
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime >= 1.14
    helper.set_model_props(model, {"nnxp.config": json.dumps(net.config())})
    if check:
        onnx.checker.check_model(model)
    return model


def _activation(helper: Any, act: Any, z: str, prefix: str, nodes: list[Any], index: int) -> str:
    kind = type(act)
    if kind is Identity:
        return z
    a = f"{prefix}.a"
    if kind in _SIMPLE:
        nodes.append(helper.make_node(_SIMPLE[kind], [z], [a], name=f"{prefix}.{act.name}"))
    elif kind is LeakyReLU:
        nodes.append(helper.make_node("LeakyRelu", [z], [a], name=f"{prefix}.leaky_relu", alpha=act.alpha))
    elif kind is Softmax:
        nodes.append(helper.make_node("Softmax", [z], [a], name=f"{prefix}.softmax", axis=1))
    else:
        raise ConfigError(f"layer {index}: activation {act!r} ({kind.__name__}) has no ONNX "
                          "equivalent here; export supports relu, leaky_relu, sigmoid, tanh, "
                          "softmax and identity")
    return a


def weight_bytes(net: Any) -> int:
    """Bytes the network's parameters take in an ONNX file."""
    return sum(int(np.prod(p.shape)) * (8 if net.dtype_name == "float64" else 4) for p in net.parameters())


def external_data_path(path: str | os.PathLike) -> Path:
    """Where :func:`export_onnx` puts the weights of a large model: ``OUT.onnx.data`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def export_onnx(net: Any, path: str | os.PathLike, *, external_above: int | None = None) -> Path:
    """Write ``net`` as an ONNX model file to ``path`` (atomically); returns the path.

    Weights over ``external_above`` bytes (default :data:`EXTERNAL_DATA_THRESHOLD`)
    go to :func:`external_data_path` (written first, also atomically), and the
    model refers to them by file name, so both files must stay together.
    """
    threshold = EXTERNAL_DATA_THRESHOLD if external_above is None else int(external_above)
    path = Path(path)
    if weight_bytes(net) <= threshold:
        return write_file(path, to_onnx(net).SerializeToString())
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data

    model = to_onnx(net, check=False)
    data = external_data_path(path)
    offset = 0
    with atomic_open(data, "wb") as f:
        for tensor in model.graph.initializer:
            raw = tensor.raw_data
            padding = -offset % 64  # each tensor starts aligned (onnxruntime may map the file)
            f.write(b"\0" * padding)
            offset += padding
            f.write(raw)
            set_external_data(tensor, location=data.name, offset=offset, length=len(raw))
            tensor.data_location = TensorProto.EXTERNAL
            tensor.ClearField("raw_data")
            offset += len(raw)
    write_file(path, model.SerializeToString())
    _import_onnx().checker.check_model(str(path))  # from the files: the weights are read from the data file
    return path
