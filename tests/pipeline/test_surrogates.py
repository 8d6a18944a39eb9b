"""Texts with surrogate code points (a lone "\\ud800", as JSON escapes or surrogateescape
decoding leave them): spaCy's own tokenizer cannot take them, so the project replaces
them where it can, one for one with U+FFFD, and every text gets cats and a vector."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import registry
from transformers import AutoTokenizer

import spacy_cls  # noqa: F401
from spacy_cls.layers.windows import encodable_text, encode_texts
from spacy_cls.pipeline.tokenizer import SurrogateSafeTokenizer, create_surrogate_safe_tokenizer

HOSTILE = ["bad \ud800", "\udfff", "pair \ud83d\ude00 split", "好\udc80吃", "\ud800" * 3 + "x"]
SAFE_TOKENIZER = {"nlp": {"tokenizer": {"@tokenizers": "spacy_cls.SurrogateSafeTokenizer.v1"}}}


@pytest.mark.parametrize("text", HOSTILE)
def test_encodable_text_replaces_one_for_one(text):
    clean = encodable_text(text)
    assert len(clean) == len(text)
    clean.encode("utf-8")
    assert [a == b for a, b in zip(text, clean)] == [not 0xD800 <= ord(c) <= 0xDFFF for c in text]
    assert encodable_text("plain 文本 😀") == "plain 文本 😀"


def test_encoder_tokenises_hostile_text(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    with pytest.raises(Exception):
        tokenizer(["bad \ud800"])  # what the encoder would meet without the replacement
    batch = encode_texts(tokenizer, HOSTILE, 64, "truncate", 0)
    expected = encode_texts(tokenizer, [text.replace("\ud800", "\ufffd") for text in HOSTILE[:1]], 64, "truncate", 0)
    assert batch.n_docs == len(HOSTILE)
    numpy.testing.assert_array_equal(batch.input_ids[0, : expected.input_ids.shape[1]], expected.input_ids[0])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_spacys_tokenizer_refuses_them_before_any_component(lang):
    """The limit the wrapper below exists for: spaCy keeps strings as UTF-8."""
    nlp = spacy.blank(lang)
    for make in (lambda: nlp("bad \ud800"), lambda: nlp.make_doc("bad \ud800"),
                 lambda: list(nlp.pipe(["bad \ud800"])), lambda: Doc(nlp.vocab, words=["bad", "\ud800"])):
        with pytest.raises(UnicodeEncodeError):
            make()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_surrogate_safe_tokenizer_gives_every_text_cats_and_a_vector(lang, tiny_bert):
    nlp = spacy.blank(lang, config=SAFE_TOKENIZER)
    assert isinstance(nlp.tokenizer, SurrogateSafeTokenizer)
    component = nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    component.add_label("A")
    component.add_label("B")
    nlp.initialize()
    docs = [nlp(HOSTILE[0]), nlp.make_doc(HOSTILE[1]), *nlp.pipe(HOSTILE[2:], batch_size=2)]
    for text, doc in zip(HOSTILE, docs):
        assert doc.text == encodable_text(text) and len(doc.text) == len(text)
    for doc in [docs[0], *docs[2:]]:
        assert set(doc.cats) == {"A", "B"}
        assert doc._.cls_vector.shape == (32,) and numpy.isfinite(doc._.cls_vector).all()
    # The wrapped tokenizer is the language's own: same tokens for clean text.
    plain = spacy.blank(lang)
    assert [t.text for t in nlp("这家酒店 good, isn't it?")] == [t.text for t in plain("这家酒店 good, isn't it?")]


def test_a_trained_pipeline_loads_with_it(en_pipeline):
    plain = spacy.load(en_pipeline)
    safe = spacy.load(en_pipeline, config=SAFE_TOKENIZER)
    text = "i love this movie"
    assert safe(text).cats == plain(text).cats
    numpy.testing.assert_array_equal(safe(text)._.cls_vector, plain(text)._.cls_vector)
    doc = safe("i love this movie \ud800")
    assert set(doc.cats) == {"POS", "NEG"} and doc._.cls_vector.shape == (32,)


def test_wraps_a_named_tokenizer_and_saves(tmp_path):
    chinese = {"@tokenizers": "spacy.zh.ChineseTokenizer", "segmenter": "char"}
    config = {"nlp": {"tokenizer": {"@tokenizers": "spacy_cls.SurrogateSafeTokenizer.v1", "tokenizer": chinese}}}
    nlp = spacy.blank("zh", config=config)
    assert type(nlp.tokenizer.tokenizer).__name__ == "ChineseTokenizer"
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert isinstance(loaded.tokenizer, SurrogateSafeTokenizer)
    assert [t.text for t in loaded("好\ud800")] == ["好", "\ufffd"]


def test_registered_by_entry_point():
    assert registry.tokenizers.get("spacy_cls.SurrogateSafeTokenizer.v1") is create_surrogate_safe_tokenizer
