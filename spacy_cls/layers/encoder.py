"""A thinc layer that runs a Hugging Face encoder over docs and returns, per doc,
the raw last-layer [CLS] row and the pooled features for the head.

It reuses spacy-transformers' ``HFShim`` (a thinc ``PyTorchShim``) for what that
already does well: serialising weights and tokenizer with the pipeline, device
placement, autocast and gradient scaling, and handing torch gradients to thinc's
optimizer. It does not reuse spacy-transformers' ``TransformerModel``: that layer
aligns word pieces to spaCy tokens for every doc and keeps all hidden states, work
a doc-level classifier never needs.
"""
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from spacy.tokens import Doc
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d

from ..loaders import load_encoder
from .pooling import check_pooling, pool, pooled_width
from .windows import WindowBatch, check_policy, encode_texts


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
) -> Model[List[Doc], EncoderOutput]:
    check_pooling(pooling)
    tokenizer_config = dict(tokenizer_config or {})
    transformer_config = dict(transformer_config or {})
    shim = HFShim(
        HFObjects(None, None, None, tokenizer_config, transformer_config),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config or {}),
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
            "has_pooler_weights": None,
        },
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
        shim._hfmodel = loaded.hf
        shim._model = loaded.hf.transformer
        model.attrs["has_pooler_weights"] = loaded.has_pooler_weights
    _check_pooler(model)
    config = get_hf(model).transformer.config
    model.attrs["max_length"] = resolve_max_length(model.attrs["max_length"], get_hf(model).tokenizer, config)
    check_policy(model.attrs["long_text"], model.attrs["max_length"], model.attrs["stride"])
    model.set_dim("nO", pooled_width(config.hidden_size, model.attrs["pooling"]), force=True)


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
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limits[0] = limits[0] - config.pad_token_id - 1 if limits[0] else None
    usable = [int(x) for x in limits if x and x < 1_000_000]
    if not usable:
        raise ValueError("Cannot tell the encoder's maximum length; set max_length in the model config.")
    return min(usable)


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[EncoderOutput, Callable]:
    shim = model.shims[0]
    batch = encode_texts(
        get_hf(model).tokenizer,
        [doc.text for doc in docs],
        model.attrs["max_length"],
        model.attrs["long_text"],
        model.attrs["stride"],
    )
    _note_cut_docs(model, batch)
    device = shim.device
    mask = torch.from_numpy(batch.attention_mask).to(device)
    inputs = ArgsKwargs(
        args=(),
        kwargs={"input_ids": torch.from_numpy(batch.input_ids).to(device), "attention_mask": mask},
    )
    trainable = is_train and not model.attrs["freeze"]
    if trainable:
        output, backprop_shim = shim.begin_update(inputs)
    else:
        output = shim.predict(inputs)
    hidden = output.last_hidden_state
    pooled = pool(hidden, mask, getattr(output, "pooler_output", None), model.attrs["pooling"])
    doc_index = torch.from_numpy(batch.doc_index).to(device)
    features_t = average_windows(pooled.float(), doc_index, batch.n_docs)
    cls_t = average_windows(hidden[:, 0].detach().float(), doc_index, batch.n_docs)
    result = EncoderOutput(
        cls=torch2xp(cls_t, ops=model.ops),
        features=torch2xp(features_t.detach(), ops=model.ops),
    )

    def backprop(d_output: Floats2d) -> List[Doc]:
        if trainable:
            grad = xp2torch(model.ops.asarray2f(d_output), device=device)
            backprop_shim(ArgsKwargs(args=(features_t,), kwargs={"grad_tensors": (grad,)}))
        return docs

    return result, backprop


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
    if not batch.n_cut or model.attrs["long_text"] != "truncate":
        return
    first = model.id not in _CUT_DOCS
    _CUT_DOCS[model.id] = n_cut_docs(model) + batch.n_cut
    if first:
        warnings.warn(
            f"[spacy_cls] {batch.n_cut} of {batch.n_docs} docs in this batch are longer "
            f"than the encoder's {model.attrs['max_length']} word pieces and were cut "
            f"(long_text='truncate'). This warning is shown once; the running count of cut "
            f"docs is in the component's `n_cut_docs`. To read the whole text, set "
            f"long_text='windows' in the model config.",
            stacklevel=2,
        )
