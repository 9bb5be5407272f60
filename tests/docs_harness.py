"""Run the examples of the documentation: the code blocks of README.md and docs/**/*.md.

The convention (written for authors in docs/contributing.md):

- every ```bash, ```sh and ```python fenced block runs; ```text, ```console and
  the rest are not run;
- the blocks of one page run in order, in one fresh temporary directory as the
  working directory; shell blocks with ``bash -e``; the page's Python blocks in one
  shared namespace (one Python process per page);
- ``nnxp`` and ``python`` are the test's own (its interpreter's bin directory first
  on PATH), ``NNXP_REPO`` is the repository root, ``PYTHONPATH`` starts with it;
- ``<!-- docs-test: skip REASON -->`` on the line before a fence (blank lines
  between allowed) skips that block, and pytest shows REASON;
- ``<!-- docs-test: expect -->`` before a ```text block makes that block the
  expected standard output of the nearest run block above it on the page (see
  :func:`output_mismatch` for how it is compared);
- a shell block that calls ``mpiexec`` runs only where ``mpiexec`` is on PATH.

Nothing here is imported by nnxp; it is test support.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_LANGUAGES = {"bash": "shell", "sh": "shell", "python": "python"}
# Names that look runnable but are not in the convention: an error, so that no example silently stops running.
ALIASES = {"shell": "bash", "zsh": "bash", "py": "python", "python3": "python", "pycon": "python"}
BLOCK_TIMEOUT_S = 180

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")


class DocsSyntaxError(ValueError):
    """A page's docs-test markers are malformed (an unknown directive, an orphan expect block)."""


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason, when a skip marker precedes the fence
    expect: str | None = None  # the expected standard output, when an expect block follows
    expect_line: int | None = None

    @property
    def kind(self) -> str | None:
        """"shell", "python", or None for a block that is not run."""
        return RUN_LANGUAGES.get(self.lang)

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def pages(root: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    found = [root / "README.md"] if (root / "README.md").exists() else []
    found += sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return found


def parse(text: str, page: str = "<page>") -> list[Block]:
    """The fenced blocks of a page, with their skip reasons and expected outputs."""
    lines = text.splitlines()
    blocks: list[Block] = []
    directive: tuple[int, str] | None = None  # (line, body) of the last marker, until a fence takes it
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _DIRECTIVE.match(line)
        if marker:
            directive = (i + 1, marker.group("body"))
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip():
                if directive is not None:
                    raise DocsSyntaxError(f"{page}:{directive[0]}: a docs-test marker must come right "
                                          "before a code fence")
            i += 1
            continue
        indent, mark = fence.group("indent"), fence.group("fence")
        body, j = [], i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise DocsSyntaxError(f"{page}:{i + 1}: code fence never closed")
        block = Block(page=page, line=i + 1, lang=fence.group("lang").lower(), code="\n".join(body) + "\n")
        if block.lang in ALIASES:
            raise DocsSyntaxError(f"{page}:{i + 1}: ```{block.lang} is not run: write ```{ALIASES[block.lang]} "
                                  "(or ```text / ```console for what should not run)")
        _apply(block, directive, blocks, page)
        directive = None
        blocks.append(block)
        i = j + 1
    if directive is not None:
        raise DocsSyntaxError(f"{page}:{directive[0]}: a docs-test marker must come right before a code fence")
    return [b for b in blocks if b.kind is not None]


def _apply(block: Block, directive: tuple[int, str] | None, earlier: list[Block], page: str) -> None:
    if directive is None:
        return
    where, body = directive
    word, _, rest = body.partition(" ")
    if word == "skip":
        if not rest.strip():
            raise DocsSyntaxError(f"{page}:{where}: 'docs-test: skip' needs a reason")
        if block.kind is None:
            raise DocsSyntaxError(f"{page}:{where}: 'docs-test: skip' before a ```{block.lang} block, "
                                  "which does not run anyway")
        block.skip = rest.strip()
    elif word == "expect" and not rest.strip():
        if block.lang != "text":
            raise DocsSyntaxError(f"{page}:{where}: 'docs-test: expect' must precede a ```text block")
        runs = [b for b in earlier if b.kind is not None]
        if not runs:
            raise DocsSyntaxError(f"{page}:{where}: 'docs-test: expect' with no run block above it")
        if runs[-1].expect is not None:
            raise DocsSyntaxError(f"{page}:{where}: a second expected output for the block at line "
                                  f"{runs[-1].line}")
        runs[-1].expect, runs[-1].expect_line = block.code, block.line
    else:
        raise DocsSyntaxError(f"{page}:{where}: unknown marker 'docs-test: {body}' "
                              "(known: 'skip REASON', 'expect')")


# -- comparing an expected output -------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _line_pattern(expected: str) -> tuple[re.Pattern, list[str]]:
    """A regex for one expected line: numbers captured, '...' any text, whitespace runs flexible."""
    parts, numbers, pos = [], [], 0
    for m in re.finditer(rf"\.\.\.|{_NUMBER.pattern}|\s+", expected):
        parts.append(re.escape(expected[pos:m.start()]))
        token = m.group()
        if token == "...":
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s+")
        else:
            parts.append(rf"({_NUMBER.pattern})")
            numbers.append(token)
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts)), numbers


