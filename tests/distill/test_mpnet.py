"""The `mpnet` model type (all-mpnet-base-v2, the English teacher) on every route that
BERT takes: loading, the [CLS]-only last layer, training, save/load and the ONNX export."""
import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from spacy_cls.layers.cls_forward import encode_rows, is_mpnet, supports_cls_only
from spacy_cls.layers.encoder import _use_cls_only as uses_cls_only

from toy_pipelines import EXCLUSIVE, gold_cats

TEXTS = ["i love this movie, it was great", "ok", "", "the food was awful and the staff rude, really slow service"]


def trained_mpnet(model_path, factory="cls_classifier", pooling="cls", steps=5, layers=None):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    config = {"model": {"name": model_path, "pooling": pooling}}
    if layers is not None:
        config["model"]["layers"] = layers
    nlp.add_pipe(factory, config=config)
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": gold_cats(label, ["POS", "NEG"])})
                for t, label in EXCLUSIVE["en"]]
    nlp.initialize(lambda: examples)
    optimizer = Adam(3e-3)
    losses = [nlp.update(examples, sgd=optimizer, drop=0.0)[factory] for _ in range(steps)]
    return nlp, losses


def test_mpnet_has_the_cls_only_structure(tiny_mpnet):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_mpnet).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_mpnet)
    assert is_mpnet(model) and supports_cls_only(model)
    for texts in (TEXTS, TEXTS[:1], ["a b", "c d"]):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            full = encode_rows(model, batch["input_ids"], batch["attention_mask"], cls_only=False, need_pooler=True)
            fast = encode_rows(model, batch["input_ids"], batch["attention_mask"], cls_only=True, need_pooler=True)
        torch.testing.assert_close(fast.hidden[:, 0], full.hidden[:, 0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fast.pooler_output, full.pooler_output, atol=1e-5, rtol=1e-4)


def test_cls_only_gradients_match_the_full_forward(tiny_mpnet):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_mpnet)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    grads = []
    for cls_only in (False, True):
        model = AutoModel.from_pretrained(tiny_mpnet).eval()
        out = encode_rows(model, batch["input_ids"], batch["attention_mask"], cls_only=cls_only, need_pooler=False)
        out.hidden[:, 0].pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() >= grads[1].keys() and "encoder.relative_attention_bias.weight" in grads[1]
    for name, grad in grads[1].items():
        torch.testing.assert_close(grad, grads[0][name], atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
def test_mpnet_pipeline_trains_saves_and_loads(tiny_mpnet, tmp_path, factory):
    nlp, losses = trained_mpnet(tiny_mpnet, factory, steps=20)
    assert losses[-1] < losses[0]
    encoder = nlp.get_pipe(factory).encoder
    assert uses_cls_only(encoder)
    before = [nlp(t).cats for t in TEXTS]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    after = [loaded(t).cats for t in TEXTS]
    for a, b in zip(before, after):
        assert a == pytest.approx(b, abs=1e-5)
    assert loaded.get_pipe(factory).encoder.shims[0]._model.config.model_type == "mpnet"


def test_mpnet_max_length_leaves_room_for_the_position_offset(tiny_mpnet):
    nlp, _ = trained_mpnet(tiny_mpnet, steps=0)
    encoder = nlp.get_pipe("cls_classifier").encoder
    assert encoder.attrs["max_length"] == 64
    doc = nlp(" ".join(["good"] * 500))
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_mpnet_onnx_export_gives_the_same_outputs(tiny_mpnet, tmp_path, pooling):
    pytest.importorskip("onnxruntime")
    from spacy_cls.pipeline.optimize import optimize_to_disk

    nlp, _ = trained_mpnet(tiny_mpnet, pooling=pooling, steps=3)
    nlp.to_disk(tmp_path / "torch")
    optimize_to_disk(tmp_path / "torch", tmp_path / "onnx")
    torch_nlp, onnx_nlp = spacy.load(tmp_path / "torch"), spacy.load(tmp_path / "onnx")
    for text in TEXTS:
        t, o = torch_nlp(text), onnx_nlp(text)
        numpy.testing.assert_allclose(o._.cls_vector, t._.cls_vector, atol=1e-4, rtol=1e-3)
        assert o.cats == pytest.approx(t.cats, abs=1e-4)


@pytest.mark.slow
def test_the_real_all_mpnet_base_v2(tmp_path):
    """With SPACY_CLS_MPNET naming the folder benchmarks/setup_mpnet.sh assembles."""
    import os
    from pathlib import Path

    folder = os.environ.get("SPACY_CLS_MPNET")
    if not folder or not (Path(folder) / "config.json").is_file():
        pytest.skip("set SPACY_CLS_MPNET to the all-mpnet-base-v2 folder (benchmarks/setup_mpnet.sh)")
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": folder, "layers": 6}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": gold_cats(label, ["POS", "NEG"])})
                for t, label in EXCLUSIVE["en"]]
    nlp.initialize(lambda: examples)
    encoder = nlp.get_pipe("cls_classifier").encoder
    assert encoder.attrs["max_length"] == 512 and encoder.attrs["kept_layers"] == [0, 2, 4, 6, 8, 10]
    assert uses_cls_only(encoder)
    nlp.update(examples, sgd=Adam(2e-5))
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p")("a fine film").cats == pytest.approx(nlp("a fine film").cats, abs=1e-5)


def test_onnx_runtime_fuses_mpnet_layer_norms_and_gelu(tiny_mpnet, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from transformers import AutoModel

    from spacy_cls.layers.onnx_export import export_graph
    from spacy_cls.models.onnx import fuse_graph

    model = AutoModel.from_pretrained(tiny_mpnet).eval()
    export_graph(model, "cls", True, tmp_path / "exported.onnx")
    assert fuse_graph(tmp_path / "exported.onnx", tmp_path / "fused.onnx", model)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "fused.onnx")).graph.node}
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops and "LayerNormalization" not in ops
