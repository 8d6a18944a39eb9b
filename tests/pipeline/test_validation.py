"""Bad labelled data is refused before training starts (at `initialize`, and for
each batch at `update`), with a message that says what, where and what to do."""
import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.training.initialize import init_nlp
from thinc.api import Adam

import spacy_cls  # noqa: F401
from spacy_cls.pipeline.validation import LabelDataError

LONG_TEXT = "The room was large and clean, the staff friendly, and breakfast was served until eleven."
GOOD = [("good movie", {"POS": 1.0, "NEG": 0.0}), ("bad food", {"POS": 0.0, "NEG": 1.0})]
MISSING_MODEL = "./no-such-model-folder"  # the data checks run before the encoder is loaded


def make_examples(nlp, data):
    return [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text, cats in data]


def build(model_name, factory="cls_classifier"):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": model_name}})
    return nlp


def initialize_with(data, factory="cls_classifier"):
    nlp = build(MISSING_MODEL, factory)
    examples = make_examples(nlp, data)
    nlp.initialize(lambda: examples)


@pytest.mark.parametrize(
    "cats,found",
    [
        ({"POS": 1.0, "NEG": 1.0}, "has 2 labels set to 1.0 (POS, NEG)"),
        ({"POS": 0.0, "NEG": 0.0}, "has no label set to 1.0"),
        ({}, "has no cats at all"),
    ],
)
def test_exclusive_example_needs_exactly_one_positive(cats, found):
    with pytest.raises(LabelDataError) as error:
        initialize_with([*GOOD, (LONG_TEXT, cats)])
    message = str(error.value)
    assert message.startswith("cls_classifier: training example 2 (")
    assert found in message
    assert repr(LONG_TEXT[:60] + "…") in message
    assert "use the `cls_classifier_multilabel` component" in message


def test_multilabel_data_given_to_the_exclusive_classifier():
    data = [
        ("the food was great", {"FOOD": 1.0, "SERVICE": 0.0}),
        ("great food, rude staff", {"FOOD": 1.0, "SERVICE": 1.0}),
    ]
    with pytest.raises(LabelDataError, match=r"training example 1 \('great food, rude staff'\) has 2 labels"):
        initialize_with(data)


def test_multilabel_component_accepts_the_same_data(tiny_bert):
    nlp = build(tiny_bert, "cls_classifier_multilabel")
    data = [
        ("the food was great", {"FOOD": 1.0, "SERVICE": 0.0}),
        ("great food, rude staff", {"FOOD": 1.0, "SERVICE": 1.0}),
        ("this movie is fun", {"FOOD": 0.0, "SERVICE": 0.0}),
    ]
    examples = make_examples(nlp, data)
    nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=Adam(1e-3))


def test_single_label_for_the_exclusive_classifier():
    data = [("good movie", {"POS": 1.0}), ("bad food", {"POS": 0.0})]
    with pytest.raises(LabelDataError) as error:
        initialize_with(data)
    message = str(error.value)
    assert "found only the label 'POS' in the training data" in message
    assert "cls_classifier_multilabel" in message and '"NEGATIVE": 0.0' in message


def test_single_label_is_fine_for_multilabel(tiny_bert):
    nlp = build(tiny_bert, "cls_classifier_multilabel")
    examples = make_examples(nlp, [("good movie", {"POS": 1.0}), ("bad food", {"POS": 0.0})])
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("cls_classifier_multilabel").labels == ("POS",)


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
@pytest.mark.parametrize("value", [float("nan"), -0.25, 1.5, float("inf"), "0.5", None])
def test_values_outside_0_1_are_refused(factory, value):
    data = [*GOOD, ("so-so", {"POS": value, "NEG": 0.5})]
    with pytest.raises(LabelDataError, match=r"training example 2 \('so-so'\) has cats\['POS'\] = .*probability from 0.0 to 1.0"):
        initialize_with(data, factory)


def test_explicit_labels_must_cover_the_data():
    nlp = build(MISSING_MODEL)
    examples = make_examples(nlp, GOOD)
    component = nlp.get_pipe("cls_classifier")
    with pytest.raises(LabelDataError) as error:
        component.initialize(lambda: examples, nlp=nlp, labels=["POS", "MIXED"])
    message = str(error.value)
    assert "training example 0 ('good movie') has the label 'NEG'" in message
    assert "not among the component's labels (POS, MIXED)" in message


@pytest.fixture(scope="module")
def trained(tiny_bert):
    nlp = build(tiny_bert)
    examples = make_examples(nlp, GOOD)
    nlp.initialize(lambda: examples)
    return nlp


