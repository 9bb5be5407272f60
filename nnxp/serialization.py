"""Model files: safetensors, which hold arrays and text and can never run code.

A model file stores each layer's parameters as ``layers.<i>.<name>`` (a
dense layer's ``weight`` (out, in) and ``bias`` (out,)) in the network's
dtype, and in its metadata the JSON description from :meth:`Network.config`
(the layers, loss, dtype).  Format 1 files (dense layers only, described
by sizes and activations) still load.  It loads onto any device.  Files are written atomically (a temporary
file renamed into place), so an interrupted save never leaves a broken file.

Training checkpoints (:mod:`nnxp.train`) use the same format with extra
tensors (optimizer state) and metadata (epoch, history, settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from .backend import to_numpy
from ._files import write_file
from .errors import DataError, NnxpError
from .io.read import read_bytes
from .io.schema import Schema
from .layers import LAYERS
from .validation import file_path

__all__ = ["save", "checked_model", "write_arrays", "read_arrays", "check_finite_arrays", "FORMAT", "FORMAT_VERSION"]

FORMAT = "nnxp"
FORMAT_VERSION = "2"
_READABLE_VERSIONS = ("1", "2")


def save(net: Any, path: str | os.PathLike, *, extra_arrays: dict[str, Any] | None = None,
         extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and optional extra arrays / JSON metadata) to ``path`` atomically."""
    arrays: dict[str, Any] = {}
    for i, layer in enumerate(net.layers):
        for name, array in zip(layer.parameter_names, layer.parameters()):
            arrays[f"layers.{i}.{name}"] = array
    arrays.update(extra_arrays or {})
    metadata = {"network": net.config(), **(extra_metadata or {})}
    return write_arrays(path, arrays, metadata)


def checked_model(arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: Any, *,
                  extra_prefixes: tuple[str, ...] = ("optimizer.",)) -> dict[str, Any]:
    """The network description in ``metadata``, after checking ``arrays`` against it.

    Everything is checked before a network is built from it (as safetensors' and
    PyTorch's strict loaders do): the description's types, that every
    parameter is stored with exactly the shape (from each layer's
    :meth:`~nnxp.layers.Layer.parameter_shapes`) and dtype the description
    implies, that no other tensors are present (besides names starting with
    ``extra_prefixes``), and that every parameter is finite.  So a crafted
    description cannot make nnxp allocate more than the file holds.
    :func:`nnxp.network.network_from` then builds the network.
    """
    config = _network_description(metadata, path)
    expected = _expected_arrays(config, path)
    dtype = np.dtype(config["dtype"])
    for name, shape in expected.items():
        if name not in arrays:
            raise DataError(f"{path}: missing array {name!r} for the network it describes; the file is "
                            "damaged: use another copy or retrain")
        a = arrays[name]
        if shape is not None and tuple(a.shape) != shape or a.dtype != dtype:
            want = f"{dtype} {shape}" if shape is not None else str(dtype)
            raise DataError(f"{path}: array {name!r} is {a.dtype} {tuple(a.shape)} but the network it "
                            f"describes needs {want}; the file is damaged: use another copy")
    unexpected = sorted(n for n in arrays if n not in expected and not n.startswith(extra_prefixes))
    if unexpected:
        raise DataError(f"{path}: unexpected array(s) {', '.join(_short(n) for n in unexpected[:3])} for "
                        "the network it describes; is it an nnxp model?")
    check_finite_arrays({n: arrays[n] for n in expected}, path)
    return config


def _network_description(metadata: dict[str, Any], path: Any) -> dict[str, Any]:
    """The ``network`` metadata with its types checked (:mod:`nnxp.io.schema`; values are
    checked by the constructors)."""
    s = Schema(path, "the file is damaged or not written by nnxp: use another copy")
    if metadata.get("network") is None:
        raise DataError(f"{path}: network: is missing; is it an nnxp model?")
    config = s.object(metadata["network"], "network")
    s.text(s.key(config, "loss", "network"), "network.loss")
    s.text(s.key(config, "dtype", "network"), "network.dtype", ("float32", "float64"))
    if "layers" in config:
        for i, c in enumerate(s.list(config["layers"], "network.layers", min_items=1)):
            field = f"network.layers[{i}]"
            s.text(s.key(s.object(c, field), "kind", field), s.at(field, "kind"))
            if "activation" in c:
                _check_activation(s, c["activation"], s.at(field, "activation"))
        return config
    sizes = s.list(s.key(config, "sizes", "network"), "network.sizes", min_items=2)
    for i, n in enumerate(sizes):
        s.whole(n, f"network.sizes[{i}]", least=1)
    acts = s.list(s.key(config, "activations", "network"), "network.activations")
    if len(acts) != len(sizes) - 1:
        raise s.error("network.activations", f"has {len(acts)} item(s), needs {len(sizes) - 1} (one per layer)")
    for i, act in enumerate(acts):
        _check_activation(s, act, f"network.activations[{i}]")
    return config