def _numbers_agree(expected: str, actual: str) -> bool:
    """Equal to the precision written in the docs: within half a unit of the expected's last digit."""
    mantissa = expected.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(expected.lower().split("e")[1]) if "e" in expected.lower() else 0
    tolerance = 0.5 * 10.0 ** (exponent - decimals)
    return abs(float(actual) - float(expected)) <= tolerance * (1 + 1e-9)


def _line_matches(expected: str, actual: str) -> bool:
    pattern, numbers = _line_pattern(expected.strip())
    m = pattern.fullmatch(actual.strip())
    return bool(m) and all(_numbers_agree(e, a) for e, a in zip(numbers, m.groups()))


def output_mismatch(expected: str, actual: str) -> str | None:
    """None when ``actual`` shows what ``expected`` says, else a message naming the first difference.

    Lines are compared one by one, ignoring leading/trailing blank lines and
    differences in runs of whitespace.  A number matches when it agrees to the
    precision written (``0.8581`` accepts 0.85814893, not 0.8583).  ``...``
    inside a line stands for any text; a line that is only ``...`` for any
    number of lines (none included).
    """
    exp = expected.strip("\n").splitlines()
    act = actual.strip("\n").splitlines()
    memo: dict[tuple[int, int], bool] = {}
    furthest = [0, 0]

    def match(i: int, j: int) -> bool:
        if (i, j) in memo:
            return memo[(i, j)]
        if i > furthest[0]:
            furthest[:] = [i, j]
        if i == len(exp):
            ok = j == len(act)
        elif exp[i].strip() == "...":
            ok = any(match(i + 1, k) for k in range(j, len(act) + 1))
        else:
            ok = j < len(act) and _line_matches(exp[i], act[j]) and match(i + 1, j + 1)
        memo[(i, j)] = ok
        return ok

    if match(0, 0):
        return None
    i, j = furthest
    want = exp[i] if i < len(exp) else "(end of output)"
    got = act[j] if j < len(act) else "(end of output)"
    return f"expected line {i + 1}: {want!r}\n     got: {got!r}\nwhole output:\n{actual}"


# -- running a page ---------------------------------------------------------------------------

def environment(home: Path) -> dict[str, str]:
    """The environment every block runs in."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["NNXP_REPO"] = str(REPO)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NNXP_CACHE_DIR"] = str(home / ".nnxp-cache")  # the BLAS choice and data caches stay in the scratch dir
    env["MPLBACKEND"] = "Agg"
    env.pop("PYTEST_CURRENT_TEST", None)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Open MPI refuses root without these; the docs tell users so before the first mpiexec line.
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


@dataclass
class Result:
    ok: bool
    stdout: str
    stderr: str
    error: str = ""  # a traceback, "timed out", or the exit status


_SERVER = r"""
import contextlib, io, json, os, sys, traceback
proto = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)                       # anything written to fd 1 by C code goes to stderr, not the protocol
sys.stdout = os.fdopen(1, "w", closefd=False)
namespace = {"__name__": "__main__"}
for request in sys.stdin:
    block = json.loads(request)
    out, err = io.StringIO(), io.StringIO()
    error = ""
    try:
        code = compile("\n" * block["line"] + block["code"], block["page"], "exec")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(code, namespace)
    except BaseException:
        error = traceback.format_exc()
    proto.write(json.dumps({"stdout": out.getvalue(), "stderr": err.getvalue(), "error": error}) + "\n")
    proto.flush()
