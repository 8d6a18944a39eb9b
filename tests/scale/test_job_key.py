"""One job per output folder: a run holds the folder's lock while it writes, a stale
lock is taken over, and a resume must be the same job (input, pipeline, columns,
options and shard plan) or it is refused."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from spacy_cls.scale import apply
from spacy_cls.scale.output import LOCK_FILE, FolderLock, OutputError
from spacy_cls.scale.predict import Predictor
from spacy_cls.scale.run import default_shard_rows

from helpers import read_output, rejected_ids, write_jsonl

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def command(pipeline, source, out_dir, *extra):
    return [sys.executable, "-m", "spacy_cls", "apply", str(pipeline), str(source), str(out_dir), *map(str, extra)]


def test_two_runs_at_once_into_one_folder_one_is_refused_and_no_id_is_doubled(en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 600)
    out_dir = tmp_path / "out"
    processes = [
        subprocess.Popen(command(en_pipeline, tmp_path / "in.jsonl", out_dir, "--shard-rows", shard),
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for shard in (7, 50)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "in use by another apply run" in refusal or "another job's output" in refusal
    ids = list(read_output(out_dir)["id"])
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids))
    assert not (out_dir / LOCK_FILE).exists()


def test_a_live_lock_is_refused_and_a_dead_processes_lock_is_taken_over(en_pipeline, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    live = {"pid": os.getpid(), "host": socket.gethostname(), "token": "other", "started": "then"}
    (out_dir / LOCK_FILE).write_text(json.dumps(live), encoding="utf8")
    with pytest.raises(OutputError, match=f"in use by another apply run \\(process {os.getpid()}"):
        apply(en_pipeline, tmp_path / "in.jsonl", out_dir, progress=False)
    elsewhere = {**live, "host": "another-host", "pid": 1}
    (out_dir / LOCK_FILE).write_text(json.dumps(elsewhere), encoding="utf8")
    with pytest.raises(OutputError, match="another-host"):
        apply(en_pipeline, tmp_path / "in.jsonl", out_dir, progress=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out_dir / LOCK_FILE).write_text(json.dumps({**live, "pid": gone.pid}), encoding="utf8")
    summary = apply(en_pipeline, tmp_path / "in.jsonl", out_dir, progress=False)
    assert summary.rows_written == 5 and not (out_dir / LOCK_FILE).exists()


def test_a_half_written_lock_is_refused_while_fresh_and_taken_over_when_old(tmp_path):
    (tmp_path / LOCK_FILE).write_text("", encoding="utf8")
    with pytest.raises(OutputError, match="still writing its lock"):
        FolderLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with FolderLock(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == lock.token
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_released_when_a_run_fails(en_pipeline, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 5)

    def failing(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Predictor, "predict", failing)
    with pytest.raises(KeyboardInterrupt):
        apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / LOCK_FILE).exists()


def changed_pipeline(en_pipeline, tmp_path):
    copy = tmp_path / "pipeline"
    shutil.copytree(en_pipeline, copy)
    meta = json.loads((copy / "meta.json").read_text(encoding="utf8"))
    meta["version"] = "9.9.9"
    (copy / "meta.json").write_text(json.dumps(meta), encoding="utf8")
    return copy


@pytest.mark.parametrize("change,message", [
    ("input", "input files"), ("pipeline", "pipeline's files"), ("text_col", "--text-col"),
    ("keep_cols", "--keep-cols"), ("shard_rows", "--shard-rows"), ("vectors", "--vectors"),
])
def test_a_resume_that_is_not_the_same_job_is_refused(en_pipeline, tmp_path, change, message):
    pipeline = tmp_path / "pipeline"
    shutil.copytree(en_pipeline, pipeline)
    write_jsonl(tmp_path / "in.jsonl", 12)
    out_dir = tmp_path / "out"
    apply(pipeline, tmp_path / "in.jsonl", out_dir, shard_rows=5, progress=False)
    args = {"shard_rows": 5}
    if change == "input":
        with open(tmp_path / "in.jsonl", "a", encoding="utf8") as f:
            f.write(json.dumps({"id": "new", "text": "good"}) + "\n")
    elif change == "pipeline":
        meta = json.loads((pipeline / "meta.json").read_text(encoding="utf8"))
        meta["description"] = "retrained"
        (pipeline / "meta.json").write_text(json.dumps(meta), encoding="utf8")
    elif change == "text_col":
        args["text_col"] = "body"
    elif change == "keep_cols":
        args["keep_cols"] = ["text"]
    elif change == "shard_rows":
        args["shard_rows"] = 4
    else:
        args["vectors"] = True
    with pytest.raises(OutputError, match=message) as refused:
        apply(pipeline, tmp_path / "in.jsonl", out_dir, progress=False, **args)
    assert "--overwrite" in str(refused.value)
    summary = apply(pipeline, tmp_path / "in.jsonl", out_dir, progress=False, overwrite=True, **args)
    assert summary.rows_from_earlier_runs == 0 and summary.rows_read == summary.rows_this_run


def test_the_same_input_rewritten_with_the_same_bytes_but_another_time_is_refused(en_pipeline, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 6)
    apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    stat = (tmp_path / "in.jsonl").stat()
    os.utime(tmp_path / "in.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(OutputError, match="input files"):
        apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)


@pytest.mark.parametrize("n_rows,expected", [(0, 250), (10, 250), (3000, 250), (60_000, 600), (10**7, 10_000)])
def test_the_default_shard_size_suits_small_and_large_inputs(n_rows, expected):
    assert default_shard_rows(n_rows) == expected


def test_an_interrupted_small_run_keeps_its_finished_parts(en_pipeline, tmp_path, monkeypatch):
    rows = write_jsonl(tmp_path / "in.jsonl", 800)
    calls = {"n": 0}
    original = Predictor.predict

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] > 8:  # 64 rows a call: past the first three shards of 250
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Predictor, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", batch_size=16, progress=False)
    monkeypatch.setattr(Predictor, "predict", original)
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", batch_size=16, progress=False)
    assert summary.rows_from_earlier_runs == 500 and summary.rows_this_run == 300
    ids = list(read_output(tmp_path / "out")["id"]) + rejected_ids(tmp_path / "out")
    assert sorted(ids) == sorted(r["id"] for r in rows)


def test_ctrl_c_says_how_to_resume(en_pipeline, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 3000)
    out_dir = tmp_path / "out"
    process = subprocess.Popen(command(en_pipeline, tmp_path / "in.jsonl", out_dir, "--batch-size", "4"),
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out_dir.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again" in err and str(out_dir) in err
    assert not (out_dir / LOCK_FILE).exists()
    summary = apply(en_pipeline, tmp_path / "in.jsonl", out_dir, batch_size=32, progress=False)
    assert summary.rows_from_earlier_runs >= 250 and summary.rows_written == 3000 and summary.duplicate_ids == 0


def test_keep_cols_carries_input_columns_and_refuses_the_outputs_own_names(en_pipeline, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "text": "good film", "title": "A", "stars": 5, "tags": ["x"]},
        {"id": "b", "text": "bad food", "title": None},
    ]), encoding="utf8")
    apply(en_pipeline, path, tmp_path / "out", keep_cols=["text", "title", "stars", "tags"], progress=False)
    out = {row["id"]: row for row in pq.read_table(tmp_path / "out").to_pylist()}
    assert out["a"]["text"] == "good film" and out["a"]["title"] == "A"
    assert out["a"]["stars"] == "5" and out["a"]["tags"] == '["x"]'
    assert out["b"]["text"] == "bad food" and out["b"]["title"] is None and out["b"]["stars"] is None
    for name in ("label", "score_POS", "id", "reason", "cls_vector"):
        with pytest.raises(ValueError, match="--keep-cols"):
            apply(en_pipeline, path, tmp_path / f"refused-{name}", keep_cols=[name], progress=False)
