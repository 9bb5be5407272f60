"""Atomic writes: only regular files or new paths are written; stale temp files cleaned safely."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from nnxp._files import _host_tag, atomic_write_bytes, check_regular_target, remove_stale_temps


def test_fifo_target_is_refused_and_kept(tmp_path):
    fifo = tmp_path / "out.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="it is a FIFO, not a regular file"):
        atomic_write_bytes(fifo, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]  # no temp file left


def test_device_node_target_is_refused_and_kept(tmp_path):
    node = tmp_path / "null-like"  # our own node in a scratch directory, never a system one
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc.strerror})")
    with pytest.raises(OSError, match="it is a device"):
        atomic_write_bytes(node, b"data")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_directory_and_symlink_targets(tmp_path):
    with pytest.raises(OSError, match="directory"):
        check_regular_target(tmp_path)
    real = tmp_path / "real"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    check_regular_target(link)  # a link to a regular file is a regular target
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to-fifo").symlink_to(fifo)
    with pytest.raises(OSError, match="FIFO"):
        atomic_write_bytes(tmp_path / "to-fifo", b"x")
    check_regular_target(tmp_path / "new")  # a new path is fine


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temps_of_dead_processes_are_cleaned_others_kept(tmp_path):
    target = tmp_path / "model.safetensors"
    host = _host_tag()
    dead = tmp_path / f".model.safetensors.{host}-{_dead_pid()}.0a1b2c3d.tmp"
    live = tmp_path / f".model.safetensors.{host}-{os.getppid()}.0a1b2c3d.tmp"  # a running process
    other_host = tmp_path / f".model.safetensors.{'0' * 8 if host != '0' * 8 else '1' * 8}-{_dead_pid()}.ab.tmp"
    old_style = tmp_path / ".model.safetensors.0a1b2c3d.tmp"  # no PID: cannot be judged
    other_target = tmp_path / f".other.bin.{host}-{_dead_pid()}.0a1b2c3d.tmp"
    for p in (dead, live, other_host, old_style, other_target):
        p.write_bytes(b"partial")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists()
    for kept in (live, other_host, old_style, other_target):
        assert kept.exists(), kept.name
    assert remove_stale_temps(tmp_path / "other.bin") == [other_target]


def test_temp_names_carry_host_and_pid(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(tmp_path / "m.bin", b"x")
    assert seen and seen[0].startswith(f".m.bin.{_host_tag()}-{os.getpid()}.") and seen[0].endswith(".tmp")
