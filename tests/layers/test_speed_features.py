"""Speed features of the encoder layer: the [CLS]-only last layer, length grouping,
the frozen-encoder cache, inference tensors not outliving the pipeline, int8
quantisation and the mixed-precision settings. No timings here: the benchmarks
in benchmarks/ measure speed; these tests check that results do not change."""
import gc
import weakref

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import SGD, Adam, fix_random_seed
from transformers import AutoModel, BertConfig, BertModel

import spacy_cls  # noqa: F401
from spacy_cls.layers.cls_forward import encode_rows, supports_cls_only
from spacy_cls.layers.encoder import encoder_cache, padding_stats
from spacy_cls.layers.windows import WindowBatch, length_sorted_parts
from spacy_cls.models.quantize import quantize_pipeline

TEXTS = [
    "i love this movie",
    "这家酒店的服务非常好",
    "the food was awful, but the staff friendly and the room clean",
    "ok",
    "",
    "bad",
    "the hotel room was dirty and the service slow, i hate it",
]
LABELLED = [
    ("i love this movie, it was great", "POS"),
    ("the food was awful and the staff rude", "NEG"),
    ("really good service, very friendly", "POS"),
    ("terrible room, dirty and slow", "NEG"),
    ("这家酒店的服务非常好", "POS"),
    ("快递很慢，服务很差", "NEG"),
]
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def make_nlp(tiny_bert, **model_cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert, **model_cfg}})
    return nlp


def examples_for(nlp, data=LABELLED):
    return [
        Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
        for t, l in data
    ]


def initialized(tiny_bert, **model_cfg):
    nlp = make_nlp(tiny_bert, **model_cfg)
    nlp.initialize(lambda: examples_for(nlp))
    return nlp


def encoder_of(nlp):
    return nlp.get_pipe("cls_classifier").encoder


def padded_rows(tokenizer_path, texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


# --- the [CLS]-only last layer ---------------------------------------------------


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_cls_only_last_layer_gives_the_full_forward_rows(tiny_bert, attn_implementation):
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation=attn_implementation).eval()
    assert supports_cls_only(model)
    ids, mask = padded_rows(tiny_bert, TEXTS)
    assert not bool(mask.all())
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask)
        fast = encode_rows(model, ids, mask, cls_only=True, need_pooler=True)
    assert fast.hidden.shape == (len(TEXTS), 1, 32)
    numpy.testing.assert_allclose(fast.hidden[:, 0].numpy(), full.last_hidden_state[:, 0].numpy(), atol=1e-5)
    numpy.testing.assert_allclose(fast.pooler_output.numpy(), full.pooler_output.numpy(), atol=1e-5)
    # a lone row too
    with torch.no_grad():
        one = encode_rows(model, ids[:1], mask[:1], cls_only=True, need_pooler=False)
    numpy.testing.assert_allclose(one.hidden[0, 0].numpy(), full.last_hidden_state[0, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("n_rows", [1, 4])
def test_cls_only_last_layer_gives_the_full_forward_gradients(tiny_bert, n_rows):
    model = AutoModel.from_pretrained(tiny_bert, **NO_DROPOUT)
    model.train()
    ids, mask = padded_rows(tiny_bert, TEXTS[:n_rows] if n_rows > 1 else TEXTS[2:3])
    weights = torch.randn(ids.shape[0], 32, generator=torch.Generator().manual_seed(0))

    def gradients(cls_only: bool):
        model.zero_grad()
        encoded = encode_rows(model, ids, mask, cls_only=cls_only, need_pooler=True)
        loss = (encoded.hidden[:, 0] * weights).sum() + encoded.pooler_output.sum()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    full, fast = gradients(False), gradients(True)
    assert full.keys() == fast.keys() and len(full) == len(list(model.parameters()))
    for name in full:
        numpy.testing.assert_allclose(fast[name].numpy(), full[name].numpy(), atol=1e-5, err_msg=name)


def test_other_structures_run_the_full_forward(tiny_bert):
    relative = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, position_embedding_type="relative_key"))
    assert not supports_cls_only(relative)
    decoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, is_decoder=True))
    assert not supports_cls_only(decoder)
    assert not supports_cls_only(torch.nn.Linear(2, 2))


