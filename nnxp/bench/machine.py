"""What a benchmark ran on: CPU, caches, BLAS and its threads, library versions, the nnxp code."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["Threads", "code_fingerprint", "describe_machine", "machine_info"]


def _cpu_model() -> str:
    """The CPU's name, with family/model and the vector extensions that matter for GEMM."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.machine())
    flags = set(fields.get("flags", "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile") if f in flags]
    extra = [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    caches = _caches()
    return f"{name} ({', '.join(extra + [' '.join(simd)] + ([caches] if caches else []))})"


def _caches() -> str:
    """"L2 2048K, L3 266240K" from sysfs (empty where unknown)."""
    out = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if kind in ("Unified", "Data") and level in ("2", "3"):
                out.append(f"L{level} {(index / 'size').read_text().strip()}")
    except OSError:
        return ""
    return ", ".join(out)


def _blas_info() -> list[dict[str, Any]]:
    try:
        import threadpoolctl
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture", "filepath")
    return [{k: v for k, v in info.items() if k in keep} for info in threadpoolctl.threadpool_info()]


def _numpy_blas_threads() -> int | None:
    """The thread count of the BLAS NumPy uses (None without threadpoolctl)."""
    blas = [b for b in _blas_info() if b.get("user_api") == "blas"]
    mine = [b for b in blas if "numpy" in str(b.get("filepath", ""))] or blas
    return int(mine[0]["num_threads"]) if mine else None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    from .. import __version__

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "blas": _blas_info(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
                       if k in os.environ},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "nnxp": __version__},
        "code": code_fingerprint(),
    }
    try:
        import torch

        info["versions"]["torch"] = torch.__version__
        info["torch"] = {"num_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
                         "mkldnn": torch.backends.mkldnn.is_available()}
        if device != "cpu" and torch.cuda.is_available():
            info["torch"]["cuda"] = torch.version.cuda
            info["torch"]["allow_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except ImportError:
        info["versions"]["torch"] = None
    try:
        import cupy

        info["versions"]["cupy"] = cupy.__version__
        if device != "cpu":
            dev = cupy.cuda.Device()
            props = cupy.cuda.runtime.getDeviceProperties(dev.id)
            name = props["name"]
            info["gpu"] = {"name": name.decode() if isinstance(name, bytes) else str(name),
                           "runtime": cupy.cuda.runtime.runtimeGetVersion(),
                           "driver": cupy.cuda.runtime.driverGetVersion(),
                           "CUPY_TF32": os.environ.get("CUPY_TF32", "(unset)")}
    except ImportError:
        info["versions"]["cupy"] = None
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install raises anything
        info["versions"]["cupy"] = f"(unusable: {exc})"
    return info


_NUMERIC_FILES = ("network.py", "layers.py", "kernels/reference.py", "kernels/numpy.py",
                  "kernels/blas/__init__.py", "kernels/blas/providers.py", "kernels/blas/choice.py",
                  "kernels/cupy.py", "kernels/buffers.py", "optim.py", "losses.py",
                  "activations.py", "train.py", "backend.py")


def code_fingerprint() -> dict[str, Any]:
    """Which nnxp code was measured: git commit, whether the numeric files differ from it, and a
    hash of those files' contents (they change while they are being optimised)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent.parent  # nnxp/
    digest = hashlib.sha256()
    for name in _NUMERIC_FILES:
        path = root / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    out: dict[str, Any] = {"numeric_files_sha256": digest.hexdigest()[:16]}
    try:
        git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True,
                                        text=True, timeout=10, check=False)
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            changed = git("status", "--porcelain", "--", *_NUMERIC_FILES)
            out["numeric_files_changed"] = sorted(line[3:] for line in changed.stdout.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def describe_machine(m: dict[str, Any]) -> list[str]:
    blas = [b for b in m["blas"] if b.get("user_api") == "blas"]
    blas_text = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
        f"{b.get('architecture', '?')}, {b.get('threading_layer', '?')})" for b in blas) or "unknown"
    v = m["versions"]
    lines = [
        f"date: {m['date']}",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['platform']}",
        f"BLAS (NumPy): {blas_text}; OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}",
        (f"versions: python {v['python']}, numpy {v['numpy']}, nnxp {v['nnxp']}, "
         f"torch {v.get('torch') or '-'}, cupy {v.get('cupy') or '-'}"),
    ]
    if "torch" in m:
        t = m["torch"]
        lines.append(f"torch: {t['num_threads']} threads, MKL {'yes' if t['mkl'] else 'no'}"
                     + (f", CUDA {t['cuda']}, TF32 matmul {t['allow_tf32_matmul']}" if "cuda" in t else ""))
    if "gpu" in m:
        g = m["gpu"]
        lines.append(f"GPU: {g['name']}, CUDA runtime {g['runtime']}, driver {g['driver']}, "
                     f"CUPY_TF32={g['CUPY_TF32']}")
    if m.get("thread_env"):
        lines.append("thread env: " + ", ".join(f"{k}={v}" for k, v in m["thread_env"].items()))
    code = m.get("code")
    if code:
        changed = code.get("numeric_files_changed")
        lines.append(f"nnxp code: commit {code.get('git_commit', '?')}"
                     + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
                     + f" (numeric files sha256 {code['numeric_files_sha256']})")
    return lines


class Threads:
    """Same thread count for NumPy's BLAS and PyTorch (``--threads``, default: the BLAS's)."""

    def __init__(self, threads: int | None):
        self.requested = threads
        self._limiter = None
        self.count: int | None = None

    def __enter__(self) -> Threads:
        if self.requested is not None:
            try:
                import threadpoolctl

                self._limiter = threadpoolctl.threadpool_limits(limits=self.requested, user_api="blas")
            except ImportError:
                raise ConfigError("--threads needs threadpoolctl: pip install threadpoolctl") from None
        self.count = self.requested or _numpy_blas_threads()
        try:
            import torch

            self._torch_before = torch.get_num_threads()
            if self.count:
                torch.set_num_threads(self.count)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
        try:
            import torch

            torch.set_num_threads(self._torch_before)
        except (ImportError, AttributeError):
            pass