def _check_activation(s: Schema, act: Any, field: str) -> None:
    """A name, or an object with a ``name`` and numeric parameters."""
    if not isinstance(act, dict):
        s.text(act, field)
        return
    s.text(s.key(act, "name", field), s.at(field, "name"))
    for key, value in act.items():
        if key != "name":
            s.number(value, s.at(field, key), finite=False)


def _expected_arrays(config: dict[str, Any], path: Any) -> dict[str, tuple[int, ...] | None]:
    """{stored array name: shape} the description implies (shape None: a layer that cannot tell)."""
    if "layers" not in config:  # format 1
        sizes = config["sizes"]
        expected: dict[str, tuple[int, ...] | None] = {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            expected[f"layers.{i}.weight"] = (n_out, n_in)
            expected[f"layers.{i}.bias"] = (n_out,)
        return expected
    expected = {}
    for i, layer_config in enumerate(config["layers"]):
        cls = LAYERS.get(layer_config["kind"])
        if cls is None:
            raise DataError(f"{path}: unknown layer kind {_short(layer_config['kind'])}; known are "
                            f"{', '.join(sorted(LAYERS))} (a newer nnxp may read it)")
        try:
            shapes = cls.parameter_shapes(layer_config)
        except NnxpError as exc:
            raise DataError(f"{path}: bad network description ({exc}); the file is damaged") from None
        for name in cls.parameter_names:
            expected[f"layers.{i}.{name}"] = None if shapes is None else tuple(shapes[name])
    return expected


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_finite_arrays(arrays: dict[str, np.ndarray], path: Any) -> None:
    """Refuse stored arrays holding NaN or infinity (a diverged or damaged run), one line."""
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            bad = int(np.count_nonzero(~np.isfinite(a)))
            raise DataError(f"{path}: array {name!r} holds {bad} NaN or infinite value(s); the file is "
                            "damaged or was saved from a diverged run: use an earlier checkpoint")


def write_arrays(path: str | os.PathLike, arrays: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write named arrays (any backend; copied to the host) and JSON-able metadata, atomically."""
    path = Path(path)
    host = {name: np.ascontiguousarray(to_numpy(a)) for name, a in arrays.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION}
    header.update({key: json.dumps(value) for key, value in metadata.items()})
    data = safetensors.numpy.save(host, metadata=header)
    return write_file(path, data)


# Tensor dtypes nnxp writes; anything else (F16, BF16, F8_*, integers, BOOL,
# complex, or a name safetensors does not know) is refused before decoding.
_DTYPES = {"F32": np.float32, "F64": np.float64}
# safetensors refuses headers over 100 MB; nnxp's are a few kB.
_MAX_HEADER = 100_000_000


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(host arrays by name, decoded metadata) of an nnxp file.

    Raises :class:`~nnxp.errors.DataError` (one line) for anything but a
    well-formed nnxp file: not a regular file, bad or over-long header,
    deeply nested or invalid JSON, tensor dtypes other than F32/F64, offsets
    outside the file, metadata values that are not JSON.
    """
    path = Path(file_path("path", path))
    try:
        data = read_bytes(path, "model")
    except FileNotFoundError:
        raise DataError(f"model file {path} not found: check the path") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None

    def refuse(why: str) -> DataError:
        return DataError(f"{path} is not an nnxp model file ({why}); give a .safetensors file written by nnxp")

    if len(data) < 8:
        raise refuse("too short for a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8 or header_len > _MAX_HEADER or data[8:9] != b"{":
        raise refuse("not a safetensors file")
    header = _json(data[8:8 + header_len], refuse, "header")
    if not isinstance(header, dict):
        raise refuse("the header is not a JSON object")
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise refuse("its metadata is not a map of strings")
    if raw.get("format") != FORMAT:
        raise refuse("not written by nnxp")
    if raw.get("format_version") not in _READABLE_VERSIONS:
        raise DataError(f"{path} has nnxp file format {_short(raw.get('format_version'))}; "
                        f"this nnxp reads {FORMAT_VERSION!r}: upgrade nnxp")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype not in _DTYPES:
            raise refuse(f"tensor {_short(name)} has dtype {_short(dtype)}; nnxp files hold only "
                         "F32 (float32) and F64 (float64) tensors")
    metadata = {k: _json(v.encode(), refuse, f"metadata {k!r}")
                for k, v in raw.items() if k not in ("format", "format_version")}
    try:
        arrays = safetensors.numpy.load(data)
    except (ValueError, TypeError, OverflowError, safetensors.SafetensorError) as exc:
        raise refuse(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return arrays, metadata


def _json(text: bytes, refuse: Any, what: str) -> Any:
    """Decoded JSON; invalid text and pathological nesting refused with one line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise refuse(f"its {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(f"its {what} is not valid JSON: {str(exc).splitlines()[0][:80]}") from None
