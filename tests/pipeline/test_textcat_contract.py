"""The behaviours spaCy's own textcat tests (spacy/tests/pipeline/test_textcat.py) hold
`textcat` and `textcat_multilabel` to, run against those two and against our two
components with the tiny random BERT, so that a divergence fails here.

Where our components deliberately differ (docs/textcat.md), the test says so and checks
our side of it."""
import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.util import load_model_from_config
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401
from spacy_cls.pipeline.predictions import ClsScores

EXCLUSIVE = ["textcat", "cls_classifier"]
MULTILABEL = ["textcat_multilabel", "cls_classifier_multilabel"]
ALL = EXCLUSIVE + MULTILABEL
OURS = ["cls_classifier", "cls_classifier_multilabel"]

SINGLE_DATA = [
    ("i am so happy", {"POSITIVE": 1.0, "NEGATIVE": 0.0}),
    ("i am so sad", {"POSITIVE": 0.0, "NEGATIVE": 1.0}),
]
MULTI_DATA = [
    ("the food was great but the service was slow", {"FOOD": 1.0, "SERVICE": 1.0, "PRICE": 0.0}),
    ("cheap price and good food", {"FOOD": 1.0, "SERVICE": 0.0, "PRICE": 1.0}),
    ("rude staff", {"FOOD": 0.0, "SERVICE": 1.0, "PRICE": 0.0}),
]


def data_for(name):
    return SINGLE_DATA if name in EXCLUSIVE else MULTI_DATA


def labels_for(name):
    return list(data_for(name)[0][1])


def add(nlp, name, tiny_bert):
    config = {"model": {"name": tiny_bert}} if name in OURS else {}
    return nlp.add_pipe(name, config=config)


def examples(nlp, data):
    return [Example.from_dict(nlp.make_doc(text), {"cats": dict(cats)}) for text, cats in data]


def trained(name, tiny_bert, steps=60):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    nlp.initialize(lambda: train)
    optimizer = Adam(3e-3 if name in OURS else 1e-2)
    losses = [nlp.update(train, sgd=optimizer, drop=0.0)[name] for _ in range(steps)]
    return nlp, component, train, losses


# --- initialising ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_initialize_from_labels_alone(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    component.add_label("POS")
    component.add_label("NEG")
    nlp.initialize()  # spaCy makes a placeholder example without cats
    assert component.labels == ("POS", "NEG")
    assert set(nlp("good").cats) == {"POS", "NEG"}


