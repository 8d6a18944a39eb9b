"""A thinc layer that runs a Hugging Face encoder over docs and returns, per doc,
the raw last-layer [CLS] row and the pooled features for the head.

It reuses spacy-transformers' ``HFShim`` (a thinc ``PyTorchShim``) for what that
already does well: serialising weights and tokenizer with the pipeline, device
placement, autocast and gradient scaling, and handing torch gradients to thinc's
optimizer. It does not reuse spacy-transformers' ``TransformerModel``: that layer
aligns word pieces to spaCy tokens for every doc and keeps all hidden states, work
a doc-level classifier never needs.

Work it does not do (see docs/performance.md):
- rows are sorted by length and run in groups (sub-batches), each padded to its own
  longest row, cut where padding costs more than another forward pass;
- when the pooling reads [CLS] only, the last layer runs at the [CLS] position only
  (``cls_forward``), in prediction and in training;
- with ``freeze = true``, each text's outputs are computed once and then read from a
  bounded cache (``cache``);
- prediction runs under ``torch.inference_mode``, optionally on an int8 copy of the
  encoder (``quantize_int8``, CPU only) or, with bfloat16 mixed precision on a CPU
  that computes in bfloat16, on a bfloat16 copy.
"""
import copy
import warnings
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, Hashable, List, Optional, Tuple, Union

import numpy
import torch
from spacy.tokens import Doc
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from thinc.api import Model, torch2xp, xp2torch
from thinc.types import Floats2d

from ..cpus import cap_torch_threads
from ..models.layer_drop import check_layers_setting, drop_layers
from ..models.loaders import load_encoder
from .cache import EncoderCache, text_key
from .cls_forward import encode_rows, supports_cls_only
from .precomputed import check_precomputed, precomputed_rows
from .pooling import check_pooling, pool, pooled_width, uses_tokens_beyond_cls
from .shim import StrictHFShim
from .windows import WindowBatch, check_policy, encode_texts, length_sorted_parts

# Docs whose outputs a frozen encoder keeps (LRU): at most cache_size * 4 bytes *
# hidden width (pooling="cls": 77 MB for a 384-wide encoder, 154 MB for 768) or
# * (hidden + pooled width) for the other poolings.
DEFAULT_CACHE_SIZE = 50_000
# Most rows per forward pass (0: no cap; the length grouping decides).
DEFAULT_SUB_BATCH_SIZE = 0
# What one more forward pass costs, in padded word pieces: on CPU per torch thread
# (the per-pass overhead stays, the per-piece cost falls with threads), on a GPU
# for the whole device (short passes leave it idle). Measured with MiniLM and
# m3e-small: about 30-50 pieces a pass on one CPU thread.
CPU_PASS_COST_PER_THREAD = 32
GPU_PASS_COST = 4096
# Windows read per doc under long_text="windows": training memory grows with them.
DEFAULT_MAX_WINDOWS = 16
MIXED_PRECISION_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_CPU_BFLOAT16_WARNED = False


@dataclass
class EncoderOutput:
    """Per-doc outputs of the encoder layer, on the layer's ops (numpy or cupy)."""

    cls: Floats2d  # (n_docs, hidden): raw last-layer [CLS], averaged over windows
    features: Floats2d  # (n_docs, pooled width): what the head reads