def test_encoder_falls_back_when_the_probe_disagrees(tiny_bert):
    """A model with BERT's module names whose layer computes something else."""
    nlp = initialized(tiny_bert)
    reference = [doc._.cls_vector for doc in nlp.pipe(TEXTS)]
    other = initialized(tiny_bert)
    last = encoder_of(other).shims[0]._model.encoder.layer[-1]
    plain_forward = last.forward
    last.forward = lambda *args, **kwargs: (plain_forward(*args, **kwargs)[0] + 1.0,)
    shifted = [doc._.cls_vector for doc in other.pipe(TEXTS)]
    # The full forward (with the +1) ran, not the [CLS]-only path (without it).
    with torch.no_grad():
        model = encoder_of(other).shims[0]._model.eval()
        ids, mask = padded_rows(tiny_bert, TEXTS)
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0].numpy()
    numpy.testing.assert_allclose(numpy.stack(shifted), expected, atol=1e-5)
    assert numpy.abs(numpy.stack(shifted) - numpy.stack(reference)).max() > 0.1


@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean", "cls_mean"])
def test_pipeline_outputs_do_not_depend_on_the_fast_paths(tiny_bert, pooling):
    nlp = initialized(tiny_bert, pooling=pooling)
    encoder = encoder_of(nlp)
    fast = list(nlp.pipe(TEXTS, batch_size=7))
    encoder.attrs["cls_only_last_layer"] = False
    encoder.attrs["pass_cost"] = 10**9  # one pass per batch, padded to its longest row
    slow = list(nlp.pipe(TEXTS, batch_size=7))
    encoder.attrs["pass_cost"] = 0  # a pass per distinct length
    split = list(nlp.pipe(TEXTS, batch_size=7))
    for a, b, c in zip(fast, slow, split):
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-5)
        numpy.testing.assert_allclose(c._.cls_vector, b._.cls_vector, atol=1e-5)
        assert a.cats == pytest.approx(b.cats, abs=1e-5)
        assert c.cats == pytest.approx(b.cats, abs=1e-5)


def test_fine_tuning_steps_are_the_same_with_the_cls_only_layer(tiny_bert):
    def one_step(cls_only: bool):
        fix_random_seed(0)
        nlp = make_nlp(tiny_bert, transformer_config=NO_DROPOUT, dropout=0.0)
        examples = examples_for(nlp)
        nlp.initialize(lambda: examples)
        encoder_of(nlp).attrs["cls_only_last_layer"] = cls_only
        # Plain SGD: Adam would blow float noise in near-zero gradients up to full
        # steps. Two steps: the head starts at zero and passes no gradient back at first.
        optimizer = SGD(0.5)
        for _ in range(2):
            nlp.update(examples, sgd=optimizer, drop=0.0)
        return {k: v.detach().clone() for k, v in encoder_of(nlp).shims[0]._model.state_dict().items()}

    full, fast = one_step(False), one_step(True)
    for name in full:
        numpy.testing.assert_allclose(fast[name].numpy(), full[name].numpy(), atol=1e-6, err_msg=name)
    reference = AutoModel.from_pretrained(tiny_bert).state_dict()
    changed = sum(not torch.equal(full[k], reference[k]) for k in reference if k in full)
    assert changed > len(reference) // 2


# --- length grouping ---------------------------------------------------------------


def _batch(lengths):
    mask = numpy.zeros((len(lengths), max(lengths)), dtype="int64")
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return WindowBatch(mask.copy(), mask, numpy.arange(len(lengths)), len(lengths), 0)


def test_length_groups_cover_every_row_once():
    lengths = [5, 60, 7, 6, 58, 12, 61, 5, 30]
    batch = _batch(lengths)
    for max_rows, pass_cost in [(0, 0), (0, 10**9), (2, 10**9), (0, 32), (3, 8)]:
        parts = length_sorted_parts(batch, max_rows, pass_cost)
        rows = numpy.concatenate(parts)
        assert sorted(rows.tolist()) == list(range(len(lengths)))
        if max_rows:
            assert max(len(p) for p in parts) <= max_rows
    assert len(length_sorted_parts(batch, 0, 10**9)) == 1
    # free passes: one group per distinct length, no padding at all
    parts = length_sorted_parts(batch, 0, 0)
    assert all(len({lengths[i] for i in p}) == 1 for p in parts)
    # short and long rows are not padded together at a moderate pass cost
    parts = length_sorted_parts(batch, 0, 32)
    assert not any({0, 1} <= set(p.tolist()) for p in parts)


def test_an_empty_batch_gives_empty_outputs(tiny_bert):
    for freeze in (False, True):
        nlp = initialized(tiny_bert, freeze=freeze)
        encoder = encoder_of(nlp)
        for is_train in (False, True):
            output, backprop = encoder([], is_train)
            assert output.cls.shape == (0, 32) and output.features.shape == (0, 32)
            assert backprop(output.features) == []