@pytest.mark.parametrize("name", ALL)
def test_initialize_from_config_labels(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    config = nlp.config.copy()
    config["initialize"]["components"][name] = {"labels": ["label1", "label2"]}
    nlp2 = load_model_from_config(config, auto_fill=True)
    nlp2.initialize()
    assert nlp2.get_pipe(name).labels == ("label1", "label2")
    assert set(nlp2("some text").cats) == {"label1", "label2"}


@pytest.mark.parametrize("name", ALL)
def test_initialize_with_labels_from_a_generator(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    labels = labels_for(name)
    component.initialize(lambda: train, nlp=nlp, labels=(label for label in labels))
    assert component.labels == tuple(labels)


@pytest.mark.parametrize("name", OURS)
def test_labels_as_one_string_are_refused(name, tiny_bert):
    """list("POS") would make the labels P, O and S."""
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    with pytest.raises(ValueError, match=r"`labels` is the string 'FOOD'.*labels=\['FOOD'\]"):
        component.initialize(lambda: train, nlp=nlp, labels="FOOD")


@pytest.mark.parametrize("name", ALL)
def test_initialize_with_labels_and_examples(name, tiny_bert):
    """spaCy's test_initialize_examples: labels added first, then examples; a
    get_examples that is not a function returning examples is a TypeError."""
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    for label in labels_for(name):
        component.add_label(label)
    nlp.initialize()
    train = examples(nlp, data_for(name))
    nlp.initialize(get_examples=lambda: train)
    with pytest.raises(TypeError):
        nlp.initialize(get_examples=lambda: None)
    with pytest.raises(TypeError):
        nlp.initialize(get_examples=train)


@pytest.mark.parametrize("name", ALL)
def test_implicit_labels_from_the_data(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    nlp.initialize(lambda: train)
    assert component.labels == tuple(labels_for(name))


@pytest.mark.parametrize("name", ALL)
def test_no_labels_is_refused(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    with pytest.raises(ValueError):
        nlp.initialize()


@pytest.mark.parametrize("name", ALL)
def test_one_label(name, tiny_bert):
    """Exclusive classes need two labels; independent ones do with one."""
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    component.add_label("answer")
    with pytest.raises(ValueError):
        component.add_label(9)
    if name in EXCLUSIVE:
        with pytest.raises(ValueError):
            nlp.initialize()
    else:
        nlp.initialize()
        assert set(nlp("yes").cats) == {"answer"}


@pytest.mark.parametrize("name", ALL)
def test_invalid_label_value_is_refused(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    first = train[0].reference.cats
    first[next(iter(first))] = 2.0
    with pytest.raises(ValueError):
        nlp.initialize(lambda: train)


@pytest.mark.parametrize("name", EXCLUSIVE)
def test_exclusive_refuses_multilabel_data(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    train = examples(nlp, MULTI_DATA)
    with pytest.raises(ValueError):
        nlp.initialize(lambda: train)


@pytest.mark.parametrize("name", EXCLUSIVE)
def test_positive_label(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, SINGLE_DATA)
    component.initialize(lambda: train, nlp=nlp, labels=["POSITIVE", "NEGATIVE"], positive_label="POSITIVE")
    assert component.cfg["positive_label"] == "POSITIVE"
    with pytest.raises(ValueError):
        component.initialize(lambda: train, nlp=nlp, labels=["POSITIVE", "NEGATIVE"], positive_label="MAYBE")


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_takes_no_positive_label(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, MULTI_DATA)
    with pytest.raises(TypeError):
        component.initialize(lambda: train, nlp=nlp, labels=["FOOD"], positive_label="FOOD")
    component.initialize(lambda: train, nlp=nlp, labels=["FOOD", "SERVICE"])
    assert component.labels == ("FOOD", "SERVICE")
    assert "positive_label" not in component.cfg


# --- labels ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_labels_and_label_data(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    assert component.labels == ()
    assert component.add_label("B") == 1
    assert component.add_label("A") == 1
    assert component.add_label("B") == 0
    assert component.labels == ("B", "A")
    assert list(component.label_data) == ["B", "A"]


@pytest.mark.parametrize("name", ALL)
def test_labels_are_fixed_after_initialize(name, tiny_bert):
    """The default architectures of textcat and textcat_multilabel are not resizable,
    and neither is ours: a new label after initialize is a ValueError."""
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    component.add_label("POSITIVE")
    component.add_label("NEGATIVE")
    nlp.initialize()
    assert not component.is_resizable
    with pytest.raises(ValueError):
        component.add_label("NEUTRAL")


# --- the pipe API: predict, get_loss, set_annotations -------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_predict_feeds_get_loss_and_set_annotations(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    nlp.initialize(lambda: train)
    docs = [eg.predicted for eg in train]
    scores = component.predict(docs)
    assert scores.shape == (len(docs), len(component.labels))
    loss, d_scores = component.get_loss(train, scores)
    assert numpy.isfinite(loss)
    assert d_scores.shape == scores.shape
    # spaCy's issue 9904: the loss is a mean over the batch, not a sum
    doubled, _ = component.get_loss([eg for eg in train for _ in (1, 2)], scores.repeat(2, axis=0))
    assert doubled == pytest.approx(loss, rel=1e-5)
    component.set_annotations(docs, scores)
    for i, doc in enumerate(docs):
        assert list(doc.cats) == list(component.labels)
        assert [doc.cats[label] for label in component.labels] == pytest.approx(list(map(float, scores[i])))


@pytest.mark.parametrize("name", OURS)
def test_set_annotations_gives_the_vectors_predict_computed(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    nlp.initialize(lambda: examples(nlp, data_for(name)))
    docs = [nlp.make_doc("good food"), nlp.make_doc("")]
    scores = component.predict(docs)
    assert isinstance(scores, ClsScores) and scores.cls_vectors.shape == (2, 32)
    component.set_annotations(docs, scores)
    for doc, vector in zip(docs, scores.cls_vectors):
        numpy.testing.assert_array_equal(doc._.cls_vector, vector)
    # Scores from elsewhere (here a copy with no vectors) still give every doc a vector.
    others = [nlp.make_doc("good food"), nlp.make_doc("")]
    component.set_annotations(others, numpy.array(scores))
    for doc, vector in zip(others, scores.cls_vectors):
        numpy.testing.assert_allclose(doc._.cls_vector, vector, atol=1e-6)
    with pytest.raises(ValueError, match="2 docs"):
        component.set_annotations(others, scores[:1])


@pytest.mark.parametrize("name", ALL)
def test_missing_gold_labels_in_the_loss(name, tiny_bert):
    """spaCy's test_textcat_loss: a label missing from a gold doc adds no gradient for
    independent labels, and counts as 0.0 for exclusive ones."""
    nlp = spacy.blank("en")
    train = [
        Example.from_dict(nlp.make_doc("one"), {"cats": {"winter": 0.0, "summer": 0.0, "autumn": 0.0, "spring": 1.0}}),
        Example.from_dict(nlp.make_doc("two"), {"cats": {"winter": 0.0, "summer": 0.0, "autumn": 1.0}}),
    ]
    component = add(nlp, name, tiny_bert)
    component.initialize(lambda: train, nlp=nlp)
    scores = component.model.ops.asarray([[0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.7, 0.1]], dtype="f")
    _, d_scores = component.get_loss(train, scores)
    spring = component.labels.index("spring")
    if name in MULTILABEL:
        assert d_scores[1, spring] == 0.0
    else:
        assert d_scores[1, spring] > 0.0


# --- training, saving, loading, scoring ---------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_overfitting_IO(name, tiny_bert, tmp_path):
    nlp, component, train, losses = trained(name, tiny_bert)
    assert losses[-1] < losses[0] / 4
    texts = [text for text, _ in data_for(name)]
    docs = [nlp(text) for text in texts]
    for doc, (_, gold) in zip(docs, data_for(name)):
        if name in EXCLUSIVE:
            assert max(doc.cats, key=doc.cats.get) == max(gold, key=gold.get)
            assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-3)
        else:
            assert {label for label, score in doc.cats.items() if score > 0.5} == {
                label for label, value in gold.items() if value
            }
    nlp.to_disk(tmp_path)
    nlp2 = spacy.load(tmp_path)
    for text, doc in zip(texts, docs):
        assert nlp2(text).cats == pytest.approx(doc.cats, abs=1e-5)
    scores = nlp.evaluate(train)
    assert scores["cats_macro_f"] == 1.0
    assert scores["cats_micro_f"] == 1.0
    assert scores["cats_score"] == 1.0
    assert "cats_score_desc" in scores
    for batch_size in (1, 2):
        for piped, doc in zip(nlp.pipe(texts + ["something else"], batch_size=batch_size), docs):
            assert piped.cats == pytest.approx(doc.cats, abs=1e-5)
    again = [doc.cats for doc in nlp.pipe(texts)]
    assert again == [pytest.approx(doc.cats, abs=1e-5) for doc in docs]


@pytest.mark.parametrize("name", ALL)
def test_evaluate_keys(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    nlp.initialize(lambda: train)
    scores = nlp.evaluate(train)
    keys = {"cats_score", "cats_score_desc", "cats_micro_p", "cats_micro_r", "cats_micro_f",
            "cats_macro_p", "cats_macro_r", "cats_macro_f", "cats_macro_auc", "cats_f_per_type"}
    assert keys <= set(scores)
    assert 0.0 <= scores["cats_score"] <= 1.0
    if name == "cls_classifier":
        assert 0.0 <= scores["cats_accuracy"] <= 1.0


@pytest.mark.parametrize("name", MULTILABEL)
def test_evaluate_with_another_threshold(name, tiny_bert):
    nlp = spacy.blank("en")
    add(nlp, name, tiny_bert)
    train = examples(nlp, SINGLE_DATA)
    nlp.initialize(lambda: train)
    assert nlp.evaluate(train, scorer_cfg={"threshold": 1.0})["cats_f_per_type"]["POSITIVE"]["r"] == 0
    assert nlp.evaluate(train, scorer_cfg={"threshold": 0.0})["cats_f_per_type"]["POSITIVE"]["r"] == 1.0


# --- empty docs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_empty_docs(name, tiny_bert):
    """spaCy's issue 4030: empty docs get a score for every label, and a batch of them
    trains without error. textcat gives them 0.0 everywhere; ours read the encoder's
    [CLS] for "" (a deliberate difference: exclusive scores still sum to 1)."""
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    train = examples(nlp, data_for(name))
    optimizer = nlp.initialize(lambda: train)
    gold = data_for(name)[0][1]
    empty = [Example.from_dict(nlp.make_doc(""), {"cats": dict(gold)}) for _ in range(2)]
    nlp.update(empty, sgd=optimizer)
    nlp.update(empty + train[:1], sgd=optimizer)
    for doc in [nlp(""), *nlp.pipe(["", "   "])]:
        assert set(doc.cats) == set(component.labels)
        assert all(0.0 <= value <= 1.0 for value in doc.cats.values())
        if name in OURS:
            assert doc._.cls_vector.shape == (32,)
            if name in EXCLUSIVE:
                assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    if name not in OURS:
        assert set(nlp("").cats.values()) == {0.0}  # textcat: a batch without tokens scores 0.0
    assert component.predict([]).shape == (0, len(component.labels))


# --- before initialize ---------------------------------------------------------------------


@pytest.mark.parametrize("name", OURS)
def test_running_before_initialize_says_what_to_do(name, tiny_bert):
    nlp = spacy.blank("en")
    component = add(nlp, name, tiny_bert)
    with pytest.raises(ValueError, match=r"no weights yet.*nlp\.initialize\(\).*spacy\.load"):
        nlp("good")
    component.add_label("POS")
    component.add_label("NEG")
    with pytest.raises(ValueError, match=r"nlp\.initialize\(\)"):
        list(nlp.pipe(["good", "bad"]))
    with pytest.raises(ValueError, match=r"nlp\.initialize\(\)"):
        nlp.update(examples(nlp, [("good", {"POS": 1.0, "NEG": 0.0})]))


def test_language_without_a_tokenizer_language(tiny_bert):
    """Language() (no language data) is what spaCy's own tests build on."""
    nlp = Language()
    component = add(nlp, "cls_classifier", tiny_bert)
    nlp.initialize(lambda: examples(nlp, SINGLE_DATA))
    assert component.labels == ("POSITIVE", "NEGATIVE")


@pytest.mark.parametrize("name", ALL)
def test_fixed_seed_gives_identical_results(name, tiny_bert):
    """spaCy's issue 5551: with the random seed fixed, building, initialising and one
    update give the same model each time (dropout included)."""
    results = []
    for _ in range(2):
        fix_random_seed(0)
        nlp = spacy.blank("en")
        component = add(nlp, name, tiny_bert)
        for label in ("Label1", "Label2", "Label3"):
            component.add_label(label)
        nlp.initialize()
        doc = nlp.make_doc("the room was clean, the staff friendly")
        nlp.update([Example.from_dict(doc, {"cats": {"Label1": 1.0, "Label2": 0.0, "Label3": 0.0}})], drop=0.1)
        results.append(component.model.ops.to_numpy(component.model.predict([doc])))
    numpy.testing.assert_allclose(results[0], results[1], atol=1e-6)


@pytest.mark.parametrize("name,scorer", [
    ("textcat", "spacy.textcat_scorer.v1"), ("cls_classifier", "spacy.textcat_scorer.v1"),
    ("cls_classifier", "spacy.textcat_scorer.v2"),
    ("textcat_multilabel", "spacy.textcat_multilabel_scorer.v1"),
    ("cls_classifier_multilabel", "spacy.textcat_multilabel_scorer.v1"),
])
def test_spacys_scorers_can_be_named(name, scorer, tiny_bert):
    nlp = spacy.blank("en")
    config = {"scorer": {"@scorers": scorer}}
    if name in OURS:
        config["model"] = {"name": tiny_bert}
    nlp.add_pipe(name, config=config)
    train = examples(nlp, SINGLE_DATA)
    nlp.initialize(lambda: train)
    assert 0.0 <= nlp.evaluate(train)["cats_score"] <= 1.0
