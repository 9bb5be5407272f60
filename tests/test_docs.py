"""Every documented command runs, and the docs site builds in strict mode.

One test per code block of README.md and docs/**/*.md (``test_block[PAGE:LINE]``),
run by the convention of ``docs_harness`` (written up in docs/contributing.md).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from docs_harness import (REPO, Block, DocsSyntaxError, Page, environment, failure_message,
                          output_mismatch, pages, parse, run_shell)


def _collect():
    blocks, broken = [], []
    for path in pages():
        name = path.relative_to(REPO).as_posix()
        try:
            blocks += parse(path.read_text(encoding="utf-8"), name)
        except DocsSyntaxError as e:
            broken.append(str(e))
    return blocks, broken


BLOCKS, BROKEN = _collect()


@pytest.fixture(scope="module")
def running():
    """{page: Page}: the pages being run, cleaned up when the module's tests end."""
    state: dict[str, Page] = {}
    yield state
    for page in state.values():
        page.close()


def _run_through(page: Page, index: int) -> None:
    """Run the page's blocks before ``index`` that have not run yet (when a block is selected alone)."""
    while page.done < index:
        block = page.blocks[page.done]
        page.done += 1
        if page.failed or page.skip_reason(block):
            continue
        if failure_message(block, page.run(block)):
            page.failed = block.name


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_block(block: Block, running):
    """The block runs in its page's scratch directory and prints what the docs show."""
    page = running.get(block.page)
    if page is None:
        page = running[block.page] = Page(block.page, [b for b in BLOCKS if b.page == block.page])
    index = page.blocks.index(block)
    _run_through(page, index)
    page.done = index + 1
    reason = page.skip_reason(block)
    if reason:
        pytest.skip(reason)
    if page.failed:
        pytest.skip(f"an earlier block of this page failed ({page.failed})")
    message = failure_message(block, page.run(block))
    if message:
        page.failed = block.name
        pytest.fail(message, pytrace=False)


def test_every_page_follows_the_marker_convention():
    assert not BROKEN, "\n".join(BROKEN)
    assert any(b.page == "README.md" for b in BLOCKS)


# -- the harness itself ------------------------------------------------------------------------

PAGE = """\
Intro.

```bash
echo one
```

<!-- docs-test: expect -->
```text
one
```

<!-- docs-test: skip needs a GPU -->

```python
raise SystemExit("never runs")
```

```console
$ not run
```

```python
x = 2 ** 0.5
print(round(x, 6))
```
<!-- docs-test: expect -->
```text
1.41421
```
"""


def test_parse_reads_runs_skips_and_expected_outputs():
    blocks = parse(PAGE, "p.md")
    assert [(b.line, b.lang) for b in blocks] == [(3, "bash"), (14, "python"), (22, "python")]
    assert blocks[0].expect == "one\n" and blocks[0].expect_line == 8
    assert blocks[1].skip == "needs a GPU"
    assert blocks[2].expect == "1.41421\n"


@pytest.mark.parametrize("text,message", [
    ("<!-- docs-test: skipp x -->\n```bash\ntrue\n```\n", "unknown marker"),
    ("<!-- docs-test: skip -->\n```bash\ntrue\n```\n", "needs a reason"),
    ("<!-- docs-test: expect -->\n```text\nx\n```\n", "no run block above"),
    ("```bash\ntrue\n```\n<!-- docs-test: expect -->\n```python\nx\n```\n", "must precede a ```text"),
    ("<!-- docs-test: skip x -->\nprose\n```bash\ntrue\n```\n", "right before a code fence"),
    ("```bash\ntrue\n", "never closed"),
    ("```shell\nnnxp train\n```\n", "```shell is not run: write ```bash"),
])
def test_malformed_markers_are_errors(text, message):
    with pytest.raises(DocsSyntaxError, match=message):
        parse(text, "p.md")


@pytest.mark.parametrize("expected,actual,ok", [
    ("[[0.8581489, 0.450166]]", "[[0.85814893, 0.45016601]]", True),
    ("[[0.8581489, 0.450166]]", "[[0.8581499, 0.450166]]", False),
    ("loss 0.21", "loss 0.2149", True),
    ("loss 0.21", "loss 0.2151", False),
    ("4585 the\n1958 a", "4585 the\n1958 a\n", True),
    ("4585 the\n1958 a", "4585 the\n1959 a", False),
    ("4585 the", "4585 them", False),
    ("a ... b", "a anything here b", True),
    ("first\n...\nlast", "first\nx\ny\nlast", True),
    ("first\n...\nlast", "first\nlast", True),
    ("first\n...\nlast", "first\nx", False),
    ("one", "one\ntwo", False),
])
def test_expected_output_comparison(expected, actual, ok):
    assert (output_mismatch(expected, actual) is None) == ok


def test_a_failing_block_names_page_and_line(tmp_path):
    block = parse("text\n\n```bash\necho hi\nfalse\necho never\n```\n", "docs/x.md")[0]
    result = run_shell(block, tmp_path, environment(tmp_path))
    message = failure_message(block, result)
    assert message.startswith("docs/x.md:3 (bash) failed: exit status 1") and "never" not in result.stdout


