"""bfloat16 on the CPU: `mixed_precision = true` with `mixed_precision_dtype =
"bfloat16"` predicts on a bfloat16 copy of the encoder and fine-tunes under bfloat16
autocast, where the CPU has bfloat16 arithmetic; elsewhere it warns and runs float32.
Parity with float32 (labels, vectors within bfloat16's tolerance), save and load."""
import warnings

import numpy
import pytest
import spacy
import torch
from thinc.api import Adam

import spacy_cls  # noqa: F401
from spacy_cls.layers import encoder as encoder_module
from spacy_cls.layers.encoder import cpu_supports_bfloat16
from spacy_cls.models.quantize import bfloat16_pipeline, quantize_pipeline

from test_speed_features import NO_DROPOUT, TEXTS, encoder_of, examples_for, initialized, make_nlp

needs_bfloat16 = pytest.mark.skipif(not cpu_supports_bfloat16(), reason="this CPU has no bfloat16 arithmetic")


def cosines(a, b):
    return (a * b).sum(axis=1) / (numpy.linalg.norm(a, axis=1) * numpy.linalg.norm(b, axis=1))


def vectors(nlp, texts=TEXTS):
    docs = list(nlp.pipe(texts))
    return docs, numpy.stack([doc._.cls_vector for doc in docs])


@needs_bfloat16
@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_bfloat16_predicts_close_to_float32_and_saves(tiny_bert, tmp_path, pooling):
    nlp = initialized(tiny_bert, pooling=pooling)
    reference_docs, reference = vectors(nlp)
    assert bfloat16_pipeline(nlp) == ["cls_classifier"]
    docs, fast = vectors(nlp)
    assert fast.dtype == numpy.float32
    assert not numpy.array_equal(fast, reference)  # it really ran in bfloat16
    assert cosines(fast, reference).min() > 0.999
    for a, b in zip(reference_docs, docs):
        assert b.cats == pytest.approx(a.cats, abs=0.02)
    transformer = encoder_of(nlp).shims[0]._model
    assert next(transformer.parameters()).dtype == torch.float32  # the saved weights stay float32
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    settings = encoder_of(loaded).attrs
    assert settings["mixed_precision"] is True and settings["mixed_precision_dtype"] == "bfloat16"
    _, again = vectors(loaded)
    numpy.testing.assert_allclose(again, fast, atol=1e-6)
    bfloat16_pipeline(loaded, enable=False)
    _, back = vectors(loaded)
    numpy.testing.assert_allclose(back, reference, atol=1e-6)


@needs_bfloat16
def test_bfloat16_copy_follows_the_weights_through_fine_tuning(tiny_bert):
    nlp = initialized(tiny_bert, mixed_precision=True, mixed_precision_dtype="bfloat16",
                      transformer_config=NO_DROPOUT)
    _, before = vectors(nlp)
    optimizer = Adam(1e-3)
    for _ in range(3):
        losses = nlp.update(examples_for(nlp), sgd=optimizer)
    assert numpy.isfinite(losses["cls_classifier"])
    transformer = encoder_of(nlp).shims[0]._model
    assert next(transformer.parameters()).dtype == torch.float32
    _, after = vectors(nlp)
    assert not numpy.allclose(after, before, atol=1e-3)
    # the same weights in float32 give the bfloat16 copy's answers within tolerance
    bfloat16_pipeline(nlp, enable=False)
    _, float32 = vectors(nlp)
    assert cosines(after, float32).min() > 0.999


@needs_bfloat16
def test_bfloat16_with_a_frozen_encoder_trains_the_head_on_bfloat16_outputs(tiny_bert):
    nlp = initialized(tiny_bert, freeze=True, mixed_precision=True, mixed_precision_dtype="bfloat16")
    losses = nlp.update(examples_for(nlp), sgd=Adam(1e-3))
    assert numpy.isfinite(losses["cls_classifier"])
    cache = encoder_module.encoder_cache(encoder_of(nlp))
    assert len(cache) > 0


def test_bfloat16_without_cpu_support_warns_once_and_runs_float32(tiny_bert, monkeypatch):
    monkeypatch.setattr(encoder_module, "cpu_supports_bfloat16", lambda: False)
    monkeypatch.setattr(encoder_module, "_CPU_BFLOAT16_WARNED", False)
    reference = initialized(tiny_bert)
    _, expected = vectors(reference)
    bfloat16_pipeline(reference)
    with pytest.warns(UserWarning, match="no bfloat16 arithmetic"):
        _, got = vectors(reference)
    numpy.testing.assert_allclose(got, expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors(reference)  # once is enough


def test_float16_mixed_precision_is_a_no_op_on_cpu(tiny_bert):
    plain = initialized(tiny_bert)
    mixed = initialized(tiny_bert, mixed_precision=True, mixed_precision_dtype="float16")
    for a, b in zip(plain.pipe(TEXTS), mixed.pipe(TEXTS)):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-6)


def test_bfloat16_and_int8_cannot_both_be_on(tiny_bert):
    with pytest.raises(ValueError, match="only one can run"):
        make_nlp(tiny_bert, quantize_int8=True, mixed_precision=True, mixed_precision_dtype="bfloat16")
    nlp = initialized(tiny_bert)
    bfloat16_pipeline(nlp)
    quantize_pipeline(nlp)  # switches bfloat16 off
    settings = encoder_of(nlp).attrs
    assert settings["quantize_int8"] is True and settings["mixed_precision"] is False
    bfloat16_pipeline(nlp)
    assert settings["quantize_int8"] is False and settings["mixed_precision"] is True


def test_bfloat16_pipeline_needs_an_encoder():
    with pytest.raises(ValueError, match="nothing to switch to bfloat16"):
        bfloat16_pipeline(spacy.blank("en"))
