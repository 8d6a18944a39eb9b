"""Finding and loading encoders: fast, clear failures."""
import pytest
import spacy
from spacy.training import Example

import spacy_cls  # noqa: F401
from spacy_cls.models.loaders import ModelLoadError, load_encoder


def test_loads_local_folder(tiny_bert):
    loaded = load_encoder(tiny_bert)
    assert loaded.hf.transformer.config.hidden_size == 32
    assert loaded.has_pooler_weights


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))


def test_unknown_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="name its folder"):
        load_encoder("no-such-org/no-such-bert")


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_encoder(str(tmp_path))


def test_corrupt_weights(tiny_bert, tmp_path):
    import shutil

    shutil.copytree(tiny_bert, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="Could not load the encoder"):
        load_encoder(str(tmp_path / "m"))


def test_pooler_without_weights_is_an_error(tiny_bert, tmp_path):
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_bert, add_pooling_layer=False)
    model.save_pretrained(str(tmp_path))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((__import__("pathlib").Path(tiny_bert) / name).read_bytes())
    assert not load_encoder(str(tmp_path)).has_pooler_weights
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": str(tmp_path), "pooling": "pooler"}})
    examples = [
        Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("bad"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    with pytest.raises(ValueError, match="pooler weights"):
        nlp.initialize(lambda: examples)
