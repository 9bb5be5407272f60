"""Which BLAS provider runs a training step's products: the setting, and ``auto``'s calibration.

The setting is ``auto`` (default), ``openblas`` or ``mkl``: per call
(``fit(..., blas=)``, ``ops_for(backend, blas=)``, ``--blas``) or for the
process (:func:`set_blas`).  ``auto`` means:

- only NumPy's own BLAS is installed (the default install): ``openblas``, no
  timing at all;
- a step whose products are tiny (under ``MIN_FLOPS``, microseconds each):
  ``openblas``, no timing;
- otherwise, at the first step, a short calibration (about 0.3 s) times every
  installed provider on the step's own products (the forward ``x W^T``, the
  weight gradient folded into the update ``W <- W - lr delta^T a``, the input
  gradient ``delta W``), alternating providers with a settling run before each
  sample, median of several samples; ``mkl`` is picked only when it is at least
  3% faster than ``openblas``, so ``auto`` never picks a slower BLAS than
  NumPy's own (up to the noise of that measurement).  The result is cached per
  machine (CPU, cores, library versions and thread counts) and step shape in
  ``<nnxp cache>/blas-choice.json`` (``$NNXP_CACHE_DIR``, else
  ``~/.cache/nnxp``), written atomically; delete that file to calibrate again.
  A cache that cannot be read or is not of that shape is only a cache: one
  warning line (naming the file and the field), then the step is measured
  again and the file rewritten; it never stops training.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendError, ConfigError, DataError
from ...io.read import read_text
from ...io.schema import Schema, shown
from .providers import PROVIDERS, Provider, openblas, provider

__all__ = ["MIN_FLOPS", "SETTINGS", "blas_setting", "cache_path", "calibrate", "check_setting", "resolve",
           "set_blas"]

SETTINGS = ("auto", *PROVIDERS)
#: below this many floating-point operations per step's products, ``auto`` keeps NumPy's BLAS
MIN_FLOPS = 4_000_000
#: ``auto`` picks another provider only when its median is below this fraction of OpenBLAS's
MARGIN = 0.97
_CACHE_FORMAT = 1
_setting = "auto"


def check_setting(name: Any) -> str:
    """The normalised setting; ConfigError for an unknown name, BackendError when the
    named provider is not installed (one line, with the install command)."""
    text = str(name).strip().lower()
    if text not in SETTINGS:
        raise ConfigError(f"unknown BLAS {name!r}: choose one of {', '.join(SETTINGS)}")
    if text != "auto":
        provider(text)  # raises BackendError("the mkl BLAS is not installed: pip install 'nnxp[mkl]' ...")
    return text


def set_blas(name: str) -> None:
    """Choose the BLAS for NumPy training steps in this process: ``auto``, ``openblas`` or ``mkl``."""
    global _setting
    _setting = check_setting(name)


def blas_setting() -> str:
    """The process-wide setting (:func:`set_blas`)."""
    return _setting


def cache_path() -> Path:
    from ...data.datasets import default_cache_dir

    return default_cache_dir() / "blas-choice.json"


def _machine_key(providers: Sequence[Provider]) -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = "; ".join(p.describe() for p in providers)
    return f"{model} | {os.cpu_count()} cores, {usable} usable | numpy {np.__version__} | {libs}"


def _step_key(shapes: Sequence[tuple[int, int]], batch: int, dtype: Any) -> str:
    return f"{'-'.join([str(shapes[0][0])] + [str(o) for _, o in shapes])} B{batch} {np.dtype(dtype).name}"


def step_flops(shapes: Sequence[tuple[int, int]], batch: int) -> int:
    """Flops of a step's products: forward and weight gradient per layer, input gradient but the first."""
    products = [n_in * n_out for n_in, n_out in shapes]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


class _Products:
    """A step's products on random operands, for timing one provider."""

    def __init__(self, shapes: Sequence[tuple[int, int]], batch: int, dtype: Any):
        rng = np.random.default_rng(0)
        self.layers = []
        for n_in, n_out in shapes:
            a = rng.uniform(0.0, 1.0, (batch, n_in)).astype(dtype)
            w = rng.normal(0.0, 0.05, (n_out, n_in)).astype(dtype)
            delta = rng.normal(0.0, 1e-3, (batch, n_out)).astype(dtype)
            self.layers.append((a, w, delta, np.empty((batch, n_out), dtype), np.empty((batch, n_in), dtype)))

    def run(self, p: Provider) -> None:
        for i, (a, w, delta, z, da) in enumerate(self.layers):
            p.gemm(z, a, w.T)
        for i, (a, w, delta, z, da) in enumerate(reversed(self.layers)):
            if i < len(self.layers) - 1:
                p.gemm(da, delta, w)
            p.gemm(w, delta.T, a, alpha=-1e-6, beta=1.0)  # the folded SGD update (tiny: w stays put)