def test_python_blocks_share_a_namespace_and_the_scratch_directory(tmp_path):
    blocks = parse("```python\nopen('f.txt', 'w').write('hi')\ny = 41\n```\n"
                   "```bash\ncat f.txt; echo \" $NNXP_REPO\"\n```\n"
                   "<!-- docs-test: expect -->\n```text\nhi ...\n```\n"
                   "```python\nprint(y + 1)\n```\n<!-- docs-test: expect -->\n```text\n42\n```\n"
                   "```python\nprint(y + 2)\n```\n<!-- docs-test: expect -->\n```text\n42\n```\n", "p.md")
    page = Page("p.md", blocks)
    try:
        results = [failure_message(b, page.run(b)) for b in blocks]
    finally:
        page.close()
    assert results[:3] == [None, None, None]
    assert "expected line 1: '42'" in results[3] and "got: '43'" in results[3]


def test_mpiexec_blocks_are_skipped_where_mpiexec_is_missing():
    block = parse("```bash\nmpiexec -n 2 nnxp train --distributed\n```\n", "p.md")[0]
    page = Page("p.md", [block])
    try:
        page.env["PATH"] = str(page.cwd)  # nothing there
        assert page.skip_reason(block) == "needs mpiexec (pip install 'nnxp[mpi]')"
        assert page.skip_reason(parse("```bash\necho mpiexec-free\n```\n", "p.md")[0]) is None
    finally:
        page.close()


# -- the README's two commands -----------------------------------------------------------------

def test_readme_names_the_ci_test_command():
    """ci/run-tests.sh runs the line after <!-- test-command --> verbatim; it installs and runs pytest."""
    text = (REPO / "README.md").read_text()
    command = text[text.index("<!-- test-command -->"):].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert "pytest" in command and "pip install" in command and "[test]" in command
    done = subprocess.run(["awk", '/<!-- test-command -->/{found=1; next} found && /^```/{if (inblock) exit; '
                           'inblock=1; next} found && inblock && NF {print; exit}', "README.md"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == command  # the same extraction as ci/run-tests.sh
    assert "<!-- test-command -->" in (REPO / "ci" / "run-tests.sh").read_text()


@pytest.mark.slow
def test_readme_train_command_trains_as_promised(tmp_path):
    """The README's main job after its install step: `nnxp train`, no flags, in a fresh directory.

    (The venv and `pip install .` before it are what CI's own install does.)  About 4 s on 2 cores.
    """
    text = (REPO / "README.md").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/nnxp train\n" in text
    done = subprocess.run(["nnxp", "train"], cwd=tmp_path, env=environment(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    m = re.fullmatch(r"test accuracy (\d+\.\d+)% \(loss [\d.]+\) after 20 epochs; "
                     r"model saved to nnxp-bundled.safetensors", last)
    assert m, last
    assert float(m.group(1)) >= 94.0  # the README: 95.3%, the mean of seeds 0-2 (94.6-95.6)
    assert (tmp_path / "nnxp-bundled.safetensors").exists() and (tmp_path / "nnxp-bundled.ckpt.safetensors").exists()


def test_readme_stays_short():
    """A newcomer's README: at most about 200 lines, a tour of at most 20; the rest is the docs site."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    tour = [b for b in parse(text, "README.md") if b.lang == "python"]
    assert len(tour) == 1 and len(tour[0].code.splitlines()) <= 20


# Pages that other branches add (docs/gpu.md, ...): the README links to them before they exist here.
def test_readme_links_point_at_files_of_the_repository():
    text = (REPO / "README.md").read_text()
    missing = set()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (REPO / path).exists():
            missing.add(path)
    assert not missing, sorted(missing)


# -- the site ----------------------------------------------------------------------------------

needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None
                                  or importlib.util.find_spec("mkdocstrings") is None,
                                  reason="needs mkdocs and mkdocstrings: pip install -e '.[docs]'")


def _build(config, site):
    # Not --quiet: mkdocs 1.6 then stops counting warnings, and --strict passes a broken link.
    env = environment(site.parent) | {"NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, timeout=300)


@needs_mkdocs
def test_site_builds_in_strict_mode(tmp_path):
    done = _build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "nnxp.Network" in api and "fit" in api  # the reference is generated from the docstrings


@needs_mkdocs
def test_strict_build_fails_on_a_broken_link_and_a_missing_reference(tmp_path):
    """The same settings as mkdocs.yml, on a one-page site with two mistakes."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("See [the guide](guide.md) and [Nope][nnxp.NoSuchThing].\n")
    config = (REPO / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:.*?(?=^\S)", "", config)  # no nav: the one page
    (tmp_path / "mkdocs.yml").write_text(config.replace("docs_dir: docs", f"docs_dir: {tmp_path / 'docs'}"))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "guide.md" in done.stderr and "nnxp.NoSuchThing" in done.stderr, done.stderr


def test_benchmark_files_named_in_the_docs_exist():
    """Every result file or script of benchmarks/ that its README or docs/speed.md names is there."""
    named = set()
    for page in (REPO / "benchmarks" / "README.md", REPO / "docs" / "speed.md"):
        text = page.read_text()
        named |= set(re.findall(r"blas-providers[\w{},*-]*\.(?:json|sh)", text))
        named |= set(re.findall(r"[\w-]+-\d{4}-\d{2}-\d{2}[\w-]*\.jsonl?", text))
    assert "blas-providers-run.sh" in named and "cpu-quiet-2026-11-23-final.json" in named
    for name in sorted(named):
        braces = re.search(r"\{([\w,]+)\}", name)
        for option in braces.group(1).split(",") if braces else [None]:
            pattern = name.replace(braces.group(0), option) if braces else name
            assert list((REPO / "benchmarks").glob(pattern)), f"benchmarks/{pattern} is named but missing"
