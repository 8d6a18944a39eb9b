"""The ONNX Runtime backend: `optimize` writes a pipeline that predicts what the torch
pipeline predicts, saves, loads and packages, refuses training, and refuses a graph
file that is damaged or not its own."""
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from spacy_cls.layers.onnx_encoder import OnnxTrainingError  # noqa: E402
from spacy_cls.models.onnx import GRAPH_FILE, OnnxGraphError  # noqa: E402
from spacy_cls.pipeline.optimize import optimize_pipeline, optimize_to_disk  # noqa: E402

TEXTS = [
    "i love this movie, it was great",
    "the food was awful and the staff rude",
    "ok",
    "",
    "really good service, very friendly and the hotel was nice and clean, best room",
    "这家酒店的服务非常好",
]
LONG = " ".join(["the movie was good but the food was bad"] * 30)


def _outputs(nlp, texts):
    docs = list(nlp.pipe(texts, batch_size=4))
    cats = numpy.array([[doc.cats[label] for label in sorted(doc.cats)] for doc in docs])
    vectors = numpy.stack([doc._.cls_vector for doc in docs])
    return cats, vectors


def _cosines(a, b):
    norms = numpy.linalg.norm(a, axis=1) * numpy.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / numpy.maximum(norms, 1e-12)


@pytest.fixture(scope="module")
def optimized_en(en_pipeline, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("onnx") / "en"
    optimize_to_disk(en_pipeline, output)
    return output


def test_optimized_pipeline_matches_torch(en_pipeline, optimized_en):
    torch_nlp, onnx_nlp = spacy.load(en_pipeline), spacy.load(optimized_en)
    cats_t, vec_t = _outputs(torch_nlp, TEXTS)
    cats_o, vec_o = _outputs(onnx_nlp, TEXTS)
    assert vec_o.dtype == numpy.float32 and vec_o.shape == vec_t.shape
    numpy.testing.assert_allclose(vec_o, vec_t, atol=1e-4, rtol=1e-3)
    numpy.testing.assert_allclose(cats_o, cats_t, atol=1e-4)
    assert sorted(onnx_nlp.get_pipe("cls_classifier").labels) == sorted(torch_nlp.get_pipe("cls_classifier").labels)


def test_optimized_config_names_the_onnx_encoder_and_carries_no_torch_weights(en_pipeline, optimized_en):
    config = spacy.util.load_config(optimized_en / "config.cfg")
    encoder = config["components"]["cls_classifier"]["model"]["encoder"]
    assert encoder["@architectures"] == "spacy_cls.OnnxClsEncoder.v1"
    assert len(encoder["sha256"]) == 64
    graph = optimized_en / "cls_classifier" / GRAPH_FILE
    assert graph.exists()
    # The model file holds the head and tokenizer only: far smaller than the torch one.
    torch_model = (Path(en_pipeline) / "cls_classifier" / "model").stat().st_size
    assert (optimized_en / "cls_classifier" / "model").stat().st_size < torch_model / 4
    meta = json.loads((optimized_en / "meta.json").read_text())
    assert any(req.startswith("onnxruntime") for req in meta["requirements"])


@pytest.mark.parametrize("pooling", ["pooler", "mean", "cls_mean"])
def test_poolings_beyond_cls_match_torch(tiny_bert, tmp_path, pooling):
    from toy_pipelines import EXCLUSIVE, gold_cats

    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert, "pooling": pooling}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": gold_cats(l, ["POS", "NEG"])}) for t, l in EXCLUSIVE["en"]]
    nlp.initialize(lambda: examples)
    cats_t, vec_t = _outputs(nlp, TEXTS)
    feats_t = nlp.get_pipe("cls_classifier").encoder.predict([nlp.make_doc(t) for t in TEXTS]).features
    optimize_pipeline(nlp)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    cats_o, vec_o = _outputs(loaded, TEXTS)
    feats_o = loaded.get_pipe("cls_classifier").encoder.predict([loaded.make_doc(t) for t in TEXTS]).features
    numpy.testing.assert_allclose(vec_o, vec_t, atol=1e-4, rtol=1e-3)
    numpy.testing.assert_allclose(feats_o, feats_t, atol=1e-4, rtol=1e-3)
    numpy.testing.assert_allclose(cats_o, cats_t, atol=1e-4)


