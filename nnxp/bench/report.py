"""The benchmark's results as text: plain tables, the README's markdown, the project's targets,
the README section rewrite and the JSON result file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io.read import read_text
from .machine import describe_machine

__all__ = ["SCHEMA", "TARGETS", "add_ratios", "check_targets", "format_markdown", "format_race", "format_table",
           "log", "race_markdown", "readme_parts", "update_readme", "write_json"]

SCHEMA = "nnxp-bench/1"


#: The project's targets, checked on every run (at the time of the run).
TARGETS = {
    "sizes": [784, 256, 10], "batch": 128,
    "nnxp_over_ref_max": 1.10,        # nnxp-sgd time / numpy-ref time <= 1.10
    "torch_over_nnxp_min": 1.30,      # torch-sgd time / nnxp-sgd time >= 1.3
    "floor_fraction_min": 0.70,       # gemm-floor time / nnxp-sgd time >= 0.70 at batch >= 128
    "floor_min_batch": 128,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _med(case: dict[str, Any], name: str) -> float | None:
    c = case["contenders"].get(name) or (case["contenders"].get("cupy-ref") if name == "numpy-ref" else None)
    return c["median_ms"] if c else None


def add_ratios(case: dict[str, Any]) -> None:
    sgd, adam, ref = _med(case, "nnxp-sgd"), _med(case, "nnxp-adam"), _med(case, "numpy-ref")
    tsgd, tadam, floor = _med(case, "torch-sgd"), _med(case, "torch-adam"), _med(case, "gemm-floor")
    div = lambda a, b: a / b if a is not None and b else None
    case["ratios"] = {
        "nnxp_sgd_over_ref": div(sgd, ref),
        "torch_sgd_over_nnxp_sgd": div(tsgd, sgd),
        "torch_adam_over_nnxp_adam": div(tadam, adam),
        "floor_fraction": div(floor, sgd),
        "torch_sgd_graph_over_nnxp_sgd": div(_med(case, "torch-sgd-graph"), sgd),
        "torch_adam_graph_over_nnxp_adam": div(_med(case, "torch-adam-graph"), adam),
        "torch_floor_over_floor": div(_med(case, "torch-gemm-floor"), floor),
        "torch_sgd_graph_over_nnxp_sgd_graph": div(_med(case, "torch-sgd-graph"), _med(case, "nnxp-sgd-graph")),
    }
    case["nnxp_sgd_gflops"] = case["flops"] / (sgd * 1e6) if sgd else None
    case["floor_gflops"] = case["flops"] / (floor * 1e6) if floor else None


def check_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The project's targets, each with the measured value and whether it is met (None: not measured)."""
    t = TARGETS
    out: dict[str, Any] = {}
    main = [c for c in result["cases"] if c["sizes"] == t["sizes"] and c["batch"] == t["batch"]]
    r = main[0]["ratios"] if main else {}
    v = r.get("nnxp_sgd_over_ref")
    out["nnxp_over_ref"] = {"target": f"<= {t['nnxp_over_ref_max']}", "value": v,
                            "met": None if v is None else v <= t["nnxp_over_ref_max"]}
    v = r.get("torch_sgd_over_nnxp_sgd")
    out["torch_over_nnxp"] = {"target": f">= {t['torch_over_nnxp_min']}", "value": v,
                              "met": None if v is None else v >= t["torch_over_nnxp_min"]}
    fr = {f"{'-'.join(map(str, c['sizes']))}/{c['batch']}": c["ratios"]["floor_fraction"]
          for c in result["cases"] if c["batch"] >= t["floor_min_batch"]
          and c["ratios"].get("floor_fraction") is not None}
    out["floor_fraction"] = {"target": f">= {t['floor_fraction_min']} for batch >= {t['floor_min_batch']}",
                             "values": fr,
                             "met": None if not fr else all(x >= t["floor_fraction_min"] for x in fr.values())}
    return out


# -- output ----------------------------------------------------------------------------------------------

