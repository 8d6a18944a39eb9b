"""The decision settings on the components: class weights in the loss (and saved with the
pipeline), temperature on the softmax, thresholds, abstention, doc._.cls_labels and
doc._.cls_uncertainty."""
import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import fix_random_seed

import spacy_cls  # noqa: F401
from spacy_cls.decisions.tune import write_settings
from toy_pipelines import EXCLUSIVE, MULTILABEL, MULTILABEL_LABELS, gold_cats


def build(tiny_bert, multilabel=False, **config):
    factory = "cls_classifier_multilabel" if multilabel else "cls_classifier"
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": tiny_bert}, **config})
    labels = MULTILABEL_LABELS if multilabel else ["POS", "NEG"]
    data = MULTILABEL if multilabel else EXCLUSIVE["en"]
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": gold_cats(label, labels)}) for t, label in data]
    return nlp, nlp.get_pipe(factory), examples


def test_balanced_weights_are_computed_at_initialize_and_saved(tiny_bert, tmp_path):
    nlp, pipe, examples = build(tiny_bert, class_weights="balanced")
    examples = examples + examples[:1]  # 4 POS, 3 NEG
    nlp.initialize(lambda: examples)
    expected = [7 / (2 * 4), 7 / (2 * 3)]
    assert pipe._loss_weights() == pytest.approx(expected)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p").get_pipe("cls_classifier")
    assert loaded.class_weights == "balanced"
    assert loaded._loss_weights() == pytest.approx(expected)
    from_bytes = spacy.blank("en")
    from_bytes.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}, "class_weights": "balanced"})
    from_bytes.from_bytes(nlp.to_bytes())
    assert from_bytes.get_pipe("cls_classifier")._loss_weights() == pytest.approx(expected)
    # the scorer (given the component's cfg as keyword arguments) still scores
    assert 0.0 <= spacy.load(tmp_path / "p").evaluate(examples)["cats_score"] <= 1.0


def test_the_loaded_config_wins_over_saved_weights(tiny_bert, tmp_path):
    nlp, pipe, examples = build(tiny_bert, class_weights="balanced")
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p", config={"components": {"cls_classifier": {"class_weights": None}}})
    assert loaded.get_pipe("cls_classifier")._loss_weights() is None


def test_class_weights_scale_the_gradient_of_their_class(tiny_bert):
    fix_random_seed(0)
    nlp, pipe, examples = build(tiny_bert, class_weights={"NEG": 4.0})
    nlp.initialize(lambda: examples)
    scores = pipe.model.predict([eg.predicted for eg in examples])
    weighted_loss, d_weighted = pipe.get_loss(examples, scores)
    pipe.class_weights = None
    plain_loss, d_plain = pipe.get_loss(examples, scores)
    is_neg = numpy.array([eg.reference.cats["NEG"] == 1.0 for eg in examples])
    assert numpy.asarray(d_weighted)[is_neg] == pytest.approx(4 * numpy.asarray(d_plain)[is_neg])
    assert numpy.asarray(d_weighted)[~is_neg] == pytest.approx(numpy.asarray(d_plain)[~is_neg])
    assert weighted_loss > plain_loss


def test_multilabel_positive_weights_train(tiny_bert):
    nlp, pipe, examples = build(tiny_bert, multilabel=True, class_weights="balanced")
    nlp.initialize(lambda: examples)
    # FOOD 2 of 6, SERVICE 3 of 6, PRICE 2 of 6: negatives / positives
    assert pipe._loss_weights() == pytest.approx([2.0, 1.0, 2.0])
    losses = nlp.update(examples, sgd=nlp.create_optimizer())
    assert numpy.isfinite(losses["cls_classifier_multilabel"])


def test_a_weight_table_naming_an_unknown_label_fails_at_initialize(tiny_bert):
    nlp, pipe, examples = build(tiny_bert, class_weights={"NEUTRAL": 2.0})
    with pytest.raises(ValueError, match="NEUTRAL"):
        nlp.initialize(lambda: examples)


@pytest.mark.parametrize("config", [{"class_weights": "even"}, {"temperature": 0}, {"temperature": -1.0},
                                    {"abstain_threshold": 1.5}, {"uncertainty": "variance"}])
def test_bad_settings_fail_when_the_pipeline_is_made(tiny_bert, config):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError):
        nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}, **config})


def test_bad_thresholds_fail_when_the_pipeline_is_made(tiny_bert):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="thresholds"):
        nlp.add_pipe("cls_classifier_multilabel", config={"model": {"name": tiny_bert}, "thresholds": {"A": 2}})


