"""Few labels or none, on a tiny model: a head from label descriptions that works before
any example (zero-shot), the contrastive stage inside `initialize`, saving and loading,
`spacy train` with the settings in the config, and the settings' checks."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_cls.fewshot.descriptions import description_head, description_prompts, label_directions
from spacy_cls.fewshot.head_fit import fit_head
from spacy_cls.fewshot.pairs import contrastive_pairs
from spacy_cls.layers.encoder import get_hf
from spacy_cls.layers.head import NORMALIZE_FEATURES

POS_DESC, NEG_DESC = "good great love nice", "bad terrible hate dirty"
TRAIN = [("good movie", "POS"), ("great food", "POS"), ("love it", "POS"), ("nice hotel", "POS"),
         ("bad movie", "NEG"), ("terrible food", "NEG"), ("hate it", "NEG"), ("dirty hotel", "NEG")]
# Enough steps for the tiny random model to move: 8 examples x 16 pairs / 16 = 8 steps an epoch.
STAGE = {"pairs_per_example": 16, "epochs": 5, "learn_rate": 0.003, "batch_size": 16, "seed": 0}


def blank(tiny_bert, factory="cls_classifier", pooling="mean"):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": tiny_bert, "pooling": pooling}})
    return nlp


def examples(nlp, rows=TRAIN, labels=("POS", "NEG")):
    def get_examples():
        return [Example.from_dict(nlp.make_doc(text), {"cats": {label: float(label in gold.split("|")) for label in labels}})
                for text, gold in rows]
    return get_examples


def init_settings(nlp, factory="cls_classifier", **settings):
    nlp.config["initialize"]["components"][factory] = settings


def top(doc):
    return max(doc.cats, key=doc.cats.get)


def head_weights(pipe):
    layer = pipe.model.get_ref("output_layer")
    linear = layer.layers[0] if layer.layers else layer
    return numpy.array(linear.get_param("W")), numpy.array(linear.get_param("b"))


# --- zero-shot ----------------------------------------------------------------------


def test_descriptions_give_labels_and_cats_with_no_examples(tiny_bert):
    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
    nlp.initialize()
    pipe = nlp.get_pipe("cls_classifier")
    assert pipe.labels == ("POS", "NEG")
    assert pipe.model.attrs[NORMALIZE_FEATURES] is True
    for text, label in [(POS_DESC, "POS"), (NEG_DESC, "NEG")]:
        doc = nlp(text)
        assert top(doc) == label and sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    # a doc identical to a description has cosine 1 with it: logit 1 / temperature
    W, b = head_weights(pipe)
    assert numpy.linalg.norm(W, axis=1) == pytest.approx([1 / 0.05] * 2, rel=1e-4)
    assert not b.any()


def test_templates_and_temperature(tiny_bert):
    prompts = description_prompts(["A", "B"], {"A": "sunny {x} weather"}, ["It is {}.", "{} today"])
    assert prompts == {"A": ["It is sunny {x} weather.", "sunny {x} weather today"], "B": ["It is B.", "B today"]}
    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC},
                  description_templates=["this is {}", "{}"], description_temperature=0.5)
    nlp.initialize()
    W, _ = head_weights(nlp.get_pipe("cls_classifier"))
    assert numpy.linalg.norm(W, axis=1) == pytest.approx([2.0, 2.0], rel=1e-4)
    assert nlp.get_pipe("cls_classifier").cfg["few_shot"]["description_templates"] == ["this is {}", "{}"]


def test_multilabel_descriptions(tiny_bert):
    nlp = blank(tiny_bert, "cls_classifier_multilabel")
    init_settings(nlp, "cls_classifier_multilabel",
                  label_descriptions={"FOOD": "food cheap price", "ROOM": "hotel room clean", "STAFF": "staff friendly rude"})
    nlp.initialize()
    for text, label in [("food cheap price", "FOOD"), ("hotel room clean", "ROOM"), ("staff friendly rude", "STAFF")]:
        cats = nlp(text).cats
        assert cats[label] > 0.5 and top(nlp(text)) == label


def test_labels_without_a_description_use_their_name(tiny_bert):
    nlp = blank(tiny_bert)
    pipe = nlp.get_pipe("cls_classifier")
    pipe.initialize(lambda: [Example(nlp.make_doc("x"), nlp.make_doc("x"))], nlp=nlp, labels=["movie", "hotel"],
                    label_descriptions={"movie": "film movie"})
    assert top(nlp("hotel")) == "hotel"


def test_cls_pooling_zero_shot_warns_and_mean_does_not(tiny_bert):
    with pytest.warns(UserWarning, match='pooling = "mean"'):
        nlp = blank(tiny_bert, pooling="cls")
        init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
        nlp.initialize()
    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        nlp.initialize()


def test_the_description_head_is_the_warm_start_of_training(tiny_bert):
    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
    nlp.initialize()
    pipe = nlp.get_pipe("cls_classifier")
    before = head_weights(pipe)[0]
    optimizer = nlp.create_optimizer()
    for _ in range(3):
        nlp.update(examples(nlp)(), sgd=optimizer)
    after = head_weights(pipe)[0]
    assert not numpy.allclose(before, after)
    # trained from the description head, not from a fresh one: still close to it
    cosines = (before * after).sum(axis=1) / numpy.linalg.norm(before, axis=1) / numpy.linalg.norm(after, axis=1)
    assert (cosines > 0.9).all()


def test_zero_shot_saves_and_loads(tiny_bert, tmp_path):
    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
    nlp.initialize()
    texts = ["good movie", "dirty hotel", "it was ok"]
    expected = [nlp(text).cats for text in texts]
    nlp.to_disk(tmp_path / "p")
    for loaded in (spacy.load(tmp_path / "p"), blank(tiny_bert).from_bytes(nlp.to_bytes())):
        assert loaded.get_pipe("cls_classifier").model.attrs[NORMALIZE_FEATURES] is True
        for text, cats in zip(texts, expected):
            assert loaded(text).cats == pytest.approx(cats, abs=1e-6)


# --- the contrastive stage ------------------------------------------------------------


def separation_of(pipe, rows=TRAIN):
    from spacy_cls.fewshot.contrastive import separation

    gold = numpy.array([[1.0, 0.0] if label == "POS" else [0.0, 1.0] for _, label in rows])
    same, different = separation(pipe.encoder, [text for text, _ in rows], gold)
    return same - different


def encoder_state(pipe):
    return {k: v.clone() for k, v in get_hf(pipe.encoder).transformer.state_dict().items()}


def test_contrastive_stage_moves_the_encoder_and_separates_the_labels(tiny_bert):
    reference = blank(tiny_bert)
    reference.get_pipe("cls_classifier").initialize(examples(reference), nlp=reference)
    gap_before = separation_of(reference.get_pipe("cls_classifier"))
    weights_before = encoder_state(reference.get_pipe("cls_classifier"))

    nlp = blank(tiny_bert)
    nlp.get_pipe("cls_classifier").initialize(examples(nlp), nlp=nlp, contrastive=STAGE)
    pipe = nlp.get_pipe("cls_classifier")
    changed = [name for name, value in encoder_state(pipe).items() if not (value == weights_before[name]).all()]
    assert len(changed) > 10
    assert separation_of(pipe) > gap_before + 0.3
    assert [top(nlp(text)) for text, _ in TRAIN] == [label for _, label in TRAIN]
    assert pipe.cfg["few_shot"]["contrastive"]["pairs_per_example"] == 16 and pipe.cfg["few_shot"]["examples"] == 8


def test_contrastive_stage_is_seeded(tiny_bert):
    runs = []
    for _ in range(2):
        nlp = blank(tiny_bert)
        nlp.get_pipe("cls_classifier").initialize(examples(nlp), nlp=nlp, contrastive={**STAGE, "epochs": 2})
        runs.append(nlp("good hotel").cats)
    assert runs[0] == pytest.approx(runs[1], abs=1e-6)


def test_contrastive_stage_with_descriptions_and_multilabel(tiny_bert, tmp_path):
    rows = [("good food", "POS|FOOD"), ("great food", "POS|FOOD"), ("bad food", "NEG|FOOD"),
            ("nice hotel", "POS"), ("dirty hotel", "NEG"), ("terrible hotel", "NEG")]
    labels = ("POS", "NEG", "FOOD")
    nlp = blank(tiny_bert, "cls_classifier_multilabel")
    nlp.get_pipe("cls_classifier_multilabel").initialize(
        examples(nlp, rows, labels), nlp=nlp, contrastive=STAGE,
        label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC, "FOOD": "food cheap price"})
    for text, gold in rows:
        cats = nlp(text).cats
        assert {label for label in labels if cats[label] >= 0.5} == set(gold.split("|"))
    nlp.to_disk(tmp_path / "m")
    assert spacy.load(tmp_path / "m")("good food").cats == pytest.approx(nlp("good food").cats, abs=1e-6)


def test_zero_epochs_fits_the_head_on_the_frozen_vectors(tiny_bert):
    nlp = blank(tiny_bert)
    pipe = nlp.get_pipe("cls_classifier")
    nlp.get_pipe("cls_classifier").initialize(examples(nlp), nlp=nlp, contrastive={**STAGE, "epochs": 0})
    before = blank(tiny_bert)
    before.get_pipe("cls_classifier").initialize(examples(before), nlp=before)
    a, b = encoder_state(pipe), encoder_state(before.get_pipe("cls_classifier"))
    assert all((a[name] == b[name]).all() for name in a)
    from spacy_cls.fewshot.contrastive import _features
    from spacy_cls.fewshot.descriptions import unit_rows

    gold = numpy.array([[1.0, 0.0] if label == "POS" else [0.0, 1.0] for _, label in TRAIN])
    W, b = fit_head(unit_rows(_features(pipe.encoder, [text for text, _ in TRAIN]).astype("float64")), gold,
                    multi_label=False)
    assert head_weights(pipe)[0] == pytest.approx(W, abs=1e-5) and head_weights(pipe)[1] == pytest.approx(b, abs=1e-5)


# --- checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"label_descriptions": {"POS": POS_DESC}, "description_temperature": 0}, "description_temperature"),
    ({"label_descriptions": {"POS": POS_DESC}, "description_temperature": float("nan")}, "description_temperature"),
    ({"label_descriptions": {"POS": POS_DESC}, "description_temperature": 1e6}, "description_temperature"),
    ({"label_descriptions": {"POS": POS_DESC}, "description_templates": ["no placeholder"]}, "'{}' once"),
    ({"label_descriptions": {"POS": POS_DESC}, "description_templates": ["{} and {}"]}, "'{}' once"),
    ({"label_descriptions": {"POS": ""}}, "non-empty"),
    ({"label_descriptions": {}}, "table of label"),
    ({"description_templates": ["{}"]}, "needs label_descriptions"),
    ({"contrastive": {"pairs_per_example": 1}}, "pairs_per_example"),
    ({"contrastive": {"learn_rate": 0}}, "learn_rate"),
    ({"contrastive": {"epochs": -1}}, "epochs"),
    ({"contrastive": {"batch_size": 2.5}}, "batch_size"),
    ({"contrastive": {"pairs": 10}}, "unknown settings"),
    ({"contrastive": "yes"}, "block of settings"),
], ids=lambda value: str(value)[:40])
def test_bad_settings_are_refused_before_any_weight_changes(tiny_bert, settings, message):
    nlp = blank(tiny_bert)
    with pytest.raises(ValueError, match=message):
        nlp.get_pipe("cls_classifier").initialize(examples(nlp), nlp=nlp, **settings)


def test_descriptions_of_unknown_labels_are_refused(tiny_bert):
    nlp = blank(tiny_bert)
    with pytest.raises(ValueError, match="does not have: \\['MAYBE'\\]"):
        nlp.get_pipe("cls_classifier").initialize(examples(nlp), nlp=nlp, label_descriptions={"MAYBE": "perhaps"})


def test_contrastive_stage_without_examples_says_what_to_do(tiny_bert):
    nlp = blank(tiny_bert)
    pipe = nlp.get_pipe("cls_classifier")
    with pytest.raises(ValueError, match="labelled examples"):
        pipe.initialize(lambda: [Example(nlp.make_doc("x"), nlp.make_doc("x"))], nlp=nlp, labels=["POS", "NEG"],
                        contrastive=STAGE)


def test_contrastive_stage_with_one_example_a_label_says_what_to_do(tiny_bert):
    nlp = blank(tiny_bert)
    with pytest.raises(ValueError, match="at least two examples of a label"):
        nlp.get_pipe("cls_classifier").initialize(examples(nlp, [("good", "POS"), ("bad", "NEG")]), nlp=nlp,
                                                  contrastive=STAGE)


# --- the parts ----------------------------------------------------------------------------


def test_pairs_share_a_label_or_none():
    gold = numpy.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])
    pairs = contrastive_pairs(gold, 6, seed=3)
    assert pairs == contrastive_pairs(gold, 6, seed=3) and pairs != contrastive_pairs(gold, 6, seed=4)
    for a, b, target in pairs:
        assert a != b
        shares = bool((gold[a] & gold[b]).any())
        assert shares == (target == 1.0)
    # the unlabelled example has no positive partner: 3 negatives only
    assert sum(1 for a, _, _ in pairs if a == 4) == 3


def test_head_fit_separates_and_follows_its_prior():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(40, 8))
    gold = numpy.zeros((40, 2))
    gold[numpy.arange(40), (X[:, 0] > 0).astype(int)] = 1
    W, b = fit_head(X, gold, multi_label=False)
    assert ((X @ W.T + b).argmax(axis=1) == gold.argmax(axis=1)).all()
    prior = rng.normal(size=(2, 8))
    W_prior, _ = fit_head(X, gold, multi_label=False, prior_W=prior, penalty=1e6)
    assert W_prior == pytest.approx(prior, abs=1e-3)


def test_description_head_multilabel_bias_is_the_mutual_cosine():
    directions = label_directions({"a": numpy.array([[1.0, 0.0]]), "b": numpy.array([[0.6, 0.8]])}, ["a", "b"])
    W, b = description_head(directions, 0.1, multi_label=True)
    assert b == pytest.approx([-6.0, -6.0], rel=1e-5) and W[0] == pytest.approx([10.0, 0.0])


# --- spacy train ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("overrides", [[], ["--training.max_steps", "4", "--training.optimizer.learn_rate", "0.001"]],
                         ids=["stop-at-once", "fine-tune"])
def test_spacy_train_runs_the_stage_from_the_config(tiny_bert, tmp_path, lang, overrides):
    """The shipped few-shot configs, the encoder swapped for the tiny one: the stage runs
    before step 0, from the config alone, and what it built is saved."""
    stage = ["--initialize.components.cls_classifier.contrastive.learn_rate", "0.003",
             "--initialize.components.cls_classifier.contrastive.epochs", "3"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "spacy", "train", f"configs/{lang}_fewshot.cfg",
                             "--output", str(tmp_path / "out"), "--components.cls_classifier.model.name", tiny_bert,
                             *stage, *overrides],
                            capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "contrastive stage: 18 examples" in result.stdout  # 16 examples and the 2 descriptions
    nlp = spacy.load(tmp_path / "out" / "model-last")
    pipe = nlp.get_pipe("cls_classifier")
    assert pipe.model.attrs[NORMALIZE_FEATURES] is True and set(pipe.labels) == {"POS", "NEG"}
    assert pipe.cfg["few_shot"]["examples"] == 16 and set(pipe.cfg["few_shot"]["label_descriptions"]) == {"POS", "NEG"}


def test_stop_at_once_changes_nothing_after_initialize(tiny_bert, tmp_path):
    """The few-shot config's training part (learn rate 0) leaves the weights that
    initialize built: model-last predicts as the pipeline right after initialize."""
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    overrides = {"components.cls_classifier.model.name": tiny_bert,
                 "initialize.components.cls_classifier.contrastive.epochs": 2,
                 "paths.train": str(ROOT / "corpus/en_fewshot/train.jsonl"),
                 "paths.dev": str(ROOT / "corpus/en_demo/dev.jsonl")}
    import torch

    config = load_config(ROOT / "configs/en_fewshot.cfg", overrides=overrides, interpolate=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training process below: the same sums in the same order
    try:
        initialized = init_nlp(config)
    finally:
        torch.set_num_threads(threads)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    args = [arg for key, value in overrides.items() for arg in (f"--{key}", str(value))]
    result = subprocess.run([sys.executable, "-m", "spacy", "train", "configs/en_fewshot.cfg", "--output",
                             str(tmp_path / "out"), *args], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = spacy.load(tmp_path / "out" / "model-last")
    for text in ["The battery died after a day.", "Lovely staff and a clean room."]:
        assert trained(text).cats == pytest.approx(initialized(text).cats, abs=1e-5)


def test_optimized_pipeline_keeps_the_normalised_head(tiny_bert, tmp_path):
    pytest.importorskip("onnxruntime")
    from spacy_cls.pipeline.optimize import optimize_to_disk

    nlp = blank(tiny_bert)
    init_settings(nlp, label_descriptions={"POS": POS_DESC, "NEG": NEG_DESC})
    nlp.initialize()
    nlp.to_disk(tmp_path / "p")
    optimize_to_disk(tmp_path / "p", tmp_path / "o")
    fast = spacy.load(tmp_path / "o")
    for text in ["good movie", "dirty hotel"]:
        assert fast(text).cats == pytest.approx(nlp(text).cats, abs=1e-4)
