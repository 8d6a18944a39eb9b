"""The scripts behind the README's commands: a test run that selects no test fails
(pytest's exit status 5 is not a pass), and the quick demo's overrides fit the demo configs."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.cli._util import parse_config_overrides
from spacy.util import load_config

ROOT = Path(__file__).resolve().parents[1]


def run_tests(*args):
    return subprocess.run(["bash", str(ROOT / "scripts" / "run_tests.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_a_run_that_collects_no_test_fails():
    proc = run_tests("tests/test_scripts.py", "-k", "no_such_test_anywhere")
    assert proc.returncode == 1
    assert "no test was collected" in proc.stderr


def test_a_run_that_passes_exits_0():
    proc = run_tests("tests/test_scripts.py", "-k", "quick_demo")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_quick_demo_overrides_fit_the_demo_configs(lang):
    script = (ROOT / "scripts" / "demo.sh").read_text(encoding="utf8")
    quick = re.search(r"overrides=\((--training[^)]*)\)", script).group(1).split()
    config = load_config(ROOT / "configs" / f"{lang}_demo.cfg", overrides=parse_config_overrides(quick),
                         interpolate=True)
    training = config["training"]
    assert training["max_steps"] < 120 and training["max_steps"] % training["eval_frequency"] == 0
    assert config["training"]["optimizer"]["learn_rate"]["max_steps"] == training["max_steps"]


def test_ci_runs_the_readme_test_command_in_a_fresh_virtualenv():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf8")
    assert re.search(r'rm -rf "\$venv"\n.*-m venv "\$venv"', ci)
    assert 'source "$venv/bin/activate"' in ci and "bash scripts/test.sh" in ci
    assert ".venv-ci" in (ROOT / ".gitignore").read_text(encoding="utf8")