def HFClsEncoder(
    name: Optional[str],
    pooling: str = "cls",
    freeze: bool = False,
    max_length: Optional[int] = None,
    long_text: str = "truncate",
    stride: int = 128,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict] = None,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
    mixed_precision_dtype: str = "float16",
    cache_size: int = DEFAULT_CACHE_SIZE,
    quantize_int8: bool = False,
    sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
    max_windows: Optional[int] = DEFAULT_MAX_WINDOWS,
    layers: Optional[Union[int, List[int]]] = None,
) -> Model[List[Doc], EncoderOutput]:
    check_pooling(pooling)
    check_layers_setting(layers)
    check_speed_settings(mixed_precision_dtype, cache_size, sub_batch_size)
    check_precision_settings(mixed_precision, mixed_precision_dtype, quantize_int8)
    tokenizer_config = dict(tokenizer_config or {})
    transformer_config = dict(transformer_config or {})
    grad_scaler_config = dict(grad_scaler_config or {})
    if mixed_precision_dtype == "bfloat16":
        # bfloat16 has float32's range: no loss scaling unless asked for.
        grad_scaler_config.setdefault("enabled", False)
    shim = StrictHFShim(
        HFObjects(None, None, None, tokenizer_config, transformer_config),
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )
    return Model(
        "hf_cls_encoder",
        forward,
        init=init,
        shims=[shim],
        dims={"nO": None},
        attrs={
            "name": name,
            "pooling": pooling,
            "freeze": freeze,
            "max_length": max_length,
            "long_text": long_text,
            "stride": stride,
            "max_windows": max_windows,
            "has_pooler_weights": None,
            "mixed_precision": mixed_precision,
            "mixed_precision_dtype": mixed_precision_dtype,
            "cache_size": cache_size,
            "quantize_int8": quantize_int8,
            "sub_batch_size": sub_batch_size,
            # A student's depth (models/layer_drop.py), and which checkpoint layers it kept.
            "layers": list(layers) if isinstance(layers, (list, tuple)) else layers,
            "kept_layers": None,
            # For comparisons: false runs the full last layer; an int fixes the
            # cost of a pass in the length grouping (large: no grouping).
            "cls_only_last_layer": True,
            "pass_cost": None,
        },
    )


def check_speed_settings(mixed_precision_dtype: str, cache_size: int, sub_batch_size: int) -> None:
    if mixed_precision_dtype not in MIXED_PRECISION_DTYPES:
        raise ValueError(
            f"mixed_precision_dtype='{mixed_precision_dtype}' is not supported: choose "
            f"{' or '.join(MIXED_PRECISION_DTYPES)} (bfloat16 needs an Ampere or newer GPU)."
        )
    if cache_size < 0:
        raise ValueError(f"cache_size={cache_size}: use 0 to turn the frozen-encoder cache off, or a number of docs.")
    if sub_batch_size < 0:
        raise ValueError(f"sub_batch_size={sub_batch_size}: use 0 for no cap, or the most rows a forward pass may hold.")


def check_precision_settings(mixed_precision: bool, mixed_precision_dtype: str, quantize_int8: bool) -> None:
    if quantize_int8 and mixed_precision and mixed_precision_dtype == "bfloat16":
        raise ValueError(
            "quantize_int8 = true and bfloat16 mixed precision are two ways to run CPU "
            "prediction faster, and only one can run: set quantize_int8 = false or "
            "mixed_precision = false (docs/performance.md compares them)."
        )


def get_hf(model: Model) -> HFObjects:
    return model.shims[0]._hfmodel


def init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    shim = model.shims[0]
    if get_hf(model).transformer is None:
        name = model.attrs["name"]
        if not name:
            raise ValueError(
                "No encoder named: set the model's `name` to a Hugging Face model id "
                "or a local folder."
            )
        loaded = load_encoder(name, shim._hfmodel._init_tokenizer_config, shim._hfmodel._init_transformer_config)
        model.attrs["kept_layers"] = drop_layers(loaded.hf.transformer, model.attrs.get("layers"), repr(name))
        shim._hfmodel = loaded.hf
        shim._model = loaded.hf.transformer
        model.attrs["has_pooler_weights"] = loaded.has_pooler_weights
    _check_pooler(model)
    config = get_hf(model).transformer.config
    model.attrs["max_length"] = resolve_max_length(model.attrs["max_length"], get_hf(model).tokenizer, config)
    check_policy(model.attrs["long_text"], model.attrs["max_length"], model.attrs["stride"], model.attrs["max_windows"])
    model.set_dim("nO", pooled_width(config.hidden_size, model.attrs["pooling"]), force=True)


# Settings that change how a trained encoder runs, not what it learnt: on load, the
# pipeline's config.cfg (and spacy.load overrides) win over the values saved with the
# weights, which thinc's deserialisation would otherwise restore.
RUNTIME_SETTINGS = (
    "freeze", "long_text", "stride", "max_windows", "cache_size", "sub_batch_size", "quantize_int8",
    "mixed_precision", "mixed_precision_dtype",
)


def configured_settings(model: Model) -> Dict[str, object]:
    """The settings this layer was built with, before weights are loaded into it."""
    return {key: model.attrs[key] for key in (*RUNTIME_SETTINGS, "pooling", "max_length")}