def test_temperature_changes_scores_not_the_argmax_and_survives_loading(en_pipeline, tmp_path):
    texts = [t for t, _ in EXCLUSIVE["en"]] + ["the movie was ok", "fine"]
    plain = spacy.load(en_pipeline)
    hot = spacy.load(en_pipeline, config={"components": {"cls_classifier": {"temperature": 4.0}}})
    for a, b in zip(plain.pipe(texts), hot.pipe(texts)):
        top_a, top_b = max(a.cats, key=a.cats.get), max(b.cats, key=b.cats.get)
        assert top_a == top_b
        assert max(b.cats.values()) < max(a.cats.values())
        assert sum(b.cats.values()) == pytest.approx(1.0, abs=1e-5)
    hot.to_disk(tmp_path / "hot")
    reloaded = spacy.load(tmp_path / "hot")
    assert reloaded.get_pipe("cls_classifier").temperature == 4.0
    doc = reloaded(texts[0])
    assert doc.cats == pytest.approx(hot(texts[0]).cats)
    # training is not affected: the softmax layer's own temperature is untouched
    layer = reloaded.get_pipe("cls_classifier").model.get_ref("output_layer")
    assert layer.attrs["softmax_temperature"] == 1.0


def test_cls_labels_and_uncertainty_of_an_exclusive_classifier(en_pipeline):
    nlp = spacy.load(en_pipeline)
    docs = list(nlp.pipe([t for t, _ in EXCLUSIVE["en"]] + [""]))
    for doc in docs:
        assert doc._.cls_labels == [max(doc.cats, key=doc.cats.get)]
        top = sorted(doc.cats.values(), reverse=True)
        assert doc._.cls_uncertainty == pytest.approx(1 - (top[0] - top[1]), abs=1e-6)
    always_abstain = spacy.load(en_pipeline, config={"components": {"cls_classifier": {"abstain_threshold": 1.0}}})
    doc = always_abstain("boring film")
    assert doc._.cls_labels == [] or max(doc.cats.values()) >= 1.0


def test_entropy_uncertainty(en_pipeline):
    nlp = spacy.load(en_pipeline, config={"components": {"cls_classifier": {"uncertainty": "entropy"}}})
    doc = nlp("the movie was ok")
    p = numpy.array(list(doc.cats.values()))
    assert doc._.cls_uncertainty == pytest.approx(float(-(p * numpy.log(p)).sum() / numpy.log(2)), abs=1e-5)


def test_per_label_thresholds_decide_the_labels(multilabel_pipeline, tmp_path):
    texts = [t for t, _ in MULTILABEL]
    nlp = spacy.load(multilabel_pipeline)
    docs = list(nlp.pipe(texts))
    for doc in docs:
        assert doc._.cls_labels == [label for label in MULTILABEL_LABELS if doc.cats[label] >= 0.5]
        assert 0.0 <= doc._.cls_uncertainty <= 1.0
    thresholds = {"FOOD": 0.0, "SERVICE": 1.0}  # PRICE keeps the global 0.5
    nlp.to_disk(tmp_path / "tuned")
    write_settings(tmp_path / "tuned", "cls_classifier_multilabel", {"thresholds": thresholds})
    reloaded = spacy.load(tmp_path / "tuned")
    assert reloaded.get_pipe("cls_classifier_multilabel").thresholds == thresholds
    reloaded.from_bytes(reloaded.to_bytes())
    for doc, before in zip(reloaded.pipe(texts), docs):
        assert doc.cats == pytest.approx(before.cats)
        assert "FOOD" in doc._.cls_labels
        assert ("SERVICE" in doc._.cls_labels) == (doc.cats["SERVICE"] >= 1.0)
        assert ("PRICE" in doc._.cls_labels) == (doc.cats["PRICE"] >= 0.5)


def test_thresholds_for_an_unknown_label_fail_loudly(multilabel_pipeline, tmp_path):
    nlp = spacy.load(multilabel_pipeline)
    nlp.to_disk(tmp_path / "p")
    write_settings(tmp_path / "p", "cls_classifier_multilabel", {"thresholds": {"FOOOD": 0.2}})
    with pytest.raises(ValueError, match="FOOOD"):
        spacy.load(tmp_path / "p")("cheap food")


