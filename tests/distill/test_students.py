"""Shallower students: `layers` in the model block keeps some of the checkpoint's
layers; the pipeline saves the smaller encoder and loads it without the checkpoint."""
import shutil

import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from spacy_cls.models.layer_drop import chosen_layers, drop_layers

from conftest import write_tiny_bert, write_tiny_mpnet
from toy_pipelines import EXCLUSIVE, gold_cats

TEXTS = ["i love this movie", "the food was awful", "ok", ""]


@pytest.mark.parametrize("layers,n,kept", [
    (3, 6, [0, 2, 4]),
    (2, 4, [0, 2]),
    (6, 12, [0, 2, 4, 6, 8, 10]),
    (4, 12, [0, 3, 6, 9]),
    (1, 6, [0]),
    (6, 6, [0, 1, 2, 3, 4, 5]),
    ([1, 5], 6, [1, 5]),
    (None, 6, None),
])
def test_which_layers_are_kept(layers, n, kept):
    assert chosen_layers(layers, n) == kept


@pytest.mark.parametrize("layers,match", [
    (0, "at least 1 layer"),
    (-2, "at least 1 layer"),
    (7, "has 6 layers"),
    ([0, 6], "names layer 6"),
    ([2, 1], "increasing order"),
    ([1, 1], "increasing order"),
    ([], "at least one"),
    ([0, -1], "0-based"),
    ("3", "number of layers"),
    (True, "number of layers"),
    (2.5, "number of layers"),
])
def test_bad_layer_settings_say_what_to_give(layers, match):
    with pytest.raises(ValueError, match=match):
        chosen_layers(layers, 6)


def train(model_path, layers, factory="cls_classifier", steps=10):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": model_path, "layers": layers}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": gold_cats(label, ["POS", "NEG"])})
                for t, label in EXCLUSIVE["en"]]
    nlp.initialize(lambda: examples)
    optimizer = Adam(3e-3)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp


def layer_weights(module, i):
    return {k: v.clone() for k, v in module.encoder.layer[i].state_dict().items()}


@pytest.mark.parametrize("kind,layers,kept", [("bert", 2, [0, 2]), ("mpnet", 2, [0, 2]), ("bert", [1, 2], [1, 2]),
                                               ("mpnet", 1, [0])])
def test_student_starts_from_the_kept_layers(tmp_path, kind, layers, kept):
    from transformers import AutoModel

    folder = (write_tiny_bert if kind == "bert" else write_tiny_mpnet)(tmp_path / kind, **({"layers": 4} if kind == "mpnet" else {}))
    if kind == "bert":  # a deeper tiny BERT than the shared fixture
        from transformers import BertConfig, BertModel
        config = BertConfig.from_pretrained(folder)
        config.num_hidden_layers = 4
        torch.manual_seed(1)
        BertModel(config).save_pretrained(folder)
    teacher = AutoModel.from_pretrained(folder)
    nlp = train(str(folder), layers, steps=0)
    encoder = nlp.get_pipe("cls_classifier").encoder
    student = encoder.shims[0]._model
    assert encoder.attrs["kept_layers"] == kept
    assert len(student.encoder.layer) == len(kept) == student.config.num_hidden_layers
    for new_i, old_i in enumerate(kept):
        for key, value in layer_weights(student, new_i).items():
            torch.testing.assert_close(value, layer_weights(teacher, old_i)[key])
    torch.testing.assert_close(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("factory", ["cls_classifier", "cls_classifier_multilabel"])
def test_student_saves_loads_and_predicts_without_the_checkpoint(tmp_path, factory):
    folder = write_tiny_mpnet(tmp_path / "teacher_checkpoint", layers=4)
    nlp = train(str(folder), 2, factory)
    before = [nlp(t).cats for t in TEXTS]
    nlp.to_disk(tmp_path / "student")
    shutil.rmtree(folder)
    loaded = spacy.load(tmp_path / "student")
    encoder = loaded.get_pipe(factory).encoder
    assert len(encoder.shims[0]._model.encoder.layer) == 2 and encoder.attrs["kept_layers"] == [0, 2]
    for text, cats in zip(TEXTS, before):
        assert loaded(text).cats == pytest.approx(cats, abs=1e-5)
    assert loaded.config["components"][factory]["model"]["layers"] == 2


def test_students_are_smaller_and_faster_to_run(tmp_path):
    folder = write_tiny_mpnet(tmp_path / "teacher_checkpoint", layers=4)
    full, half = train(str(folder), None, steps=0), train(str(folder), 2, steps=0)

    def n_params(nlp):
        return sum(p.numel() for p in nlp.get_pipe("cls_classifier").encoder.shims[0]._model.parameters())

    assert n_params(half) < n_params(full)
    assert full.get_pipe("cls_classifier").encoder.attrs["kept_layers"] is None


def test_a_layers_setting_too_deep_for_the_checkpoint_fails_at_initialize(tiny_bert):
    with pytest.raises(ValueError, match="has 2 layers"):
        train(tiny_bert, 3, steps=0)


def test_bad_setting_fails_when_the_pipeline_is_built():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="increasing order"):
        nlp.add_pipe("cls_classifier", config={"model": {"name": "x", "layers": [3, 1]}})


def test_drop_layers_refuses_an_encoder_without_a_layer_stack():
    with pytest.raises(ValueError, match="own stack of layers"):
        drop_layers(torch.nn.Linear(2, 2), 1)