def apply_configured_settings(model: Model, configured: Dict[str, object]) -> None:
    """After loading: keep the configured runtime settings; refuse a changed pooling,
    which the trained head depends on."""
    if configured["pooling"] != model.attrs["pooling"]:
        raise ValueError(
            f"This pipeline was trained with pooling='{model.attrs['pooling']}', and its "
            f"config now says pooling='{configured['pooling']}'. The head's weights only fit "
            f"the pooling they were trained on: set pooling back to "
            f"'{model.attrs['pooling']}', or train again with the new pooling."
        )
    for key in RUNTIME_SETTINGS:
        model.attrs[key] = configured[key]
    if configured["max_length"] is not None:
        hf = get_hf(model)
        model.attrs["max_length"] = resolve_max_length(configured["max_length"], hf.tokenizer, hf.transformer.config)
    check_speed_settings(model.attrs["mixed_precision_dtype"], model.attrs["cache_size"], model.attrs["sub_batch_size"])
    check_precision_settings(model.attrs["mixed_precision"], model.attrs["mixed_precision_dtype"], model.attrs["quantize_int8"])
    check_policy(model.attrs["long_text"], model.attrs["max_length"], model.attrs["stride"], model.attrs["max_windows"])


def _check_pooler(model: Model) -> None:
    if model.attrs["pooling"] != "pooler" or model.attrs["has_pooler_weights"]:
        return
    raise ValueError(
        f"pooling='pooler' needs trained pooler weights, and the checkpoint "
        f"'{model.attrs['name']}' has none (Hugging Face would initialise a random "
        f"pooler). Use pooling='cls' (the same [CLS] row, without the random dense "
        f"layer) or a checkpoint saved with its pooler."
    )


def resolve_max_length(requested: Optional[int], tokenizer, config) -> int:
    """The longest window the encoder can read: its position embeddings, capped by
    the tokenizer's model_max_length and by the requested value."""
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length, requested]
    # RoBERTa-style position ids start after the padding index.
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
        limits[0] = limits[0] - config.pad_token_id - 1 if limits[0] else None
    usable = [int(x) for x in limits if x and x < 1_000_000]
    if not usable:
        raise ValueError("Cannot tell the encoder's maximum length; set max_length in the model config.")
    return min(usable)


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[EncoderOutput, Callable]:
    texts = [doc.text for doc in docs]
    if not texts:
        hidden = model.shims[0]._model.config.hidden_size
        empty = EncoderOutput(cls=model.ops.alloc2f(0, hidden), features=model.ops.alloc2f(0, model.get_dim("nO")))
        return empty, lambda d_output: docs
    given = precomputed_rows(docs)
    if any(row is not None for row in given):
        return _with_precomputed(model, docs, given, is_train), lambda d_output: docs
    if is_train and not model.attrs["freeze"]:
        return _forward_fine_tuning(model, texts, docs)
    cls, features = _predict(model, texts)
    return EncoderOutput(cls=cls, features=features), lambda d_output: docs


def _with_precomputed(model: Model, docs: List[Doc], given: List[Optional[numpy.ndarray]], is_train: bool) -> EncoderOutput:
    """The docs' precomputed [CLS] rows, and the encoder's for docs without one."""
    hidden = model.shims[0]._model.config.hidden_size
    check_precomputed(given, frozen=model.attrs["freeze"] or not is_train, pooling=model.attrs["pooling"], hidden=hidden)
    todo = [i for i, row in enumerate(given) if row is None]
    rows = numpy.zeros((len(docs), hidden), dtype=numpy.float32)
    for i, row in enumerate(given):
        if row is not None:
            rows[i] = row
    if todo:
        cls, _ = _predict(model, [docs[i].text for i in todo])
        rows[todo] = model.ops.to_numpy(cls)
    cls = model.ops.asarray2f(rows)
    return EncoderOutput(cls=cls, features=cls.copy())


