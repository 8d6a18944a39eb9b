"""spaCy's overfitting test for both factories and both languages, plus the
component's contract: cats, [CLS] vectors, pipe == call, save and load."""
import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401

EXCLUSIVE = {
    "en": [
        ("i love this movie, it was great", "POS"),
        ("the food was awful and the staff rude", "NEG"),
        ("really good service, very friendly", "POS"),
        ("terrible room, dirty and slow", "NEG"),
    ],
    "zh": [
        ("这家酒店的服务非常好", "POS"),
        ("快递很慢，服务很差", "NEG"),
        ("电影不错，推荐", "POS"),
        ("手机糟糕，失望", "NEG"),
    ],
}
MULTILABEL = {
    "en": [
        ("the food was great but the service was slow", {"FOOD": 1.0, "SERVICE": 1.0, "PRICE": 0.0}),
        ("cheap price and good food", {"FOOD": 1.0, "SERVICE": 0.0, "PRICE": 1.0}),
        ("rude staff", {"FOOD": 0.0, "SERVICE": 1.0, "PRICE": 0.0}),
        ("this movie is fun", {"FOOD": 0.0, "SERVICE": 0.0, "PRICE": 0.0}),
    ],
    "zh": [
        ("服务很好，也便宜", {"DELIVERY": 0.0, "SERVICE": 1.0, "PRICE": 1.0}),
        ("太贵了", {"DELIVERY": 0.0, "SERVICE": 0.0, "PRICE": 1.0}),
        ("快递慢，服务差", {"DELIVERY": 1.0, "SERVICE": 1.0, "PRICE": 0.0}),
        ("我喜欢这本书", {"DELIVERY": 0.0, "SERVICE": 0.0, "PRICE": 0.0}),
    ],
}