def test_padding_stats_count_real_and_padded_pieces(tiny_bert):
    nlp = initialized(tiny_bert)
    encoder = encoder_of(nlp)
    real_before, padded_before = padding_stats(encoder)
    list(nlp.pipe(TEXTS))
    real, padded = padding_stats(encoder)
    assert real > real_before and padded - padded_before >= real - real_before


# --- the frozen-encoder cache ---------------------------------------------------------


def _train_frozen(tiny_bert, cache_size, epochs=3):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, freeze=True, cache_size=cache_size)
    examples = examples_for(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(1e-2)
    transformer = encoder_of(nlp).shims[0]._model
    calls = []
    hook = transformer.embeddings.register_forward_hook(lambda *args: calls.append(1))
    per_epoch = []
    for _ in range(epochs):
        before = len(calls)
        for start in range(0, len(examples), 2):
            nlp.update(examples[start : start + 2], sgd=optimizer, drop=0.1)
        per_epoch.append(len(calls) - before)
    hook.remove()
    return nlp, per_epoch


def test_frozen_training_reuses_encoder_outputs_with_the_same_results(tiny_bert):
    cached, cached_calls = _train_frozen(tiny_bert, cache_size=100)
    plain, plain_calls = _train_frozen(tiny_bert, cache_size=0)
    assert cached_calls[0] > 0 and cached_calls[1:] == [0, 0]
    # (the first epoch also runs the one-off [CLS]-only probe)
    assert plain_calls[0] >= plain_calls[1] == plain_calls[2] > 0
    cache = encoder_cache(encoder_of(cached))
    assert len(cache) == len(LABELLED) and cache.hits == 2 * len(LABELLED)
    assert len(encoder_cache(encoder_of(plain))) == 0
    head_a = cached.get_pipe("cls_classifier").model.get_ref("head")
    head_b = plain.get_pipe("cls_classifier").model.get_ref("head")
    params_a = [n.get_param(p) for n in head_a.walk() for p in n.param_names if n.has_param(p)]
    params_b = [n.get_param(p) for n in head_b.walk() for p in n.param_names if n.has_param(p)]
    assert params_a
    for a, b in zip(params_a, params_b):
        numpy.testing.assert_array_equal(a, b)
    docs_a, docs_b = list(cached.pipe(TEXTS)), list(plain.pipe(TEXTS))
    for a, b in zip(docs_a, docs_b):
        assert a.cats == pytest.approx(b.cats, abs=1e-6)
        numpy.testing.assert_allclose(a._.cls_vector, b._.cls_vector, atol=1e-6)


def test_cache_is_bounded_and_dropped_when_weights_or_settings_change(tiny_bert):
    nlp = initialized(tiny_bert, freeze=True, cache_size=3)
    encoder = encoder_of(nlp)
    cache = encoder_cache(encoder)
    first = [doc._.cls_vector for doc in nlp.pipe(TEXTS)]
    assert len(cache) == 3
    # an in-place change of a weight empties the cache; outputs follow the new weights
    with torch.no_grad():
        encoder.shims[0]._model.embeddings.word_embeddings.weight.mul_(2.0)
    changed = [doc._.cls_vector for doc in nlp.pipe(TEXTS[-3:])]
    assert cache.hits == 0
    assert all(numpy.abs(a - b).max() > 1e-3 for a, b in zip(changed, first[-3:]))
    # another setting that shapes the outputs empties it too
    assert len(cache) == 3
    encoder.attrs["max_length"] = 8
    nlp("ok")
    assert len(cache) == 1


def test_cache_is_never_used_when_fine_tuning(tiny_bert):
    nlp = initialized(tiny_bert)
    examples = examples_for(nlp)
    optimizer = Adam(1e-3)
    list(nlp.pipe(TEXTS))
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    cache = encoder_cache(encoder_of(nlp))
    assert len(cache) == 0 and cache.hits == 0 and cache.misses == 0


# --- nothing torch-related outlives the pipeline -------------------------------------------


def test_docs_keep_no_encoder_tensors(tiny_bert):
    nlp = initialized(tiny_bert, pooling="cls_mean")
    transformer = encoder_of(nlp).shims[0]._model
    outputs = []

    def keep_weakref(module, inputs, output):
        tensor = output[0] if isinstance(output, tuple) else output
        outputs.append(weakref.ref(tensor))

    hooks = [transformer.embeddings.register_forward_hook(keep_weakref)]
    hooks += [layer.register_forward_hook(keep_weakref) for layer in transformer.encoder.layer]
    docs = list(nlp.pipe(TEXTS, batch_size=3))
    for hook in hooks:
        hook.remove()
    gc.collect()
    assert outputs and all(ref() is None for ref in outputs)
    for doc in docs:
        assert doc.tensor.size == 0
        assert isinstance(doc._.cls_vector, numpy.ndarray) and doc._.cls_vector.base is None
        for value in doc.user_data.values():
            assert not isinstance(value, torch.Tensor)
            assert not any(isinstance(r, torch.Tensor) for r in gc.get_referents(value))


# --- int8 ---------------------------------------------------------------------------


def test_int8_quantisation_gives_close_cats(tiny_bert, tmp_path):
    nlp = initialized(tiny_bert)
    reference = list(nlp.pipe(TEXTS))
    assert quantize_pipeline(nlp) == ["cls_classifier"]
    quantized = list(nlp.pipe(TEXTS))
    transformer = encoder_of(nlp).shims[0]._model
    assert type(transformer.encoder.layer[0].attention.self.query) is torch.nn.Linear  # float weights stay
    for a, b in zip(reference, quantized):
        assert b.cats == pytest.approx(a.cats, abs=0.05)
        assert numpy.abs(a._.cls_vector - b._.cls_vector).max() < 0.1
    assert any(numpy.abs(a._.cls_vector - b._.cls_vector).max() > 0 for a, b in zip(reference, quantized))
    # the setting is saved; the saved weights are the float ones
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert encoder_of(loaded).attrs["quantize_int8"] is True
    for a, b in zip(quantized, loaded.pipe(TEXTS)):
        assert b.cats == pytest.approx(a.cats, abs=1e-5)
    quantize_pipeline(loaded, enable=False)
    for a, b in zip(reference, loaded.pipe(TEXTS)):
        assert b.cats == pytest.approx(a.cats, abs=1e-5)


def test_int8_refuses_fine_tuning_but_trains_a_frozen_head(tiny_bert):
    nlp = initialized(tiny_bert, quantize_int8=True)
    with pytest.raises(ValueError, match="quantize_int8"):
        nlp.update(examples_for(nlp), sgd=Adam(1e-3))
    frozen = initialized(tiny_bert, quantize_int8=True, freeze=True)
    losses = frozen.update(examples_for(frozen), sgd=Adam(1e-3))
    assert numpy.isfinite(losses["cls_classifier"])


def test_quantize_pipeline_needs_an_encoder():
    with pytest.raises(ValueError, match="nothing to quantise"):
        quantize_pipeline(spacy.blank("en"))


# --- settings and GPU ---------------------------------------------------------------------


def test_speed_settings_are_checked(tiny_bert):
    with pytest.raises(ValueError, match="mixed_precision_dtype"):
        make_nlp(tiny_bert, mixed_precision_dtype="float8")
    with pytest.raises(ValueError, match="cache_size"):
        make_nlp(tiny_bert, cache_size=-1)
    with pytest.raises(ValueError, match="sub_batch_size"):
        make_nlp(tiny_bert, sub_batch_size=-2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_on_gpu_trains_and_predicts(tiny_bert, dtype):
    from thinc.api import require_cpu, require_gpu

    require_gpu(0)
    try:
        reference = initialized(tiny_bert, transformer_config=NO_DROPOUT)
        nlp = initialized(tiny_bert, mixed_precision=True, mixed_precision_dtype=dtype, transformer_config=NO_DROPOUT)
        docs = list(nlp.pipe(TEXTS))
        for a, b in zip(reference.pipe(TEXTS), docs):
            numpy.testing.assert_allclose(b._.cls_vector, a._.cls_vector, atol=0.05)
            assert b._.cls_vector.dtype == numpy.float32
        examples = examples_for(nlp)
        optimizer = Adam(1e-3)
        for _ in range(3):
            losses = nlp.update(examples, sgd=optimizer)
        assert numpy.isfinite(losses["cls_classifier"])
    finally:
        require_cpu()


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_cls_only_last_layer_on_the_real_checkpoints(lang):
    from conftest import chinese_model_path, english_model_path, require_datasets

    path = english_model_path() if lang == "en" else chinese_model_path()
    dataset = "sst2" if lang == "en" else "chnsenticorp"
    dev = require_datasets(dataset) / dataset / "dev.tsv"
    lines = dev.read_text(encoding="utf8").splitlines()[1:9]
    texts = [line.split("\t")[0 if lang == "en" else 1] for line in lines]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, do_lower_case=True) if lang == "zh" else AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
        fast = encode_rows(model, batch["input_ids"], batch["attention_mask"], cls_only=True, need_pooler=False)
    numpy.testing.assert_allclose(fast.hidden[:, 0].numpy(), full.numpy(), atol=1e-4)
