"""benchmarks/distill.py on tiny random models (--smoke): every row kind trains and is
measured, results are keyed, and a second run skips what is done."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path, *args):
    env = {**os.environ, "SPACY_CLS_DISTILL_RUNS": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "benchmarks/distill.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_smoke_rows_train_measure_and_resume(tmp_path):
    rows = ["zh-teacher-m3e4", "zh-m3e2-gold", "zh-m3e2-soft-unlabelled"]
    first = run(tmp_path, "run", "--smoke", *rows)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = tmp_path / "distill_smoke_runs"
    for key in rows:
        result = json.loads((runs / f"{key}.json").read_text())
        for field in ("dev_accuracy", "heldout_accuracy", "docs_per_s_torch", "docs_per_s_onnx", "train_minutes"):
            assert result[field] >= 0, (key, field)
    student = json.loads((runs / "zh-m3e2-soft-unlabelled.json").read_text())
    assert student["kept_layers"] == [0, 2] and student["train_examples"] == 48 + 32
    report = (runs / "report.md").read_text()
    assert "zh-m3e2-soft-unlabelled" in report and "python benchmarks/distill.py run en-minilm6-gold" in report
    second = run(tmp_path, "run", "--smoke", *rows)
    assert second.returncode == 0 and second.stdout.count(": done (") == len(rows)


def test_a_student_without_its_teacher_says_which_row_to_run(tmp_path):
    result = run(tmp_path, "run", "--smoke", "en-minilm6-soft")
    assert result.returncode != 0 and "run en-teacher-mpnet12` first" in result.stderr


def test_list_prints_one_command_per_row(tmp_path):
    result = run(tmp_path, "list")
    lines = result.stdout.splitlines()
    assert len(lines) == 11 and all(line.startswith("python benchmarks/distill.py run ") for line in lines)
