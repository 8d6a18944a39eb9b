"""Resource bombs: a config.json that declares enormous dimensions, or tokenizer files
far beyond what the vocabulary needs, are refused with the figures before anything is
allocated: in a saved pipeline (spacy.load, from_bytes, the checker) and in a
checkpoint folder named at initialize. Each refusal comes fast and with a small RSS."""
import json
import resource
import shutil
import time
from pathlib import Path

import pytest
import spacy
import srsly
import torch

import spacy_cls  # noqa: F401
from spacy_cls.layers.shim import PartialWeightsError
from spacy_cls.models.loaders import ModelLoadError, load_encoder
from spacy_cls.models.saved_checks import TamperedPipelineError, check_saved_pipeline
from spacy_cls.models.size_checks import build_on_meta, check_implied_size

ENCODER_NODE = "hf_cls_encoder"
MAX_SECONDS = 10.0  # loose: the refusal itself takes well under a second
MAX_RSS_GROWTH_MB = 300

# Each dimension, bombed. Values: (config key, value).
DIMENSIONS = {
    "positions": ("max_position_embeddings", 70_000),
    "width": ("hidden_size", 65_536),
    "layers": ("num_hidden_layers", 1_000_000),
    "vocabulary": ("vocab_size", 1_000_000_000),
    "intermediate size": ("intermediate_size", 100_000_000),
    "token types": ("type_vocab_size", 50_000_000),
    "heads": ("num_attention_heads", 3_000_000_000),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refused_quickly(error_types, match, action):
    before, started = peak_rss_mb(), time.perf_counter()
    with pytest.raises(error_types, match=match) as error:
        action()
    assert time.perf_counter() - started < MAX_SECONDS
    assert peak_rss_mb() - before < MAX_RSS_GROWTH_MB
    return str(error.value)


# --- saved pipelines ------------------------------------------------------------------------


def edit_encoder(model_bytes: bytes, edit) -> bytes:
    model_msg = srsly.msgpack_loads(model_bytes)
    index = [node["name"] for node in model_msg["nodes"]].index(ENCODER_NODE)
    shim = srsly.msgpack_loads(model_msg["shims"][index][0])
    edit(shim)
    model_msg["shims"][index][0] = srsly.msgpack_dumps(shim)
    return srsly.msgpack_dumps(model_msg)


def bombed_folder(pipeline: Path, folder: Path, edit) -> Path:
    shutil.copytree(pipeline, folder)
    model = folder / "cls_classifier" / "model"
    model.write_bytes(edit_encoder(model.read_bytes(), edit))
    return folder


def bombed_bytes(nlp, edit) -> bytes:
    msg = srsly.msgpack_loads(nlp.to_bytes())
    component = srsly.msgpack_loads(msg["cls_classifier"])
    component["model"] = edit_encoder(component["model"], edit)
    msg["cls_classifier"] = srsly.msgpack_dumps(component)
    return srsly.msgpack_dumps(msg)


def set_config(key, value):
    def edit(shim):
        shim["config"][key] = value
    return edit


@pytest.fixture(scope="module")
def loaded(en_pipeline):
    return spacy.load(en_pipeline)


SAVED_MATCH = "do not fit|implies|declares|does not build|numbers a model may hold"


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
@pytest.mark.parametrize("route", ["spacy.load", "from_bytes", "checker"])
def test_saved_pipeline_with_a_bombed_dimension(dimension, route, en_pipeline, loaded, tmp_path):
    key, value = DIMENSIONS[dimension]
    edit = set_config(key, value)
    if route == "from_bytes":
        data, nlp = bombed_bytes(loaded, edit), spacy.load(en_pipeline)
        action = lambda: nlp.from_bytes(data)  # noqa: E731
    else:
        folder = bombed_folder(en_pipeline, tmp_path / "p", edit)
        action = (lambda: spacy.load(folder)) if route == "spacy.load" else (lambda: check_saved_pipeline(folder))
    message = refused_quickly((TamperedPipelineError, PartialWeightsError), SAVED_MATCH, action)
    assert f"{value:,}" in message or str(value) in message or "size mismatch" in message


def test_known_model_type_with_a_causal_mask(en_pipeline, tmp_path):
    """The example of the report: a model type whose construction builds a mask of
    positions squared, in a 0.6 MB pipeline."""
    def edit(shim):
        shim["config"] = {"model_type": "gpt2", "n_positions": 70_000, "n_embd": 32, "n_layer": 2, "n_head": 2,
                          "vocab_size": shim["config"]["vocab_size"]}

    folder = bombed_folder(en_pipeline, tmp_path / "p", edit)
    refused_quickly((TamperedPipelineError, PartialWeightsError), "", lambda: spacy.load(folder))


def test_buffers_built_at_construction_count():
    """A model whose parameters match the weights on disk can still build a mask of
    positions squared: its buffers are refused against its parameters."""
    from transformers import GPT2Config, GPT2Model

    skeleton = build_on_meta(GPT2Model, GPT2Config(n_positions=70_000, n_embd=32, n_layer=2, n_head=2, vocab_size=100))
    disk = {name: tuple(p.shape) for name, p in skeleton.named_parameters()}
    with pytest.raises(ValueError, match="9,800,000,002 numbers of buffers"):
        check_implied_size(skeleton, disk, ValueError)


def test_size_limit_names_the_figures_and_can_be_raised(en_pipeline, monkeypatch):
    monkeypatch.setenv("SPACY_CLS_MAX_PARAMETERS", "10000")
    with pytest.raises(TamperedPipelineError, match="more than the 10,000 allowed.*SPACY_CLS_MAX_PARAMETERS"):
        spacy.load(en_pipeline)
    monkeypatch.setenv("SPACY_CLS_MAX_PARAMETERS", "5e9")
    assert spacy.load(en_pipeline)("a fine film").cats


def test_saved_tokenizer_file_far_beyond_the_vocabulary(en_pipeline, loaded, tmp_path):
    def edit(shim):
        shim["tokenizer"]["vocab.txt"] = b"x\n" * (3 * 2**20)  # 6 MB for a 166-entry vocabulary

    folder = bombed_folder(en_pipeline, tmp_path / "p", edit)
    for action in (lambda: spacy.load(folder), lambda: check_saved_pipeline(folder),
                   lambda: spacy.load(en_pipeline).from_bytes(bombed_bytes(loaded, edit))):
        refused_quickly(TamperedPipelineError, r"vocab.txt' is 6,291,456 bytes.*vocabulary of", action)


# --- checkpoint folders at initialize ---------------------------------------------------------


@pytest.fixture
def checkpoint(tiny_bert, tmp_path) -> Path:
    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_bert, folder)
    return folder


