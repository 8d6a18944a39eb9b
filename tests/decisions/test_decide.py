"""The one decision function and the scores it decides on: `scores_from_logits` (finite
for every accepted temperature and any finite logits), `decide` on float32 scores,
`DecisionSettings` refusing values that cannot mean anything, and label tables that
survive the config format."""
import math

import numpy
import pytest
from thinc.api import Config

from spacy_cls.decisions.apply import (
    DecisionSettings,
    check_temperature,
    decide,
    decide_cats,
    decide_labels,
    scores_from_logits,
)
from spacy_cls.decisions.labels import encode_label_table, resolve_label_table
from spacy_cls.decisions.thresholds import abstain_for_accuracy, best_threshold, cut_between, tune_thresholds

TEMPERATURES = [1e-300, 1e-45, 1e-40, 1e-12, 1e-3, 0.05, 1.0, 20.0, 1e6, 1e30, 1e300, 5e-324]
LOGITS = [
    [[2.0, -1.0, 0.5]],
    [[1e30, -1e30, 0.0]],
    [[3.4e38, -3.4e38, 1.0]],
    [[-1e30, -1e30, -1e30]],
    [[0.0, 0.0, 0.0]],
    [[1e-30, 0.0, -1e-30]],
    [[numpy.inf, 0.0, -1.0]],
    [[-numpy.inf, -numpy.inf, 5.0]],
    [[88.0, -88.0, 0.0], [800.0, 799.0, -800.0]],
]


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("logits", LOGITS)
def test_exclusive_scores_are_finite_for_every_accepted_temperature(logits, temperature):
    scores = scores_from_logits(numpy.array(logits, dtype="float32"), multi_label=False, temperature=temperature)
    assert scores.dtype == numpy.float32
    assert numpy.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    # the arg-max of the finite logits is a highest score at any temperature
    top = numpy.array(logits).argmax(axis=1)
    assert (scores[numpy.arange(len(top)), top] == scores.max(axis=1)).all()


def test_tiny_temperatures_give_one_hot_scores_and_huge_ones_uniform_scores():
    logits = numpy.array([[2.0, 1.0, 0.0]])
    for tiny in (1e-40, 1e-300):
        assert scores_from_logits(logits, multi_label=False, temperature=tiny).tolist() == [[1.0, 0.0, 0.0]]
    assert scores_from_logits(logits, multi_label=False, temperature=1e30)[0] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("logits", [[[1e30, -1e30, 0.0, 3.0]], [[numpy.inf, -numpy.inf, 0.0, 40.0]], [[-800.0, 800.0, 1e-9, -1e-9]]])
def test_multilabel_sigmoid_is_finite_for_extreme_logits(logits):
    scores = scores_from_logits(numpy.array(logits), multi_label=True)
    assert scores.dtype == numpy.float32 and numpy.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    expected = 1 / (1 + numpy.exp(-numpy.clip(numpy.array(logits, dtype="float64"), -700, 700)))
    assert scores == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, -1e-300, float("nan"), float("inf"), float("-inf"), True, False,
                                 "1.0", "abc", None, [1.0], 1e-400])
def test_temperatures_outside_the_range_are_refused_with_what_to_write(bad):
    with pytest.raises(ValueError, match="temperature .* finite number above 0"):
        check_temperature(bad, "c")
    with pytest.raises(ValueError, match="temperature"):
        DecisionSettings(labels=("A", "B"), multi_label=False, temperature=bad)


@pytest.mark.parametrize("field,bad", [
    ("abstain_threshold", float("nan")), ("abstain_threshold", -1), ("abstain_threshold", 2), ("abstain_threshold", 1.0000001),
    ("abstain_threshold", True), ("abstain_threshold", "0.5"), ("abstain_threshold", float("inf")),
    ("threshold", float("nan")), ("threshold", -0.1), ("threshold", 2), ("threshold", "0.5"), ("threshold", None),
])
def test_exclusive_thresholds_outside_0_1_are_refused(field, bad):
    with pytest.raises(ValueError, match=field):
        DecisionSettings(labels=("A", "B"), multi_label=False, **{field: bad})


@pytest.mark.parametrize("bad", [float("nan"), -1, 2, True, "0.3", None, float("-inf")])
def test_multilabel_thresholds_outside_0_1_are_refused(bad):
    with pytest.raises(ValueError, match="threshold"):
        DecisionSettings(labels=("A", "B"), multi_label=True, thresholds={"A": bad})
    if bad is not None:
        with pytest.raises(ValueError, match="threshold"):
            DecisionSettings(labels=("A", "B"), multi_label=True, threshold=bad)


def test_settings_that_do_not_apply_are_refused():
    with pytest.raises(ValueError, match="exclusive"):
        DecisionSettings(labels=("A",), multi_label=True, temperature=2.0)
    with pytest.raises(ValueError, match="exclusive"):
        DecisionSettings(labels=("A",), multi_label=True, abstain_threshold=0.5)
    with pytest.raises(ValueError, match="multi-label"):
        DecisionSettings(labels=("A", "B"), multi_label=False, thresholds={"A": 0.5})
    with pytest.raises(ValueError, match="does not have.*'C'"):
        DecisionSettings(labels=("A", "B"), multi_label=True, thresholds={"C": 0.5})
    with pytest.raises(ValueError, match="uncertainty"):
        DecisionSettings(labels=("A", "B"), multi_label=False, uncertainty="variance")


