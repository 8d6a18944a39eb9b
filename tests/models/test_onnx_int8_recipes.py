"""What `optimize --int8` keeps in float32 (models/onnx.py Int8Recipe): every encoder
layer's nodes are found in the exported graph, kept layers and embeddings stay float32,
and a pipeline with every layer kept predicts what the float32 graph predicts."""
import subprocess
import sys
from collections import Counter

import numpy
import pytest
import spacy

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from transformers import AutoModel  # noqa: E402

from spacy_cls.layers.onnx_export import build_graph, export_graph  # noqa: E402
from spacy_cls.models.onnx import GRAPH_FILE, Int8Recipe, node_layers, quantize_graph  # noqa: E402
from spacy_cls.pipeline.optimize import optimize_to_disk  # noqa: E402

TEXTS = ["i love this movie, it was great", "the food was awful and the staff rude", "ok", "这家酒店的服务非常好"]
QUANTISED_OPS = {"DynamicQuantizeMatMul", "MatMulInteger", "QAttention", "DynamicQuantizeLinear", "QEmbedLayerNormalization"}


def exported(tiny_bert, tmp_path, cls_only: bool):
    model = AutoModel.from_pretrained(tiny_bert).eval()
    path = tmp_path / f"graph_{cls_only}.onnx"
    export_graph(model, "cls" if cls_only else "mean", cls_only, path)
    return model, path


@pytest.mark.parametrize("cls_only", [True, False])
def test_every_layer_has_its_nodes(tiny_bert, tmp_path, cls_only):
    model, path = exported(tiny_bert, tmp_path, cls_only)
    n_layers = model.config.num_hidden_layers
    layers = node_layers(onnx.load(str(path)), n_layers)
    counts = Counter(layers.values())
    assert sorted(counts) == list(range(n_layers))
    # a full layer's six weight products (Q, K, V, output, two feed-forward) and its
    # two attention products, unfused in the exported graph
    assert all(count == 8 for count in counts.values()), counts


def _ops(graph_bytes: bytes) -> Counter:
    return Counter(node.op_type for node in onnx.load_from_string(graph_bytes).graph.node)


def test_recipes_keep_what_they_say_in_float32(tiny_bert):
    model = AutoModel.from_pretrained(tiny_bert).eval()
    everything = _ops(build_graph(model, "cls", True, True, Int8Recipe()))
    no_embeddings = _ops(build_graph(model, "cls", True, True, Int8Recipe(embeddings=False)))
    last_kept = _ops(build_graph(model, "cls", True, True, Int8Recipe(embeddings=False, fp32_layers=(-1,))))
    all_kept = _ops(build_graph(model, "cls", True, True, Int8Recipe(embeddings=False, fp32_layers=(0, 1))))
    assert everything["QEmbedLayerNormalization"] + everything["DynamicQuantizeLinear"] > no_embeddings["DynamicQuantizeLinear"]
    assert no_embeddings["QEmbedLayerNormalization"] == 0 and no_embeddings["EmbedLayerNormalization"] == 1
    quantised = lambda ops: sum(ops[op] for op in QUANTISED_OPS)  # noqa: E731
    assert quantised(everything) > quantised(no_embeddings) > quantised(last_kept) > 0
    assert quantised(all_kept) == 0
    assert last_kept["MatMul"] > no_embeddings["MatMul"]


def test_out_of_range_layers_are_refused(tiny_bert, tmp_path):
    _, path = exported(tiny_bert, tmp_path, True)
    with pytest.raises(ValueError, match="has 2 layers"):
        quantize_graph(path, tmp_path / "q.onnx", Int8Recipe(fp32_layers=(2,)), n_layers=2)
    assert Int8Recipe(fp32_layers=(-1, 0)).layers(2) == (0, 1)


def _cats_and_vectors(nlp):
    docs = list(nlp.pipe(TEXTS))
    return (numpy.array([[doc.cats[k] for k in sorted(doc.cats)] for doc in docs]),
            numpy.stack([doc._.cls_vector for doc in docs]))