def calibrate(providers: Sequence[Provider], shapes: Sequence[tuple[int, int]], batch: int, dtype: Any,
              rounds: int = 5, sample_s: float = 0.01, settle_s: float = 0.01) -> dict[str, float]:
    """Median seconds of one step's products per provider, alternated over ``rounds``."""
    work = _Products(shapes, batch, dtype)
    k: dict[str, int] = {}
    for p in providers:
        for _ in range(3):
            work.run(p)
        t0 = time.perf_counter()
        work.run(p)
        k[p.name] = max(1, int(sample_s / max(time.perf_counter() - t0, 1e-7)))
    samples: dict[str, list[float]] = {p.name: [] for p in providers}
    for r in range(rounds):
        for p in (providers if r % 2 == 0 else list(reversed(providers))):
            end = time.perf_counter() + settle_s  # the other library's idle threads stop spinning
            while time.perf_counter() < end:
                work.run(p)
            t0 = time.perf_counter()
            for _ in range(k[p.name]):
                work.run(p)
            samples[p.name].append((time.perf_counter() - t0) / k[p.name])
    return {name: float(np.median(s)) for name, s in samples.items()}


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's contents, checked (:mod:`nnxp.io.schema`); ``{}`` when there is none.

    A broken cache (unreadable, not JSON, or JSON of another shape) is only a
    cache: one warning line on stderr, then ``{}``, so the step is measured
    again and the file rewritten whole.  It never stops training.
    """
    try:
        data = json.loads(read_text(path, "cache"))  # never blocks (a FIFO), never reads /dev/zero
    except FileNotFoundError:
        return {}
    except DataError as exc:  # a FIFO, a device, a file over the cache's size limit: never read
        _warn(f"{exc}; measuring again")
        return {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = getattr(exc, "strerror", None) or "not valid JSON"
        _warn(f"{path}: {why}; {_CACHE_FIX}")
        return {}
    try:
        return _checked_cache(data, path)
    except DataError as exc:
        _warn(str(exc))
        return {}


_CACHE_FIX = "measuring again and rewriting the cache"


def _warn(message: str) -> None:
    print(f"nnxp: warning: {message}", file=sys.stderr, flush=True)


def _checked_cache(data: Any, path: Path) -> dict[str, Any]:
    """``{"format": 1, "machines": {machine: {step: {"choice": name, "us": {name: us}, "date": text}}}}``."""
    s = Schema(path, _CACHE_FIX)
    s.object(data, "")
    if s.key(data, "format", "") != _CACHE_FORMAT:
        raise s.error("format", f"is {shown(data['format'])}, this nnxp writes {_CACHE_FORMAT}")
    for machine, steps in s.object(s.key(data, "machines", ""), "machines").items():
        where = s.at("machines", machine)
        for step, entry in s.object(steps, where).items():
            field = s.at(where, step)
            s.object(entry, field)
            s.text(s.key(entry, "choice", field), s.at(field, "choice"))
            us = s.object(s.key(entry, "us", field, {}), s.at(field, "us"))
            for name, value in us.items():
                s.number(value, s.at(s.at(field, "us"), name), least=0.0)
            s.text(s.key(entry, "date", field, ""), s.at(field, "date"))
    return data


def _write_cache(path: Path, data: dict[str, Any], machine: str, step: str, entry: dict[str, Any]) -> None:
    """``data`` (the checked cache, or ``{}``) with ``entry`` added, written atomically."""
    from ..._files import atomic_write_bytes

    data = data or {"format": _CACHE_FORMAT, "machines": {}}
    data["machines"].setdefault(machine, {})[step] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    except OSError:
        pass  # an unwritable cache only means calibrating again next time


def resolve(setting: str | None, shapes: Sequence[tuple[int, int]], batch: int, dtype: Any) -> Provider:
    """The provider for a step with dense layers ``shapes`` ((in, out) each) and this batch."""
    setting = check_setting(setting) if setting is not None else _setting
    if setting != "auto":
        return provider(setting)
    base = openblas()
    if not shapes or step_flops(shapes, batch) < MIN_FLOPS or np.dtype(dtype) not in (np.float32, np.float64):
        return base
    candidates = [base]
    for name, load in PROVIDERS.items():
        if name != "openblas":
            try:
                candidates.append(load())
            except BackendError:
                pass  # not installed: not a candidate
    if len(candidates) == 1:
        return base
    machine, step = _machine_key(candidates), _step_key(shapes, batch, dtype)
    path = cache_path()
    data = _read_cache(path)
    cached = data.get("machines", {}).get(machine, {}).get(step)
    if isinstance(cached, dict) and cached.get("choice") in PROVIDERS:
        try:
            return provider(cached["choice"])
        except BackendError:
            pass
    seconds = calibrate(candidates, shapes, batch, dtype)
    best = min(seconds, key=seconds.get)
    choice = best if seconds[best] < MARGIN * seconds["openblas"] else "openblas"
    _write_cache(path, data, machine, step, {
        "choice": choice, "us": {k: round(v * 1e6, 1) for k, v in seconds.items()},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return provider(choice)
