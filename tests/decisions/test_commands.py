"""`python -m spacy_cls tune`, `rank-uncertain` and `cv` on the tiny model."""
import json
import shutil
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app
from spacy_cls.decisions.cv import fold_indices, summarise
from toy_pipelines import EXCLUSIVE, write_docbin

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_tune_exclusive_writes_temperature_and_abstain_into_the_config(en_pipeline, tmp_path):
    dev = write_docbin(tmp_path / "dev.spacy")
    out = tmp_path / "tuned"
    result = invoke("tune", en_pipeline, dev, "--output", out, "--abstain-accuracy", "0.9",
                    "--plot", tmp_path / "rel.png", "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    for word in ("ECE", "Brier", "macro-F1", "micro-F1", "coverage"):
        assert word in result.output
    report = json.loads((tmp_path / "tune.json").read_text())
    nlp = spacy.load(out)
    pipe = nlp.get_pipe("cls_classifier")
    assert pipe.temperature == pytest.approx(report["settings"]["temperature"])
    assert pipe.abstain_threshold == pytest.approx(report["settings"]["abstain_threshold"])
    assert report["before"]["accuracy"] == report["after"]["accuracy"]
    assert (tmp_path / "rel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the original pipeline is untouched
    assert spacy.load(en_pipeline).get_pipe("cls_classifier").temperature == 1.0


def test_tune_multilabel_writes_a_threshold_per_label(multilabel_pipeline, tmp_path):
    dev = write_docbin(tmp_path / "dev.spacy", multilabel=True)
    work = tmp_path / "pipeline"
    shutil.copytree(multilabel_pipeline, work)
    result = invoke("tune", work, dev, "--min-positives", "2", "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tune.json").read_text())
    pipe = spacy.load(work).get_pipe("cls_classifier_multilabel")
    assert pipe.thresholds == pytest.approx(report["settings"]["thresholds"])
    assert set(pipe.thresholds) == {"FOOD", "SERVICE", "PRICE"}
    assert all(t >= 0.05 for t in pipe.thresholds.values())
    # tuned on this dev set, the macro-F1 on it cannot be lower than with the global threshold
    assert report["after"]["macro_f1"] >= report["before"]["macro_f1"]


def test_tune_refuses_bad_input_with_a_clear_message(en_pipeline, tmp_path):
    result = invoke("tune", en_pipeline, tmp_path / "missing.spacy")
    assert result.exit_code == 2
    assert "does not exist" in result.output
    bad = tmp_path / "dev.jsonl"
    bad.write_text('{"text": "x", "label": "POS"}\n')
    result = invoke("tune", en_pipeline, bad)
    assert result.exit_code == 2 and "convert" in result.output
    other_labels = tmp_path / "other.spacy"
    from spacy.tokens import DocBin

    doc = spacy.blank("en")("hello")
    doc.cats = {"SPAM": 1.0}
    DocBin(docs=[doc]).to_disk(other_labels)
    result = invoke("tune", en_pipeline, other_labels)
    assert result.exit_code == 2 and "SPAM" in result.output


def test_rank_uncertain_writes_the_least_sure_texts_first(en_pipeline, tmp_path):
    source = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": t, "id": i}) for i, (t, _) in enumerate(EXCLUSIVE["en"])]
    lines[2:2] = ["", "{not json", json.dumps({"id": 99})]
    source.write_text("\n".join(lines) + "\n", encoding="utf8")
    out = tmp_path / "next.jsonl"
    result = invoke("rank-uncertain", en_pipeline, source, "-n", "4", "--output", out)
    assert result.exit_code == 0, result.output
    assert "skipped line 3: blank line" in result.output
    assert "skipped line 4: not valid JSON" in result.output
    assert "skipped line 5" in result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert len(rows) == 4
    values = [row["meta"]["uncertainty"] for row in rows]
    assert values == sorted(values, reverse=True)
    nlp = spacy.load(en_pipeline)
    everything = sorted((nlp(t)._.cls_uncertainty for t, _ in EXCLUSIVE["en"]), reverse=True)
    assert values == pytest.approx(everything[:4], abs=1e-6)
    for row in rows:
        assert set(row) == {"text", "meta"}
        assert set(row["meta"]["scores"]) == {"POS", "NEG"}
        assert "id" in row["meta"] and "line" in row["meta"]


def test_rank_uncertain_label_studio_format_and_plain_text(en_pipeline, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("great movie\nawful food\n", encoding="utf8")
    out = tmp_path / "ls.jsonl"
    result = invoke("rank-uncertain", en_pipeline, source, "-n", "10", "--output", out, "--format", "label-studio")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert len(rows) == 2
    assert all(set(row) == {"data"} and row["data"]["text"] in {"great movie", "awful food"} for row in rows)
    result = invoke("rank-uncertain", en_pipeline, source, "--format", "csv")
    assert result.exit_code == 2 and "prodigy" in result.output


def test_folds_are_disjoint_cover_everything_and_are_stratified():
    import numpy

    gold = numpy.zeros((30, 3))
    gold[numpy.arange(30), [0] * 20 + [1] * 7 + [2] * 3] = 1
    folds = fold_indices(gold, 3, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(30))
    for f in folds:
        counts = gold[f].sum(axis=0)
        assert counts[0] in (6, 7) and counts[2] == 1
    with pytest.raises(ValueError, match="2 folds"):
        fold_indices(gold, 1, seed=0)


def test_summary_is_mean_and_sample_sd():
    runs = [{"scores": {"cats_score": 0.8}}, {"scores": {"cats_score": 0.9}}, {"scores": {"cats_score": 1.0}}]
    summary = summarise(runs)["cats_score"]
    assert summary["mean"] == pytest.approx(0.9)
    assert summary["sd"] == pytest.approx(0.1)
    assert summary["n"] == 3


def test_cv_trains_each_fold_once_and_resumes(tiny_bert, tmp_path):
    out = tmp_path / "cv"
    args = ["cv", ROOT / "configs" / "en_demo.cfg", "--output", out, "--folds", "2",
            "--paths.train", ROOT / "corpus" / "en_demo" / "train.jsonl",
            "--paths.dev", ROOT / "corpus" / "en_demo" / "dev.jsonl",
            "--components.cls_classifier.model.name", tiny_bert,
            "--corpora.train.limit", "24", "--training.max_steps", "1", "--training.eval_frequency", "1",
            "--training.batcher.size", "8"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    table = json.loads((out / "cv.json").read_text())
    assert [run["name"] for run in table["runs"]] == ["fold0-seed0", "fold1-seed0"]
    assert table["summary"]["cats_score"]["n"] == 2
    assert "cats_score" in (out / "cv.md").read_text()
    again = invoke(*args)
    assert again.exit_code == 0
    assert again.output.count("[skip]") == 2 and "[run]" not in again.output


def test_cv_over_seeds_scores_on_the_configs_dev_set(tiny_bert, tmp_path):
    out = tmp_path / "seeds"
    result = invoke("cv", ROOT / "configs" / "en_demo.cfg", "--output", out, "--folds", "1", "--seeds", "2",
                    "--paths.train", ROOT / "corpus" / "en_demo" / "train.jsonl",
                    "--paths.dev", ROOT / "corpus" / "en_demo" / "dev.jsonl",
                    "--components.cls_classifier.model.name", tiny_bert,
                    "--corpora.train.limit", "16", "--training.max_steps", "1", "--training.eval_frequency", "1",
                    "--training.batcher.size", "8")
    assert result.exit_code == 0, result.output
    table = json.loads((out / "cv.json").read_text())
    assert [(run["name"], run["seed"]) for run in table["runs"]] == [("seed0", 0), ("seed1", 1)]
    assert not (out / "folds").exists()
    assert table["summary"]["cats_score"]["n"] == 2


def test_cv_refuses_a_missing_config(tmp_path):
    result = invoke("cv", tmp_path / "nope.cfg", "--output", tmp_path / "cv")
    assert result.exit_code == 2 and "does not exist" in result.output
