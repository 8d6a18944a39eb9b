"""The encoder layer: [CLS] fidelity against a direct transformers call, the
long-text policies, special-token strings as text."""
import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from transformers import AutoModel, AutoTokenizer

import spacy_cls  # noqa: F401
from spacy_cls.layers.windows import encode_texts

TEXTS = ["i love this movie", "这家酒店的服务非常好", "the food was awful, but the staff friendly"]


def initialized(tiny_bert, lang="en", **model_cfg):
    nlp = spacy.blank(lang)
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert, **model_cfg}})
    examples = [
        Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("bad"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    nlp.initialize(lambda: examples)
    return nlp


def direct_cls(model_path, text):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0, 0].numpy()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_cls_vector_equals_direct_transformers_call(tiny_bert, lang):
    nlp = initialized(tiny_bert, lang)
    for text in TEXTS:
        numpy.testing.assert_allclose(nlp(text)._.cls_vector, direct_cls(tiny_bert, text), atol=1e-5)
    # batched (padded) and alone give the same row
    for doc, text in zip(nlp.pipe(TEXTS), TEXTS):
        numpy.testing.assert_allclose(doc._.cls_vector, direct_cls(tiny_bert, text), atol=1e-5)


def test_spacy_tokenisation_does_not_matter(tiny_bert):
    en = initialized(tiny_bert, "en")
    zh = initialized(tiny_bert, "zh")
    numpy.testing.assert_allclose(en(TEXTS[1])._.cls_vector, zh(TEXTS[1])._.cls_vector, atol=1e-6)


def test_special_token_strings_are_plain_text(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = encode_texts(tokenizer, ["[CLS] [SEP] [MASK]"], 64, "truncate", 0)
    ids = batch.input_ids[0][batch.attention_mask[0] == 1].tolist()
    special = set(tokenizer.all_special_ids)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert not special.intersection(ids[1:-1])


def test_truncate_policy_warns_once_and_counts(tiny_bert):
    nlp = initialized(tiny_bert)
    long_text = "good " * 300
    with pytest.warns(UserWarning, match="were cut"):
        doc = nlp(long_text)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        docs = list(nlp.pipe([long_text, "fine", long_text]))
    assert nlp.get_pipe("cls_classifier").n_cut_docs == 3
    numpy.testing.assert_allclose(docs[0]._.cls_vector, doc._.cls_vector, atol=1e-5)
    # cut text == the first window
    head = nlp(" ".join(["good"] * 62))
    numpy.testing.assert_allclose(head._.cls_vector, doc._.cls_vector, atol=1e-5)


def test_windows_policy_averages_window_cls_rows(tiny_bert):
    nlp = initialized(tiny_bert, long_text="windows", stride=8)
    encoder = nlp.get_pipe("cls_classifier").encoder
    tokenizer = encoder.shims[0]._hfmodel.tokenizer
    text = " ".join(["good", "bad", "movie", "hotel"] * 40)
    batch = encode_texts(tokenizer, [text, "short"], 64, "windows", 8)
    assert (batch.doc_index == 0).sum() > 2 and (batch.doc_index == 1).sum() == 1
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        rows = model(
            input_ids=torch.from_numpy(batch.input_ids), attention_mask=torch.from_numpy(batch.attention_mask)
        ).last_hidden_state[:, 0].numpy()
    docs = list(nlp.pipe([text, "short"]))
    numpy.testing.assert_allclose(docs[0]._.cls_vector, rows[batch.doc_index == 0].mean(0), atol=1e-5)
    numpy.testing.assert_allclose(docs[1]._.cls_vector, rows[batch.doc_index == 1][0], atol=1e-5)
    assert nlp.get_pipe("cls_classifier").n_cut_docs == 0


def test_windows_policy_trains_on_long_docs(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert, "long_text": "windows", "stride": 16, "max_windows": None}})
    texts = [("good movie, great fun. " * 250, "POS"), ("bad movie, awful and boring. " * 200, "NEG")]
    assert all(len(t) > 5000 for t, _ in texts)
    examples = [
        Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
        for t, l in texts
    ]
    nlp.initialize(lambda: examples)
    from thinc.api import Adam

    optimizer = Adam(3e-3)
    for _ in range(15):
        losses = nlp.update(examples, sgd=optimizer, drop=0.0)
    assert losses["cls_classifier"] < 0.3
    assert nlp(texts[0][0]).cats["POS"] > 0.5


def test_bad_stride_is_rejected(tiny_bert):
    with pytest.raises(ValueError, match="stride=100"):
        initialized(tiny_bert, long_text="windows", stride=100)
