"""`apply --engine ray` on a local cluster bound to 127.0.0.1 speaks like the local
engine: one progress bar instead of Ray Data's per-operator log, and the warning
about cut docs once for the command, not once per worker and batch."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("ray.data")

from spacy_cls.scale import load_summary  # noqa: E402

from helpers import write_jsonl  # noqa: E402

pytestmark = pytest.mark.slow


def test_a_ray_run_shows_one_bar_and_one_cut_warning(en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 48)
    long_ids = set()
    with open(tmp_path / "in.jsonl", "a", encoding="utf8") as f:
        for i in range(12):
            long_ids.add(f"long-{i}")
            f.write('{"id": "long-%d", "text": "%s"}\n' % (i, "good film and a clean room " * 40))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}
    command = [sys.executable, "-m", "spacy_cls", "apply", str(en_pipeline), str(tmp_path / "in.jsonl"),
               str(tmp_path / "out"), "--engine", "ray", "--workers", "2", "--batch-size", "8", "--shard-rows", "10"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "[spacy_cls]" not in err  # the workers' own warnings stay in the workers
    assert err.count("docs were longer than the encoder reads") == 1
    assert "12 docs were longer" in err
    bar = re.compile(r"\d+/60 \[")
    assert bar.search(err)  # the progress bar
    chatter = [line for line in err.splitlines() if line.strip() and not bar.search(line)
               and "docs were longer" not in line and "core_worker.cc" not in line]
    assert len(chatter) <= 3, chatter
    assert "Running Dataset" not in err and "Execution plan" not in err
    summary = load_summary(tmp_path / "out")
    assert summary.rows_cut == 12 and summary.rows_written == len(rows) + 12
    assert "rows cut" in done.stdout
