"""Every output agrees with doc._.cls_labels for the same doc: `apply`'s label columns,
`rank-uncertain`'s `predicted`, the scorer (`nlp.evaluate`, `spacy evaluate`) and the
figures of `tune`, with an abstain threshold or per-label thresholds in the pipeline."""
import json
import shutil

import numpy
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.decisions.apply import decide_cats, settings_of
from spacy_cls.decisions.collect import collect, evaluate
from spacy_cls.decisions.rank import InputText, rank_uncertain
from spacy_cls.decisions.thresholds import cut_between
from spacy_cls.decisions.tune import write_settings
from spacy_cls.scale import apply
from toy_pipelines import EXCLUSIVE, MULTILABEL, MULTILABEL_LABELS, gold_cats

EXTRA = ["the movie was ok", "fine", "not bad", "the staff", "clean room but slow", "i hate the price",
         "good food", "boring", "great fun", "awful"]


def texts_and_gold(multilabel):
    data = MULTILABEL if multilabel else EXCLUSIVE["en"]
    labels = MULTILABEL_LABELS if multilabel else ["POS", "NEG"]
    texts = [t for t, _ in data] + EXTRA
    golds = [gold_cats(label, labels) for _, label in data]
    # the extra texts get a gold label by turns, so some decisions are wrong
    golds += [gold_cats([labels[i % len(labels)]] if multilabel else labels[i % len(labels)], labels)
              for i in range(len(EXTRA))]
    return texts, golds


def write_dev(path, texts, golds):
    nlp = spacy.blank("en")
    db = DocBin()
    for text, cats in zip(texts, golds):
        doc = nlp.make_doc(text)
        doc.cats = cats
        db.add(doc)
    db.to_disk(path)
    return path


@pytest.fixture(scope="module")
def abstaining(en_pipeline, tmp_path_factory):
    """The toy exclusive pipeline with an abstain threshold in the middle of its top
    scores on the texts, so that some docs get no label."""
    folder = tmp_path_factory.mktemp("abstaining") / "pipeline"
    shutil.copytree(en_pipeline, folder)
    texts, _ = texts_and_gold(False)
    nlp = spacy.load(folder)
    top = sorted({max(doc.cats.values()) for doc in nlp.pipe(texts)})
    middle = len(top) // 2
    write_settings(folder, "cls_classifier", {"abstain_threshold": cut_between(top[middle - 1], top[middle])})
    return folder


@pytest.fixture(scope="module")
def per_label(multilabel_pipeline, tmp_path_factory):
    """The toy multi-label pipeline with a threshold per label inside its scores' range."""
    folder = tmp_path_factory.mktemp("per_label") / "pipeline"
    shutil.copytree(multilabel_pipeline, folder)
    texts, _ = texts_and_gold(True)
    nlp = spacy.load(folder)
    scores = numpy.array([[doc.cats[label] for label in MULTILABEL_LABELS] for doc in nlp.pipe(texts)])
    thresholds = {}
    for j, label in enumerate(MULTILABEL_LABELS):
        values = sorted(set(scores[:, j].tolist()))
        thresholds[label] = cut_between(values[len(values) // 3 - 1], values[len(values) // 3])
    write_settings(folder, "cls_classifier_multilabel", {"thresholds": thresholds})
    return folder


def pipeline_for(kind, abstaining, per_label):
    return (abstaining, "cls_classifier", False) if kind == "exclusive" else (per_label, "cls_classifier_multilabel", True)


@pytest.mark.parametrize("kind", ["exclusive", "multilabel"])
def test_cls_labels_follow_the_settings_and_doc_cats(kind, abstaining, per_label):
    folder, name, multilabel = pipeline_for(kind, abstaining, per_label)
    texts, _ = texts_and_gold(multilabel)
    nlp = spacy.load(folder)
    settings = settings_of(nlp.get_pipe(name))
    docs = list(nlp.pipe(texts))
    assert [doc._.cls_labels for doc in docs] == [decide_cats(doc.cats, settings) for doc in docs]
    if not multilabel:
        assert settings.abstain_threshold is not None
        given = [bool(doc._.cls_labels) for doc in docs]
        assert any(given) and not all(given)
        for doc in docs:
            assert bool(doc._.cls_labels) == (max(doc.cats.values()) >= settings.abstain_threshold)
    else:
        for doc in docs:
            assert doc._.cls_labels == [label for label in MULTILABEL_LABELS
                                        if doc.cats[label] >= settings.thresholds[label]]


@pytest.mark.parametrize("kind", ["exclusive", "multilabel"])
def test_apply_label_columns_are_cls_labels(kind, abstaining, per_label, tmp_path):
    folder, name, multilabel = pipeline_for(kind, abstaining, per_label)
    texts, _ = texts_and_gold(multilabel)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)),
                      encoding="utf8")
    apply(folder, source, tmp_path / "out", batch_size=3, shard_rows=5, progress=False)
    out = pq.read_table(tmp_path / "out").to_pandas().set_index("id").loc[[f"d{i}" for i in range(len(texts))]]
    expected = [doc._.cls_labels for doc in spacy.load(folder).pipe(texts)]
    if multilabel:
        assert [list(v) for v in out["labels"]] == expected
    else:
        assert [v if isinstance(v, str) else None for v in out["label"]] == [e[0] if e else None for e in expected]
        assert out["label"].isna().any()  # the abstained rows: no label, as doc._.cls_labels


