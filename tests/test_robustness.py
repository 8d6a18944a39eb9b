"""Hostile and unusual input: any text gives a finite [CLS] vector and full cats;
long documents under both long-text policies; nothing lost in saving, loading and
multiprocessing; training stops on a non-finite loss and repeats under a fixed seed."""
import time
import warnings

import numpy
import pytest
import spacy
import torch
from conftest import chinese_model_path, require_datasets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokenizer import Tokenizer
from spacy.training import Example
from thinc.api import Adam, fix_random_seed, use_ops

import spacy_cls  # noqa: F401
from spacy_cls.layers.windows import encode_texts
from spacy_cls.pipeline.validation import NonFiniteLossError

LABELS = ("POS", "NEG")
HOSTILE_TEXTS = {
    "empty": "",
    "whitespace": " \t\n\r  \u3000",
    "nul": "\x00",
    "control": "\x07\x1b\x7f",
    "zero_width": "\u200b\u200c\u200d\u2060\ufeff",
    "one_letter_200k": "a" * 200_000,
    "emoji_run": "😀" * 1000,
    "emoji_words": "😀🎉 " * 5000,
    "zh_mixed": "這家酒店的服務非常好 这家酒店的服务非常好 but the room was dirty",
    "arabic": "الخدمة في هذا الفندق ممتازة جدا",
    "combining": "e\u0301\u0302\u0303\u0304" * 50 + " a\u0308\u0308\u0308",
    "special_strings": "[CLS] [SEP] [MASK]",
    "special_unknown": "[PAD] [UNK] <s> </s> <pad> <mask>",
}


def label_examples(nlp, data):
    return [
        Example.from_dict(nlp.make_doc(text), {"cats": {label: float(label == gold) for label in LABELS}})
        for text, gold in data
    ]


def make_nlp(model_path, lang="en", factory="cls_classifier", **model_cfg):
    nlp = spacy.blank(lang)
    nlp.add_pipe(factory, config={"model": {"name": model_path, **model_cfg}})
    return nlp


def initialized(model_path, lang="en", **model_cfg):
    nlp = make_nlp(model_path, lang, **model_cfg)
    nlp.initialize(lambda: label_examples(nlp, [("good", "POS"), ("bad", "NEG")]))
    return nlp


def assert_complete(doc, width=32, labels=LABELS, exclusive=True):
    vector = doc._.cls_vector
    assert isinstance(vector, numpy.ndarray) and vector.dtype == numpy.float32
    assert vector.shape == (width,), doc.text[:40]
    assert numpy.isfinite(vector).all(), doc.text[:40]
    assert set(doc.cats) == set(labels)
    assert all(0.0 <= v <= 1.0 for v in doc.cats.values())
    if exclusive:
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


# --- 1. any text in, a vector and cats out ---------------------------------------------


@pytest.fixture(scope="module", params=["truncate", "windows"])
def hostile_nlp(request, tiny_bert):
    return initialized(tiny_bert, long_text=request.param, stride=16)


def test_hostile_texts_get_vectors_and_cats(hostile_nlp):
    texts = list(HOSTILE_TEXTS.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long texts' cut warnings
        called = [hostile_nlp(text) for text in texts]
        piped = list(hostile_nlp.pipe(texts, batch_size=4))
    for doc_c, doc_p, text in zip(called, piped, texts):
        assert doc_c.text == text and doc_p.text == text
        assert_complete(doc_c)
        assert_complete(doc_p)
        numpy.testing.assert_allclose(doc_p._.cls_vector, doc_c._.cls_vector, atol=1e-5)


def test_multilabel_chinese_pipeline_on_hostile_texts(tiny_bert):
    nlp = make_nlp(tiny_bert, "zh", "cls_classifier_multilabel", long_text="windows", stride=16)
    cats = [{"FOOD": 1.0, "SERVICE": 0.0}, {"FOOD": 1.0, "SERVICE": 1.0}, {"FOOD": 0.0, "SERVICE": 0.0}]
    texts = ["好吃", "好吃，服务好", ""]
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in zip(texts, cats)]
    nlp.initialize(lambda: examples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for doc in nlp.pipe(HOSTILE_TEXTS.values(), batch_size=5):
            assert_complete(doc, labels=("FOOD", "SERVICE"), exclusive=False)


def test_training_batches_with_empty_and_invisible_docs(tiny_bert):
    nlp = initialized(tiny_bert)
    examples = label_examples(nlp, [("", "POS"), ("\x00", "NEG"), (" \u200b ", "POS"), ("good", "POS")])
    history = train_steps(nlp, examples, 3)
    assert all(numpy.isfinite(history))
    assert_complete(nlp(""))


def test_invisible_text_reads_as_empty(hostile_nlp):
    empty = hostile_nlp("")._.cls_vector
    for key in ("whitespace", "nul", "control", "zero_width"):
        numpy.testing.assert_allclose(hostile_nlp(HOSTILE_TEXTS[key])._.cls_vector, empty, atol=1e-6, err_msg=key)


def test_special_token_strings_are_plain_text_in_the_pipeline(tiny_bert):
    nlp = initialized(tiny_bert)
    special = nlp("[CLS] [SEP] [MASK]")._.cls_vector
    # The tiny tokenizer lowercases: as plain text the two strings are the same pieces.
    numpy.testing.assert_array_equal(special, nlp("[cls] [sep] [mask]")._.cls_vector)
    tokenizer = nlp.get_pipe("cls_classifier").encoder.shims[0]._hfmodel.tokenizer
    control = tokenizer("[CLS] [SEP] [MASK]", split_special_tokens=False)["input_ids"]
    assert tokenizer.mask_token_id in control  # what the text would have meant as control tokens
    assert not numpy.allclose(special, nlp("")._.cls_vector)


EN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'\"-:;()[]\n\t"
english = st.text(alphabet=EN, max_size=80)
chinese = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.sampled_from(" ，。！？"), max_size=60)
any_unicode = st.text(max_size=60)
TEXTS_PER_EXAMPLE = 20
N_EXAMPLES = 55  # 55 * 20 = 1,100 texts


