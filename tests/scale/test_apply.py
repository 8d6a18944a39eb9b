"""`apply` on the local engine: the output matches nlp.pipe, every row is accounted
for, runs resume, and the command's errors say what to do."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest
import spacy
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.scale import apply, load_summary
from spacy_cls.scale.output import OutputError

from helpers import read_output, rejected_ids, write_jsonl


def test_labels_scores_and_vectors_match_nlp_pipe(en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 30)
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", vectors=True, batch_size=4,
                    shard_rows=7, progress=False)
    out = read_output(tmp_path / "out").set_index("id").loc[[r["id"] for r in rows]]
    nlp = spacy.load(en_pipeline)
    docs = list(nlp.pipe([r["text"] for r in rows]))
    labels = nlp.get_pipe("cls_classifier").labels
    for label in labels:
        numpy.testing.assert_allclose(out[f"score_{label}"], [d.cats[label] for d in docs], atol=1e-5)
    assert list(out["label"]) == [max(d.cats, key=d.cats.get) for d in docs]
    vectors = numpy.stack(out["cls_vector"].to_numpy())
    assert vectors.dtype == numpy.float32
    numpy.testing.assert_allclose(vectors, numpy.stack([d._.cls_vector for d in docs]), atol=1e-5)
    assert summary.rows_read == summary.rows_written == 30 and summary.rows_rejected == 0
    assert sum(summary.labels.values()) == 30
    assert load_summary(tmp_path / "out").rows_written == 30


def test_multilabel_output_lists_the_labels_over_the_threshold(multilabel_pipeline, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 12)
    apply(multilabel_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    out = read_output(tmp_path / "out")
    nlp = spacy.load(multilabel_pipeline)
    pipe = nlp.get_pipe("cls_classifier_multilabel")
    threshold = pipe.cfg["threshold"]
    for _, row in out.iterrows():
        expected = [label for label in pipe.labels if row[f"score_{label}"] >= threshold]
        assert list(row["labels"]) == expected
    assert "label" not in out.columns


def test_read_is_written_plus_rejected_and_rejected_rows_say_why(en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 20, bad_every=4)
    with open(tmp_path / "in.jsonl", "a", encoding="utf8") as f:
        f.write("not json\n")
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", shard_rows=6, progress=False)
    out = read_output(tmp_path / "out")
    assert summary.rows_read == 21 == summary.rows_written + summary.rows_rejected
    assert summary.rows_rejected == 6
    rejected = [json.loads(line) for line in (tmp_path / "out" / "_rejected.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejected} == {"no 'text' column", "not valid JSON (Expecting value at column 1)"}
    assert sorted(list(out["id"]) + rejected_ids(tmp_path / "out")) == sorted([r["id"] for r in rows] + ["in.jsonl:21"])
    assert [r["row"] for r in rejected] == [4, 8, 12, 16, 20, 21]


def test_duplicate_ids_are_reported_and_every_row_kept(en_pipeline, tmp_path):
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": "good"}) + "\n" for i in (1, 2, 1, 3, 2, 1)), encoding="utf8"
    )
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    assert summary.rows_written == 6
    assert summary.duplicate_ids == 2 and sorted(summary.duplicate_id_examples) == ["1", "2"]
    assert "DUPLICATE IDS" in (tmp_path / "out" / "_summary.txt").read_text()


class Interrupt(Exception):
    pass


def test_a_failed_run_resumes_without_redoing_finished_parts(en_pipeline, tmp_path, monkeypatch):
    rows = write_jsonl(tmp_path / "in.jsonl", 40, bad_every=9)
    out_dir = tmp_path / "out"
    from spacy_cls.scale.predict import Predictor

    calls = {"n": 0}
    original = Predictor.predict

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupt()
        return original(self, batch)

    monkeypatch.setattr(Predictor, "predict", failing)
    with pytest.raises(Interrupt):
        apply(en_pipeline, tmp_path / "in.jsonl", out_dir, batch_size=1, shard_rows=5, progress=False)
    monkeypatch.setattr(Predictor, "predict", original)
    first = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("part-*.parquet")}
    assert 0 < len(first) < 8
    summary = apply(en_pipeline, tmp_path / "in.jsonl", out_dir, batch_size=1, shard_rows=5, progress=False)
    assert all(out_dir.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in first.items())
    assert summary.rows_from_earlier_runs == 5 * len(first) and summary.rows_this_run == 40 - 5 * len(first)
    ids = list(read_output(out_dir)["id"]) + rejected_ids(out_dir)
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert summary.rows_read == 40 == summary.rows_written + summary.rows_rejected


def test_a_killed_driver_resumes_with_one_row_per_id(en_pipeline, tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", 3000, with_ids=False)
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "spacy_cls", "apply", str(en_pipeline), str(tmp_path / "in.jsonl"), str(out_dir),
               "--shard-rows", "20", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not list(out_dir.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("part-*.parquet")}
    assert 0 < len(finished) < 150, "the run was not interrupted half-way"
    summary = apply(en_pipeline, tmp_path / "in.jsonl", out_dir, shard_rows=20, batch_size=16, progress=False)
    assert all(out_dir.joinpath(name).stat().st_mtime_ns == t for name, t in finished.items())
    out = read_output(out_dir)
    assert sorted(out["id"]) == sorted(f"in.jsonl:{i + 1}" for i in range(len(rows)))
    assert summary.rows_read == summary.rows_written == 3000 and summary.duplicate_ids == 0
    assert not list(out_dir.glob(".tmp-*"))


def test_other_arguments_are_refused_and_overwrite_starts_over(en_pipeline, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 6)
    apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    with pytest.raises(OutputError, match="vectors"):
        apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", vectors=True, progress=False)
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", vectors=True, overwrite=True, progress=False)
    assert summary.rows_this_run == 6 and "cls_vector" in read_output(tmp_path / "out").columns


def test_command_writes_parts_and_prints_the_summary(en_pipeline, tmp_path):
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", 5, with_ids=False)
    (tmp_path / "in" / "b.csv").write_text("key,body\nk1,good film\nk2,\n", encoding="utf8")
    result = CliRunner().invoke(app, ["apply", str(en_pipeline), str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--text-col", "text", "--id-col", "key"])
    assert result.exit_code == 0, result.output
    assert "rows read                 7" in result.output and "rows rejected             2" in result.output
    assert set(rejected_ids(tmp_path / "out")) == {"k1", "k2"}
    result = CliRunner().invoke(app, ["apply", str(en_pipeline), str(tmp_path / "none.jsonl"), str(tmp_path / "o2")])
    assert result.exit_code == 2 and "not a file, a folder or a glob" in result.output
    result = CliRunner().invoke(app, ["apply", str(tmp_path), str(tmp_path / "in"), str(tmp_path / "o3")])
    assert result.exit_code == 2 and "not a saved pipeline" in result.output
