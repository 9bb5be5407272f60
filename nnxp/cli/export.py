"""``nnxp export MODEL OUT.onnx``: a saved model as an ONNX graph (needs the onnx extra)."""

from __future__ import annotations

import argparse
from typing import Any

from .._extras import install_hint
from ..errors import ConfigError
from ..io.paths import Input, Output
from .args import check_writable, files_of

__all__ = ["add_commands", "cmd_export"]


def add_commands(commands: Any) -> None:
    p = commands.add_parser(
        "export", help="write a saved model as an ONNX file (for onnxruntime and other runtimes)",
        description="Write a model file as an ONNX graph: Gemm per dense layer, then its activation; "
                    "input 'input' (batch, features), output 'output' (batch, classes: the "
                    f"probabilities). Needs onnx: {install_hint('onnx')}.")
    p.add_argument("model", type=Input("model"), metavar="MODEL", help="a .safetensors file written by nnxp train")
    p.add_argument("output", type=Output("onnx"), metavar="OUT.onnx", help="the ONNX file to write (atomically)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..divergence import check_model_outputs
    from .. import onnx as onnx_module
    from ..onnx import OPSET, export_onnx, external_data_path, weight_bytes
    from ..network import load

    if args.output.suffix.lower() != ".onnx":
        raise ConfigError(f"{args.output}: the output file name must end in .onnx")
    check_writable(args.output)
    net = load(args.model, device="cpu")
    check_model_outputs(net, args.model)  # finite weights can still give NaN outputs (a diverged run)
    data = external_data_path(args.output) if weight_bytes(net) > onnx_module.EXTERNAL_DATA_THRESHOLD else None
    if data is not None:  # a second output: checked like the first
        files_of(args).output("OUT.onnx's weights", data, "onnx")  # never the model, never OUT.onnx itself
    export_onnx(net, args.output)
    files = f"{args.output} and its weights {data}" if data is not None else f"{args.output}"
    print(f"wrote {files} ({'-'.join(map(str, net.sizes))}, {net.dtype_name}, ONNX opset {OPSET})")
    return 0