@pytest.fixture(scope="module")
def windows_nlp(tiny_bert):
    # max_length=16 sends most generated texts through several overlapping windows.
    return initialized(tiny_bert, long_text="windows", max_length=16, stride=4)


@settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(english | chinese | any_unicode, min_size=TEXTS_PER_EXAMPLE, max_size=TEXTS_PER_EXAMPLE))
def test_property_any_text_gets_a_finite_vector(windows_nlp, texts):
    docs = list(windows_nlp.pipe(texts, batch_size=TEXTS_PER_EXAMPLE))
    assert [doc.text for doc in docs] == texts
    for doc in docs:
        assert_complete(doc)
    alone = windows_nlp(texts[0])
    numpy.testing.assert_allclose(alone._.cls_vector, docs[0]._.cls_vector, atol=1e-5)


def test_rule_free_tokenizer_recipe_for_untrusted_text(tiny_bert):
    """spaCy's rule-based tokenizer is slow on long runs of punctuation with no
    spaces; the classifier reads the raw text, so a whitespace-only tokenizer gives
    the same vectors and takes the slow path away (docs/limits.md)."""
    nlp = initialized(tiny_bert)
    text = "great movie!!! (really) 'good'"
    expected = nlp(text)._.cls_vector
    nlp.tokenizer = Tokenizer(nlp.vocab)
    numpy.testing.assert_array_equal(nlp(text)._.cls_vector, expected)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_complete(nlp("!" * 50_000))
    assert time.monotonic() - start < 10


# --- 2. long documents ---------------------------------------------------------------


def test_200k_chars_under_windows_are_capped(tiny_bert):
    nlp = initialized(tiny_bert, long_text="windows", stride=16)
    component = nlp.get_pipe("cls_classifier")
    text = "good movie but bad food. " * 8000
    assert len(text) == 200_000
    start = time.monotonic()
    with pytest.warns(UserWarning, match="max_windows=16"):
        doc = nlp(text)
    assert time.monotonic() - start < 30
    assert_complete(doc)
    assert component.n_cut_docs == 1
    # The cap keeps the first 16 windows: the doc reads the same as its first part.
    tokenizer = component.encoder.shims[0]._hfmodel.tokenizer
    pieces = tokenizer(text, add_special_tokens=False)["input_ids"]
    head = tokenizer.decode(pieces[: 16 * (62 - 16) + 16])
    numpy.testing.assert_allclose(nlp(head)._.cls_vector, doc._.cls_vector, atol=1e-5)


