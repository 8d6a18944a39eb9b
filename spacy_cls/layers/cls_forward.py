"""Run a BERT-family encoder, computing the last layer at the [CLS] position only
when nothing downstream reads the other last-layer rows.

The last layer's keys and values still come from every position (the [CLS] query
attends to all of them), but its query projection, attention output and
feed-forward block run on one row per sequence instead of all of them: a quarter of
a 4-layer encoder's work, a sixth of a 6-layer one's. The [CLS] row is the same as
in the full forward up to float rounding, and so are the gradients of every weight,
since the skipped rows never reach the loss.

MPNet's layers have the same parts under other names (``attention.attn.q/k/v/o``)
and add a relative position bias, shared by all layers, to the attention scores: its
[CLS] row is the first row of that bias. Encoders with another structure (DistilBERT,
ALBERT, DeBERTa, BERT with relative position embeddings, decoders, ...) run their
ordinary full forward.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate",
    "output.dense",
    "output.LayerNorm",
)
_MPNET_LAYER_PARTS = (
    "attention.attn.q",
    "attention.attn.k",
    "attention.attn.v",
    "attention.attn.o",
    "attention.LayerNorm",
    "intermediate",
    "output.dense",
    "output.LayerNorm",
)


@dataclass
class EncodedRows:
    """What a forward pass yields for a (sub-)batch of rows.

    ``hidden`` is the last layer, (n, length, width); when only [CLS] was computed it
    is (n, 1, width), the [CLS] rows alone, so that [CLS]-only poolings read it the
    same way."""

    hidden: torch.Tensor
    pooler_output: Optional[torch.Tensor]


def _has_module(root: torch.nn.Module, dotted: str) -> bool:
    node = root
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if not isinstance(node, torch.nn.Module):
            return False
    return True


def supports_cls_only(transformer: torch.nn.Module) -> bool:
    """Whether the encoder has BERT's structure: embeddings, then
    ``encoder.layer[i]`` with ``attention.self/output``, ``intermediate``, ``output``,
    absolute positions and no decoder or cross-attention."""
    config = getattr(transformer, "config", None)
    layers = getattr(getattr(transformer, "encoder", None), "layer", None)
    if config is None or not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    if not isinstance(getattr(transformer, "embeddings", None), torch.nn.Module):
        return False
    last = layers[-1]
    if is_mpnet(transformer):
        attention = last.attention.attn
    elif all(_has_module(last, part) for part in _LAYER_PARTS):
        attention = last.attention.self
    else:
        return False
    return hasattr(attention, "num_attention_heads") and hasattr(attention, "attention_head_size")


def is_mpnet(transformer: torch.nn.Module) -> bool:
    """MPNet's layer structure, with the relative position bias its encoder computes."""
    encoder = getattr(transformer, "encoder", None)
    layers = getattr(encoder, "layer", None)
    return (
        isinstance(layers, torch.nn.ModuleList) and len(layers) > 0
        and callable(getattr(encoder, "compute_position_bias", None))
        and all(_has_module(layers[-1], part) for part in _MPNET_LAYER_PARTS)
    )


def encode_rows(
    transformer: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    cls_only: bool,
    need_pooler: bool,
) -> EncodedRows:
    """Run the encoder on padded rows. With ``cls_only``, the caller has checked
    ``supports_cls_only(transformer)``."""
    if not cls_only:
        output = transformer(input_ids=input_ids, attention_mask=attention_mask)
        return EncodedRows(output.last_hidden_state, getattr(output, "pooler_output", None))
    # Rows of one length (a length-sorted sub-batch often) need no mask at all.
    cls_rows = cls_only_rows(transformer, input_ids, attention_mask, padded=not bool(attention_mask.all()))
    pooler = getattr(transformer, "pooler", None)
    pooler_output = pooler(cls_rows) if need_pooler and pooler is not None else None
    return EncodedRows(cls_rows, pooler_output)


