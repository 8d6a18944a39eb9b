"""How unsure the classifier is about each doc: 0 sure, 1 as unsure as it can be.

- "margin" (the default): exclusive classes, 1 - (top score - second score); multi-label,
  1 - the smallest distance of a label's score to that label's threshold, as a share of
  the room on that side of it (so a score at any label's threshold gives 1).
- "entropy": exclusive classes, the Shannon entropy of the scores divided by log(n_labels);
  multi-label, the largest binary entropy of a label's score, divided by log 2.

Margin sampling and entropy sampling are the two usual uncertainty-sampling strategies of
active learning (Settles, "Active Learning Literature Survey", 2009, section 3.1).
"""
from __future__ import annotations

from typing import Optional

import numpy

MEASURES = ("margin", "entropy")
_EPS = 1e-12


def check_measure(value: str, component: str) -> None:
    if value not in MEASURES:
        raise ValueError(f"[{component}] uncertainty is {value!r}: use one of {list(MEASURES)}.")


def uncertainty(
    probs: numpy.ndarray,
    *,
    multi_label: bool,
    measure: str = "margin",
    thresholds: Optional[numpy.ndarray] = None,
) -> numpy.ndarray:
    """One value in [0, 1] per doc (row of `probs`); thresholds: one per label (multi-label margin)."""
    probs = numpy.clip(numpy.asarray(probs, dtype="float64"), 0.0, 1.0)
    n_docs, n_labels = probs.shape if probs.ndim == 2 else (0, 0)
    if n_docs == 0 or n_labels == 0:
        return numpy.zeros(n_docs, dtype="float64")
    if measure == "entropy":
        if multi_label:
            p = numpy.clip(probs, _EPS, 1 - _EPS)
            binary = -(p * numpy.log(p) + (1 - p) * numpy.log(1 - p)) / numpy.log(2)
            return numpy.clip(binary.max(axis=1), 0.0, 1.0)
        if n_labels == 1:
            return numpy.zeros(n_docs)
        p = numpy.clip(probs, _EPS, 1.0)
        return numpy.clip(-(probs * numpy.log(p)).sum(axis=1) / numpy.log(n_labels), 0.0, 1.0)
    if measure != "margin":
        raise ValueError(f"Unknown uncertainty measure {measure!r}: use one of {list(MEASURES)}.")
    if multi_label:
        cut = numpy.full(n_labels, 0.5) if thresholds is None else numpy.asarray(thresholds, dtype="float64")
        room = numpy.where(probs >= cut, 1.0 - cut, cut)
        distance = numpy.abs(probs - cut) / numpy.maximum(room, _EPS)
        return numpy.clip(1.0 - distance.min(axis=1), 0.0, 1.0)
    if n_labels == 1:
        return numpy.zeros(n_docs)
    top2 = -numpy.sort(-probs, axis=1)[:, :2]
    return numpy.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)