def _forward_fine_tuning(model: Model, texts: List[str], docs: List[Doc]) -> Tuple[EncoderOutput, Callable]:
    if model.attrs["quantize_int8"]:
        raise ValueError(
            "quantize_int8 = true makes the encoder inference-only, and this update would "
            "fine-tune it. Set quantize_int8 = false to fine-tune, or freeze = true to "
            "train the head alone on the int8 encoder's outputs."
        )
    state = _runtime(model)
    state.cache.clear()
    # thinc's optimizer replaces the weights' data without bumping their version.
    state.int8 = None
    state.bfloat16 = None
    shim = model.shims[0]
    transformer = shim._model
    device = shim.device
    batch = _encode(model, texts)
    transformer.train()
    with _autocast(model, device):
        cls_rows, pooled_rows = _run_rows(model, transformer, batch)
    doc_index = torch.from_numpy(batch.doc_index).to(device)
    features_t = average_windows(pooled_rows.float(), doc_index, batch.n_docs)
    cls_t = average_windows(cls_rows.detach().float(), doc_index, batch.n_docs)
    result = EncoderOutput(
        cls=torch2xp(cls_t, ops=model.ops),
        features=torch2xp(features_t.detach(), ops=model.ops),
    )

    def backprop(d_output: Floats2d) -> List[Doc]:
        grad = xp2torch(model.ops.asarray2f(d_output), device=device)
        _backward(shim, features_t, grad)
        return docs

    return result, backprop


def _backward(shim: HFShim, output: torch.Tensor, grad: torch.Tensor) -> None:
    """Backpropagate as HFShim.begin_update's callback does: the gradient is scaled
    for mixed precision and the weights' gradients unscaled, so that the shim's
    finish_update skips the step after an overflow."""
    scaler = shim._grad_scaler
    torch.autograd.backward(output, grad_tensors=scaler.scale(grad, inplace=True))
    scaler.unscale([p.grad for p in shim._model.parameters() if p.grad is not None])


def _predict(model: Model, texts: List[str]) -> Tuple[Floats2d, Floats2d]:
    """Outputs without gradients: the frozen encoder in training, and prediction."""
    ops = model.ops
    cache = _bound_cache(model)
    if cache is None:
        cls_t, features_t = _predict_tensors(model, texts)
        cls = torch2xp(cls_t, ops=ops)
        return cls, (cls.copy() if features_t is cls_t else torch2xp(features_t, ops=ops))
    keys = [text_key(text) for text in texts]
    found = cache.lookup(keys)
    todo: Dict[bytes, str] = {}
    for key, text in zip(keys, texts):
        if key not in found:
            todo.setdefault(key, text)
    if todo:
        cls_t, features_t = _predict_tensors(model, list(todo.values()))
        cls_new = cls_t.cpu().numpy()
        features_new = cls_new if features_t is cls_t else features_t.cpu().numpy()
        cache.store(list(todo), cls_new, features_new)
        for i, key in enumerate(todo):
            found[key] = (cls_new[i], features_new[i])
    cls = numpy.stack([found[key][0] for key in keys])
    features = numpy.stack([found[key][1] for key in keys])
    return ops.asarray2f(cls), ops.asarray2f(features)


