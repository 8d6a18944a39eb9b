"""The numpy side of the decisions: class weights and the weighted loss, temperature
scaling and calibration measures, thresholds, abstention and uncertainty."""
import numpy
import pytest

from spacy_cls.decisions.calibration import (
    T_MIN,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from spacy_cls.decisions.apply import DecisionSettings, decide
from spacy_cls.decisions.thresholds import (
    abstain_for_accuracy,
    coverage_curve,
    f1_scores,
    tune_thresholds,
)
from spacy_cls.decisions.uncertainty import uncertainty
from spacy_cls.decisions.weights import resolve_class_weights, weighted_loss


def one_hot(index, n):
    out = numpy.zeros((len(index), n))
    out[numpy.arange(len(index)), index] = 1.0
    return out


# --- class weights ---------------------------------------------------------


def test_balanced_exclusive_weights_are_sklearns():
    truths = one_hot([0, 0, 0, 1], 2)
    weights = resolve_class_weights("balanced", ["A", "B"], truths, multi_label=False, component="c")
    # n / (n_labels * count): 4 / (2 * 3), 4 / (2 * 1)
    assert weights == pytest.approx([4 / 6, 2.0])


def test_balanced_multilabel_weights_are_negatives_over_positives():
    truths = numpy.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, numpy.nan]])
    weights = resolve_class_weights("balanced", ["A", "B", "C"], truths, multi_label=True, component="c")
    # A: 1 negative / 3 positives; B: 3 / 1; C: no positive among 3 known -> 1.0
    assert weights == pytest.approx([1 / 3, 3.0, 1.0])


def test_weight_table_fills_missing_labels_and_rejects_unknown_ones():
    assert resolve_class_weights({"B": 4}, ["A", "B"], None, multi_label=False, component="c") == [1.0, 4.0]
    with pytest.raises(ValueError, match="does not have"):
        resolve_class_weights({"Z": 4}, ["A", "B"], None, multi_label=False, component="c")


@pytest.mark.parametrize("bad", ["balance", 3, {"A": 0}, {"A": -1.0}, {"A": float("nan")}, {"A": "x"}, {"A": True}])
def test_bad_class_weights_say_what_to_write(bad):
    with pytest.raises(ValueError, match="class_weights"):
        resolve_class_weights(bad, ["A", "B"], numpy.ones((1, 2)), multi_label=False, component="c")


def _numeric_grad(f, z, eps=1e-6):
    grad = numpy.zeros_like(z)
    for idx in numpy.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("weights", [None, numpy.array([0.5, 3.0, 1.5])])
def test_weighted_softmax_loss_gradient_is_the_logit_gradient(weights):
    rng = numpy.random.default_rng(0)
    z = rng.normal(size=(4, 3))
    truths = one_hot([0, 1, 2, 1], 3)
    mask = numpy.ones_like(truths)

    def loss(logits):
        return weighted_loss(softmax(logits), truths, mask, weights, multi_label=False)[0]

    # the unclipped loss: probabilities far from the clip bounds here
    _, d = weighted_loss(softmax(z), truths, mask, weights, multi_label=False)
    assert d == pytest.approx(_numeric_grad(loss, z), abs=1e-6)


@pytest.mark.parametrize("weights", [None, numpy.array([0.5, 3.0, 10.0])])
def test_weighted_sigmoid_loss_gradient_is_the_logit_gradient(weights):
    rng = numpy.random.default_rng(1)
    z = rng.normal(size=(5, 3))
    truths = (rng.random((5, 3)) > 0.5).astype(float)
    mask = numpy.ones_like(truths)
    sig = lambda x: 1 / (1 + numpy.exp(-x))  # noqa: E731

    def loss(logits):
        return weighted_loss(sig(logits), truths, mask, weights, multi_label=True)[0]

    _, d = weighted_loss(sig(z), truths, mask, weights, multi_label=True)
    assert d == pytest.approx(_numeric_grad(loss, z), abs=1e-6)


def test_weights_multiply_the_loss_of_the_weighted_class():
    probs = numpy.array([[0.7, 0.3], [0.2, 0.8]])
    truths = one_hot([0, 1], 2)
    mask = numpy.ones_like(truths)
    plain, d_plain = weighted_loss(probs, truths, mask, None, multi_label=False)
    weighted, d_weighted = weighted_loss(probs, truths, mask, numpy.array([1.0, 4.0]), multi_label=False)
    assert weighted > plain
    assert d_weighted[0] == pytest.approx(d_plain[0])
    assert d_weighted[1] == pytest.approx(4 * d_plain[1])


# --- temperature and calibration -------------------------------------------


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    rng = numpy.random.default_rng(0)
    true_logits = rng.normal(scale=2.0, size=(4000, 4))
    probs = softmax(true_logits)
    gold_index = numpy.array([rng.choice(4, p=p) for p in probs])
    gold = one_hot(gold_index, 4)
    overconfident = true_logits * 3.0  # what an over-confident model would output
    fitted = fit_temperature(overconfident, gold)
    assert fitted == pytest.approx(3.0, rel=0.1)
    assert nll(overconfident, gold, fitted) < nll(overconfident, gold, 1.0)
    calibrated = softmax(overconfident, fitted)
    assert expected_calibration_error(calibrated, gold) < expected_calibration_error(softmax(overconfident), gold)
    # the arg-max, so accuracy, never changes
    assert (calibrated.argmax(axis=1) == overconfident.argmax(axis=1)).all()