def make_examples(nlp, data):
    examples = []
    for text, label in data:
        cats = label if isinstance(label, dict) else {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        examples.append(Example.from_dict(nlp.make_doc(text), {"cats": cats}))
    return examples


def build(lang, factory, model_path, **model_cfg):
    nlp = spacy.blank(lang)
    nlp.add_pipe(factory, config={"model": {"name": model_path, **model_cfg}})
    return nlp


def train(nlp, examples, steps=60, learn_rate=3e-3):
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    optimizer = Adam(learn_rate)
    losses = {}
    for _ in range(steps):
        losses = nlp.update(examples, sgd=optimizer, drop=0.0)
    return losses


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
def test_overfitting_IO(lang, factory, tiny_bert, tmp_path):
    data = (EXCLUSIVE if factory == "cls_classifier" else MULTILABEL)[lang]
    nlp = build(lang, factory, tiny_bert)
    examples = make_examples(nlp, data)
    losses = train(nlp, examples)
    assert losses[factory] < 0.05
    texts = [text for text, _ in data]
    docs = [nlp(text) for text in texts]
    for doc, eg in zip(docs, examples):
        for label, gold in eg.reference.cats.items():
            assert abs(doc.cats[label] - gold) < 0.3, (doc.text, doc.cats)
    if factory == "cls_classifier":
        for doc in docs:
            assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    scores = nlp.evaluate(examples)
    assert scores["cats_macro_f"] == 1.0

    nlp.to_disk(tmp_path)
    nlp2 = spacy.load(tmp_path)
    for text, doc in zip(texts, docs):
        doc2 = nlp2(text)
        assert doc2.cats == pytest.approx(doc.cats, abs=1e-6)
        numpy.testing.assert_array_equal(doc2._.cls_vector, doc._.cls_vector)

    piped = list(nlp.pipe(texts, batch_size=3))
    for doc, doc_p in zip(docs, piped):
        assert doc_p.cats == pytest.approx(doc.cats, abs=1e-5)
        numpy.testing.assert_allclose(doc_p._.cls_vector, doc._.cls_vector, atol=1e-5)


def test_cls_vector_contract(tiny_bert):
    nlp = build("en", "cls_classifier", tiny_bert)
    nlp.initialize(lambda: make_examples(nlp, EXCLUSIVE["en"]))
    for text in ["", "   ", "good", "the movie was fun"]:
        doc = nlp(text)
        vector = doc._.cls_vector
        assert isinstance(vector, numpy.ndarray)
        assert vector.dtype == numpy.float32 and vector.shape == (32,)
        assert numpy.isfinite(vector).all()
        assert set(doc.cats) == {"POS", "NEG"}


@pytest.mark.parametrize("pooling,width", [("cls", 32), ("pooler", 32), ("mean", 32), ("max", 32), ("cls_mean", 64)])
def test_poolings_train_and_keep_raw_cls(pooling, width, tiny_bert):
    nlp = build("en", "cls_classifier", tiny_bert, pooling=pooling)
    examples = make_examples(nlp, EXCLUSIVE["en"])
    losses = train(nlp, examples, steps=30)
    assert losses["cls_classifier"] < 0.2
    component = nlp.get_pipe("cls_classifier")
    assert component.encoder.get_dim("nO") == width
    assert nlp("good")._.cls_vector.shape == (32,)


def test_frozen_encoder_gets_no_gradient(tiny_bert):
    nlp = build("en", "cls_classifier", tiny_bert, freeze=True)
    examples = make_examples(nlp, EXCLUSIVE["en"])
    nlp.initialize(lambda: examples)
    encoder = nlp.get_pipe("cls_classifier").encoder
    torch_model = encoder.shims[0]._model
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    vector_before = nlp("good")._.cls_vector
    optimizer = Adam(1e-2)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    assert all(p.grad is None for p in torch_model.parameters())
    for key, value in torch_model.state_dict().items():
        assert (value == before[key]).all(), key
    numpy.testing.assert_array_equal(nlp("good")._.cls_vector, vector_before)


def test_finetuning_moves_the_encoder(tiny_bert):
    nlp = build("en", "cls_classifier", tiny_bert)
    examples = make_examples(nlp, EXCLUSIVE["en"])
    nlp.initialize(lambda: examples)
    vector_before = nlp("good")._.cls_vector
    optimizer = Adam(1e-3)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert not numpy.allclose(nlp("good")._.cls_vector, vector_before)


def test_default_model_by_language():
    from spacy_cls.models.loaders import default_model_name

    assert default_model_name("zh") == "bert-base-chinese"
    assert default_model_name("en") == "bert-base-uncased"
    assert default_model_name("de") == "bert-base-multilingual-cased"
    nlp = spacy.blank("zh")
    nlp.add_pipe("cls_classifier")
    assert nlp.get_pipe_config("cls_classifier")["model"]["name"] is None


def test_unknown_pooling_is_rejected(tiny_bert):
    with pytest.raises(ValueError, match="Unknown pooling 'avg'"):
        build("en", "cls_classifier", tiny_bert, pooling="avg")


def test_loaded_config_wins_for_runtime_settings(tiny_bert, tmp_path):
    """A saved pipeline runs with the settings of the config it is loaded with
    (long_text, stride, max_length, ...), not those saved beside the weights."""
    nlp = build("en", "cls_classifier", tiny_bert, max_length=32)
    train(nlp, make_examples(nlp, EXCLUSIVE["en"]), steps=2)
    nlp.to_disk(tmp_path)
    text = " ".join(["word"] * 100)
    truncated = spacy.load(tmp_path)(text)
    changed = {"long_text": "windows", "stride": 16, "max_windows": 4, "max_length": 24, "cache_size": 7}
    nlp2 = spacy.load(tmp_path, config={"components": {"cls_classifier": {"model": changed}}})
    encoder = nlp2.get_pipe("cls_classifier").encoder
    assert {key: encoder.attrs[key] for key in changed} == changed
    windowed = nlp2(text)
    assert not numpy.allclose(windowed._.cls_vector, truncated._.cls_vector)
    # A limit past the encoder's position embeddings (64) is capped, as at initialize.
    nlp3 = spacy.load(tmp_path, config={"components": {"cls_classifier": {"model": {"max_length": 1000}}}})
    assert nlp3.get_pipe("cls_classifier").encoder.attrs["max_length"] == 64


def test_loading_with_another_pooling_is_refused(tiny_bert, tmp_path):
    nlp = build("en", "cls_classifier", tiny_bert)
    train(nlp, make_examples(nlp, EXCLUSIVE["en"]), steps=1)
    nlp.to_disk(tmp_path)
    with pytest.raises(ValueError, match="trained with pooling='cls'.*now says pooling='mean'"):
        spacy.load(tmp_path, config={"components": {"cls_classifier": {"model": {"pooling": "mean"}}}})