def test_max_windows_null_reads_every_window(tiny_bert):
    nlp = initialized(tiny_bert, long_text="windows", stride=16, max_windows=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_complete(nlp("good movie. " * 600))
    assert nlp.get_pipe("cls_classifier").n_cut_docs == 0


def test_bad_max_windows_is_rejected(tiny_bert):
    with pytest.raises(ValueError, match="max_windows=0"):
        initialized(tiny_bert, long_text="windows", stride=16, max_windows=0)


def train_steps(nlp, examples, steps, learn_rate=3e-3):
    optimizer = Adam(learn_rate)
    history = []
    for _ in range(steps):
        history.append(nlp.update(examples, sgd=optimizer, drop=0.0)[nlp.pipe_names[0]])
    return history


@pytest.mark.parametrize("long_text", ["truncate", "windows"])
def test_training_on_5000_char_docs(tiny_bert, long_text):
    # The distinguishing words come after the first window: only `windows` sees them.
    filler = "the hotel room and the food. " * 110
    data = [(filler + "great, love it. " * 120, "POS"), (filler + "awful, hate it. " * 120, "NEG")]
    assert all(len(text) > 5000 for text, _ in data)
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, long_text=long_text, stride=16, max_windows=None)
    examples = label_examples(nlp, data)
    nlp.initialize(lambda: examples)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train_steps(nlp, examples, 16)
    assert all(numpy.isfinite(history))
    component = nlp.get_pipe("cls_classifier")
    if long_text == "truncate":
        # Both docs read as the same first window: nothing to learn from.
        assert history[-1] > 0.6
        assert component.n_cut_docs == 2 * 16
        assert sum("were cut" in str(w.message) for w in caught) == 1
    else:
        assert history[-1] < 0.5 < history[0]
        assert component.n_cut_docs == 0
        assert nlp(data[0][0]).cats["POS"] > 0.5


def long_chnsenticorp_reviews(min_chars: int, per_label: int):
    path = require_datasets("chnsenticorp") / "chnsenticorp" / "train.tsv"
    picked = {"0": [], "1": []}
    with path.open(encoding="utf8") as lines:
        next(lines)  # header: label\ttext_a
        for line in lines:
            label, text = line.rstrip("\n").split("\t", 1)
            if len(text) >= min_chars and len(picked[label]) < per_label:
                picked[label].append(text)
    return [(text, "POS" if label == "1" else "NEG") for label, texts in picked.items() for text in texts]


