"""What the components do with their decision settings at prediction time: the
temperature on the softmax, and the per-doc labels and uncertainty they write."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, List, Optional

import numpy
from thinc.api import Model

from .thresholds import decide, threshold_vector
from .uncertainty import uncertainty

# thinc's Softmax_v2 divides its logits by this attribute before the softmax (training
# too, so it is set only around a prediction).
SOFTMAX_TEMPERATURE = "softmax_temperature"
SOFTMAX_NORMALIZE = "softmax_normalize"


def softmax_layer(model: Model) -> Optional[Model]:
    """The classifier's thinc Softmax_v2 output layer, or None (sigmoid head or a custom model)."""
    if not model.has_ref("output_layer"):
        return None
    layer = model.get_ref("output_layer")
    return layer if SOFTMAX_TEMPERATURE in layer.attrs else None


@contextmanager
def temperature_applied(model: Model, temperature: float):
    """Predict with softmax(logits / temperature) (scores change, the arg-max does not)."""
    if temperature == 1.0:
        yield
        return
    layer = softmax_layer(model)
    if layer is None:
        raise ValueError(
            "temperature applies to a softmax head (an exclusive classifier with the "
            "spacy_cls architectures); this model has none. Set temperature = 1.0."
        )
    before = layer.attrs[SOFTMAX_TEMPERATURE]
    layer.attrs[SOFTMAX_TEMPERATURE] = temperature
    try:
        yield
    finally:
        layer.attrs[SOFTMAX_TEMPERATURE] = before


def head_logits(model: Model, features) -> numpy.ndarray:
    """The head's logits (before softmax / sigmoid) for encoder features, as float64."""
    from ..layers.head import head_input

    features = head_input(model, features)
    layer = model.get_ref("output_layer")
    if SOFTMAX_NORMALIZE in layer.attrs:
        before = layer.attrs[SOFTMAX_NORMALIZE]
        layer.attrs[SOFTMAX_NORMALIZE] = False
        try:
            logits = layer.predict(features)
        finally:
            layer.attrs[SOFTMAX_NORMALIZE] = before
    else:  # chain(Linear, sigmoid): the linear layer's output
        logits = layer.layers[0].predict(features)
    return numpy.asarray(model.ops.to_numpy(logits), dtype="float64")


def annotate(component, docs: Iterable, scores: numpy.ndarray, labels_attr: str, uncertainty_attr: str) -> None:
    """Write each doc's decided labels and its uncertainty."""
    docs = list(docs)
    if not docs:
        return
    labels: List[str] = list(component.labels)
    multi_label = bool(component.model.attrs.get("multi_label"))
    threshold = float(component.cfg.get("threshold", 0.5))
    if multi_label and component.thresholds:
        unknown = set(component.thresholds) - set(labels)
        if unknown:
            raise ValueError(
                f"[{component.name}] thresholds names labels the component does not have: {sorted(unknown)}. "
                f"Its labels: {labels}."
            )
    cut = threshold_vector(labels, threshold, component.thresholds) if multi_label else None
    decided = decide(scores, multi_label=multi_label, threshold=threshold, thresholds=cut,
                     abstain_threshold=getattr(component, "abstain_threshold", None))
    unsure = uncertainty(scores, multi_label=multi_label, measure=component.uncertainty, thresholds=cut)
    for i, doc in enumerate(docs):
        doc._.set(labels_attr, [label for label, keep in zip(labels, decided[i]) if keep])
        doc._.set(uncertainty_attr, float(unsure[i]))