# --- no accepted setting gives NaN; every other value is refused at construction and at load


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324, 1e-8, 0.05, 20.0, 1e8, 1e300])
def test_no_accepted_temperature_gives_nan_cats(en_pipeline, temperature):
    texts = [t for t, _ in EXCLUSIVE["en"]] + ["", "the movie was ok"]
    plain = list(spacy.load(en_pipeline).pipe(texts))
    nlp = spacy.load(en_pipeline, config={"components": {"cls_classifier": {"temperature": temperature}}})
    for doc, before in zip(nlp.pipe(texts), plain):
        values = list(doc.cats.values())
        assert all(numpy.isfinite(v) and 0.0 <= v <= 1.0 for v in values), (temperature, doc.cats)
        assert sum(values) == pytest.approx(1.0, abs=1e-5)
        assert doc._.cls_labels and numpy.isfinite(doc._.cls_uncertainty)
        if temperature <= 20.0:  # past that, float32 scores of close logits may tie
            assert doc._.cls_labels == before._.cls_labels


def _edited(folder, tmp_path, component, line):
    """A copy of the saved pipeline whose config says `line` in the component's block."""
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(folder, out)
    path = out / "config.cfg"
    text = path.read_text(encoding="utf8")
    key = line.split("=")[0].strip()
    lines = text.splitlines()
    start = lines.index(f"[components.{component}]")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    block = [entry for entry in lines[start + 1:end] if not entry.startswith(f"{key} =")] + [line]
    path.write_text("\n".join(lines[:start + 1] + block + lines[end:]) + "\n", encoding="utf8")
    return out


@pytest.mark.parametrize("line", ["temperature = NaN", "temperature = Infinity", "temperature = 1e999",
                                  "temperature = 0", "temperature = -1.5", "temperature = 1e-400",
                                  'temperature = "1.0"', "temperature = true",
                                  "abstain_threshold = NaN", "abstain_threshold = -1", "abstain_threshold = 2",
                                  'abstain_threshold = "0.5"', "threshold = NaN", "threshold = 1.5"])
def test_a_saved_exclusive_pipeline_with_a_bad_setting_does_not_load(en_pipeline, tmp_path, line):
    folder = _edited(en_pipeline, tmp_path, "cls_classifier", line)
    with pytest.raises(Exception, match=line.split()[0]):
        spacy.load(folder)


@pytest.mark.parametrize("line", ["threshold = NaN", "threshold = -1", "threshold = 2", 'threshold = "0.5"',
                                  "thresholds = {\"FOOD\": NaN}", "thresholds = {\"FOOD\": -1}",
                                  "thresholds = {\"FOOD\": 2}", "thresholds = {\"FOOD\": \"0.3\"}",
                                  "thresholds = {\"FOOD\": true}", "thresholds = {\"NOT_A_LABEL\": 0.3}"])
def test_a_saved_multilabel_pipeline_with_a_bad_setting_does_not_load(multilabel_pipeline, tmp_path, line):
    folder = _edited(multilabel_pipeline, tmp_path, "cls_classifier_multilabel", line)
    with pytest.raises(Exception, match="threshold"):
        spacy.load(folder)("cheap food")


@pytest.mark.parametrize("value", [float("nan"), -0.5, 1.5])
def test_a_tampered_saved_threshold_does_not_load(multilabel_pipeline, tmp_path, value):
    import json
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(multilabel_pipeline, folder)
    cfg_path = folder / "cls_classifier_multilabel" / "cfg"
    cfg = json.loads(cfg_path.read_text(encoding="utf8"))
    cfg["threshold"] = value
    cfg_path.write_text(json.dumps(cfg), encoding="utf8")
    # NaN is not JSON: the reader refuses it before the component sees it
    with pytest.raises(ValueError, match="Expected object" if value != value else "threshold"):
        spacy.load(folder)


def test_settings_set_in_python_are_checked(en_pipeline, multilabel_pipeline):
    pipe = spacy.load(en_pipeline).get_pipe("cls_classifier")
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="temperature"):
            pipe.temperature = bad
    for bad in (float("nan"), -0.1, 1.1, "0.5"):
        with pytest.raises(ValueError, match="abstain_threshold"):
            pipe.abstain_threshold = bad
    with pytest.raises(ValueError, match="multi-label"):
        pipe.thresholds = {"POS": 0.5}
    pipe.temperature = 1e-40
    assert all(numpy.isfinite(v) for v in pipe(spacy.blank("en").make_doc("good")).cats.values())
    multi = spacy.load(multilabel_pipeline).get_pipe("cls_classifier_multilabel")
    for bad in ({"FOOD": float("nan")}, {"FOOD": 2}, {"FOOD": -1}, {"NOPE": 0.5}, [0.5]):
        with pytest.raises(ValueError, match="threshold"):
            multi.thresholds = bad
    with pytest.raises(ValueError, match="exclusive"):
        multi.temperature = 2.0
    with pytest.raises(ValueError, match="exclusive"):
        multi.abstain_threshold = 0.5
