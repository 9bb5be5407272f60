"""A property test over every ``nnxp`` command (issue 19): the guard against the next command added.

The commands, their options and which options are input or output paths are read from the parser
itself (:func:`nnxp.cli.main.build_parser`, :mod:`nnxp.io.paths` declarations), so a new command
or path option is exercised, and an undeclared path option fails :func:`test_every_path_option_is_declared`.

Each case starts from a working invocation of one command (:data:`BASE`, in a fresh directory holding
valid and crafted files, a FIFO and links) and changes some of its options: a path option gets a FIFO,
``/dev/zero``, a directory, a missing or crafted file, an input's path (as written, through a symbolic
link, a hard link or ``sub/..``); another option gets an odd or huge number. The invariants:

- the exit status is 0, 1, 2 or 130, and nothing escapes ``main`` (no traceback);
- a failure prints exactly one ``nnxp: error:`` line, the last line of stderr;
- every input's bytes are unchanged afterwards (a resumed checkpoint may be rewritten, as a checkpoint),
  and so is every other file of the directory the invocation does not name as an output (no file there
  has a name some command writes by default, e.g. ``nnxp plot X`` writes ``X.png``);
- nothing hangs (SIGALRM after :data:`TIMEOUT_S` seconds fails the case).

CI runs the whole fixed table (every path option of every command with every hostile value) and
a derandomised hypothesis sample; ``NNXP_FUZZ_SCALE=N`` multiplies the sample.
``NNXP_FUZZ_COUNTS=FILE`` writes the case counts there (see tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnxp.cli.main import build_parser, main
from nnxp.io.paths import PathType, declared_paths

from test_fuzz import COUNTS, SCALE

TIMEOUT_S = 30

# A working invocation of every command, (positional arguments, options), run in a directory
# holding the input files (_build_library).
BASE: dict[tuple[str, ...], tuple[list[str], list[str]]] = {
    ("train",): ([], ["--epochs", "1", "--hidden", "4", "--batch-size", "128", "--quiet", "--device", "cpu"]),
    ("evaluate",): (["model.safetensors"], ["--device", "cpu"]),
    ("predict",): (["model.safetensors", "digit.pgm"], ["--device", "cpu"]),
    ("images",): ([], ["--count", "2", "--device", "cpu"]),
    ("plot",): (["metrics.jsonl"], []),
    ("export",): (["model.onnx", "out.onnx"], []),  # a model file named .onnx
    ("bench",): ([], ["--from-json", "bench.json"]),  # never a real benchmark: minutes
    ("text", "vocab"): (["corpus.txt"], ["--merges", "5"]),
    ("text", "train"): (["corpus.txt"], ["--merges", "5", "--epochs", "1", "--dim", "2", "--hidden", "4",
                                         "--context", "2", "--device", "cpu"]),
    ("text", "neighbours"): (["text.safetensors", "the"], ["--count", "2"]),
}
# Options a case keeps (dropping them would start minutes of work, not test anything more).
KEEP = {("bench",): {"--from-json"}}
# Options whose large values mean long work, not a bug: they get small values only.
WORK = {"--epochs", "--max-epochs", "--race-repeats", "--repeats", "--count", "--min-sample-ms", "--warmup-ms",
        "--settle-ms", "--max-wait", "--distributed-timeout", "--merges", "--top", "--patience"}
# Options never set: they need another machine or program (MPI), or only pick a CUDA code path.
SKIP = {"--distributed", "--distributed-timeout", "--download", "--help", "--version", "--tf32", "--cuda-graphs",
        "--no-cuda-graphs", "--race", "--processes", "--quick"}

HOSTILE_PATHS = ["fifo", "/dev/zero", "dir", "missing", "empty", "garbage", "truncated", "dangling", "nodir/x"]
ALIASES = ["same", "symlink", "hardlink", "dotdot"]  # an input's file by another name
NUMBERS = ["0", "-1", "1", "2", "0.5", "-0.5", "1e400", "-1e400", "nan", "inf", "99999999999999999999", "1e-320",
           "", "abc", "1,2", "3,0", "auto", "none", "0x10", " 7"]


def commands(parser=None, prefix=()):
    """{(command, subcommand...): its parser} for every command, from the parser itself."""
    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias (neighbors)
                    continue
                seen.add(id(sub))
                inner = commands(sub, prefix + (name,))
                found.update(inner or {prefix + (name,): sub})
    return found


COMMANDS = commands()


def options(command):
    """[(flag or None for a positional, action)] of a command, without help and skipped ones."""
    out = []
    for action in COMMANDS[command]._actions:
        if isinstance(action, argparse._HelpAction) or set(action.option_strings) & SKIP:
            continue
        out.append((max(action.option_strings, key=len) if action.option_strings else None, action))
    return out


def path_options(command):
    return [(flag, action) for flag, action in options(command) if isinstance(action.type, PathType)]


# -- the directory each case runs in -----------------------------------------------------------------

def _build_library(root: Path) -> Path:
    """Valid and crafted input files of every kind, made once per module."""
    import numpy as np

    from nnxp.checkpoint import load_checkpoint, save_checkpoint
    from nnxp.data.idx import write_idx

    old = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["train", "--device", "cpu", "--epochs", "1", "--hidden", "4", "--quiet",
                         "--save", "model.safetensors", "--checkpoint", "ck.safetensors",
                         "--metrics", "metrics.jsonl"]) == 0
            Path("corpus.txt").write_text("the cat sat on the mat and the dog sat on the log\n" * 30)
            assert main(["text", "train", "corpus.txt", "--merges", "5", "--epochs", "1", "--dim", "2",
                         "--hidden", "4", "--context", "2", "-o", "text.safetensors"]) == 0
            assert main(["text", "vocab", "corpus.txt", "--merges", "5", "-o", "tokenizer.json"]) == 0
    finally:
        os.chdir(old)
    ck = load_checkpoint(root / "ck.safetensors")  # remembered paths relative to the checkpoint's directory
    save_checkpoint(root / "ck.safetensors", ck.net, ck.optimizer, ck.history,
                    {**ck.settings, "save": "resumed.safetensors", "metrics": "resumed.jsonl"})
    rng = np.random.default_rng(0)
    (root / "digit.pgm").write_bytes(b"P5 28 28 255\n" + rng.integers(0, 256, 28 * 28, dtype=np.uint8).tobytes())
    (root / "D").mkdir()
    for stem, shape in (("train-images-idx3-ubyte", (20, 28, 28)), ("train-labels-idx1-ubyte", (20,)),
                        ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", (10,))):
        write_idx(root / "D" / stem, rng.integers(0, 10 if len(shape) == 1 else 256, shape, dtype=np.uint8))
    shutil.copy(Path(__file__).parents[1] / "benchmarks" / "cpu-2026-11-23.json", root / "bench.json")
    (root / "README.md").write_text("# x\n<!-- nnxp-bench:step -->\nold\n<!-- /nnxp-bench:step -->\n")
    model = (root / "model.safetensors").read_bytes()
    for name in ("model.onnx", "grid.png"):  # model files under names an output may have
        (root / name).write_bytes(model)
    (root / "truncated").write_bytes(model[: len(model) // 2])
    (root / "garbage").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (root / "empty").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return _build_library(tmp_path_factory.mktemp("library"))


INPUT_FILES = ["model.safetensors", "model.onnx", "grid.png", "ck.safetensors", "metrics.jsonl", "corpus.txt",
               "text.safetensors", "tokenizer.json", "digit.pgm", "bench.json", "README.md", "truncated", "garbage", "empty",
               "D/train-images-idx3-ubyte", "D/train-labels-idx1-ubyte", "D/t10k-images-idx3-ubyte",
               "D/t10k-labels-idx1-ubyte"]


def _case_dir(library: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="nnxp-case-")) / "case"
    shutil.copytree(library, root)
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    (root / "sub").mkdir()
    (root / "dangling").symlink_to(root / "nowhere")
    return root


def _alias(root: Path, how: str, target: str) -> str:
    """``target`` (a file in ``root``) by another name."""
    if how == "same":
        return target
    if how == "dotdot":
        return f"sub/../{target}"
    name = f"{how}-{target.replace('/', '_')}"
    if not (root / name).exists():
        (root / name).symlink_to(root / target) if how == "symlink" else os.link(root / target, root / name)
    return name


# -- running one case and checking the invariants -------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no result after {TIMEOUT_S} s")


def run_case(library, command, changes, tally: str):
    """Run ``command`` with BASE's arguments changed by ``changes`` [(flag, value)]; check the invariants.

    A value is a file name in the case directory, a HOSTILE_PATHS name, ``alias:HOW:NAME`` or any text;
    ``None`` drops the option; flag ``#K`` sets the K-th positional argument."""
    root, old_cwd = _case_dir(library), os.getcwd()
    positional, argv = list(BASE[command][0]), list(BASE[command][1])
    for flag, value in changes:
        if value is not None and value.startswith("alias:"):
            _, how, target = value.split(":", 2)
            value = _alias(root, how, target)
        if flag.startswith("#"):
            if value is not None:
                positional[int(flag[1:])] = value
            continue
        if flag in argv:
            i = argv.index(flag)
            action = dict(options(command))[flag]
            width = 0 if action.nargs == 0 else 1
            del argv[i:i + 1 + width]
        if value is None:
            continue
        action = dict(options(command))[flag]
        argv += [flag] if action.nargs == 0 else [flag, value]
    full = [*command, *argv, *positional]
    os.chdir(root)
    try:
        protected = _protected(root, full)
    finally:
        os.chdir(old_cwd)
    before = {name: (root / name).read_bytes() for name in protected}
    old_env = os.environ.get("NNXP_CACHE_DIR")
    out, err = io.StringIO(), io.StringIO()
    os.chdir(root)
    os.environ["NNXP_CACHE_DIR"] = str(root / "cache")
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    escaped = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(full)
            except BaseException as exc:  # noqa: BLE001 (what escapes main is a traceback, or Hang)
                escaped, code = exc, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("NNXP_CACHE_DIR", None)
        else:
            os.environ["NNXP_CACHE_DIR"] = old_env
    try:
        where = f"nnxp {' '.join(full)!r}: stderr {err.getvalue()[-600:]!r}"
        assert not isinstance(escaped, Hang), f"{where}: hangs: {escaped}"
        assert escaped is None, f"{where}: {type(escaped).__name__} escaped main: {escaped}"
        assert code in (0, 1, 2, 130), f"{where}: exit status {code}"
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert not any(line.startswith("Traceback") for line in lines), where
        if code == 2:
            errors = [line for line in lines if line.startswith("nnxp: error:")]
            assert len(errors) == 1 and lines[-1] == errors[0], f"{where}: not one last `nnxp: error:` line"
        for name, data in before.items():
            if (root / name).read_bytes() != data and not _rewritten_checkpoint(root, name, full):
                raise AssertionError(f"{where}: input {name} was changed")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    counts = COUNTS.setdefault(tally, {"ok": 0, "error": 0, "other": 0})
    counts["ok" if code == 0 else "error" if code == 2 else "other"] += 1
    return code