_COLUMNS = (("nnxp-sgd", "nnxp-sgd"), ("nnxp-adam", "nnxp-adam"), ("nnxp-sgd-graph", "nnxp-sgd-graph"),
            ("nnxp-adam-graph", "nnxp-adam-graph"), ("numpy-ref", "numpy-ref"),
            ("torch-sgd", "torch-sgd"), ("torch-adam", "torch-adam"), ("torch-sgd-graph", "torch-sgd-graph"),
            ("torch-adam-graph", "torch-adam-graph"), ("gemm-floor", "gemm-floor"),
            ("torch-gemm-floor", "torch-gemm-floor"))


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    present = [(key, title) for key, title in _COLUMNS
               if any(_med(c, key) is not None for c in result["cases"])]
    gpu = result["settings"]["device"] != "cpu"
    ref_title = "cupy-ref" if gpu else "numpy-ref"
    head = ["sizes", "batch"] + [(ref_title if k == "numpy-ref" else t) + " ms" for k, t in present]
    tfloor = any(_med(c, "torch-gemm-floor") is not None for c in result["cases"])
    head += ["nnxp/ref", "torch/nnxp sgd", "torch/nnxp adam", "% of GEMM floor", "nnxp GFLOP/s"]
    head += ["torch floor/floor"] if tfloor else []
    if gpu:
        head += ["torch graph/nnxp sgd", "torch graph/nnxp graph sgd", "CuPy pool MB", "torch peak MB"]
    head += ["peak RSS MB"]
    rows = []
    for c in result["cases"]:
        r = c["ratios"]
        row = ["-".join(map(str, c["sizes"])), str(c["batch"])]
        row += [_fmt(_med(c, k), ".3f") for k, _ in present]
        row += [_fmt(r["nnxp_sgd_over_ref"], ".2f"), _fmt(r["torch_sgd_over_nnxp_sgd"], ".2f"),
                _fmt(r["torch_adam_over_nnxp_adam"], ".2f"),
                _fmt(None if r["floor_fraction"] is None else 100 * r["floor_fraction"], ".0f"),
                _fmt(c["nnxp_sgd_gflops"], ".1f")]
        row += [_fmt(r.get("torch_floor_over_floor"), ".2f")] if tfloor else []
        if gpu:
            row += [_fmt(r.get("torch_sgd_graph_over_nnxp_sgd"), ".2f"),
                    _fmt(r.get("torch_sgd_graph_over_nnxp_sgd_graph"), ".2f"), _fmt(c.get("cupy_pool_peak_mb"), ".0f"),
                    _fmt(c.get("torch_cuda_peak_mb"), ".0f")]
        row += [_fmt(c.get("peak_rss_mb"), ".0f")]
        rows.append(row)
    return head, rows


def _iqr_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = list(dict.fromkeys(n for c in result["cases"] for n in c["contenders"]))
    head = ["sizes", "batch"] + names
    rows = []
    for c in result["cases"]:
        row = ["-".join(map(str, c["sizes"])), str(c["batch"])]
        for n in names:
            s = c["contenders"].get(n)
            row.append("-" if s is None else f"{100 * s['iqr_ms'] / s['median_ms']:.1f}% k={s['k']}")
        rows.append(row)
    return head, rows


