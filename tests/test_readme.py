"""The README: its Python blocks run as written and print what their `# prints ...`
comments say (`...` stands for any text), and its first screen says what a new user needs
(the two commands, the Python floor that pyproject declares, the quick demo, the fast tests)."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import english_model_path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PRINTS = re.compile(r"#\s*prints\s+(.*)$")


def python_blocks(text: str) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def expected_lines(block: str) -> List[str]:
    """The `# prints ...` comments of a block, in order."""
    return [m.group(1).strip() for line in block.splitlines() if (m := PRINTS.search(line))]


def matches(pattern: str, line: str) -> bool:
    parts = [re.escape(part) for part in pattern.split("...")]
    return re.fullmatch(".*".join(parts), line.strip()) is not None


def test_matching_treats_dots_as_any_text_and_the_rest_literally():
    assert matches("POS {'POS': 0.9..., 'NEG': 0.0...}", "POS {'POS': 0.957, 'NEG': 0.0420}")
    assert not matches("POS {'POS': 0.9..., 'NEG': 0.0...}", "NEG {'POS': 0.04, 'NEG': 0.96}")
    assert matches(".../model", "/site-packages/pkg/model") and not matches(".../model", "/x/models")
    assert matches("(384,) float32", "(384,) float32") and not matches("(384,) float32", "(384,) float64")
    assert expected_lines("x = 1\nprint(x)  # prints 1\n# prints\nprint(2)  # prints 2...") == ["1", "2..."]


def test_readme_has_python_blocks_that_say_what_they_print():
    blocks = python_blocks(README.read_text(encoding="utf8"))
    assert blocks, "no ```python block in the README"
    assert all(expected_lines(block) for block in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf8")))))
def test_readme_python_block_runs_offline_and_prints_what_it_says(index, tmp_path):
    english_model_path()  # skips, saying what to install, without the checkpoint package
    block = python_blocks(README.read_text(encoding="utf8"))[index]
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(block, encoding="utf8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.strip()]
    expected = expected_lines(block)
    assert len(printed) == len(expected), (printed, expected)
    for pattern, line in zip(expected, printed):
        assert matches(pattern, line), (pattern, line)


def first_screen() -> str:
    text = README.read_text(encoding="utf8")
    return text[: text.index("## Use it in Python")]


def test_first_screen_states_the_python_floor_that_pyproject_declares():
    floor = re.search(r'^requires-python = ">=(3\.\d+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf8"),
                      flags=re.M).group(1)
    assert f"Python {floor} or newer" in first_screen()
    assert not re.search(r"Python 3\.\d+\+", README.read_text(encoding="utf8"))


def test_first_screen_gives_the_commands_their_cost_and_the_short_ways():
    screen = first_screen()
    for needed in ("bash scripts/demo.sh", "bash scripts/test.sh", "QUICK=1 bash scripts/demo.sh",
                   '-m "not slow"', "SPACY_CLS_DATA", "docs/datasets.md"):
        assert needed in screen, needed
    assert re.search(r"\d(\.\d)? GB", screen), "the install size"
    assert not re.search(r"[A-Z]+_TIME", screen), "an unmeasured time"
    assert re.search(r"\d+ min", screen), "how long the commands take"