def _identity(path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _protected(root: Path, argv: list[str]) -> list[str]:
    """The INPUT_FILES that must be unchanged: all but those this invocation names as outputs (and
    not as inputs) or as files to update. Inputs: the files its declared input paths name, and the
    files inside an input directory (CORPUS, --data-dir)."""
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            return list(INPUT_FILES)
    named: dict[str, set] = {"input": set(), "output": set(), "update": set()}
    for action, decl in declared_paths(parser, args):
        value = getattr(args, action.dest, None)
        for path in value if isinstance(value, list) else [value]:
            if path is None:
                continue
            paths = [path] + ([Path(d) / f for d, _, fs in os.walk(path) for f in fs] if decl.directory else [])
            named[decl.role] |= {_identity(p) for p in paths} - {None}
    writable = (named["output"] - named["input"]) | named["update"]
    return [name for name in INPUT_FILES if _identity(root / name) not in writable]


def _rewritten_checkpoint(root: Path, name: str, argv: list[str]) -> bool:
    """A checkpoint given to --resume is rewritten by the run: allowed, if it is still a checkpoint."""
    from nnxp.checkpoint import load_checkpoint

    resumed = argv[argv.index("--resume") + 1] if "--resume" in argv[:-1] else None
    if resumed is None or os.path.realpath(root / resumed) != os.path.realpath(root / name):
        return False
    try:
        load_checkpoint(root / name)
    except Exception:  # noqa: BLE001
        return False
    return True


# -- the tests ----------------------------------------------------------------------------------------

def test_every_command_has_a_base_invocation():
    assert set(COMMANDS) == set(BASE), "add the new command to BASE (a quick working invocation)"


def test_every_path_option_is_declared():
    """Every option that takes a file or directory declares it (nnxp.io.paths Input/Output/Update),
    so that the dispatcher checks it before the command runs."""
    for command in COMMANDS:
        for flag, action in options(command):
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            looks_like_path = action.type is Path or any(
                word in metavar.upper() for word in ("PATH", "FILE", "DIR", "MODEL", "IMAGE", "CORPUS", "METRICS",
                                                    ".ONNX", "JSON"))
            if looks_like_path:
                assert isinstance(action.type, PathType), f"nnxp {' '.join(command)} {flag or metavar}: declare it"


def _keyed(command, opts):
    """(flag, or #K for the command's K-th positional argument, action) of ``opts``."""
    positionals = [action for flag, action in options(command) if flag is None]
    return [(flag if flag is not None else f"#{positionals.index(action)}", action) for flag, action in opts]


# A library file of each kind, for input options the base invocation leaves out.
NAMES = {"model": "grid.png", "checkpoint": "ck.safetensors", "json": "bench.json", "metrics": "metrics.jsonl",
         "image": "digit.pgm", "corpus": "corpus.txt", "tokenizer": "tokenizer.json"}


def _input_targets(command):
    """[(file, changes that make it an input of ``command``)]: the files an output is pointed at."""
    positional, opts = BASE[command]
    targets = [(f, ()) for f in positional + opts if f in INPUT_FILES]
    flags = {flag for flag, _ in options(command)}
    if "--resume" in flags:
        ck = "ck.safetensors" if command == ("train",) else "text.safetensors"
        targets.append((ck, (("--resume", ck), ("--epochs", "2"))))
    if "--data-dir" in flags and "--dataset" in flags:
        targets.append(("D/t10k-labels-idx1-ubyte", (("--dataset", "mnist"), ("--data-dir", "D"))))
    for flag, action in path_options(command):  # other input options, e.g. images --model
        if flag not in (None, "--resume", "--data-dir") and flag not in opts and action.type.role == "input":
            target = NAMES.get(action.type.kind)
            if target is not None:
                targets.append((target, ((flag, target),)))
    return targets


def _fixed_table():
    """Every path option of every command with every hostile value; every output pointed at each
    of the command's inputs, by every kind of alias."""
    cases = []
    for command in sorted(COMMANDS):
        for key, action in _keyed(command, path_options(command)):
            extra = (("--val-split", "0.5"),) if key == "--save-best" else ()
            for value in HOSTILE_PATHS:
                cases.append((command, extra + ((key, value),)))
            if action.type.role != "input":
                for target, needs in _input_targets(command):
                    for how in ALIASES:
                        cases.append((command, extra + needs + ((key, f"alias:{how}:{target}"),)))
    return cases


FIXED = _fixed_table()


def test_fixed_table(library):
    """The whole table in one test (one setup): the case count stays visible and CI time small."""
    failures = []
    for command, changes in FIXED:
        try:
            run_case(library, command, changes, "fixed")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, f"{len(failures)} of {len(FIXED)} cases broke an invariant:\n" + "\n".join(failures[:20])


def _changes(command):
    """A hypothesis strategy: 1-3 changes to ``command``'s options."""
    choices = []
    for flag, action in _keyed(command, options(command)):
        if isinstance(action.type, PathType):
            key = flag
            values = HOSTILE_PATHS + [f"alias:{h}:{t}" for h in ALIASES for t in INPUT_FILES[:6]] + INPUT_FILES
            choices.append(st.tuples(st.just(key), st.sampled_from(values + ["new-file", None])))
        elif flag.startswith("#"):
            continue
        elif action.nargs == 0:
            choices.append(st.tuples(st.just(flag), st.sampled_from(["on", None])))
        elif action.choices:
            choices.append(st.tuples(st.just(flag), st.sampled_from([*map(str, action.choices), "bogus"])))
        else:
            values = [v for v in NUMBERS if flag not in WORK or v not in ("99999999999999999999", "1e400", "inf")]
            choices.append(st.tuples(st.just(flag), st.sampled_from(values)))
    return st.lists(st.one_of(choices), min_size=1, max_size=3)


@settings(max_examples=40 * SCALE, deadline=None, derandomize=SCALE == 1, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_invocations(library, data):
    command = data.draw(st.sampled_from(sorted(COMMANDS)), label="command")
    changes = data.draw(_changes(command), label="changes")
    run_case(library, command, changes, "random")
