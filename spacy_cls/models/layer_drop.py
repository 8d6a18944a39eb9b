"""A shallower student from a deeper checkpoint: keep some of its transformer layers.

`layers = N` keeps N layers spread evenly from the first one, layer i * L // N for i
in 0..N-1 of L (half of them: every other layer, as DistilBERT was initialised from
BERT: 3 of MiniLM-L6's 6 are layers 0, 2 and 4); a list keeps exactly those layers
(0-based). The embeddings, the pooler and any weights shared by all layers (MPNet's
relative attention bias) are kept. The model config then says how many layers there
are, so a saved pipeline holds and loads the smaller encoder on its own.
"""
from typing import List, Optional, Sequence, Union

import torch

LayersSetting = Union[None, int, Sequence[int]]


def check_layers_setting(layers: LayersSetting) -> None:
    """The setting alone, before the checkpoint (and so its depth) is known."""
    if layers is None:
        return
    if isinstance(layers, bool) or not isinstance(layers, (int, list, tuple)):
        raise ValueError(
            f"layers = {layers!r}: give the number of layers to keep (e.g. layers = 3: every other layer of 6) "
            f"or a list of 0-based layer indexes (e.g. layers = [0, 2, 5]); null keeps them all."
        )
    if isinstance(layers, int):
        if layers < 1:
            raise ValueError(f"layers = {layers}: a student keeps at least 1 layer (null keeps them all).")
        return
    if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
        raise ValueError(f"layers = {list(layers)}: a list of layers holds 0-based indexes (0, 1, ...), at least one.")
    if list(layers) != sorted(set(layers)):
        raise ValueError(
            f"layers = {list(layers)}: list each layer once, in increasing order "
            f"(e.g. {sorted(set(layers))}); the layers run in their checkpoint's order."
        )


def chosen_layers(layers: LayersSetting, n_layers: int, name: str = "the checkpoint") -> Optional[List[int]]:
    """The 0-based indexes kept out of `n_layers`, or None for all of them."""
    check_layers_setting(layers)
    if layers is None:
        return None
    if isinstance(layers, int):
        if layers > n_layers:
            raise ValueError(f"layers = {layers}, but {name} has {n_layers} layers: keep {n_layers} or fewer.")
        return [i * n_layers // layers for i in range(layers)]
    beyond = [i for i in layers if i >= n_layers]
    if beyond:
        raise ValueError(
            f"layers = {list(layers)} names layer {beyond[0]}, but {name} has {n_layers} layers (0-{n_layers - 1})."
        )
    return list(layers)


def layer_list(transformer: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of layers: `encoder.layer` (BERT, RoBERTa, MPNet, ELECTRA, ...) or
    `transformer.layer` (DistilBERT)."""
    for owner in ("encoder", "transformer"):
        layers = getattr(getattr(transformer, owner, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return layers
    kind = getattr(getattr(transformer, "config", None), "model_type", type(transformer).__name__)
    raise ValueError(
        f"A `layers` setting needs an encoder with its own stack of layers; this one ({kind}) has none that "
        f"can be dropped (ALBERT, for one, shares one layer's weights among all). Leave layers = null, "
        f"or give a shallower checkpoint as the model's name."
    )


def drop_layers(transformer: torch.nn.Module, layers: LayersSetting, name: str = "the checkpoint") -> Optional[List[int]]:
    """Keep the chosen layers of `transformer` in place; returns their indexes in the
    checkpoint (None when all are kept)."""
    if layers is None:
        return None
    stack = layer_list(transformer)
    keep = chosen_layers(layers, len(stack), name)
    if keep == list(range(len(stack))):
        return keep
    kept = torch.nn.ModuleList([stack[i] for i in keep])
    owner = transformer.encoder if getattr(getattr(transformer, "encoder", None), "layer", None) is stack \
        else transformer.transformer
    owner.layer = kept
    # DistilBERT's config maps num_hidden_layers to n_layers.
    transformer.config.num_hidden_layers = len(keep)
    return keep
