"""Class weights: which examples the loss counts more.

`class_weights` is null (every example counts once), "balanced", or a mapping
{label: weight}. For exclusive classes a weight multiplies the cross-entropy of the docs
whose gold label it is; "balanced" is scikit-learn's heuristic, n_docs / (n_labels *
n_docs_of_label). For multi-label it is the weight of each label's positive class in its
binary cross-entropy (torch's `BCEWithLogitsLoss(pos_weight=...)`); "balanced" is
n_negative / n_positive per label, as the torch documentation suggests.
"""
from __future__ import annotations

import logging
import math
from typing import Iterable, List, Mapping, Optional, Sequence, Union

import numpy

from .labels import resolve_label_table

logger = logging.getLogger("spacy_cls")

BALANCED = "balanced"
ClassWeights = Union[None, str, Mapping[str, float]]


def check_class_weights(value: ClassWeights, component: str) -> None:
    """Fail early (at pipeline creation) on a setting that can never work."""
    if value is None or value == BALANCED:
        return
    if isinstance(value, str) or not isinstance(value, Mapping):
        raise ValueError(
            f"[{component}] class_weights must be null, \"balanced\" or a table {{label: weight}}, "
            f"not {value!r}. In a config: class_weights = \"balanced\" or "
            f"class_weights = {{\"spam\": 5.0, \"ham\": 1.0}}."
        )
    for label, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(
                f"[{component}] class_weights[{label!r}] is {weight!r}: each weight must be a finite "
                f"number above 0 (1.0: as without weights)."
            )


def resolve_class_weights(
    value: ClassWeights,
    labels: Sequence[str],
    truths: Optional[numpy.ndarray],
    *,
    multi_label: bool,
    component: str,
) -> Optional[List[float]]:
    """One weight per label, in the order of `labels`; None when `value` is None.

    truths: (n_docs, n_labels) gold values of the training docs (0/1, NaN where
    missing); needed for "balanced" only. A label absent from a table weighs 1.0; a
    label the table names that the component lacks is an error (a typo would be silent).
    """
    if value is None:
        return None
    check_class_weights(value, component)
    if value != BALANCED:
        # a key may be the escaped config form of a label (labels.py)
        table = resolve_label_table(value, labels, "class_weights", component)
        return [float(table.get(label, 1.0)) for label in labels]
    if truths is None or len(truths) == 0:
        raise ValueError(f"[{component}] class_weights = \"balanced\" needs training examples at initialize.")
    truths = numpy.asarray(truths, dtype="float64")
    known = ~numpy.isnan(truths)
    positives = numpy.where(known, truths, 0.0).sum(axis=0)
    if multi_label:
        negatives = known.sum(axis=0) - positives
        weights = numpy.where(positives > 0, negatives / numpy.maximum(positives, 1e-12), 1.0)
        weights = numpy.where(negatives > 0, weights, 1.0)
    else:
        n_docs = float(positives.sum())
        weights = numpy.where(positives > 0, n_docs / (len(labels) * numpy.maximum(positives, 1e-12)), 1.0)
    missing = [label for label, n in zip(labels, positives) if n == 0]
    if missing:
        logger.warning(
            "[%s] class_weights = \"balanced\": no training doc has the label(s) %s; they weigh 1.0.",
            component, missing,
        )
    return [float(w) for w in weights]


def weighted_loss(
    probs: numpy.ndarray,
    truths: numpy.ndarray,
    not_missing: numpy.ndarray,
    weights: Optional[numpy.ndarray],
    *,
    multi_label: bool,
    xp=numpy,
):
    """(loss, d_logits) of softmax cross-entropy or sigmoid binary cross-entropy, summed
    over labels and divided by the number of docs, with the gradient taken with respect to
    the logits. `weights` (n_labels,) or None."""
    n_docs = max(probs.shape[0], 1)
    clipped = xp.clip(probs, 1e-7, 1 - 1e-7)
    if multi_label:
        pos = truths if weights is None else truths * weights[None, :]
        loss = -(pos * xp.log(clipped) + (1 - truths) * xp.log(1 - clipped))
        # d/dz of -(w y log p + (1 - y) log(1 - p)) with p = sigmoid(z)
        d_logits = probs * (pos + 1 - truths) - pos
        return float((loss * not_missing).sum() / n_docs), d_logits * not_missing / n_docs
    per_doc = 1.0 if weights is None else (truths * weights[None, :]).sum(axis=1, keepdims=True)
    loss = -(truths * xp.log(clipped)) * per_doc
    d_logits = (probs - truths) * per_doc
    return float((loss * not_missing).sum() / n_docs), d_logits * not_missing / n_docs


def gold_matrix(examples: Iterable, labels: Sequence[str]) -> numpy.ndarray:
    """(n_docs, n_labels) gold cats of the examples' references, NaN where not given."""
    rows = [[eg.reference.cats.get(label, numpy.nan) for label in labels] for eg in examples]
    return numpy.asarray(rows, dtype="float64").reshape(len(rows), len(labels))
