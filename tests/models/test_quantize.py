"""int8 quantisation follows the encoder's weights: a copy made before the weights
changed is never used after."""
import numpy
import spacy
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401
from spacy_cls.models.quantize import quantize_pipeline

TEXTS = ["i love this movie", "the food was awful", "这家酒店的服务非常好", "ok"]
DATA = [("i love this movie, it was great", "POS"), ("the food was awful and the staff rude", "NEG"),
        ("really good service", "POS"), ("terrible room, dirty and slow", "NEG")]


def initialized(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
                for t, l in DATA]
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    return nlp, examples


def vectors(nlp):
    return numpy.stack([doc._.cls_vector for doc in nlp.pipe(TEXTS)])


def fine_tune(nlp, examples, steps=5):
    optimizer = Adam(1e-2)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)


def test_requantises_after_fine_tuning(tiny_bert):
    nlp, examples = initialized(tiny_bert)
    quantize_pipeline(nlp)
    before = vectors(nlp)  # makes the int8 copy of the initial weights
    quantize_pipeline(nlp, enable=False)
    fine_tune(nlp, examples)
    float_after = vectors(nlp)
    assert numpy.abs(float_after - before).max() > 0.5  # the weights really changed
    quantize_pipeline(nlp)
    int8_after = vectors(nlp)
    assert numpy.abs(int8_after - float_after).max() < 0.1
    assert numpy.abs(int8_after - before).max() > 0.5


def test_requantises_after_loading_other_weights(tiny_bert, tmp_path):
    """from_bytes loads new weights into the same torch module."""
    nlp, examples = initialized(tiny_bert)
    fine_tune(nlp, examples)
    nlp.to_disk(tmp_path / "tuned")
    tuned = vectors(spacy.load(tmp_path / "tuned"))
    fresh, _ = initialized(tiny_bert)
    quantize_pipeline(fresh)
    vectors(fresh)
    fresh.from_disk(tmp_path / "tuned")
    quantize_pipeline(fresh)
    assert numpy.abs(vectors(fresh) - tuned).max() < 0.1


def test_the_int8_copy_is_reused_while_the_weights_stay(tiny_bert):
    nlp, _ = initialized(tiny_bert)
    quantize_pipeline(nlp)
    first = vectors(nlp)
    second = vectors(nlp)
    numpy.testing.assert_array_equal(first, second)
    assert numpy.abs(first - vectors(quantize_pipeline(nlp, enable=False) and nlp)).max() > 0


def test_requantises_after_weights_change_in_place(tiny_bert):
    nlp, examples = initialized(tiny_bert)
    tuned, tuned_examples = initialized(tiny_bert)
    fine_tune(tuned, tuned_examples)
    quantize_pipeline(nlp)
    vectors(nlp)
    transformer = nlp.get_pipe("cls_classifier").encoder.shims[0]._model
    transformer.load_state_dict(tuned.get_pipe("cls_classifier").encoder.shims[0]._model.state_dict())
    quantize_pipeline(tuned)
    assert numpy.abs(vectors(nlp) - vectors(tuned)).max() < 1e-5