@pytest.mark.parametrize("kind", ["exclusive", "multilabel"])
def test_rank_uncertain_predicted_is_cls_labels(kind, abstaining, per_label):
    folder, name, multilabel = pipeline_for(kind, abstaining, per_label)
    texts, _ = texts_and_gold(multilabel)
    nlp = spacy.load(folder)
    rows, _ = rank_uncertain(nlp, None, [InputText(i + 1, t) for i, t in enumerate(texts)], len(texts))
    by_line = {row["meta"]["line"]: row["meta"]["predicted"] for row in rows}
    assert [by_line[i + 1] for i in range(len(texts))] == [doc._.cls_labels for doc in nlp.pipe(texts)]


@pytest.mark.parametrize("kind", ["exclusive", "multilabel"])
def test_scorer_and_tune_figures_count_the_decided_labels(kind, abstaining, per_label, tmp_path):
    folder, name, multilabel = pipeline_for(kind, abstaining, per_label)
    texts, golds = texts_and_gold(multilabel)
    nlp = spacy.load(folder)
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": g}) for t, g in zip(texts, golds)]
    scores = nlp.evaluate(examples)
    docs = list(nlp.pipe(texts))
    labels = MULTILABEL_LABELS if multilabel else ["POS", "NEG"]
    tp = {label: 0 for label in labels}
    fp, fn = dict(tp), dict(tp)
    for doc, gold in zip(docs, golds):
        for label in labels:
            decided, wanted = label in doc._.cls_labels, gold[label] == 1.0
            tp[label] += decided and wanted
            fp[label] += decided and not wanted
            fn[label] += wanted and not decided
    for label in labels:
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        assert scores["cats_f_per_type"][label]["p"] == pytest.approx(precision)
        assert scores["cats_f_per_type"][label]["r"] == pytest.approx(recall)
    # tune's figures (collect + evaluate) are the scorer's, exactly
    figures = evaluate(collect(nlp, name, write_dev(tmp_path / "dev.spacy", texts, golds)),
                       settings=settings_of(nlp.get_pipe(name)))
    assert figures["macro_f1"] == scores["cats_macro_f"]
    assert figures["micro_f1"] == scores["cats_micro_f"]
    if not multilabel:
        right = [bool(doc._.cls_labels) and gold[doc._.cls_labels[0]] == 1.0 for doc, gold in zip(docs, golds)]
        assert scores["cats_accuracy"] == figures["accuracy"] == sum(right) / len(right)
        covered = [bool(doc._.cls_labels) for doc in docs]
        assert scores["cats_coverage"] == figures["coverage"] == sum(covered) / len(covered)
        assert scores["cats_covered_accuracy"] == pytest.approx(sum(right) / sum(covered))
        assert figures["covered_accuracy"] == pytest.approx(sum(right) / sum(covered))


def test_spacy_evaluate_prints_the_accuracy(abstaining, en_pipeline, tmp_path, capfd):
    from spacy.cli.evaluate import evaluate as spacy_evaluate

    texts, golds = texts_and_gold(False)
    dev = write_dev(tmp_path / "dev.spacy", texts, golds)
    for folder in (en_pipeline, abstaining):
        capfd.readouterr()
        data = spacy_evaluate(str(folder), dev, silent=False)
        printed = capfd.readouterr().out
        scores = spacy.load(folder).evaluate([Example.from_dict(spacy.blank("en").make_doc(t), {"cats": g})
                                              for t, g in zip(texts, golds)])
        line = next(line for line in printed.splitlines() if line.startswith("TEXTCAT"))
        assert f"accuracy {scores['cats_accuracy']:.2%}" in line
        assert data["cats_score"] == scores["cats_score"]
    assert "abstained as wrong" in line  # the abstaining pipeline says how it counted


def test_a_tuned_abstain_threshold_reaches_apply_and_rank_uncertain(en_pipeline, tmp_path):
    """The path of the report: `tune --abstain-accuracy`, then `apply` and
    `rank-uncertain` on the tuned pipeline give no label where doc._.cls_labels has none."""
    from typer.testing import CliRunner

    from spacy_cls.cli import app

    texts, golds = texts_and_gold(False)
    dev = write_dev(tmp_path / "dev.spacy", texts, golds)
    tuned = tmp_path / "tuned"
    runner = CliRunner()
    result = runner.invoke(app, ["tune", str(en_pipeline), str(dev), "--output", str(tuned),
                                 "--abstain-accuracy", "0.9"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    nlp = spacy.load(tuned)
    assert nlp.get_pipe("cls_classifier").abstain_threshold is not None
    expected = [doc._.cls_labels for doc in nlp.pipe(texts)]
    assert [] in expected
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)),
                      encoding="utf8")
    result = runner.invoke(app, ["apply", str(tuned), str(source), str(tmp_path / "out")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "out").to_pandas().set_index("id").loc[[f"d{i}" for i in range(len(texts))]]
    assert [v if isinstance(v, str) else None for v in out["label"]] == [e[0] if e else None for e in expected]
    ranked = tmp_path / "ranked.jsonl"
    result = runner.invoke(app, ["rank-uncertain", str(tuned), str(source), "-n", str(len(texts)),
                                 "--output", str(ranked)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in ranked.read_text(encoding="utf8").splitlines()]
    by_text = {row["text"]: row["meta"]["predicted"] for row in rows}
    assert [by_text[t] for t in texts] == expected
