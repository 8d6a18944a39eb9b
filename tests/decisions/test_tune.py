"""`tune` prints what the tuned pipeline does: the figures it prints are those of the
pipeline `spacy.load` gives back (labels with quotes, `$`, `${...}`, `=`, `[`, `#`,
backslashes, unicode and spaces included), the values it prints are the values written,
and no threshold sits on a dev score."""
import json
import re

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam, fix_random_seed
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app
from spacy_cls.decisions.apply import settings_of
from toy_pipelines import EXCLUSIVE, MULTILABEL, gold_cats

MULTI_NAMES = {"FOOD": 'pos "q" $x', "SERVICE": "k=v #1 [s]", "PRICE": "${price} a\\b ünï"}
EXCLUSIVE_NAMES = {"POS": "neg $x = [yes]", "NEG": "#no ${nlp.lang}: 'q'"}
EXTRA = ["the movie was ok", "fine", "not bad", "the staff", "clean room but slow", "i hate the price",
         "good food", "boring", "great fun", "awful", "nice price", "slow food"]


def train(folder, tiny_bert, multilabel):
    names = MULTI_NAMES if multilabel else EXCLUSIVE_NAMES
    data = MULTILABEL if multilabel else EXCLUSIVE["en"]
    labels = list(names.values())
    factory = "cls_classifier_multilabel" if multilabel else "cls_classifier"
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": tiny_bert}})

    def cats(label):
        chosen = label if isinstance(label, list) else [label]
        return gold_cats([names[c] for c in chosen], labels)

    examples = [Example.from_dict(nlp.make_doc(t), {"cats": cats(label)}) for t, label in data]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fix_random_seed(0)
        nlp.initialize(lambda: examples)
        optimizer = Adam(3e-3)
        for _ in range(25):
            nlp.update(examples, sgd=optimizer, drop=0.0)
    finally:
        torch.set_num_threads(threads)
    nlp.to_disk(folder)
    # dev: the training texts and some others with labels given by turns
    texts = [t for t, _ in data] + EXTRA
    golds = [cats(label) for _, label in data]
    for i in range(len(EXTRA)):  # some of these the model gets wrong
        label = labels[(i // 2) % len(labels)]
        golds.append(gold_cats([label], labels) if multilabel else gold_cats(label, labels))
    db = DocBin()
    for text, gold in zip(texts, golds):
        doc = nlp.make_doc(text)
        doc.cats = gold
        db.add(doc)
    db.to_disk(folder.parent / "dev.spacy")
    return folder, folder.parent / "dev.spacy", texts, golds


@pytest.fixture(scope="module")
def awkward_multi(tiny_bert, tmp_path_factory):
    return train(tmp_path_factory.mktemp("awkward_multi") / "pipeline", tiny_bert, True)


@pytest.fixture(scope="module")
def awkward_exclusive(tiny_bert, tmp_path_factory):
    return train(tmp_path_factory.mktemp("awkward_exclusive") / "pipeline", tiny_bert, False)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def reloaded_figures(folder, texts, golds):
    nlp = spacy.load(folder)
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": g}) for t, g in zip(texts, golds)]
    return nlp, nlp.evaluate(examples), list(nlp.pipe(texts))


def printed(output, title):
    """The (before, after) figures on the line of `output` that starts with `title`."""
    line = next(line for line in output.splitlines() if line.strip().startswith(title))
    return [float(v) for v in re.findall(r"-?\d+\.\d{4}", line)]


def test_multilabel_tune_figures_are_the_reloaded_pipelines(awkward_multi, tmp_path):
    folder, dev, texts, golds = awkward_multi
    out = tmp_path / "tuned"
    result = invoke("tune", folder, dev, "--output", out, "--min-positives", "1", "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))
    nlp, scores, docs = reloaded_figures(out, texts, golds)
    settings = settings_of(nlp.get_pipe("cls_classifier_multilabel"))
    assert settings.thresholds == report["settings"]["thresholds"]
    assert set(settings.thresholds) == set(MULTI_NAMES.values())
    assert report["after"]["macro_f1"] == scores["cats_macro_f"]
    assert report["after"]["micro_f1"] == scores["cats_micro_f"]
    assert printed(result.output, "macro-F1")[1] == round(scores["cats_macro_f"], 4)
    for label in MULTI_NAMES.values():
        assert report["after"]["per_label_f1"][label] == scores["cats_f_per_type"][label]["f"]
        assert f"threshold {label!r}:" in result.output
        # never on a dev score
        assert settings.thresholds[label] not in {doc.cats[label] for doc in docs}
    # the labels decided are those the thresholds give, and survive another save
    for doc in docs:
        assert doc._.cls_labels == [label for label in MULTI_NAMES.values()
                                    if doc.cats[label] >= settings.thresholds[label]]
    nlp.to_disk(tmp_path / "saved_again")
    again = settings_of(spacy.load(tmp_path / "saved_again").get_pipe("cls_classifier_multilabel"))
    assert again.thresholds == settings.thresholds


def test_exclusive_tune_figures_are_the_reloaded_pipelines(awkward_exclusive, tmp_path):
    folder, dev, texts, golds = awkward_exclusive
    out = tmp_path / "tuned"
    result = invoke("tune", folder, dev, "--output", out, "--abstain-accuracy", "0.8", "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))
    nlp, scores, docs = reloaded_figures(out, texts, golds)
    settings = settings_of(nlp.get_pipe("cls_classifier"))
    # the values printed and reported are the values written, exactly
    assert settings.temperature == report["settings"]["temperature"] == report["after"]["temperature"]
    assert f"temperature: 1 -> {settings.temperature:g}" in result.output
    cut = report["settings"]["abstain_threshold"]
    assert settings.abstain_threshold == cut
    assert 0 < report["after"]["coverage"] < 1  # this dev set needs abstaining to reach 0.8
    if cut is not None:
        assert f"abstain threshold: none (always decide) -> {cut:g}" in result.output
        assert cut not in {max(doc.cats.values()) for doc in docs}
    assert report["after"]["accuracy"] == scores["cats_accuracy"]
    assert report["after"]["coverage"] == scores["cats_coverage"]
    assert report["after"]["macro_f1"] == scores["cats_macro_f"]
    assert report["after"]["covered_accuracy"] == pytest.approx(scores["cats_covered_accuracy"], nan_ok=True)
    covered = [bool(doc._.cls_labels) for doc in docs]
    assert report["after"]["coverage"] == sum(covered) / len(covered)
    # the figures printed, both ways, are those of the reloaded pipeline
    assert "a doc with no label counts as an error" in result.output
    assert "abstained docs left out" in result.output
    assert printed(result.output, "accuracy ")[1] == round(scores["cats_accuracy"], 4)
    assert printed(result.output, "coverage (share given a label)")[1] == round(scores["cats_coverage"], 4)


@pytest.mark.parametrize("target", ["0.6", "0.75", "0.9", "1.0"])
def test_abstain_cut_keeps_the_printed_coverage(awkward_exclusive, tmp_path, target):
    folder, dev, texts, golds = awkward_exclusive
    out = tmp_path / "tuned"
    result = invoke("tune", folder, dev, "--output", out, "--abstain-accuracy", target, "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))
    _, scores, docs = reloaded_figures(out, texts, golds)
    assert report["after"]["coverage"] == scores["cats_coverage"]
    if report["after"]["coverage"] < 1.0:
        assert report["after"]["covered_accuracy"] >= float(target)
    # batch by batch, the reloaded pipeline decides the same
    nlp = spacy.load(out)
    for batch_size in (1, 3):
        assert [d._.cls_labels for d in nlp.pipe(texts, batch_size=batch_size)] == [d._.cls_labels for d in docs]


def test_tune_refuses_a_temperature_it_cannot_fit_cleanly(awkward_exclusive, tmp_path):
    folder, dev, _, _ = awkward_exclusive
    result = invoke("tune", folder, dev, "--output", tmp_path / "t", "--abstain-accuracy", "0")
    assert result.exit_code == 2 and "(0, 1]" in result.output
    assert numpy.isfinite(spacy.load(folder).get_pipe("cls_classifier").temperature)