def test_decisions_compare_float32_scores_as_doc_cats_holds_them():
    """0.9 as float32 is 0.89999997...: a doc scoring "0.9" is under a threshold of 0.9,
    whether its score comes as float64, float32 or from doc.cats (a Python float)."""
    scores64 = numpy.array([[0.9, 0.1]])
    exclusive = DecisionSettings(labels=("A", "B"), multi_label=False, abstain_threshold=0.9)
    cats = {"A": float(numpy.float32(0.9)), "B": float(numpy.float32(0.1))}
    assert decide_labels(scores64, exclusive) == decide_labels(scores64.astype("float32"), exclusive) == [[]]
    assert decide_cats(cats, exclusive) == []
    assert decide_cats(cats, exclusive.replace(abstain_threshold=float(numpy.float32(0.9)))) == ["A"]
    multi = DecisionSettings(labels=("A", "B"), multi_label=True, thresholds={"A": 0.9, "B": 0.1})
    # float32(0.1) is 0.10000000149..., over 0.1
    assert decide_labels(scores64, multi) == [["B"]]
    assert decide_cats(cats, multi) == ["B"]


def test_exclusive_decisions_ties_abstention_and_bad_rows():
    settings = DecisionSettings(labels=("A", "B", "C"), multi_label=False)
    scores = numpy.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [numpy.nan, 0.5, 0.5], [0.0, 0.0, 0.0]])
    # ties go to the label listed first; a row with a NaN gets no label
    assert decide_labels(scores, settings) == [["B"], ["A"], [], ["A"]]
    assert decide_labels(scores, settings.replace(abstain_threshold=0.45)) == [["B"], [], [], []]
    assert decide(numpy.zeros((0, 3)), settings).shape == (0, 3)
    with pytest.raises(ValueError, match="for 3 labels"):
        decide(numpy.zeros((2, 2)), settings)


def test_multilabel_decisions_use_each_labels_threshold_or_the_global_one():
    settings = DecisionSettings(labels=("A", "B", "C"), multi_label=True, threshold=0.5, thresholds={"A": 0.2})
    scores = numpy.array([[0.25, 0.5, 0.49], [0.1, 0.9, numpy.nan]])
    assert decide_labels(scores, settings) == [["A", "B"], ["B"]]
    assert settings.cuts.tolist() == [0.2, 0.5, 0.5]


def test_cuts_lie_in_the_gap_never_on_a_score():
    for lower, upper in [(0.55, 0.65), (0.1, 0.2), (0.899999976, 0.9), (1e-8, 3e-8), (0.0, 1.0),
                         (float(numpy.float32(0.3)), float(numpy.nextafter(numpy.float32(0.3), numpy.float32(1))))]:
        t = cut_between(lower, upper)
        assert lower < t < upper
        assert float(repr(t)) == t  # written exactly
    assert cut_between(0.55, 0.65) == 0.6
    with pytest.raises(ValueError):
        cut_between(0.5, 0.5)


def test_tuned_thresholds_and_abstain_cuts_are_never_a_dev_score():
    rng = numpy.random.default_rng(0)
    for trial in range(20):
        probs = rng.random((40, 3)).astype("float32")
        gold = rng.random((40, 3)) < probs
        tuned = tune_thresholds(probs, gold, ["a", "b", "c"], default=0.5, min_positives=1)
        for j, label in enumerate("abc"):
            assert tuned[label] not in set(probs[:, j].astype("float64").tolist())
            # the cut decides as the best candidate does, on float32 scores
            t, best = best_threshold(probs[:, j], gold[:, j], min_threshold=0.05)
            assert t == tuned[label]
        exclusive = rng.random((40, 2)).astype("float32")
        exclusive /= exclusive.sum(axis=1, keepdims=True)
        cut = abstain_for_accuracy(exclusive, numpy.eye(2)[rng.integers(0, 2, 40)], 0.6)
        if cut not in (None, 0.0):
            assert cut not in set(exclusive.max(axis=1).astype("float64").tolist())


AWKWARD = ['pos "q"', "neg $x", "a\\b", "ünï 中文", "with space", "k=v", "[sec]", "#hash", "${x.y}", "it's",
           "semi;colon", "$$", "%(x)s", "a\nb", '{"j": 1}', " lead", "trail ", "x:y", "UPPER", "$", "${",
           "😀 ok", "a\u2028b", "tab\there", "=", "[", "#"]


def test_label_tables_survive_the_config_round_trip():
    table = {label: i / 100 for i, label in enumerate(AWKWARD)}
    encoded = encode_label_table(table, AWKWARD, "thresholds")
    text = Config({"components": {"c": {"thresholds": encoded}}}).to_str()
    for interpolate in (True, False):
        back = Config().from_str(text, interpolate=interpolate)["components"]["c"]["thresholds"]
        assert resolve_label_table(back, AWKWARD, "thresholds", "c") == table
    # labels that need no escape are written as they are
    assert {"pos \"q\"", "neg $x", "ünï 中文", "UPPER"} <= set(encoded)
    assert "k=v" not in encoded and "k\\u003dv" in encoded


def test_an_escaped_key_that_would_read_as_another_label_is_refused():
    labels = ["k=v", "k\\u003dv"]
    with pytest.raises(ValueError, match="cannot be written"):
        encode_label_table({"k=v": 0.5}, labels, "thresholds")
    assert resolve_label_table({"k\\u003dv": 0.2}, labels, "thresholds", "c") == {"k\\u003dv": 0.2}
    with pytest.raises(ValueError, match="twice"):
        resolve_label_table({"k=v": 0.2, "k\\u003dv": 0.3}, ["k=v"], "thresholds", "c")


def test_nothing_here_gives_nan():
    assert not math.isnan(cut_between(0.0, 5e-324 * 4))