def _plain(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _target_lines(result: dict[str, Any]) -> list[str]:
    t = result.get("targets") or check_targets(result)
    word = lambda met: "not measured" if met is None else ("MET" if met else "NOT met")
    lines = []
    s = "-".join(map(str, TARGETS["sizes"]))
    a = t["nnxp_over_ref"]
    lines.append(f"nnxp-sgd / numpy-ref at {s} batch {TARGETS['batch']}: {_fmt(a['value'], '.2f')} "
                 f"(target {a['target']}): {word(a['met'])}")
    a = t["torch_over_nnxp"]
    no_torch = any(n.startswith("PyTorch not timed") for n in result.get("notes", []))
    lines.append(f"torch-sgd / nnxp-sgd at {s} batch {TARGETS['batch']}: {_fmt(a['value'], '.2f')} "
                 f"(target {a['target']}): "
                 + ("not measured: PyTorch was not timed (see the note)" if no_torch and a["met"] is None
                    else word(a["met"])))
    a = t["floor_fraction"]
    vals = ", ".join(f"{k} {100 * v:.0f}%" for k, v in a["values"].items())
    lines.append(f"GEMM floor / nnxp-sgd (target {a['target']}): {vals or '-'}: {word(a['met'])}")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report of a step benchmark result."""
    s = result["settings"]
    parts = describe_machine(result["machine"])
    parts.append(f"settings: device {s['device']}, {s['threads']} threads, {s['repeats']} samples per "
                 f"contender ({s['order']}), each >= {s['min_sample_ms']:g} ms of k steps, "
                 f"{s['batches_cycled']} batches cycled, float32; run took {result['seconds']:.0f} s")
    parts += ["", "median ms per step:", _plain(*_rows(result)), "",
              "spread (IQR as % of median, k = steps per sample):", _plain(*_iqr_rows(result)), ""]
    parts += ["targets:"] + ["  " + x for x in _target_lines(result)]
    parts += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(parts)


def format_markdown(result: dict[str, Any]) -> str:
    """The README section for a step benchmark (or race) result."""
    if result.get("kind") == "race":
        return race_markdown(result)
    s = result["settings"]
    out = ["### Step benchmark", ""]
    if result.get("command"):
        out += ["```", "nnxp bench " + " ".join(result["command"]), "```", ""]
    out += [f"- {line}" for line in describe_machine(result["machine"])]
    out.append(f"- settings: device {s['device']}, {s['threads']} threads (NumPy BLAS and torch), "
               f"{s['repeats']} samples per contender, round-robin ({s['order']}), each sample >= "
               f"{s['min_sample_ms']:g} ms (k consecutive steps), warm-up first, GC off, "
               f"{s['batches_cycled']} batches cycled, float32, SGD lr {s['sgd_lr']}, Adam lr {s['adam_lr']}; "
               f"run took {result['seconds']:.0f} s")
    out += ["", "Median milliseconds per training step (ratios are time ratios):", "",
            _markdown_table(*_rows(result)), "",
            "Spread: inter-quartile range as % of the median (k = steps per sample):", "",
            _markdown_table(*_iqr_rows(result)), "", "Targets (at the time of this run):", ""]
    out += [f"- {x}" for x in _target_lines(result)]
    out += [f"- note: {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


def format_race(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = describe_machine(result["machine"])
    lines.append(f"race: {s['dataset']} to {100 * s['target']:.0f}% test accuracy, "
                 f"{'-'.join(map(str, s['sizes']))} ReLU/softmax CE, SGD lr {s['lr']}, batch {s['batch']}, "
                 f"max {s['max_epochs']} epochs, {s['device']}, {s['threads']} threads; torch init: {s['torch_init']}")
    for r in result["runs"]:
        lines.append(f"  run {r['run']} {r['contender']:5}: {r['epochs']:2d} epochs  {r['seconds']:7.2f} s  "
                     f"test acc {100 * r['final_val_accuracy']:.2f}%" + ("" if r["reached"] else "  NOT REACHED"))
    sm = result["summary"]
    for who in ("nnxp", "torch"):
        if who in sm:
            lines.append(f"{who}: median {sm[who]['median_seconds']:.2f} s to target, epochs {sm[who]['epochs']}")
    if "torch_over_nnxp" in sm:
        lines.append(f"torch time / nnxp time: {sm['torch_over_nnxp']:.2f}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def race_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    out = ["### Race to a test accuracy", ""]
    if result.get("command"):
        out += ["```", "nnxp bench " + " ".join(result["command"]), "```", ""]
    out += [f"- {line}" for line in describe_machine(result["machine"])]
    out += [(f"- {s['dataset']}, target {100 * s['target']:.0f}% test accuracy, "
             f"{'-'.join(map(str, s['sizes']))} ReLU, softmax cross-entropy, SGD lr {s['lr']}, batch {s['batch']}, "
             f"max {s['max_epochs']} epochs, device {s['device']}, {s['threads']} threads; runs in ABBA order; "
             f"wall time from the first epoch's start to the end of the epoch that reached the target "
             f"(training + evaluation, data already in memory / on the device); torch init: {s['torch_init']}"),
            "", "| run | contender | epochs | seconds to target | test accuracy |", "|---:|---|---:|---:|---:|"]
    for r in result["runs"]:
        out.append(f"| {r['run']} | {r['contender']} | {r['epochs']} | {r['seconds']:.2f} | "
                   f"{100 * r['final_val_accuracy']:.2f}%{'' if r['reached'] else ' (not reached)'} |")
    sm = result["summary"]
    out.append("")
    for who in ("nnxp", "torch"):
        if who in sm:
            out.append(f"- {who}: median {sm[who]['median_seconds']:.2f} s, epochs {sm[who]['epochs']}")
    if "torch_over_nnxp" in sm:
        out.append(f"- torch time / nnxp time: **{sm['torch_over_nnxp']:.2f}**")
    out += [f"- note: {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


def readme_parts(path: Path, kind: str) -> tuple[str, str, str]:
    """(text before the section, the section, text after) of a markdown file with the markers."""
    start, end = f"<!-- nnxp-bench:{kind} -->", f"<!-- /nnxp-bench:{kind} -->"
    try:
        text = read_text(path, "markdown", "a README")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    import re

    m1 = re.search(rf"^{re.escape(start)}[ \t]*$", text, re.MULTILINE)  # whole lines only, never quoted in prose
    m2 = re.search(rf"^{re.escape(end)}[ \t]*$", text, re.MULTILINE)
    if m1 is None or m2 is None or m2.start() < m1.end():
        raise DataError(f"{path} has no lines {start} ... {end} to put the {kind} results between: add them")
    i, j = m1.start(), m2.start()
    if not os.access(path, os.W_OK):
        raise DataError(f"cannot write {path}: permission denied")
    return text[:i + len(start)], text[i + len(start):j], text[j:]


def update_readme(path: Path, result: dict[str, Any]) -> None:
    """Replace the step or race section of ``path`` (between its markers) with this result's markdown."""
    from .._files import atomic_open

    kind = "race" if result.get("kind") == "race" else "step"
    before, _, after = readme_parts(path, kind)
    try:
        with atomic_open(path, "w") as f:
            f.write(before + "\n" + format_markdown(result) + after)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    log(f"updated the {kind} section of {path}")


def write_json(path: Path, result: dict[str, Any]) -> None:
    from .._files import atomic_open

    try:
        with atomic_open(path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
