"""`spacy_cls.textcat_scorer.v1` and `spacy_cls.textcat_multilabel_scorer.v1`: spaCy's
scores counted from the component's decisions, plus `cats_accuracy` (and coverage) for
exclusive classes; the factories' default scorers, shown by `spacy train` and named in
`spacy evaluate`'s table."""
from importlib.metadata import entry_points

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

import spacy_cls  # noqa: F401
from spacy_cls.decisions.apply import DecisionSettings
from spacy_cls.pipeline.scorer import (
    exclusive_accuracy,
    make_textcat_multilabel_scorer,
    make_textcat_scorer,
    textcat_multilabel_score,
    textcat_score,
)

LABELS = ["A", "B", "C"]


def example(gold, predicted, vocab=None):
    vocab = vocab or spacy.blank("en").vocab
    reference, prediction = Doc(vocab, words=["x"]), Doc(vocab, words=["x"])
    reference.cats, prediction.cats = gold, predicted
    return Example(prediction, reference)


def one_hot(label):
    return {name: float(name == label) for name in LABELS}


def test_accuracy_counts_the_top_label():
    examples = [
        example(one_hot("A"), {"A": 0.7, "B": 0.2, "C": 0.1}),  # right
        example(one_hot("B"), {"A": 0.5, "B": 0.4, "C": 0.1}),  # wrong
        example(one_hot("C"), {"A": 0.1, "B": 0.1, "C": 0.8}),  # right
        example(one_hot("A"), {"A": 0.4, "B": 0.4, "C": 0.2}),  # tie: the first listed label wins
    ]
    assert exclusive_accuracy(examples, LABELS) == 3 / 4
    scores = textcat_score(examples, labels=LABELS)
    assert scores["cats_accuracy"] == 3 / 4
    # The rest is spaCy's Scorer.score_cats for exclusive classes, unchanged.
    from spacy.scorer import Scorer

    expected = Scorer.score_cats(examples, "cats", labels=LABELS, multi_label=False)
    ours = ("cats_accuracy", "cats_coverage", "cats_covered_accuracy", "cats_score_desc")
    assert {key: value for key, value in scores.items() if key not in ours} == {
        key: value for key, value in expected.items() if key != "cats_score_desc"}
    assert scores["cats_score_desc"] == "macro F; accuracy 75.00%"
    assert scores["cats_coverage"] == 1.0 and scores["cats_covered_accuracy"] == 3 / 4


def test_accuracy_does_not_depend_on_the_threshold():
    examples = [example(one_hot("A"), {"A": 0.4, "B": 0.35, "C": 0.25}), example(one_hot("B"), {"A": 0.1, "B": 0.6, "C": 0.3})]
    for threshold in (0.0, 0.5, 0.9):
        assert textcat_score(examples, labels=LABELS, threshold=threshold)["cats_accuracy"] == 1.0


def test_examples_without_one_gold_label_count_as_wrong():
    examples = [
        example({"A": 0.0, "B": 0.0, "C": 0.0}, {"A": 0.9, "B": 0.05, "C": 0.05}),
        example({"A": 1.0, "B": 1.0, "C": 0.0}, {"A": 0.9, "B": 0.05, "C": 0.05}),
        example(one_hot("A"), {}),
        example(one_hot("A"), {"A": 0.9, "B": 0.05, "C": 0.05}),
    ]
    assert exclusive_accuracy(examples, LABELS) == 1 / 4
    assert exclusive_accuracy([], LABELS) is None


def test_accuracy_reads_only_the_components_labels():
    """Another component's cats on the same doc do not count."""
    examples = [example({**one_hot("A"), "TOPIC": 1.0}, {"A": 0.6, "B": 0.3, "C": 0.1, "TOPIC": 0.99})]
    assert exclusive_accuracy(examples, LABELS) == 1.0


def test_registered_and_found_by_entry_point():
    assert registry.scorers.get("spacy_cls.textcat_scorer.v1") is make_textcat_scorer
    (ep,) = [ep for ep in entry_points(group="spacy_scorers") if ep.name == "spacy_cls.textcat_scorer.v1"]
    assert ep.load() is make_textcat_scorer


def test_default_scorer_and_score_weights():
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", name="exclusive")
    nlp.add_pipe("cls_classifier_multilabel", name="multi")
    assert nlp.get_pipe_config("exclusive")["scorer"] == {"@scorers": "spacy_cls.textcat_scorer.v1"}
    assert nlp.get_pipe_config("multi")["scorer"] == {"@scorers": "spacy_cls.textcat_multilabel_scorer.v1"}
    assert nlp.get_pipe_meta("exclusive").default_score_weights["cats_accuracy"] == 0.0
    assert "cats_accuracy" not in nlp.get_pipe_meta("multi").default_score_weights
    # `spacy train` prints a column for every weight that is not None, and picks the best
    # model by the weighted ones only.
    single = spacy.blank("en")
    single.add_pipe("cls_classifier")
    assert single.config["training"]["score_weights"]["cats_accuracy"] == 0.0
    assert single.config["training"]["score_weights"]["cats_score"] == 1.0


@pytest.fixture(scope="module")
def initialized(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    data = [("good movie", {"POS": 1.0, "NEG": 0.0}), ("bad food", {"POS": 0.0, "NEG": 1.0})]
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text, cats in data]
    nlp.initialize(lambda: examples)
    return nlp, examples


