"""doc._.cls_attention: alignment of word pieces to spaCy tokens, truncation, batching,
English and Chinese, and that asking for attention weights changes no hidden state."""
import numpy
import pytest
import spacy
import torch
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.explain.attention import _eager_attention, char_to_token, cls_attention, find_component, token_weights, top_tokens

from conftest import chinese_model_path, english_model_path


def build(lang, model_path, **model_cfg):
    nlp = spacy.blank(lang)
    nlp.add_pipe("cls_classifier", config={"model": {"name": model_path, **model_cfg}})
    doc = nlp.make_doc("x")
    nlp.initialize(lambda: [Example.from_dict(doc, {"cats": {"POS": 1.0, "NEG": 0.0}})])
    return nlp


@pytest.fixture(scope="module")
def en_nlp(tiny_bert):
    return build("en", tiny_bert)


@pytest.fixture(scope="module")
def zh_nlp(tiny_bert):
    return build("zh", tiny_bert)


def reference_weights(nlp, text):
    """Attention from [CLS] per word piece, computed directly with an eager-attention model."""
    component = find_component(nlp)
    shim = component.encoder.shims[0]
    tokenizer = shim._hfmodel.tokenizer
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=component.encoder.attrs["max_length"])
    model = shim._model
    with _eager_attention(model), torch.no_grad():
        out = model(input_ids=torch.tensor([enc["input_ids"]]), output_attentions=True)
    return enc, out.attentions[-1][0, :, 0, :].mean(0).numpy()


def test_english_alignment_sums_pieces(en_nlp):
    text = "the hotel staff were friendly, but the rooms were dirty"
    doc = cls_attention(en_nlp, [en_nlp(text)])[0]
    weights = doc._.cls_attention
    assert isinstance(weights, numpy.ndarray) and weights.dtype == numpy.float32
    assert weights.shape == (len(doc),)
    enc, pieces = reference_weights(en_nlp, text)
    # Each token's weight is the sum over the pieces inside its characters.
    for token in doc:
        expected = sum(
            w for (s, e), w in zip(enc["offset_mapping"], pieces)
            if e > s and token.idx <= s and e <= token.idx + len(token)
        )
        assert weights[token.i] == pytest.approx(expected, rel=1e-4, abs=1e-6), token.text
    # "rooms" is two pieces (room ##s) and gets both.
    rooms = [t for t in doc if t.text == "rooms"][0]
    rooms_pieces = [w for (s, e), w in zip(enc["offset_mapping"], pieces) if e > s and rooms.idx <= s < rooms.idx + 5]
    assert len(rooms_pieces) == 2
    assert weights[rooms.i] == pytest.approx(sum(rooms_pieces), rel=1e-4)
    text_pieces = [w for (s, e), w in zip(enc["offset_mapping"], pieces) if e > s]
    assert weights.sum() == pytest.approx(sum(text_pieces), rel=1e-4)
    assert 0 < weights.sum() < 1  # [CLS] and [SEP] hold the rest


def test_piece_over_several_tokens_is_shared_by_characters(en_nlp):
    # spaCy splits "don't" into "do" + "n't"; a piece spanning both is shared by characters.
    doc = spacy.blank("en")("don't go")
    offsets = numpy.array([[0, 0], [0, 5], [6, 8], [0, 0]])
    weights = numpy.array([0.5, 0.3, 0.1, 0.1], dtype=numpy.float32)
    is_text = numpy.array([False, True, True, False])
    result = token_weights(doc, offsets, weights, is_text)
    assert [t.text for t in doc] == ["do", "n't", "go"]
    assert result == pytest.approx([0.3 * 2 / 5, 0.3 * 3 / 5, 0.1])


def test_char_to_token_marks_whitespace():
    doc = spacy.blank("en")("a  bc")
    assert [t.text for t in doc] == ["a", " ", "bc"]
    # The space after "a" is its trailing whitespace; the second one is a token.
    assert char_to_token(doc).tolist() == [0, -1, 1, 2, 2]