"""


class PythonSession:
    """One Python process that runs a page's Python blocks in one namespace."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", _SERVER], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True)
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def run(self, block: Block, timeout: float = BLOCK_TIMEOUT_S) -> Result:
        self.proc.stdin.write(json.dumps({"page": str(REPO / block.page), "line": block.line,
                                          "code": block.code}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            return Result(False, "", self._stray(), f"timed out after {timeout} s")
        if reply is None:
            return Result(False, "", self._stray(), f"the Python process died (exit {self.proc.wait()})")
        data = json.loads(reply)
        return Result(not data["error"], data["stdout"], data["stderr"] + self._stray(), data["error"])

    def _stray(self) -> str:
        """What the process wrote to its own stderr (C-level output, warnings) since the last call."""
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0)
        self._stderr.truncate()
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            _kill_group(self.proc)
        self._stderr.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_shell(block: Block, cwd: Path, env: dict[str, str], timeout: float = BLOCK_TIMEOUT_S) -> Result:
    """``bash -e`` on the block, in its own process group (killed whole on a timeout)."""
    proc = subprocess.Popen(["bash", "-e", "-c", block.code], cwd=cwd, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return Result(False, out, err, f"timed out after {timeout} s")
    return Result(proc.returncode == 0, out, err, "" if proc.returncode == 0 else f"exit status {proc.returncode}")


@dataclass
class Page:
    """The state of one page being run: its scratch directory, Python process, progress."""

    path: str
    blocks: list[Block]
    cwd: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nnxp-docs-")))
    done: int = 0  # how many blocks (in order) have been dealt with
    failed: str | None = None  # the first failed block's name
    python: PythonSession | None = None

    def __post_init__(self):
        self.env = environment(self.cwd)

    def skip_reason(self, block: Block) -> str | None:
        if block.skip:
            return block.skip
        if block.kind == "shell" and re.search(r"(?:^|[\s;&|(])mpiexec(?:\s|$)", block.code, flags=re.M) and \
                shutil.which("mpiexec", path=self.env["PATH"]) is None:
            return "needs mpiexec (pip install 'nnxp[mpi]')"
        return None

    def run(self, block: Block) -> Result:
        if block.kind == "shell":
            return run_shell(block, self.cwd, self.env)
        if self.python is None:
            self.python = PythonSession(self.cwd, self.env)
        return self.python.run(block)

    def close(self) -> None:
        if self.python is not None:
            self.python.close()
        shutil.rmtree(self.cwd, ignore_errors=True)


def failure_message(block: Block, result: Result) -> str | None:
    """None when the block ran as the docs say, else what went wrong, naming the page and line."""
    if not result.ok:
        return (f"{block.name} ({block.lang}) failed: {result.error}\n--- code\n{block.code}"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
    if block.expect is not None:
        diff = output_mismatch(block.expect, result.stdout)
        if diff:
            return (f"{block.name}: the output differs from the expected block at line "
                    f"{block.expect_line}:\n{diff}")
    return None


def example_block(needle: str, *homes: str) -> str:
    """The ```python block of the docs that contains ``needle``, for a test that checks more about it.

    ``homes`` are the pages the example belongs on (``"docs/sklearn.md"``); the
    README is searched too.  When none of them is in this checkout the test is
    skipped, naming them; when they are and none shows the example, it fails.
    """
    import pytest

    present = [REPO / h for h in homes if (REPO / h).exists()]
    if homes and not present:
        pytest.skip(f"{', '.join(homes)} not in this checkout")
    for path in [REPO / "README.md", *present]:
        for block in parse(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix()):
            if block.lang == "python" and needle in block.code:
                return block.code
    raise AssertionError(f"no python block with {needle!r} in README.md or {', '.join(homes)}")