def test_evaluate_reports_accuracy(initialized):
    nlp, examples = initialized
    scores = nlp.evaluate(examples)
    predicted = [max(nlp(eg.reference.text).cats.items(), key=lambda kv: kv[1])[0] for eg in examples]
    gold = [max(eg.reference.cats.items(), key=lambda kv: kv[1])[0] for eg in examples]
    assert scores["cats_accuracy"] == sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def test_pipeline_saved_with_spacys_scorer_still_loads(initialized, tmp_path):
    """Pipelines saved before this scorer existed name spaCy's in their config."""
    nlp, examples = initialized
    nlp.to_disk(tmp_path)
    config_path = tmp_path / "config.cfg"
    text = config_path.read_text(encoding="utf8")
    assert "spacy_cls.textcat_scorer.v1" in text
    config_path.write_text(text.replace("spacy_cls.textcat_scorer.v1", "spacy.textcat_scorer.v2"), encoding="utf8")
    old = spacy.load(tmp_path)
    assert old.get_pipe_config("cls_classifier")["scorer"] == {"@scorers": "spacy.textcat_scorer.v2"}
    scores = old.evaluate(examples)
    assert "cats_accuracy" not in scores
    assert scores["cats_macro_f"] == nlp.evaluate(examples)["cats_macro_f"]


@pytest.mark.parametrize("seed", range(5))
def test_without_decision_settings_the_figures_are_spacys(seed):
    """Exclusive and multi-label, random scores and gold (multi-label with missing gold
    labels): the P/R/F/AUC keys are spaCy's score_cats to the last bit."""
    import numpy
    from spacy.scorer import Scorer

    rng = numpy.random.default_rng(seed)
    exclusive, multi = [], []
    for _ in range(30):
        scores = rng.random(3)
        gold = LABELS[rng.integers(0, 3)]
        exclusive.append(example(one_hot(gold), dict(zip(LABELS, (scores / scores.sum()).tolist()))))
        gold_multi = {label: float(rng.random() < 0.4) for label in LABELS if rng.random() < 0.8}
        multi.append(example(gold_multi, dict(zip(LABELS, scores.tolist()))))
    for multi_label, examples, ours in ((False, exclusive, textcat_score), (True, multi, textcat_multilabel_score)):
        for threshold in (0.0, 0.3, 0.5):
            expected = Scorer.score_cats(examples, "cats", labels=LABELS, multi_label=multi_label, threshold=threshold)
            got = ours(examples, labels=LABELS, threshold=threshold)
            for key, value in expected.items():
                if key != "cats_score_desc":
                    assert got[key] == value, (multi_label, threshold, key)


def test_abstaining_docs_miss_their_gold_label_and_count_as_wrong():
    examples = [
        example(one_hot("A"), {"A": 0.9, "B": 0.05, "C": 0.05}),  # right, kept
        example(one_hot("B"), {"A": 0.5, "B": 0.4, "C": 0.1}),  # abstains (0.5 < 0.6): a miss, no false A
        example(one_hot("C"), {"A": 0.1, "B": 0.2, "C": 0.7}),  # right, kept
        example(one_hot("A"), {"A": 0.2, "B": 0.7, "C": 0.1}),  # wrong, kept: a miss of A and a false B
    ]
    settings = DecisionSettings(labels=tuple(LABELS), multi_label=False, abstain_threshold=0.6)
    scores = textcat_score(examples, labels=LABELS, decisions=settings)
    per = scores["cats_f_per_type"]
    assert per["A"]["p"] == pytest.approx(1.0) and per["A"]["r"] == pytest.approx(0.5)
    assert per["B"]["p"] == pytest.approx(0.0) and per["B"]["r"] == pytest.approx(0.0)
    assert per["C"]["f"] == pytest.approx(1.0)
    assert scores["cats_accuracy"] == 2 / 4
    assert scores["cats_coverage"] == 3 / 4
    assert scores["cats_covered_accuracy"] == pytest.approx(2 / 3)
    assert scores["cats_micro_p"] == pytest.approx(2 / 3) and scores["cats_micro_r"] == pytest.approx(2 / 4)
    assert "accuracy 50.00% counting the 25.00% abstained as wrong" in scores["cats_score_desc"]
    assert exclusive_accuracy(examples, LABELS, decisions=settings) == 2 / 4


def test_multilabel_figures_use_each_labels_threshold():
    examples = [
        example({"A": 1.0, "B": 0.0, "C": 1.0}, {"A": 0.3, "B": 0.6, "C": 0.55}),
        example({"A": 0.0, "B": 1.0, "C": 0.0}, {"A": 0.2, "B": 0.45, "C": 0.1}),
    ]
    settings = DecisionSettings(labels=tuple(LABELS), multi_label=True, threshold=0.5,
                                thresholds={"A": 0.25, "B": 0.4})
    per = textcat_multilabel_score(examples, labels=LABELS, decisions=settings)["cats_f_per_type"]
    # A: 0.3 >= 0.25 (tp), 0.2 < 0.25; B: 0.6 (fp), 0.45 (tp); C: global 0.5: 0.55 (tp)
    assert per["A"]["f"] == pytest.approx(1.0)
    assert per["B"]["p"] == pytest.approx(0.5) and per["B"]["r"] == pytest.approx(1.0)
    assert per["C"]["f"] == pytest.approx(1.0)


def test_the_multilabel_scorer_is_registered():
    assert registry.scorers.get("spacy_cls.textcat_multilabel_scorer.v1") is make_textcat_multilabel_scorer
