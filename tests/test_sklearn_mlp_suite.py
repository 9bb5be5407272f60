"""scikit-learn's own MLP test-suite against nnxp.sklearn.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is copied into a
temporary directory with its one import of the estimators rewritten to
``from nnxp.sklearn import MLPClassifier, MLPRegressor`` (and a conftest that brings
scikit-learn's fixtures, e.g. ``global_random_seed``), then run by pytest in a
subprocess.  Every test must pass except those listed in tests/sklearn_mlp_skips.txt
with their reasons, which must fail: a listed test that passes fails this test too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")

ROOT = Path(__file__).resolve().parent.parent
SKIPS = Path(__file__).resolve().parent / "sklearn_mlp_skips.txt"
IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"


def expected_failures() -> dict[str, str]:
    """{test id: reason} from the skip list."""
    listed = {}
    for line in SKIPS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            test_id, _, reason = line.partition("|")
            assert reason.strip(), f"{SKIPS.name}: {test_id.strip()} has no reason"
            listed[test_id.strip()] = reason.strip()
    return listed


def test_scikit_learn_mlp_suite_passes_against_nnxp(tmp_path):
    source = Path(importlib.util.find_spec("sklearn.neural_network.tests.test_mlp").origin).read_text()
    assert source.count(IMPORT) == 1, "scikit-learn's test_mlp.py imports its estimators differently now"
    (tmp_path / "test_mlp.py").write_text(source.replace(IMPORT, "from nnxp.sklearn import MLPClassifier, MLPRegressor"))
    (tmp_path / "conftest.py").write_text("from sklearn.conftest import *  # noqa: F401,F403  (fixtures, seeds)\n")
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={report}", "test_mlp.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        if case.find("skipped") is not None:
            outcomes[name] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        else:
            outcomes[name] = "passed"
    listed = expected_failures()
    assert len(outcomes) > 50, result.stdout[-3000:]
    unexpected = sorted(name for name, outcome in outcomes.items() if outcome == "failed" and name not in listed)
    assert not unexpected, f"scikit-learn MLP tests failing against nnxp: {unexpected}\n{result.stdout[-6000:]}"
    now_pass = sorted(name for name in listed if outcomes.get(name) == "passed")
    assert not now_pass, f"listed in {SKIPS.name} but passing now (remove them): {now_pass}"
    missing = sorted(name for name in listed if name not in outcomes)
    assert not missing, f"listed in {SKIPS.name} but not in scikit-learn's test_mlp.py: {missing}"
    skipped = sorted(name for name, outcome in outcomes.items() if outcome == "skipped")
    print(f"{sum(o == 'passed' for o in outcomes.values())} passed, {len(listed)} expected failures, "
          f"{len(skipped)} skipped by scikit-learn itself: {skipped}")