def edit_config_json(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("weights", ["safetensors", "torch zip"])
@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_checkpoint_with_a_bombed_dimension(dimension, weights, checkpoint):
    if weights == "torch zip":
        from safetensors.torch import load_file

        torch.save(load_file(str(checkpoint / "model.safetensors")), checkpoint / "pytorch_model.bin")
        (checkpoint / "model.safetensors").unlink()
    key, value = DIMENSIONS[dimension]
    edit_config_json(checkpoint, **{key: value})
    message = refused_quickly(ModelLoadError, "Refusing to load the checkpoint|Could not load", lambda: load_encoder(str(checkpoint)))
    assert str(checkpoint) in message


def test_checkpoint_of_another_model_type(checkpoint):
    edit_config_json(checkpoint, model_type="gpt2", n_positions=70_000, n_embd=32, n_layer=2, n_head=2)
    refused_quickly(ModelLoadError, "implies|do not fit|buffers", lambda: load_encoder(str(checkpoint)))


@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"])
def test_sparse_tokenizer_file_of_a_gigabyte(name, checkpoint):
    path = checkpoint / name
    with path.open("r+b") as file:
        file.truncate(2**30)  # sparse: a gigabyte of apparent size, nothing on disk
    message = refused_quickly(ModelLoadError, f"'{name}' is 1,073,741,824 bytes", lambda: load_encoder(str(checkpoint)))
    assert "Refusing" in message


def test_the_real_checkpoints_pass():
    from conftest import chinese_model_path, english_model_path
    from spacy_cls.models.loaders import check_checkpoint_folder, check_checkpoint_tokenizer, check_source_size
    from transformers import AutoConfig

    for folder in (english_model_path(), chinese_model_path()):
        check_checkpoint_folder(folder, Path(folder))
        check_checkpoint_tokenizer(folder, Path(folder))
        check_source_size(folder, folder, AutoConfig.from_pretrained(folder))