def _predict_tensors(model: Model, texts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-doc [CLS] rows and features as float32 tensors; the same tensor twice
    when the features are the [CLS] rows."""
    shim = model.shims[0]
    device = shim.device
    transformer = _inference_module(model)
    batch = _encode(model, texts)
    was_training = transformer.training
    transformer.eval()
    try:
        # A bfloat16 copy runs as it is; autocast would only cast its inputs again.
        precision = nullcontext() if _is_bfloat16_copy(transformer) else _autocast(model, device)
        with torch.inference_mode(), precision:
            cls_rows, pooled_rows = _run_rows(model, transformer, batch)
            doc_index = torch.from_numpy(batch.doc_index).to(device)
            cls_t = average_windows(cls_rows.float(), doc_index, batch.n_docs)
            if model.attrs["pooling"] == "cls":
                return cls_t, cls_t
            return cls_t, average_windows(pooled_rows.float(), doc_index, batch.n_docs)
    finally:
        transformer.train(was_training)


def _encode(model: Model, texts: List[str]) -> WindowBatch:
    batch = encode_texts(
        get_hf(model).tokenizer,
        texts,
        model.attrs["max_length"],
        model.attrs["long_text"],
        model.attrs["stride"],
        model.attrs["max_windows"],
    )
    _note_cut_docs(model, batch)
    return batch


def _run_rows(model: Model, transformer: torch.nn.Module, batch: WindowBatch) -> Tuple[torch.Tensor, torch.Tensor]:
    """The [CLS] row and the pooled row of every window, in the batch's row order,
    running length-sorted sub-batches each padded to its own longest row."""
    pooling = model.attrs["pooling"]
    device = model.shims[0].device
    cls_only = _use_cls_only(model)
    state = _runtime(model)
    parts = length_sorted_parts(batch, model.attrs["sub_batch_size"], _pass_cost(model, device))
    cls_parts, pooled_parts = [], []
    for rows in parts:
        mask_np = batch.attention_mask[rows]
        length = int(mask_np.sum(axis=1).max())
        ids = torch.from_numpy(numpy.ascontiguousarray(batch.input_ids[rows, :length])).to(device)
        mask = torch.from_numpy(numpy.ascontiguousarray(mask_np[:, :length])).to(device)
        encoded = encode_rows(transformer, ids, mask, cls_only=cls_only, need_pooler=pooling == "pooler")
        # Pooling sums over positions: in float32, whatever the layers ran in.
        hidden = encoded.hidden if encoded.hidden.dtype == torch.float32 else encoded.hidden.float()
        pooler_output = encoded.pooler_output
        if pooler_output is not None and pooler_output.dtype != torch.float32:
            pooler_output = pooler_output.float()
        cls_parts.append(hidden[:, 0])
        pooled_parts.append(pool(hidden, mask, pooler_output, pooling))
        state.n_real_tokens += int(mask_np.sum())
        state.n_padded_tokens += mask.numel()
    if not parts:
        width = transformer.config.hidden_size
        empty = torch.zeros((0, width), device=device)
        return empty, torch.zeros((0, pooled_width(width, pooling)), device=device)
    if len(parts) == 1:
        return cls_parts[0], pooled_parts[0]
    inverse = torch.from_numpy(numpy.argsort(numpy.concatenate(parts))).to(device)
    return torch.cat(cls_parts)[inverse], torch.cat(pooled_parts)[inverse]


def _pass_cost(model: Model, device: torch.device) -> int:
    if model.attrs["pass_cost"] is not None:
        return int(model.attrs["pass_cost"])
    if device.type == "cuda":
        return GPU_PASS_COST
    return CPU_PASS_COST_PER_THREAD * torch.get_num_threads()


def _autocast(model: Model, device: torch.device) -> ContextManager:
    """CUDA: autocast to the configured dtype. CPU: bfloat16 autocast where the CPU
    computes in bfloat16 (float16 mixed precision is for CUDA; on a CPU it is off)."""
    if not model.attrs["mixed_precision"]:
        return nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=MIXED_PRECISION_DTYPES[model.attrs["mixed_precision_dtype"]])
    if device.type == "cpu" and _cpu_bfloat16(model):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def cpu_supports_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX) that oneDNN uses.
    Elsewhere bfloat16 is emulated, slower than float32."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    probe = getattr(mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())
    except RuntimeError:
        return False


def _cpu_bfloat16(model: Model) -> bool:
    """bfloat16 mixed precision asked for, on a CPU that has it; warns once where not."""
    global _CPU_BFLOAT16_WARNED
    if not model.attrs["mixed_precision"] or model.attrs["mixed_precision_dtype"] != "bfloat16":
        return False
    if cpu_supports_bfloat16():
        return True
    if not _CPU_BFLOAT16_WARNED:
        _CPU_BFLOAT16_WARNED = True
        warnings.warn(
            "[spacy_cls] mixed_precision_dtype = 'bfloat16' asks for bfloat16 on the CPU, and "
            "this CPU has no bfloat16 arithmetic (AVX-512 BF16 or AMX), where it would run "
            "slower than float32: the encoder runs in float32. Set mixed_precision = false "
            "to silence this, or use quantize_int8 for faster CPU prediction.",
            UserWarning,
            stacklevel=3,
        )
    return False


@dataclass
class _Runtime:
    """A layer's state that is neither configuration nor weights, never saved."""

    cache: EncoderCache
    # Per torch module: whether the [CLS]-only last layer reproduces its full forward.
    cls_only_ok: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = field(
        default_factory=weakref.WeakKeyDictionary
    )
    # (the float module, its weights' version when copied, the int8 copy)
    int8: Optional[Tuple["weakref.ref[torch.nn.Module]", int, torch.nn.Module]] = None
    # the same for the bfloat16 copy that CPU prediction runs with bfloat16 mixed precision
    bfloat16: Optional[Tuple["weakref.ref[torch.nn.Module]", int, torch.nn.Module]] = None
    n_real_tokens: int = 0
    n_padded_tokens: int = 0


# Keyed by the layer's shim (thinc models cannot be weakly referenced), so that
# the state goes away with the layer.
_RUNTIME: "weakref.WeakKeyDictionary[HFShim, _Runtime]" = weakref.WeakKeyDictionary()


def _runtime(model: Model) -> _Runtime:
    shim = model.shims[0]
    state = _RUNTIME.get(shim)
    if state is None:
        cap_torch_threads()
        state = _RUNTIME[shim] = _Runtime(EncoderCache(model.attrs["cache_size"]))
    elif state.cache.max_size != model.attrs["cache_size"]:
        state.cache = EncoderCache(model.attrs["cache_size"])
    return state


def encoder_cache(model: Model) -> EncoderCache:
    """The frozen-encoder cache of an encoder layer (``len``, ``hits``, ``misses``,
    ``clear()``). Clear it after changing a frozen encoder's weights by hand."""
    return _runtime(model).cache


def padding_stats(model: Model) -> Tuple[int, int]:
    """(real word pieces, word pieces the encoder ran over, padding included) since
    the layer was made or `reset_padding_stats` was called."""
    state = _runtime(model)
    return state.n_real_tokens, state.n_padded_tokens


def reset_padding_stats(model: Model) -> None:
    state = _runtime(model)
    state.n_real_tokens = state.n_padded_tokens = 0


def _bound_cache(model: Model) -> Optional[EncoderCache]:
    """The cache, valid for the encoder's current weights and settings, or None
    when the encoder may change (fine-tuning) or the cache is off."""
    state = _runtime(model)
    if not model.attrs["freeze"] or not model.attrs["cache_size"]:
        state.cache.clear()
        return None
    source = model.shims[0]._model
    settings: Hashable = (
        model.attrs["pooling"],
        model.attrs["max_length"],
        model.attrs["long_text"],
        model.attrs["stride"],
        model.attrs["max_windows"],
        model.attrs["mixed_precision"],
        model.attrs["mixed_precision_dtype"],
        model.attrs["quantize_int8"],
        str(model.shims[0].device),
        _weights_version(source),
    )
    state.cache.bind(source, settings)
    return state.cache


def _use_cls_only(model: Model) -> bool:
    if not model.attrs["cls_only_last_layer"] or uses_tokens_beyond_cls(model.attrs["pooling"]):
        return False
    source = model.shims[0]._model
    known = _runtime(model).cls_only_ok
    if source not in known:
        known[source] = supports_cls_only(source) and _cls_only_matches_full(source)
    return known[source]


def _cls_only_matches_full(transformer: torch.nn.Module) -> bool:
    """Check once per module, on a small probe, that the [CLS]-only last layer gives
    the full forward's [CLS] rows: an encoder with BERT's module names but another
    computation (rotary positions, say) falls back to the full forward."""
    vocab_size = int(getattr(transformer.config, "vocab_size", 2) or 2)
    device = next(transformer.parameters()).device
    ids = ((torch.arange(12).reshape(2, 6) * 7919 + 3) % vocab_size).to(device)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    was_training = transformer.training
    transformer.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            full = encode_rows(transformer, ids, mask, cls_only=False, need_pooler=False).hidden[:, 0]
            fast = encode_rows(transformer, ids, mask, cls_only=True, need_pooler=False).hidden[:, 0]
        return bool(torch.allclose(full.float(), fast.float(), atol=1e-4, rtol=1e-3))
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError):
        return False
    finally:
        transformer.train(was_training)


