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
from ._files import atomic_write_bytes
from .errors import DataError, NnxpError
from .network import Network

__all__ = ["save", "load", "write_arrays", "read_arrays", "FORMAT", "FORMAT_VERSION"]

FORMAT = "nnxp"
FORMAT_VERSION = "2"
_READABLE_VERSIONS = ("1", "2")


def save(net: Network, path: str | os.PathLike, *, extra_arrays: dict[str, Any] | None = None,
         extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and optional extra arrays / JSON metadata) to ``path`` atomically."""
    arrays: dict[str, Any] = {}
    for i, layer in enumerate(net.layers):
        for name, array in zip(layer.parameter_names, layer.parameters()):
            arrays[f"layers.{i}.{name}"] = array
    arrays.update(extra_arrays or {})
    metadata = {"network": net.config(), **(extra_metadata or {})}
    return write_arrays(path, arrays, metadata)


def load(path: str | os.PathLike, device: Any = "auto") -> Network:
    """The network stored in ``path``, on ``device`` (any backend), dtype preserved."""
    arrays, metadata = read_arrays(path)
    return network_from(arrays, metadata, path, device)


def network_from(arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: Any,
                 device: Any) -> Network:
    if "network" not in metadata:
        raise DataError(f"{path}: no network description in the file; is it an nnxp model?")
    net = Network.from_config(metadata["network"], device=device)
    try:
        groups = [tuple(arrays[f"layers.{i}.{name}"] for name in layer.parameter_names)
                  for i, layer in enumerate(net.layers) if layer.parameter_names]
        net.set_weights(groups)
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc} for the network it describes") from None
    except NnxpError as exc:
        raise DataError(f"{path}: arrays do not match the network it describes ({exc})") from None
    return net


def write_arrays(path: str | os.PathLike, arrays: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write named arrays (any backend; copied to the host) and JSON-able metadata, atomically."""
    path = Path(path)
    host = {name: np.ascontiguousarray(to_numpy(a)) for name, a in arrays.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION}
    header.update({key: json.dumps(value) for key, value in metadata.items()})
    data = safetensors.numpy.save(host, metadata=header)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}; check the directory exists "
                        "and is writable") from None
    return path


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(host arrays by name, decoded metadata) of an nnxp file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"model file {path} not found: check the path") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header_len = int.from_bytes(data[:8], "little")
        if len(data) < 8 or not data[8:9] == b"{" or header_len > len(data) - 8:
            raise ValueError("not a safetensors file")
        header = json.loads(data[8:8 + header_len])
        raw = header.get("__metadata__") or {}
        if raw.get("format") != FORMAT:
            raise ValueError("not written by nnxp")
        metadata = {k: json.loads(v) for k, v in raw.items() if k not in ("format", "format_version")}
        arrays = safetensors.numpy.load(data)
    except (ValueError, AttributeError, UnicodeDecodeError, safetensors.SafetensorError) as exc:
        raise DataError(f"{path} is not an nnxp model file ({exc}); "
                        "give a .safetensors file written by nnxp") from None
    if raw.get("format_version") not in _READABLE_VERSIONS:
        raise DataError(f"{path} has nnxp file format {raw.get('format_version')!r}; "
                        f"this nnxp reads {FORMAT_VERSION!r}: upgrade nnxp")
    return arrays, metadata