def test_pipeline_with_every_layer_kept_matches_float32(en_pipeline, tmp_path):
    optimize_to_disk(en_pipeline, tmp_path / "fp32")
    optimize_to_disk(en_pipeline, tmp_path / "kept", int8=True, int8_recipe=Int8Recipe(embeddings=False, fp32_layers=(0, 1)))
    float32, kept = spacy.load(tmp_path / "fp32"), spacy.load(tmp_path / "kept")
    assert kept.meta["spacy_cls"]["int8"] == {"cls_classifier": "int8 (embeddings and layers 0, 1 in float32)"}
    cats_f, vec_f = _cats_and_vectors(float32)
    cats_k, vec_k = _cats_and_vectors(kept)
    numpy.testing.assert_allclose(vec_k, vec_f, atol=1e-4, rtol=1e-3)
    numpy.testing.assert_allclose(cats_k, cats_f, atol=1e-4)
    assert (tmp_path / "kept" / "cls_classifier" / GRAPH_FILE).exists()


def test_cli_recipe_options(en_pipeline, tmp_path):
    def run(*options):
        return subprocess.run([sys.executable, "-m", "spacy_cls", "optimize", str(en_pipeline), str(tmp_path / "out"),
                               *options], capture_output=True, text=True)

    refused = run("--int8-fp32-layers", "1")
    assert refused.returncode != 0 and "add --int8" in refused.stdout + refused.stderr
    refused = run("--int8", "--int8-fp32-layers", "one")
    assert refused.returncode != 0 and "layer numbers" in refused.stdout + refused.stderr
    done = run("--int8", "--fp32-embeddings", "--int8-fp32-layers", "1")
    assert done.returncode == 0, done.stderr
    assert "embeddings and layer 1 in float32" in done.stdout


def test_calibration_keeps_layers_until_the_labels_agree(en_pipeline, tmp_path):
    from spacy_cls.pipeline.optimize import Int8Calibration

    texts = [f"{a} {b}" for a in ("a good film", "a bad film", "the hotel", "slow service", "great") for b in TEXTS]
    strict = optimize_to_disk(en_pipeline, tmp_path / "strict", int8=True,
                              calibration=Int8Calibration(texts=texts, target=100.0))[0]
    report = strict.calibration
    assert report.n_texts == len(texts)
    assert report.tried[-1][1] == 100.0 and report.reached
    assert strict.recipe.fp32_layers == report.tried[-1][0]
    if report.tried[0][1] < 100.0:  # int8 moved some label: sensitivities were measured
        assert sorted(report.sensitivity) == [0, 1]
        assert len(report.tried) >= 2
    loaded = spacy.load(tmp_path / "strict")
    assert loaded.meta["spacy_cls"]["int8"]["cls_classifier"] == strict.recipe.describe()
    # capped: no layer may stay float32
    capped = optimize_to_disk(en_pipeline, tmp_path / "capped", int8=True,
                              calibration=Int8Calibration(texts=texts, target=100.0, max_fp32_layers=0))[0]
    assert capped.recipe.fp32_layers == () and len(capped.calibration.tried) == 1


def test_cli_calibration(en_pipeline, tmp_path):
    sample = tmp_path / "sample.txt"
    sample.write_text("\n".join(TEXTS * 3) + "\n", encoding="utf8")
    done = subprocess.run([sys.executable, "-m", "spacy_cls", "optimize", str(en_pipeline), str(tmp_path / "out"),
                           "--int8", "--calibrate", str(sample), "--int8-agreement", "90"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "int8 calibration on 12 texts" in done.stdout


def test_calibration_adds_the_most_sensitive_layers_first(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    from spacy_cls.models.int8_calibration import calibrate_fp32_layers
    from spacy_cls.models.onnx import fuse_graph

    model, path = exported(tiny_bert, tmp_path, True)
    fused = tmp_path / "fused.onnx"
    fuse_graph(path, fused, model)
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(TEXTS, padding=True, return_tensors="np")
    feeds = [(tokens["input_ids"].astype("int64"), tokens["attention_mask"].astype("int64"))]
    # a "label" that any rounding changes: only float32 everywhere agrees with float32
    labels_of = lambda outputs: numpy.round(outputs[0][:, :4] * 1e6).astype("int64")  # noqa: E731
    base = Int8Recipe(embeddings=False)
    recipe, report = calibrate_fp32_layers(fused, 2, feeds, labels_of, base=base, target=100.0)
    assert report.tried[0] == ((), 0.0)
    assert sorted(report.sensitivity) == [0, 1]
    assert recipe.fp32_layers == (0, 1) and report.reached
    assert [kept for kept, _ in report.tried][-1] == (0, 1) and len(report.tried) == 3
    _, capped = calibrate_fp32_layers(fused, 2, feeds, labels_of, base=base, target=100.0, max_fp32_layers=1)
    assert not capped.reached and len(capped.tried[-1][0]) == 1
    assert "not reached" in capped.summary()