@pytest.mark.parametrize("long_text", ["truncate", "windows"])
def test_chnsenticorp_reviews_longer_than_512_pieces(tiny_bert, long_text):
    data = long_chnsenticorp_reviews(min_chars=600, per_label=2)
    nlp = make_nlp(tiny_bert, "zh", long_text=long_text, stride=16, max_windows=None)
    examples = label_examples(nlp, data)
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    tokenizer = nlp.get_pipe("cls_classifier").encoder.shims[0]._hfmodel.tokenizer
    assert all(len(tokenizer(text)["input_ids"]) > 512 for text, _ in data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = train_steps(nlp, examples, 4)
        docs = list(nlp.pipe([text for text, _ in data]))
    # A tiny random encoder with a toy vocabulary: the test is that training runs and
    # reads the whole review, not that it learns sentiment.
    assert all(numpy.isfinite(history))
    for doc in docs:
        assert_complete(doc)
    assert nlp.get_pipe("cls_classifier").n_cut_docs == (len(data) * 5 if long_text == "truncate" else 0)
    batch = encode_texts(tokenizer, [text for text, _ in data], 64, "windows", 16)
    assert all((batch.doc_index == i).sum() > 10 for i in range(len(data)))


@pytest.mark.slow
def test_chnsenticorp_long_reviews_with_m3e_small_windows():
    data = long_chnsenticorp_reviews(min_chars=700, per_label=1)
    nlp = make_nlp(
        chinese_model_path(), "zh", long_text="windows", tokenizer_config={"do_lower_case": True}
    )
    examples = label_examples(nlp, data)
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    tokenizer = nlp.get_pipe("cls_classifier").encoder.shims[0]._hfmodel.tokenizer
    assert all(len(tokenizer(text)["input_ids"]) > 512 for text, _ in data)
    loss = train_steps(nlp, examples, 1, learn_rate=1e-5)[0]
    assert numpy.isfinite(loss)
    for doc in nlp.pipe([text for text, _ in data]):
        assert_complete(doc, width=512)
    assert nlp.get_pipe("cls_classifier").n_cut_docs == 0


# --- 5. nothing lost -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_nlp(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    examples = label_examples(nlp, [("i love this movie", "POS"), ("awful food", "NEG"), ("这家酒店很好", "POS")])
    nlp.initialize(lambda: examples)
    train_steps(nlp, examples, 5)
    return nlp


SAMPLE = ["i love this movie", "awful food, rude staff", "", "这家酒店很好", "[CLS] good [SEP]"]


def test_saved_pipeline_gives_bitwise_identical_vectors_on_cpu(trained_nlp, tmp_path):
    before = list(trained_nlp.pipe(SAMPLE))
    trained_nlp.to_disk(tmp_path / "pipeline")
    with use_ops("numpy"):  # thinc's CPU ops: the shim loads torch weights onto "cpu"
        from_disk = spacy.load(tmp_path / "pipeline")
        from_bytes = make_nlp(None).from_bytes(trained_nlp.to_bytes())
        for nlp in (from_disk, from_bytes):
            torch_model = nlp.get_pipe("cls_classifier").encoder.shims[0]._model
            assert {p.device.type for p in torch_model.parameters()} == {"cpu"}
            for doc, doc2 in zip(before, nlp.pipe(SAMPLE)):
                numpy.testing.assert_array_equal(doc2._.cls_vector, doc._.cls_vector)
                assert doc2.cats == doc.cats


def test_pipe_with_two_processes_matches_one(trained_nlp):
    texts = [f"{text} {i}" for i in range(8) for text in SAMPLE]
    one = list(trained_nlp.pipe(texts, batch_size=8))
    start = time.monotonic()
    two = list(trained_nlp.pipe(texts, batch_size=8, n_process=2))
    assert time.monotonic() - start < 120
    assert [doc.text for doc in two] == texts
    for doc1, doc2 in zip(one, two):
        # Children run torch on one thread: the same maths, summed in another order.
        numpy.testing.assert_allclose(doc2._.cls_vector, doc1._.cls_vector, atol=1e-5)
        assert doc2.cats == pytest.approx(doc1.cats, abs=1e-6)


@pytest.mark.gpu
def test_trained_on_gpu_loads_on_cpu(tiny_bert, tmp_path):
    spacy.require_gpu()
    try:
        fix_random_seed(0)
        nlp = make_nlp(tiny_bert)
        examples = label_examples(nlp, [("i love this movie", "POS"), ("awful food", "NEG")])
        nlp.initialize(lambda: examples)
        train_steps(nlp, examples, 5)
        torch_model = nlp.get_pipe("cls_classifier").encoder.shims[0]._model
        assert next(torch_model.parameters()).device.type == "cuda"
        on_gpu = [doc._.cls_vector for doc in nlp.pipe(SAMPLE)]
        nlp.to_disk(tmp_path / "pipeline")
    finally:
        spacy.require_cpu()
    nlp_cpu = spacy.load(tmp_path / "pipeline")
    torch_model = nlp_cpu.get_pipe("cls_classifier").encoder.shims[0]._model
    assert {p.device.type for p in torch_model.parameters()} == {"cpu"}
    for vector, doc in zip(on_gpu, nlp_cpu.pipe(SAMPLE)):
        assert isinstance(doc._.cls_vector, numpy.ndarray)
        numpy.testing.assert_allclose(doc._.cls_vector, vector, atol=1e-4)


# --- 6. training stays sane --------------------------------------------------------------


def test_nan_loss_stops_training_naming_the_step(tiny_bert):
    nlp = initialized(tiny_bert)
    examples = label_examples(nlp, [("good", "POS"), ("bad", "NEG")])
    optimizer = Adam(1e-3)
    train_steps(nlp, examples, 2)
    component = nlp.get_pipe("cls_classifier")
    torch_model = component.encoder.shims[0]._model
    with torch.no_grad():
        torch_model.embeddings.LayerNorm.weight[0] = float("nan")
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    for p in torch_model.parameters():
        p.grad = None
    with pytest.raises(NonFiniteLossError, match="update step 3") as error:
        nlp.update(examples, sgd=optimizer)
    assert "cls_classifier" in str(error.value) and "learn" in str(error.value)
    assert isinstance(error.value, ValueError)
    assert all(p.grad is None for p in torch_model.parameters())
    for key, value in torch_model.state_dict().items():
        assert torch.equal(value, before[key]) or torch.isnan(before[key]).any(), key
    head = component.model.get_ref("output_layer")
    assert numpy.isfinite(head.get_param("W")).all()


def test_nan_head_output_is_caught(tiny_bert):
    nlp = initialized(tiny_bert)
    examples = label_examples(nlp, [("good", "POS"), ("bad", "NEG")])
    head = nlp.get_pipe("cls_classifier").model.get_ref("output_layer")
    W = head.get_param("W").copy()
    W[0, 0] = numpy.nan
    head.set_param("W", W)
    with pytest.raises(NonFiniteLossError, match="update step 1"):
        nlp.update(examples, sgd=Adam(1e-3))


def train_from_scratch(model_path):
    fix_random_seed(0)
    nlp = make_nlp(model_path)
    examples = label_examples(nlp, [("i love this movie", "POS"), ("awful food", "NEG"), ("good hotel", "POS")])
    nlp.initialize(lambda: examples)
    optimizer = Adam(1e-3)
    for _ in range(4):
        nlp.update(examples, sgd=optimizer, drop=0.1)
    return [doc.cats for doc in nlp.pipe(SAMPLE)], [doc._.cls_vector for doc in nlp.pipe(SAMPLE)]


def test_same_seed_same_scores_on_cpu(tiny_bert):
    cats1, vectors1 = train_from_scratch(tiny_bert)
    cats2, vectors2 = train_from_scratch(tiny_bert)
    assert cats1 == cats2
    for v1, v2 in zip(vectors1, vectors2):
        numpy.testing.assert_array_equal(v1, v2)