def test_chinese_characters(zh_nlp):
    text = "这家酒店的服务非常好，推荐"
    doc = cls_attention(zh_nlp, [zh_nlp(text)])[0]
    assert [t.text for t in doc] == list(text)  # character segmentation, no pkuseg
    weights = doc._.cls_attention
    enc, pieces = reference_weights(zh_nlp, text)
    text_pieces = [w for (s, e), w in zip(enc["offset_mapping"], pieces) if e > s]
    assert len(text_pieces) == len(doc)
    assert weights == pytest.approx(numpy.array(text_pieces), rel=1e-4)


def test_tokens_beyond_truncation_get_zero(en_nlp):
    max_length = find_component(en_nlp).encoder.attrs["max_length"]
    words = ["good"] * (max_length + 20)
    with pytest.warns(UserWarning, match="cut"):
        doc = en_nlp(" ".join(words))
    cls_attention(en_nlp, [doc])
    weights = doc._.cls_attention
    # [CLS] + max_length - 2 pieces + [SEP]: one piece per word here.
    assert (weights[: max_length - 2] > 0).all()
    assert (weights[max_length - 2 :] == 0).all()


def test_batches_match_single_docs_and_handle_empty(en_nlp):
    texts = ["i love this movie", "", "the food was awful and the staff rude", "ok"]
    batched = cls_attention(en_nlp, [en_nlp.make_doc(t) for t in texts], batch_size=3)
    for text, doc in zip(texts, batched):
        single = cls_attention(en_nlp, [en_nlp.make_doc(text)])[0]
        assert doc._.cls_attention.shape == (len(doc),)
        numpy.testing.assert_allclose(doc._.cls_attention, single._.cls_attention, rtol=1e-4, atol=1e-6)
    assert batched[1]._.cls_attention.shape == (0,)


def test_hidden_states_unchanged_and_state_restored(en_nlp):
    component = find_component(en_nlp)
    model = component.encoder.shims[0]._model
    model.train()
    implementation = model.config._attn_implementation
    docs = list(en_nlp.pipe(["very good hotel", "bad"]))
    cls_attention(en_nlp, docs)
    assert model.training and model.config._attn_implementation == implementation
    model.eval()
    ids = torch.tensor([[2, 10, 20, 30, 3]])
    with torch.no_grad():
        plain = model(input_ids=ids).last_hidden_state
        with _eager_attention(model):
            eager = model(input_ids=ids, output_attentions=True)
    assert eager.attentions is not None
    torch.testing.assert_close(eager.last_hidden_state, plain, rtol=1e-4, atol=1e-5)
    # The [CLS] row of the explained pass is the component's doc._.cls_vector.
    tokenizer = component.encoder.shims[0]._hfmodel.tokenizer
    for doc in docs:
        enc = tokenizer(doc.text, return_tensors="pt")
        with torch.no_grad(), _eager_attention(model):
            row = model(**enc, output_attentions=True).last_hidden_state[0, 0].numpy()
        numpy.testing.assert_allclose(row, doc._.cls_vector, rtol=1e-4, atol=1e-5)


def test_top_tokens_and_errors(en_nlp):
    doc = cls_attention(en_nlp, [en_nlp("the staff were rude")])[0]
    top = top_tokens(doc, 2)
    assert len(top) == 2 and top[0][1] >= top[1][1]
    assert top[0][1] == pytest.approx(float(doc._.cls_attention.max()))
    with pytest.raises(ValueError, match="cls_attention"):
        top_tokens(en_nlp.make_doc("not explained"))
    with pytest.raises(ValueError, match="no cls_classifier"):
        cls_attention(spacy.blank("en"), [en_nlp.make_doc("x")])


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_real_checkpoints(lang):
    if lang == "en":
        nlp = build("en", english_model_path(), max_length=128)
        text = "The service was slow, but the food was absolutely wonderful."
    else:
        nlp = build("zh", chinese_model_path(), max_length=128, tokenizer_config={"do_lower_case": True})
        text = "这家酒店的服务非常好，房间也很干净。"
    doc = cls_attention(nlp, [nlp(text)])[0]
    weights = doc._.cls_attention
    assert weights.shape == (len(doc),) and (weights > 0).all()
    assert 0 < weights.sum() < 1
    _, pieces = reference_weights(nlp, text)
    assert weights.sum() == pytest.approx(pieces[1:-1].sum(), rel=1e-3)
