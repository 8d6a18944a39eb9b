"""`span._.cls_vector` and `spacy_cls.pipeline.spans.set_span_vectors`: sentence and span
vectors, encoded in batches, cached in the doc, on demand for single spans."""
import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.pipeline.spans import set_span_vectors, span_vectors

TEXT = "i love this movie. the food was awful. the staff was friendly. it was fun. the room was clean."


def cats_examples(nlp):
    return [
        Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("bad"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]


@pytest.fixture(scope="module")
def nlp(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    nlp.initialize(lambda: cats_examples(nlp))
    return nlp


@pytest.fixture(scope="module")
def shared_nlp(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("transformer", config={"model": {"name": tiny_bert}})
    encoder = {"@architectures": "spacy_cls.TransformerClsListener.v1"}
    nlp.add_pipe("cls_classifier", config={
        "model": {"@architectures": "spacy_cls.ClsClassifierOnEncoder.v1", "encoder": encoder},
        "set_doc_vector": True,
    })
    nlp.initialize(lambda: cats_examples(nlp))
    return nlp


class ForwardCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.calls += 1

    def remove(self) -> None:
        self.handle.remove()


def own_hf_model(nlp):
    # The embeddings run once per forward pass, whichever way the encoder runs the
    # layers above them.
    return nlp.get_pipe("cls_classifier").encoder.shims[0]._model.embeddings


def alone(nlp, text):
    return nlp(text)._.cls_vector


def test_sentence_vectors_in_batches(nlp):
    doc = nlp(TEXT)
    sents = list(doc.sents)
    assert len(sents) == 5
    counter = ForwardCounter(own_hf_model(nlp))
    try:
        vectors = set_span_vectors(nlp, sents, batch_size=2)
        assert counter.calls == 3  # 5 sentences, 2 a batch
        for sent in doc.sents:  # new Span objects read the cache
            assert sent._.cls_vector is not None
        assert counter.calls == 3
    finally:
        counter.remove()
    assert vectors.shape == (5, 32) and vectors.dtype == numpy.float32
    for sent, vector in zip(sents, vectors):
        numpy.testing.assert_allclose(vector, alone(nlp, sent.text), atol=1e-5)
        numpy.testing.assert_array_equal(sent._.cls_vector, vector)


def test_spans_of_several_docs_and_the_component_alone(nlp):
    docs = list(nlp.pipe(["i love this movie. it was fun.", "the food was awful."]))
    spans = [span for doc in docs for span in doc.sents] + [docs[0][1:4]]
    vectors = set_span_vectors(nlp.get_pipe("cls_classifier"), spans)
    for span, vector in zip(spans, vectors):
        numpy.testing.assert_allclose(vector, alone(nlp, span.text), atol=1e-5)


def test_single_span_on_demand_is_cached(nlp):
    doc = nlp(TEXT)
    counter = ForwardCounter(own_hf_model(nlp))
    try:
        vector = doc[0:4]._.cls_vector
        again = doc[0:4]._.cls_vector
        assert counter.calls == 1
    finally:
        counter.remove()
    numpy.testing.assert_array_equal(vector, again)
    numpy.testing.assert_allclose(vector, alone(nlp, "i love this movie"), atol=1e-5)


def test_cache_travels_with_the_doc(nlp):
    doc = nlp(TEXT)
    vectors = set_span_vectors(nlp, doc.sents)
    copy = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    counter = ForwardCounter(own_hf_model(nlp))
    try:
        for sent, vector in zip(copy.sents, vectors):
            numpy.testing.assert_array_equal(sent._.cls_vector, vector)
        assert counter.calls == 0
    finally:
        counter.remove()


def test_span_of_a_doc_no_component_saw(nlp):
    doc = nlp.make_doc("i love this movie")
    assert doc[0:2]._.cls_vector is None
    vectors = set_span_vectors(nlp, [doc[0:2]])  # the batch API needs no annotation
    numpy.testing.assert_array_equal(doc[0:2]._.cls_vector, vectors[0])


def test_no_spans(nlp):
    assert span_vectors(nlp, []).shape == (0, 32)


def test_shared_transformer_spans(shared_nlp):
    doc = shared_nlp(TEXT)
    sents = list(doc.sents)
    counter = ForwardCounter(shared_nlp.get_pipe("transformer").model.transformer)
    try:
        vectors = set_span_vectors(shared_nlp, sents, batch_size=8)
        assert counter.calls == 1
    finally:
        counter.remove()
    for sent, vector in zip(sents, vectors):
        numpy.testing.assert_allclose(vector, alone(shared_nlp, sent.text), atol=1e-5)
    # span.vector (set_doc_vector=True) is the same row, computed on demand
    numpy.testing.assert_allclose(doc[0:4].vector, alone(shared_nlp, "i love this movie"), atol=1e-5)
    assert doc.similarity(doc) == pytest.approx(1.0, abs=1e-5)


def test_shared_transformer_needs_the_pipeline(shared_nlp):
    doc = shared_nlp(TEXT)
    with pytest.raises(ValueError, match="pass nlp"):
        set_span_vectors(shared_nlp.get_pipe("cls_classifier"), list(doc.sents))


def test_choosing_the_component(nlp):
    doc = nlp(TEXT)
    with pytest.raises(ValueError, match="not a cls_classifier"):
        set_span_vectors(nlp, doc.sents, component="sentencizer")
    with pytest.raises(ValueError, match="no cls_classifier"):
        set_span_vectors(spacy.blank("en"), doc.sents)
    with pytest.raises(ValueError, match="batch_size"):
        set_span_vectors(nlp, doc.sents, batch_size=0)
    vectors = set_span_vectors(nlp, doc.sents, component="cls_classifier")
    assert vectors.shape == (5, 32)