def cls_only_rows(
    transformer: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, padded: bool
) -> torch.Tensor:
    """Every layer but the last in full, the last at [CLS]: (n, 1, width). With
    ``padded`` false the mask is skipped (the caller knows no row is padded)."""
    hidden = transformer.embeddings(input_ids=input_ids)
    project = getattr(transformer, "embeddings_project", None)  # ELECTRA
    if project is not None:
        hidden = project(hidden)
    additive = transformer.get_extended_attention_mask(attention_mask, input_ids.shape) if padded else None
    layers = transformer.encoder.layer
    if is_mpnet(transformer):
        bias = transformer.encoder.compute_position_bias(hidden)
        for layer in layers[:-1]:
            hidden = layer(hidden, additive, None, bias)[0]
        cls_bias = bias[:, :, :1, :]
        return mpnet_last_layer_at_cls(layers[-1], hidden, cls_bias if additive is None else cls_bias + additive)
    for layer in layers[:-1]:
        hidden = layer(hidden, attention_mask=additive)[0]
    keep = attention_mask[:, None, None, :].bool() if padded else None
    return last_layer_at_cls(layers[-1], hidden, keep)


def mpnet_last_layer_at_cls(layer: torch.nn.Module, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """An MPNet layer's output at position 0 only: (n, length, width) -> (n, 1, width).
    ``bias``: (n, heads, 1, length), the [CLS] row of the position bias plus the
    additive padding mask, added to the scaled attention scores as MPNet does."""
    attention = layer.attention.attn
    n_rows, length, width = hidden.shape
    n_heads, head_size = attention.num_attention_heads, attention.attention_head_size

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, n_heads, head_size).transpose(1, 2)

    key = heads(attention.k(hidden))
    value = heads(attention.v(hidden))
    cls_in = hidden[:, :1]
    bias = bias.to(key.dtype)
    if n_rows == 1:
        # As in last_layer_at_cls: two rows keep a lone doc's vector reproducible.
        cls_in, key, value = cls_in.expand(2, 1, width), key.expand(2, -1, -1, -1), value.expand(2, -1, -1, -1)
        bias = bias.expand(2, -1, -1, -1)
    query = heads(attention.q(cls_in))
    dropout = float(attention.dropout.p) if attention.training else 0.0
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout)
    context = context.transpose(1, 2).reshape(cls_in.shape[0], 1, n_heads * head_size)
    attention_out = layer.attention.LayerNorm(layer.attention.dropout(attention.o(context)) + cls_in)
    return layer.output(layer.intermediate(attention_out), attention_out)[:n_rows]


def last_layer_at_cls(
    layer: torch.nn.Module, hidden: torch.Tensor, keep: Optional[torch.Tensor]
) -> torch.Tensor:
    """A BERT layer's output at position 0 only: (n, length, width) -> (n, 1, width).
    ``keep``: boolean (n, 1, 1, length), True where a key is a real token; None: all are."""
    attention = layer.attention.self
    n_rows, length, width = hidden.shape
    n_heads, head_size = attention.num_attention_heads, attention.attention_head_size

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, n_heads, head_size).transpose(1, 2)

    key = heads(attention.key(hidden))
    value = heads(attention.value(hidden))
    cls_in = hidden[:, :1]
    if n_rows == 1:
        # A one-row matrix product takes a BLAS path whose rounding depends on the
        # weights' memory alignment; two rows keep a lone doc's vector reproducible
        # (after save and load, say), as in the full forward.
        cls_in, key, value = cls_in.expand(2, 1, width), key.expand(2, -1, -1, -1), value.expand(2, -1, -1, -1)
        keep = keep.expand(2, -1, -1, -1) if keep is not None else None
    query = heads(attention.query(cls_in))
    dropout = _attention_dropout(attention) if attention.training else 0.0
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=keep, dropout_p=dropout)
    context = context.transpose(1, 2).reshape(cls_in.shape[0], 1, n_heads * head_size)
    attention_out = layer.attention.output(context, cls_in)
    return layer.output(layer.intermediate(attention_out), attention_out)[:n_rows]


def _attention_dropout(attention: torch.nn.Module) -> float:
    dropout = getattr(attention, "dropout", None)
    if isinstance(dropout, torch.nn.Dropout):
        return float(dropout.p)
    return float(getattr(attention, "dropout_prob", 0.0))