def test_windows_for_long_texts_match_torch(en_pipeline, tmp_path):
    overrides = {"components.cls_classifier.model.long_text": "windows", "components.cls_classifier.model.stride": 8}
    torch_nlp = spacy.load(en_pipeline, config=overrides)
    optimize_pipeline(torch_nlp)  # the windows settings travel into the ONNX encoder's config
    torch_nlp.to_disk(tmp_path / "p")
    onnx_nlp = spacy.load(tmp_path / "p")
    reference = spacy.load(en_pipeline, config=overrides)
    texts = [LONG, "short one", LONG + " great"]
    cats_t, vec_t = _outputs(reference, texts)
    cats_o, vec_o = _outputs(onnx_nlp, texts)
    assert onnx_nlp.get_pipe("cls_classifier").n_cut_docs == 0
    numpy.testing.assert_allclose(vec_o, vec_t, atol=1e-4, rtol=1e-3)
    numpy.testing.assert_allclose(cats_o, cats_t, atol=1e-4)


def test_multilabel_and_int8(multilabel_pipeline, tmp_path):
    optimize_to_disk(multilabel_pipeline, tmp_path / "int8", int8=True)
    torch_nlp, onnx_nlp = spacy.load(multilabel_pipeline), spacy.load(tmp_path / "int8")
    config = spacy.util.load_config(tmp_path / "int8" / "config.cfg")
    assert config["components"]["cls_classifier_multilabel"]["model"]["encoder"]["int8"] is True
    assert config["components"]["cls_classifier_multilabel"]["model"]["exclusive_classes"] is False
    cats_t, vec_t = _outputs(torch_nlp, TEXTS)
    cats_o, vec_o = _outputs(onnx_nlp, TEXTS)
    # int8 rounds the weights: close, not equal.
    assert _cosines(vec_o, vec_t).min() > 0.9
    assert numpy.abs(cats_o - cats_t).max() < 0.2


def test_torch_int8_pipeline_is_exported_from_its_float_weights(en_pipeline, tmp_path):
    from spacy_cls.models.quantize import quantize_pipeline

    nlp = spacy.load(en_pipeline)
    quantize_pipeline(nlp)
    optimize_pipeline(nlp)
    nlp.to_disk(tmp_path / "p")
    _, vec_o = _outputs(spacy.load(tmp_path / "p"), TEXTS)
    _, vec_t = _outputs(spacy.load(en_pipeline), TEXTS)
    numpy.testing.assert_allclose(vec_o, vec_t, atol=1e-4, rtol=1e-3)


def test_to_bytes_round_trip(en_pipeline, optimized_en):
    nlp = spacy.load(optimized_en)
    data = nlp.to_bytes()
    fresh = spacy.util.load_model_from_config(nlp.config)
    fresh.from_bytes(data)
    numpy.testing.assert_allclose(_outputs(fresh, TEXTS)[1], _outputs(nlp, TEXTS)[1], atol=1e-6)


def test_refuses_to_train(optimized_en):
    nlp = spacy.load(optimized_en)
    examples = [Example.from_dict(nlp.make_doc("i love it"), {"cats": {"POS": 1.0, "NEG": 0.0}})]
    with pytest.raises(OnnxTrainingError, match="Train .*original.*optimize"):
        nlp.update(examples)
    with pytest.raises(OnnxTrainingError, match="optimize"):
        nlp.initialize(lambda: examples)


def test_spacy_train_refuses(optimized_en, tmp_path):
    from toy_pipelines import write_docbin

    train = write_docbin(tmp_path / "train.spacy")
    config = spacy.util.load_config(optimized_en / "config.cfg")
    config["components"]["cls_classifier"] = {"source": str(optimized_en)}
    config["paths"]["train"] = config["paths"]["dev"] = str(train)
    config["corpora"] = {
        "train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}"},
        "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}"},
    }
    config["training"]["max_steps"] = 2
    config.to_disk(tmp_path / "train.cfg")
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(tmp_path / "train.cfg"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "optimize" in result.stderr and "original" in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace", "delete"])
def test_damaged_graph_file_gives_a_clear_error(optimized_en, tmp_path, damage):
    import shutil

    copy = tmp_path / "p"
    shutil.copytree(optimized_en, copy)
    graph = copy / "cls_classifier" / GRAPH_FILE
    data = graph.read_bytes()
    if damage == "truncate":
        graph.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) // 2
        graph.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif damage == "replace":
        graph.write_bytes(b"not an onnx graph")
    else:
        graph.unlink()
    with pytest.raises(OnnxGraphError, match=r"encoder\.onnx.*optimize"):
        spacy.load(copy)