def test_a_perfectly_separated_set_stops_at_the_lower_bound():
    logits = numpy.array([[2.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, one_hot([0, 1], 2)) == pytest.approx(T_MIN, rel=1e-2)


def test_fit_temperature_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="two labels"):
        fit_temperature(numpy.zeros((3, 1)), numpy.ones((3, 1)))
    with pytest.raises(ValueError, match="at least one doc"):
        fit_temperature(numpy.zeros((0, 2)), numpy.zeros((0, 2)))


def test_ece_and_brier_by_hand():
    probs = numpy.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    gold = one_hot([0, 1, 0, 1], 2)
    # bins: 0.9 (2 docs, 1 right: |0.5 - 0.9|), 0.6 (2 docs, both right: |1 - 0.6|)
    assert expected_calibration_error(probs, gold, n_bins=10) == pytest.approx((2 * 0.4 + 2 * 0.4) / 4)
    brier = ((0.1 ** 2 + 0.1 ** 2) + (0.9 ** 2 + 0.9 ** 2) + (0.4 ** 2 + 0.4 ** 2) + (0.4 ** 2 + 0.4 ** 2)) / 4
    assert brier_score(probs, gold) == pytest.approx(brier)
    assert expected_calibration_error(one_hot([0, 1], 2), one_hot([0, 1], 2)) == 0.0


# --- thresholds and abstention ----------------------------------------------


def test_tuned_threshold_maximises_each_labels_f1():
    # label 0: positives score 0.2-0.3, negatives 0.1 -> best cut at 0.2; label 1: too rare
    probs = numpy.array([[0.2, 0.9], [0.3, 0.1], [0.25, 0.1], [0.1, 0.1], [0.1, 0.2], [0.12, 0.1]])
    gold = numpy.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    tuned = tune_thresholds(probs, gold, ["a", "b"], default=0.5, min_positives=2, min_threshold=0.05)
    # any cut in (0.12, 0.2] separates label a: the middle of that gap
    assert tuned["a"] == pytest.approx(0.16)
    assert tuned["b"] == 0.5
    decided = decide(probs, DecisionSettings(labels=("a", "b"), multi_label=True, thresholds={"a": tuned["a"]}))
    assert f1_scores(decided, gold)["per_label_f1"][0] == 1.0


def test_tuned_thresholds_respect_the_floor():
    probs = numpy.array([[0.01], [0.02], [0.5]])
    gold = numpy.array([[1], [1], [0]])
    tuned = tune_thresholds(probs, gold, ["a"], default=0.5, min_positives=1, min_threshold=0.3)
    assert tuned["a"] >= 0.3


def test_tune_thresholds_checks_shapes():
    with pytest.raises(ValueError, match="do not match"):
        tune_thresholds(numpy.zeros((2, 2)), numpy.zeros((2, 3)), ["a", "b"], default=0.5)


def test_abstaining_trades_coverage_for_accuracy():
    probs = numpy.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    gold = one_hot([0, 0, 1, 0], 2)  # the 0.6 doc is wrong
    # the cut lies in the gap between the lowest top score kept (0.9) and the next (0.6)
    assert abstain_for_accuracy(probs, gold, 1.0) == 0.8  # a short decimal in the middle half of (0.6, 0.9)
    assert abstain_for_accuracy(probs, gold, 0.75) == 0.0  # all docs together reach it
    rows = {row["threshold"]: row for row in coverage_curve(probs, gold, [0.0, 0.85, 0.9])}
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["accuracy"] == 0.75
    assert rows[0.85]["coverage"] == 0.5 and rows[0.85]["accuracy"] == 1.0
    # scores are read as doc.cats holds them, float32: 0.9 becomes 0.8999999761..., under 0.9
    assert rows[0.9]["coverage"] == 0.25
    decided = decide(probs, DecisionSettings(labels=("a", "b"), multi_label=False, abstain_threshold=0.8))
    assert decided.sum(axis=1).tolist() == [1, 1, 0, 0]


# --- uncertainty --------------------------------------------------------------


def test_margin_and_entropy_of_exclusive_scores():
    probs = numpy.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1]])
    margin = uncertainty(probs, multi_label=False, measure="margin")
    assert margin == pytest.approx([0.0, 1.0, 1.0, 0.5])
    entropy = uncertainty(probs, multi_label=False, measure="entropy")
    assert entropy[0] == pytest.approx(0.0, abs=1e-9) and entropy[2] == pytest.approx(1.0)
    assert 0 < entropy[1] < 1


def test_multilabel_margin_is_one_at_a_labels_threshold():
    probs = numpy.array([[0.3, 0.0], [1.0, 0.0], [0.65, 0.0]])
    margin = uncertainty(probs, multi_label=True, measure="margin", thresholds=numpy.array([0.3, 0.5]))
    # doc 0 sits on label 0's threshold; doc 1 is as far from both as it gets
    assert margin == pytest.approx([1.0, 0.0, 0.5])
    entropy = uncertainty(numpy.array([[0.5, 0.01]]), multi_label=True, measure="entropy")
    assert entropy == pytest.approx([1.0])


def test_uncertainty_of_no_docs():
    assert uncertainty(numpy.zeros((0, 3)), multi_label=False).shape == (0,)