def _inference_module(model: Model) -> torch.nn.Module:
    """The torch module that predicts: the encoder, its int8 copy, or (bfloat16 mixed
    precision on a CPU that has bfloat16) its bfloat16 copy. A copy is made again
    whenever the float weights changed since; they stay for saving and training.
    On a CPU a bfloat16 copy is faster than autocast, which casts every weight of
    every layer on every call."""
    source = model.shims[0]._model
    state = _runtime(model)
    version = _weights_version(source)
    if model.attrs["quantize_int8"]:
        if state.int8 is None or state.int8[0]() is not source or state.int8[1] != version:
            from ..models.quantize import quantize_encoder

            state.int8 = (weakref.ref(source), version, quantize_encoder(source))
        return state.int8[2]
    if next(source.parameters()).device.type == "cpu" and _cpu_bfloat16(model):
        if state.bfloat16 is None or state.bfloat16[0]() is not source or state.bfloat16[1] != version:
            state.bfloat16 = None  # the old copy goes before the new one is made
            state.bfloat16 = (weakref.ref(source), version, _bfloat16_copy(source))
        return state.bfloat16[2]
    return source


def _bfloat16_copy(source: torch.nn.Module) -> torch.nn.Module:
    clone = copy.deepcopy(source).to(torch.bfloat16)
    clone.eval()
    for param in clone.parameters():
        param.requires_grad_(False)
    return clone