def head_weights(nlp):
    return nlp.get_pipe("cls_classifier").model.get_ref("output_layer").get_param("W").copy()


@pytest.mark.parametrize(
    "cats,match",
    [
        ({"POS": 1.0, "NEG": 1.0}, r"batch example 1 \('two at once'\) has 2 labels set to 1.0"),
        ({"NEG": 0.0}, r"batch example 1 \('two at once'\) has no label set to 1.0"),
        ({"POS": 0.0, "SPORTS": 1.0}, r"batch example 1 \('two at once'\) has the label 'SPORTS'"),
        ({"POS": float("nan"), "NEG": 1.0}, r"batch example 1 \('two at once'\) has cats\['POS'\] = nan"),
    ],
)
def test_bad_batch_is_refused_before_any_weight_changes(trained, cats, match):
    examples = make_examples(trained, [GOOD[0], ("two at once", cats)])
    before = head_weights(trained)
    with pytest.raises(LabelDataError, match=match):
        trained.update(examples, sgd=Adam(1e-2))
    numpy.testing.assert_array_equal(head_weights(trained), before)


def test_label_unknown_to_the_component_names_the_fix(trained):
    examples = make_examples(trained, [("sports news", {"POS": 0.0, "NEG": 0.0, "SPORTS": 1.0})])
    with pytest.raises(LabelDataError) as error:
        trained.update(examples)
    message = str(error.value)
    assert "not among the component's labels (POS, NEG)" in message
    assert "[initialize.components.cls_classifier.labels]" in message


# --- the dev corpus that `spacy train` scores -------------------------------------------


def write_docbin(nlp, data, path):
    docs = []
    for text, cats in data:
        doc = nlp.make_doc(text)
        doc.cats = cats
        docs.append(doc)
    DocBin(docs=docs).to_disk(path)
    return str(path)


def training_config(tmp_path, factory, train, dev, model_name=MISSING_MODEL):
    nlp = build(model_name, factory)
    config = nlp.config.copy()
    config["paths"]["train"] = write_docbin(nlp, train, tmp_path / "train.spacy")
    config["paths"]["dev"] = write_docbin(nlp, dev, tmp_path / "dev.spacy")
    return config


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
def test_dev_label_not_in_training_data_stops_spacy_train_setup(tmp_path, factory):
    dev = [("good film", {"POS": 1.0, "NEG": 0.0}), (LONG_TEXT, {"POS": 0.0, "NEG": 0.0, "MIXED": 1.0})]
    config = training_config(tmp_path, factory, GOOD, dev)
    # init_nlp is what `spacy train` runs before the first step.
    with pytest.raises(LabelDataError) as error:
        init_nlp(config)
    message = str(error.value)
    assert f"{factory}: dev example 1 ('{LONG_TEXT[:60]}…') has the label 'MIXED'" in message
    assert "Training never sees this label" in message


def test_dev_example_with_two_labels_for_the_exclusive_classifier(tmp_path):
    dev = [("good film", {"POS": 1.0, "NEG": 1.0})]
    config = training_config(tmp_path, "cls_classifier", GOOD, dev)
    with pytest.raises(LabelDataError, match=r"dev example 0 \('good film'\) has 2 labels set to 1.0"):
        init_nlp(config)


def test_matching_dev_data_initialises(tmp_path, tiny_bert):
    dev = [("good film", {"POS": 1.0, "NEG": 0.0}), ("awful", {"POS": 0.0, "NEG": 1.0})]
    config = training_config(tmp_path, "cls_classifier", GOOD, dev, model_name=tiny_bert)
    nlp = init_nlp(config)
    assert nlp.get_pipe("cls_classifier").labels == ("POS", "NEG")


def test_multilabel_with_explicit_labels_leaves_other_labels_alone(tiny_bert):
    """Two components may share doc.cats; labels given explicitly claim only those."""
    nlp = build(tiny_bert, "cls_classifier_multilabel")
    data = [
        ("good movie", {"FUN": 1.0, "TOPIC_FILM": 1.0}),
        ("bad food", {"FUN": 0.0, "TOPIC_FOOD": 1.0}),
    ]
    examples = make_examples(nlp, data)
    nlp.get_pipe("cls_classifier_multilabel").initialize(lambda: examples, nlp=nlp, labels=["FUN"])
    nlp.update(examples, sgd=Adam(1e-3))
    assert set(nlp("good movie").cats) == {"FUN"}