def test_unchecked_graph_that_is_not_onnx_gives_a_clear_error(optimized_en, tmp_path):
    """Without the recorded sha256 (someone removed it from the config), ONNX Runtime
    still refuses a file that is not a graph, and the error names the file."""
    import shutil

    copy = tmp_path / "p"
    shutil.copytree(optimized_en, copy)
    (copy / "cls_classifier" / GRAPH_FILE).write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(OnnxGraphError, match=r"encoder\.onnx.*cannot load|cannot load.*encoder\.onnx"):
        spacy.load(copy, config={"components.cls_classifier.model.encoder.sha256": ""})


def test_optimize_refuses_what_it_cannot_export(en_pipeline, optimized_en, tmp_path):
    with pytest.raises(ValueError, match="ONNX Runtime already"):
        optimize_pipeline(spacy.load(optimized_en))
    with pytest.raises(ValueError, match="No component 'nope'"):
        optimize_pipeline(spacy.load(en_pipeline), component="nope")
    with pytest.raises(ValueError, match="is the pipeline itself"):
        optimize_to_disk(en_pipeline, en_pipeline)


def test_component_option_picks_one_of_several(en_pipeline, tiny_bert, tmp_path):
    nlp = spacy.load(en_pipeline)
    nlp.add_pipe("cls_classifier", name="second", source=spacy.load(en_pipeline))
    done = optimize_pipeline(nlp, component="second")
    assert [item.name for item in done] == ["second"]
    assert nlp.get_pipe("cls_classifier").encoder.name == "hf_cls_encoder"
    assert nlp.get_pipe("second").encoder.name == "onnx_cls_encoder"


def test_cli_optimize_then_package(en_pipeline, tmp_path):
    output = tmp_path / "optimized"
    result = subprocess.run(
        [sys.executable, "-m", "spacy_cls", "optimize", str(en_pipeline), str(output), "--int8"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "int8" in result.stdout
    packages = tmp_path / "packages"
    packages.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(output), str(packages), "--name", "cls_onnx",
         "--version", "1.0.0", "--build", "none"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    packaged = next(packages.glob("en_cls_onnx-1.0.0/en_cls_onnx/en_cls_onnx-1.0.0"))
    assert (packaged / "cls_classifier" / GRAPH_FILE).exists()
    _, vectors = _outputs(spacy.load(packaged), TEXTS)
    assert vectors.shape[0] == len(TEXTS)
    meta = json.loads((packages / "en_cls_onnx-1.0.0" / "meta.json").read_text())
    assert any(req.startswith("onnxruntime") for req in meta["requirements"])


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_real_checkpoint_parity(lang, tmp_path):
    from conftest import chinese_model_path, english_model_path

    folder = english_model_path() if lang == "en" else chinese_model_path()
    texts = {
        "en": ["a gripping, beautifully shot film", "the plot is thin and the jokes fall flat", "ok", ""],
        "zh": ["酒店服务很好，房间干净", "快递太慢了，很失望", "还行", ""],
    }[lang]
    nlp = spacy.blank(lang)
    model = {"name": folder, "tokenizer_config": {"do_lower_case": True} if lang == "zh" else {}}
    nlp.add_pipe("cls_classifier", config={"model": model})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2), "NEG": float(1 - i % 2)}})
                for i, t in enumerate(texts)]
    nlp.initialize(lambda: examples)
    cats_t, vec_t = _outputs(nlp, texts)
    optimize_pipeline(nlp)
    nlp.to_disk(tmp_path / "p")
    cats_o, vec_o = _outputs(spacy.load(tmp_path / "p"), texts)
    assert _cosines(vec_o, vec_t).min() >= 0.9999
    numpy.testing.assert_allclose(cats_o, cats_t, atol=1e-4)
