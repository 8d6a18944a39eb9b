"""Which encoder made a [CLS] vector: a fingerprint of the encoder's weights and of
the settings that change its [CLS] output, computed the same way from a loaded
pipeline (what `apply --vectors` records) and from the pipeline `spacy train` is
training (what `VectorCorpus.v1` checks against).

The settings are those that decide which word pieces reach the encoder: the
checkpoint's tokenizer is part of the weights' identity, and `max_length`,
`long_text`, `stride`, `max_windows` and `quantize_int8` are compared. `pooling` is
recorded but not compared: `doc._.cls_vector` is the raw last-layer [CLS] whatever
the head pools, and a head trained from vectors must use pooling = "cls" anyway.

Found by duck typing (a component marked `gives_cls_vectors`, a layer named
`hf_cls_encoder` in its model), so that `data` imports nothing else of the package.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Dict, Optional

METADATA_KEY = b"spacy_cls.encoder"
COMPARED = ("weights", "max_length", "long_text", "stride", "max_windows", "quantize_int8")
_SETTINGS = ("max_length", "long_text", "stride", "max_windows", "quantize_int8", "pooling")


class NotLoaded(Exception):
    """The encoder has no weights yet (the pipeline is still being initialised)."""


def encoder_layer(nlp, component: Optional[str] = None):
    names = [name for name, pipe in nlp.pipeline if getattr(pipe, "gives_cls_vectors", False)]
    if component is not None:
        names = [name for name in names if name == component]
    for name in names:
        for node in nlp.get_pipe(name).model.walk():
            if node.name in ("hf_cls_encoder", "onnx_cls_encoder"):
                return node
    return None


def encoder_fingerprint(nlp, component: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """{"fingerprint", "encoder", "weights", settings...} of the pipeline's cls
    encoder; None when it has none. Raises NotLoaded before its weights are loaded."""
    node = encoder_layer(nlp, component)
    if node is None:
        return None
    shim = node.shims[0] if node.shims else None
    digest = hashlib.blake2b(digest_size=16)
    hf = getattr(shim, "_hfmodel", None)
    if hf is not None:
        transformer = getattr(hf, "transformer", None)
        if transformer is None:
            raise NotLoaded(node.attrs.get("name"))
        backend = "torch"
        width = getattr(getattr(transformer, "config", None), "hidden_size", None)
        for key, tensor in sorted(transformer.state_dict().items()):
            value = tensor.detach().to("cpu")
            digest.update(key.encode("utf8"))
            digest.update(str(tuple(value.shape)).encode("utf8"))
            digest.update(value.float().contiguous().numpy().tobytes() if value.is_floating_point()
                          else value.contiguous().numpy().tobytes())
    elif getattr(shim, "graph", b""):
        backend = "onnx"
        width = None
        digest.update(shim.graph)
    else:
        raise NotLoaded(node.attrs.get("name"))
    settings = {key: node.attrs.get(key) for key in _SETTINGS}
    if settings.get("long_text") != "windows":
        settings["stride"] = settings["max_windows"] = None
    record = {"encoder": str(node.attrs.get("name")), "backend": backend, "weights": digest.hexdigest(),
              "width": width, **settings}
    record["fingerprint"] = _digest({key: record.get(key) for key in ("backend", *COMPARED)})
    return record


def cls_output_bound(nlp, component: Optional[str] = None) -> Optional[float]:
    """The largest magnitude a value of this encoder's [CLS] output can have, None
    when unknown (no weights yet, or no final LayerNorm). A BERT-family encoder's
    last hidden state is a LayerNorm's output, gamma * z + beta, where z has zero
    mean and unit variance over the H values of a row, so |z_i| <= sqrt(H - 1); an
    average over windows stays within the same bound."""
    import torch

    node = encoder_layer(nlp, component)
    hf = getattr(node.shims[0], "_hfmodel", None) if node is not None and node.shims else None
    transformer = getattr(hf, "transformer", None)
    if transformer is None:
        return None
    norms = [m for m in transformer.modules() if isinstance(m, torch.nn.LayerNorm) and m.weight is not None]
    if not norms:
        return None
    last = norms[-1]
    width = last.weight.numel()
    gamma = float(last.weight.detach().abs().max())
    beta = float(last.bias.detach().abs().max()) if last.bias is not None else 0.0
    # A little room for rounding (float16 runs, window averages).
    return (gamma * math.sqrt(max(width - 1, 1)) + beta) * 1.01 + 1e-3


def _digest(value: Dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode("utf8"), digest_size=16).hexdigest()


def describe(record: Dict[str, Any]) -> str:
    parts = [f"{record.get('encoder')}", f"weights {str(record.get('weights'))[:12]}",
             f"max_length {record.get('max_length')}", f"long_text {record.get('long_text')}"]
    if record.get("long_text") == "windows":
        parts += [f"stride {record.get('stride')}", f"max_windows {record.get('max_windows')}"]
    if record.get("quantize_int8"):
        parts.append("int8")
    if record.get("backend") not in (None, "torch"):
        parts.append(str(record.get("backend")))
    return ", ".join(parts)
