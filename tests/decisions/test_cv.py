"""`cv` reruns: a run is reused only under the key of everything that made it; a folder
holding another experiment (other folds, seeds, config, training data) is refused, or
started over with --overwrite; the table is in percent."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text((ROOT / "corpus" / "en_demo" / "train.jsonl").read_text(encoding="utf8"), encoding="utf8")
    return path


def cv_args(out, tiny_bert, train, *extra, folds="2", seeds="1"):
    return ["cv", ROOT / "configs" / "en_demo.cfg", "--output", out, "--folds", folds, "--seeds", seeds,
            "--paths.train", train, "--paths.dev", ROOT / "corpus" / "en_demo" / "dev.jsonl",
            "--components.cls_classifier.model.name", tiny_bert,
            "--corpora.train.limit", "16", "--training.max_steps", "1", "--training.eval_frequency", "1",
            "--training.batcher.size", "8", *extra]


def test_reruns_reuse_only_the_same_experiment(tiny_bert, train_file, tmp_path):
    out = tmp_path / "cv"
    first = invoke(*cv_args(out, tiny_bert, train_file))
    assert first.exit_code == 0, first.output
    assert first.output.count("[run]") == 2
    table = json.loads((out / "cv.json").read_text())
    assert [run["name"] for run in table["runs"]] == ["fold0-seed0", "fold1-seed0"]
    # a percent table, and run lines in percent, not raw fractions
    assert "| accuracy |" in table["markdown"] and "%" in table["markdown"]
    assert "[done] fold0-seed0: accuracy " in first.output and "cats_score (macro F) " in first.output
    assert "cats_score 0." not in first.output

    same = invoke(*cv_args(out, tiny_bert, train_file))
    assert same.exit_code == 0, same.output
    assert same.output.count("[skip]") == 2 and "[run]" not in same.output
    assert json.loads((out / "cv.json").read_text())["runs"] == table["runs"]

    changed = {
        "folds 2 -> 3": cv_args(out, tiny_bert, train_file, folds="3"),
        "seeds [0] -> [0, 1]": cv_args(out, tiny_bert, train_file, seeds="2"),
        "config": cv_args(out, tiny_bert, train_file, "--training.dropout", "0.3"),
        "config (or its overrides)": cv_args(out, tiny_bert, train_file, "--system.seed", "7"),
        "training data": cv_args(out, tiny_bert, ROOT / "corpus" / "en_demo" / "dev.jsonl"),
    }
    for what, args in changed.items():
        result = invoke(*args)
        assert result.exit_code == 2, (what, result.output)
        assert "another experiment" in result.output and what in result.output, (what, result.output)
        assert "--overwrite" in result.output and "[run]" not in result.output and "[skip]" not in result.output
    # nothing of the earlier experiment was touched
    assert json.loads((out / "cv.json").read_text())["runs"] == table["runs"]


def test_the_same_training_file_with_other_content_is_another_experiment(tiny_bert, train_file, tmp_path):
    out = tmp_path / "cv"
    assert invoke(*cv_args(out, tiny_bert, train_file)).exit_code == 0
    lines = train_file.read_text(encoding="utf8").splitlines()
    record = json.loads(lines[0])
    record["label"] = "POS" if record["label"] == "NEG" else "NEG"
    train_file.write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n", encoding="utf8")
    result = invoke(*cv_args(out, tiny_bert, train_file))
    assert result.exit_code == 2
    assert "training data" in result.output and "config" not in result.output.split("differs in:")[1].split(")")[0]
    # --overwrite starts over: every run trained again, nothing of the old one reported
    again = invoke(*cv_args(out, tiny_bert, train_file, "--overwrite"))
    assert again.exit_code == 0, again.output
    assert "[overwrite]" in again.output and again.output.count("[run]") == 2 and "[skip]" not in again.output


def test_a_run_file_from_elsewhere_is_trained_again(tiny_bert, train_file, tmp_path):
    out = tmp_path / "cv"
    assert invoke(*cv_args(out, tiny_bert, train_file, folds="1")).exit_code == 0
    path = out / "runs" / "seed0.json"
    record = json.loads(path.read_text())
    record["run_key"] = "0" * 64
    record["scores"]["cats_accuracy"] = 0.123456
    path.write_text(json.dumps(record))
    result = invoke(*cv_args(out, tiny_bert, train_file, folds="1"))
    assert result.exit_code == 0, result.output
    assert "[redo] seed0" in result.output and "[run] seed0" in result.output
    assert json.loads(path.read_text())["scores"]["cats_accuracy"] != 0.123456


def test_runs_without_a_record_of_their_experiment_are_not_reused(tiny_bert, train_file, tmp_path):
    out = tmp_path / "cv"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "fold0-seed0.json").write_text(json.dumps({"name": "fold0-seed0", "scores": {"cats_score": 0.7}}))
    result = invoke(*cv_args(out, tiny_bert, train_file))
    assert result.exit_code == 2
    assert "no record of the experiment" in result.output and "--overwrite" in result.output
