"""Soft labels: cats that are probabilities. The loss is cross-entropy against the
distribution (exclusive) or binary cross-entropy per label (multi-label); its gradient
with respect to the logits is checked by finite differences, hard 0/1 cats give the
hard-label loss exactly, and the checks stay strict."""
import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401
from spacy_cls.pipeline.validation import LabelDataError

MISSING_MODEL = "./no-such-model-folder"
LABELS = ["POS", "NEG", "MIXED"]
TEXTS = ["good movie", "bad food", "so-so", "fine", "hello world"]


def component_with_labels(factory, class_weights=None):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(factory, config={"model": {"name": MISSING_MODEL}, "class_weights": class_weights})
    for label in LABELS:
        pipe.add_label(label)
    return nlp, pipe


def examples_of(nlp, rows):
    return [Example.from_dict(nlp.make_doc(text), {"cats": dict(zip(LABELS, row))}) for text, row in zip(TEXTS, rows)]


def activation(factory, logits):
    if factory == "cls_classifier":
        e = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + numpy.exp(-logits))


def soft_rows(factory, rng, n):
    if factory == "cls_classifier":
        rows = rng.dirichlet(numpy.ones(len(LABELS)), size=n)
        return rows / rows.sum(axis=1, keepdims=True)
    return rng.uniform(0, 1, size=(n, len(LABELS)))


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
@pytest.mark.parametrize("class_weights", [None, {"POS": 2.0, "MIXED": 0.5}])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(factory, class_weights, seed):
    rng = numpy.random.default_rng(seed)
    nlp, pipe = component_with_labels(factory, class_weights)
    examples = examples_of(nlp, soft_rows(factory, rng, 4).tolist())
    logits = rng.normal(0, 1.5, size=(4, len(LABELS)))

    def loss_at(z):
        return pipe.get_loss(examples, activation(factory, z).astype("float32"))[0]

    _, d_logits = pipe.get_loss(examples, activation(factory, logits).astype("float32"))
    eps = 1e-3
    numeric = numpy.zeros_like(logits)
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            up, down = logits.copy(), logits.copy()
            up[i, j] += eps
            down[i, j] -= eps
            numeric[i, j] = (loss_at(up) - loss_at(down)) / (2 * eps)
    numpy.testing.assert_allclose(numpy.asarray(d_logits), numeric, atol=2e-3, rtol=2e-2)


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
def test_soft_loss_is_cross_entropy_against_the_distribution(factory):
    rng = numpy.random.default_rng(5)
    nlp, pipe = component_with_labels(factory)
    targets = soft_rows(factory, rng, 5)
    probs = activation(factory, rng.normal(size=(5, len(LABELS)))).astype("float32")
    loss, d = pipe.get_loss(examples_of(nlp, targets.tolist()), probs)
    p = numpy.clip(probs.astype("float64"), 1e-7, 1 - 1e-7)
    if factory == "cls_classifier":
        expected = -(targets * numpy.log(p)).sum() / 5
        numpy.testing.assert_allclose(numpy.asarray(d), (probs - targets) / 5, atol=1e-6)
    else:
        expected = -(targets * numpy.log(p) + (1 - targets) * numpy.log(1 - p)).sum() / 5
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
@pytest.mark.parametrize("class_weights", [None, {"NEG": 3.0}])
def test_hard_cats_give_exactly_the_hard_label_loss(factory, class_weights):
    from spacy_cls.decisions.weights import weighted_loss

    rng = numpy.random.default_rng(3)
    nlp, pipe = component_with_labels(factory, class_weights)
    if factory == "cls_classifier":
        hard = numpy.eye(len(LABELS))[rng.integers(0, len(LABELS), size=5)]
    else:
        hard = rng.integers(0, 2, size=(5, len(LABELS))).astype(float)
    probs = activation(factory, rng.normal(size=(5, len(LABELS)))).astype("float32")
    loss, d = pipe.get_loss(examples_of(nlp, hard.tolist()), probs)
    weights = None if class_weights is None else numpy.asarray(
        [class_weights.get(label, 1.0) for label in LABELS], dtype="float32")
    expected, expected_d = weighted_loss(probs, hard.astype("float32"), numpy.ones_like(probs), weights,
                                         multi_label=factory != "cls_classifier")
    assert loss == expected
    numpy.testing.assert_array_equal(numpy.asarray(d), expected_d)


def test_exclusive_soft_rows_within_tolerance_are_renormalised():
    nlp, pipe = component_with_labels("cls_classifier")
    probs = numpy.full((1, 3), 1 / 3, dtype="float32")
    near = pipe.get_loss(examples_of(nlp, [[0.3333, 0.3333, 0.3333]]), probs)
    exact = pipe.get_loss(examples_of(nlp, [[1 / 3, 1 / 3, 1 / 3]]), probs)
    assert near[0] == pytest.approx(exact[0], rel=1e-5)
    numpy.testing.assert_allclose(numpy.asarray(near[1]), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "row,found",
    [
        ([0.5, 0.3, 0.0], "sum to 0.8"),
        ([0.7, 0.7, 0.0], "sum to 1.4"),
        ([0.4, 0.0, 0.0], "sum to 0.4"),
        ([0.999, 0.5, 0.0], "sum to 1.499"),
    ],
)
def test_exclusive_soft_cats_must_sum_to_one(row, found):
    nlp, pipe = component_with_labels("cls_classifier")
    examples = examples_of(nlp, [[1.0, 0.0, 0.0], row])
    with pytest.raises(LabelDataError) as error:
        pipe.get_loss(examples, numpy.full((2, 3), 1 / 3, dtype="float32"))
    message = str(error.value)
    assert "batch example 1 ('bad food')" in message and found in message
    assert "cls_classifier_multilabel" in message


@pytest.mark.parametrize("row", [[0.5, 0.3, 0.0], [0.9, 0.9, 0.2], [0.01, 0.0, 1.0]])
def test_multilabel_soft_cats_need_not_sum_to_one(row):
    nlp, pipe = component_with_labels("cls_classifier_multilabel")
    loss, _ = pipe.get_loss(examples_of(nlp, [row]), numpy.full((1, 3), 0.5, dtype="float32"))
    assert numpy.isfinite(loss)


@pytest.mark.parametrize("factory,target", [
    ("cls_classifier", {"POS": 0.7, "NEG": 0.3}),
    ("cls_classifier", {"POS": 0.2, "NEG": 0.8}),
    ("cls_classifier_multilabel", {"POS": 0.3, "NEG": 0.9}),
])
def test_training_on_soft_cats_learns_the_distribution(tiny_bert, factory, target):
    """The minimum of cross-entropy against q is p = q: a model fitted to one soft
    example predicts the example's probabilities, not 0/1."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": tiny_bert}})
    examples = [Example.from_dict(nlp.make_doc("good movie"), {"cats": target})]
    nlp.initialize(lambda: examples)
    optimizer = Adam(1e-2)
    for _ in range(80):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    cats = nlp("good movie").cats
    for label, value in target.items():
        assert cats[label] == pytest.approx(value, abs=0.05)
