"""`set_doc_vector=True`: doc.vector, span.vector and .similarity from [CLS] vectors,
through spaCy's user hooks, and what happens to the hooks when docs travel."""
import pickle

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.pipeline.hooks import HOOKS_KEY, restore_vector_hooks

TEXTS = ["i love this movie, it was great", "the food was awful and the staff rude", "good film"]


def build(tiny_bert, factory="cls_classifier", **component):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": tiny_bert}, **component})
    cats = ({"POS": 1.0, "NEG": 0.0}, {"POS": 0.0, "NEG": 1.0})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in zip(TEXTS, cats)])
    return nlp


@pytest.fixture(scope="module")
def nlp(tiny_bert):
    return build(tiny_bert, set_doc_vector=True)


def cosine(a, b):
    return float(numpy.dot(a, b) / (numpy.linalg.norm(a) * numpy.linalg.norm(b)))


def test_doc_vector_and_similarity_use_cls(nlp):
    a, b = nlp(TEXTS[0]), nlp(TEXTS[1])
    assert a.has_vector
    numpy.testing.assert_array_equal(a.vector, a._.cls_vector)
    assert a.vector_norm == pytest.approx(float(numpy.linalg.norm(a._.cls_vector)), rel=1e-6)
    assert a.similarity(b) == pytest.approx(cosine(a._.cls_vector, b._.cls_vector), abs=1e-6)
    assert a.similarity(b) == pytest.approx(b.similarity(a), abs=1e-6)
    assert a.similarity(nlp(TEXTS[0])) == pytest.approx(1.0, abs=1e-5)


def test_span_vector_and_similarity(nlp):
    doc = nlp(TEXTS[0])
    span = doc[0:4]  # "i love this movie"
    assert span.has_vector
    numpy.testing.assert_allclose(span.vector, nlp(span.text)._.cls_vector, atol=1e-5)
    other = nlp(TEXTS[1])[1:3]
    assert span.similarity(other) == pytest.approx(cosine(span.vector, other.vector), abs=1e-6)
    assert span.similarity(doc) == pytest.approx(cosine(span.vector, doc.vector), abs=1e-6)


def test_off_by_default(tiny_bert):
    plain = build(tiny_bert)
    assert plain.config["components"]["cls_classifier"]["set_doc_vector"] is False
    doc = plain(TEXTS[0])
    assert "vector" not in doc.user_hooks and "vector" not in doc.user_span_hooks
    assert not doc.has_vector  # a blank pipeline has no word vectors
    assert doc._.cls_vector is not None


def test_multilabel_factory_sets_hooks_too(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier_multilabel", config={"model": {"name": tiny_bert}, "set_doc_vector": True})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("good"), {"cats": {"A": 1.0, "B": 0.0}})])
    doc = nlp("good film")
    numpy.testing.assert_array_equal(doc.vector, doc._.cls_vector)


def test_hooks_survive_pickle(nlp):
    doc = nlp(TEXTS[0])
    copy = pickle.loads(pickle.dumps(doc))
    numpy.testing.assert_array_equal(copy.vector, doc._.cls_vector)
    assert copy.similarity(doc) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.filterwarnings("ignore:.*W109")
def test_to_bytes_keeps_the_mark_and_restore_puts_hooks_back(nlp):
    doc = nlp(TEXTS[0])
    copy = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert "vector" not in copy.user_hooks  # spaCy does not serialise hooks
    assert copy.user_data[HOOKS_KEY] is True
    restore_vector_hooks([copy])
    numpy.testing.assert_array_equal(copy.vector, doc._.cls_vector)
    bin_docs = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))
    restore_vector_hooks(bin_docs)
    numpy.testing.assert_array_equal(bin_docs[0].vector, doc._.cls_vector)


def test_restore_leaves_other_docs_alone(tiny_bert, nlp):
    plain = build(tiny_bert)(TEXTS[0])
    restore_vector_hooks(plain)
    assert "vector" not in plain.user_hooks


@pytest.mark.filterwarnings("ignore:.*W109")
def test_multiprocessing_pipe(nlp):
    expected = [doc._.cls_vector for doc in nlp.pipe(TEXTS)]
    # Forked workers hang in torch's thread pool unless the parent uses one thread.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        docs = list(nlp.pipe(TEXTS, n_process=2, batch_size=2))
    finally:
        torch.set_num_threads(n_threads)
    restore_vector_hooks(docs)
    for doc, vector in zip(docs, expected):
        numpy.testing.assert_allclose(doc.vector, vector, atol=1e-5)
    assert docs[0].similarity(docs[1]) == pytest.approx(cosine(expected[0], expected[1]), abs=1e-5)


def test_similarity_with_a_different_width_fails_clearly(nlp):
    doc = nlp(TEXTS[0])
    other = spacy.blank("en")("plain doc")
    other.vector = numpy.ones(7, dtype="float32")
    with pytest.raises(ValueError, match="width 32 .* width 7"):
        doc.similarity(other)


def test_setting_survives_save_and_load(nlp, tmp_path):
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("cls_classifier").set_doc_vector is True
    doc = loaded(TEXTS[2])
    numpy.testing.assert_allclose(doc.vector, nlp(TEXTS[2])._.cls_vector, atol=1e-6)