def _is_bfloat16_copy(module: torch.nn.Module) -> bool:
    first = next(module.parameters(), None)
    return first is not None and first.dtype == torch.bfloat16


def _weights_version(module: torch.nn.Module) -> int:
    """Changes with every in-place change of a weight (optimizer steps, load_state_dict)."""
    return sum(param._version for param in module.parameters())


def average_windows(rows: torch.Tensor, doc_index: torch.Tensor, n_docs: int) -> torch.Tensor:
    if rows.shape[0] == n_docs:
        return rows
    sums = rows.new_zeros((n_docs, rows.shape[1])).index_add(0, doc_index, rows)
    counts = torch.bincount(doc_index, minlength=n_docs).clamp(min=1).to(rows.dtype)
    return sums / counts.unsqueeze(1)


# Per-process counts of docs cut by the truncate policy, keyed by layer id. Kept out
# of model.attrs so that a saved pipeline does not carry a stale count or silence
# the warning in the process that loads it.
_CUT_DOCS: Dict[int, int] = {}


def n_cut_docs(model: Model) -> int:
    return _CUT_DOCS.get(model.id, 0)


def _note_cut_docs(model: Model, batch: WindowBatch) -> None:
    if not batch.n_cut:
        return
    first = model.id not in _CUT_DOCS
    _CUT_DOCS[model.id] = n_cut_docs(model) + batch.n_cut
    if not first:
        return
    if model.attrs["long_text"] == "truncate":
        message = (
            f"[spacy_cls] {batch.n_cut} of {batch.n_docs} docs in this batch are longer "
            f"than the encoder's {model.attrs['max_length']} word pieces and were cut "
            f"(long_text='truncate'). This warning is shown once; the running count of cut "
            f"docs is in the component's `n_cut_docs`. To read the whole text, set "
            f"long_text='windows' in the model config."
        )
    else:
        message = (
            f"[spacy_cls] {batch.n_cut} of {batch.n_docs} docs in this batch need more than "
            f"max_windows={model.attrs['max_windows']} windows of {model.attrs['max_length']} "
            f"word pieces; only their first {model.attrs['max_windows']} windows were read "
            f"and the rest was cut (long_text='windows'). This warning is shown once; the "
            f"running count of cut docs is in the component's `n_cut_docs`. To read more, "
            f"raise max_windows in the model config (training memory grows with it), or "
            f"set it to null for no limit."
        )
    warnings.warn(message, stacklevel=2)


def pooled_with_grad(model: Model, texts: List[str]) -> torch.Tensor:
    """Per-doc features (the configured pooling, windows averaged) as a float32 tensor
    that carries gradients to the encoder's weights, for training the encoder outside
    spaCy's update loop (the contrastive stage, spacy_cls.fewshot)."""
    if model.attrs["quantize_int8"]:
        raise ValueError("quantize_int8 = true makes the encoder inference-only: set it to false to train it.")
    state = _runtime(model)
    state.cache.clear()
    state.int8 = None
    transformer = model.shims[0]._model
    device = model.shims[0].device
    batch = _encode(model, texts)
    transformer.train()
    _, pooled_rows = _run_rows(model, transformer, batch)
    doc_index = torch.from_numpy(batch.doc_index).to(device)
    return average_windows(pooled_rows.float(), doc_index, batch.n_docs)
