"""What a classifier decides, in one place.

- `scores_from_logits`: the head's logits to the scores of `doc.cats`, float32, in log
  space (a softmax over `logits / temperature` for exclusive classes, a sigmoid per label
  otherwise), finite for any finite logits and any accepted temperature.
- `decide` / `decide_labels`: scores to the labels a doc gets under a component's
  `DecisionSettings` (exclusive: the arg-max, or none when its score is under
  `abstain_threshold`; multi-label: each label whose score reaches its threshold).

The components (`doc._.cls_labels`), their scorer (`spacy evaluate`, the training loop's
dev score), `apply`'s `label` / `labels` columns, `rank-uncertain`'s `predicted` and the
figures of `tune` all go through these functions, on the same float32 scores, so they
agree for the same doc.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy
from thinc.api import Model

from ..layers.head import head_input
from .labels import resolve_label_table
from .uncertainty import MEASURES, uncertainty

# What doc.cats holds; every decision compares these values, never a float64 version.
SCORE_DTYPE = numpy.float32


def check_temperature(value, component: str) -> float:
    """A temperature is a finite number above 0. Scores are computed in log space, so
    every such value gives finite scores; 0, negative, infinite or NaN values (and
    booleans, strings) are refused. `tune` fits within [0.05, 20]."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value))
            or float(value) <= 0):
        raise ValueError(
            f"[{component}] temperature is {value!r}: it must be a finite number above 0 "
            f"(1.0 leaves the scores as they are; `python -m spacy_cls tune` fits one)."
        )
    return float(value)


def check_probability(value, component: str, what: str, hint: str = "") -> float:
    """A threshold on scores: a finite number in [0, 1] (not a boolean or a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"[{component}] {what} is {value!r}: it must be a number in [0, 1]{hint}.")
    return float(value)


@dataclass(frozen=True)
class DecisionSettings:
    """A component's decision settings, checked.

    labels: the component's labels, in the order of its scores. threshold: multi-label,
    the threshold of labels without their own (spaCy's `threshold`); unused by the
    decisions of exclusive classes. thresholds: multi-label, {label: threshold} (a key
    may be a label's escaped config form, see `labels.py`). abstain_threshold: exclusive,
    the top score under which a doc gets no label (None: always decide).
    """

    labels: Tuple[str, ...]
    multi_label: bool
    temperature: float = 1.0
    threshold: float = 0.5
    thresholds: Optional[Mapping[str, float]] = None
    abstain_threshold: Optional[float] = None
    uncertainty: str = "margin"
    component: str = "classifier"

    def __post_init__(self) -> None:
        name = self.component
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731
        set_("labels", tuple(self.labels))
        set_("multi_label", bool(self.multi_label))
        set_("temperature", check_temperature(self.temperature, name))
        set_("threshold", check_probability(self.threshold, name, "threshold"))
        if self.uncertainty not in MEASURES:
            raise ValueError(f"[{name}] uncertainty is {self.uncertainty!r}: use one of {list(MEASURES)}.")
        if self.multi_label and self.temperature != 1.0:
            raise ValueError(f"[{name}] temperature applies to exclusive classes; a multi-label classifier keeps 1.0.")
        if self.abstain_threshold is not None:
            if self.multi_label:
                raise ValueError(f"[{name}] abstain_threshold applies to exclusive classes; use thresholds.")
            set_("abstain_threshold", check_probability(
                self.abstain_threshold, name, "abstain_threshold",
                " (the top score below which a doc gets no label), or null to always decide"))
        if self.thresholds is not None:
            if not isinstance(self.thresholds, Mapping):
                raise ValueError(f"[{name}] thresholds must be null or a table {{label: threshold}}, "
                                 f"not {self.thresholds!r}.")
            if self.thresholds and not self.multi_label:
                raise ValueError(f"[{name}] thresholds apply to multi-label classifiers; use abstain_threshold.")
            table = resolve_label_table(self.thresholds, self.labels, "thresholds", name)
            set_("thresholds", {label: check_probability(t, name, f"thresholds[{label!r}]")
                                for label, t in table.items()} or None)

    @property
    def cuts(self) -> numpy.ndarray:
        """Multi-label: the threshold of each label, in label order (float64)."""
        table = self.thresholds or {}
        return numpy.array([table.get(label, self.threshold) for label in self.labels], dtype="float64")

    def replace(self, **changes) -> "DecisionSettings":
        return dataclasses.replace(self, **changes)


def settings_of(component) -> DecisionSettings:
    """The decision settings a `cls_classifier` / `cls_classifier_multilabel` holds now."""
    multi_label = bool(component.model.attrs.get("multi_label"))
    return DecisionSettings(
        labels=tuple(component.labels),
        multi_label=multi_label,
        temperature=getattr(component, "temperature", 1.0),
        threshold=component.cfg.get("threshold", 0.5 if multi_label else 0.0),
        thresholds=getattr(component, "thresholds", None),
        abstain_threshold=getattr(component, "abstain_threshold", None),
        uncertainty=getattr(component, "uncertainty", "margin"),
        component=component.name,
    )


def scores_from_logits(logits, *, multi_label: bool, temperature: float = 1.0) -> numpy.ndarray:
    """(n_docs, n_labels) float32 scores from logits, computed in float64 log space:
    exclusive, exp(z - logsumexp(z)) with z = (logits - max) / temperature, so no
    temperature can overflow it; multi-label, the sigmoid in its two stable halves."""
    z = numpy.array(logits, dtype="float64", ndmin=2)
    if z.size == 0:
        return numpy.zeros(z.shape, dtype=SCORE_DTYPE)
    if multi_label:
        out = numpy.empty_like(z)
        positive = z >= 0
        out[positive] = 1.0 / (1.0 + numpy.exp(-z[positive]))
        e = numpy.exp(z[~positive])
        out[~positive] = e / (1.0 + e)
        out[numpy.isnan(z)] = numpy.nan
        return out.astype(SCORE_DTYPE)
    top = z.max(axis=1, keepdims=True)
    with numpy.errstate(invalid="ignore", over="ignore", under="ignore"):
        # where a logit is the maximum (an infinite one too) the shifted value is 0
        shifted = numpy.where(z == top, 0.0, z - top) / check_temperature(temperature, "scores")
        log_norm = numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True))
        return numpy.exp(shifted - log_norm).astype(SCORE_DTYPE)


def as_scores(scores, n_labels: int) -> numpy.ndarray:
    """Scores as doc.cats holds them (float32), checked against the number of labels."""
    out = numpy.asarray(scores, dtype=SCORE_DTYPE)
    if out.ndim == 1 and out.size == n_labels:
        out = out[None, :]
    if out.ndim != 2 or out.shape[1] != n_labels:
        raise ValueError(f"Scores of shape {out.shape} for {n_labels} labels: give one row of scores per doc.")
    return out


def decide(scores, settings: DecisionSettings) -> numpy.ndarray:
    """(n_docs, n_labels) booleans: the labels each doc gets. The scores are read as
    float32 (what doc.cats holds) and compared with the settings as written. A row with a
    score that is not finite gets no label."""
    s = as_scores(scores, len(settings.labels)).astype("float64")
    n_docs, n_labels = s.shape
    finite = numpy.isfinite(s)
    if settings.multi_label:
        return finite & (s >= settings.cuts[None, :])
    chosen = numpy.zeros(s.shape, dtype=bool)
    if n_docs == 0 or n_labels == 0:
        return chosen
    keep = finite.all(axis=1)
    safe = numpy.where(finite, s, -numpy.inf)
    top = safe.argmax(axis=1)
    if settings.abstain_threshold is not None:
        keep &= safe.max(axis=1) >= settings.abstain_threshold
    rows = numpy.arange(n_docs)[keep]
    chosen[rows, top[keep]] = True
    return chosen


def decide_labels(scores, settings: DecisionSettings) -> List[List[str]]:
    """The labels each doc gets, as lists in label order (what doc._.cls_labels holds)."""
    decided = decide(scores, settings)
    return [[label for label, keep in zip(settings.labels, row) if keep] for row in decided]


def scores_of_cats(cats: Iterable[Mapping[str, float]], labels: Sequence[str]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(scores, present): the docs' cats as float32 rows in label order (a label missing
    from a doc's cats scores 0.0, as in spaCy's scorer), and whether the doc has a score
    for any of the labels (a doc with none gets no label)."""
    rows, present = [], []
    for doc_cats in cats:
        rows.append([float(doc_cats.get(label, 0.0)) for label in labels])
        present.append(any(label in doc_cats for label in labels))
    scores = numpy.array(rows, dtype=SCORE_DTYPE).reshape(len(rows), len(labels))
    return scores, numpy.array(present, dtype=bool)


def decide_cats(cats: Mapping[str, float], settings: DecisionSettings) -> List[str]:
    """The labels of one doc from its `doc.cats`: the same as doc._.cls_labels."""
    scores, present = scores_of_cats([cats], settings.labels)
    return decide_labels(scores, settings)[0] if present[0] else []


# --- the component's prediction path ---------------------------------------------


def head_logits(model: Model, features) -> Optional[numpy.ndarray]:
    """The head's logits (before softmax / sigmoid) for encoder features, as float64, or
    None for a head of another shape. Read from the output layer's weights, so nothing
    is switched on the shared model (safe from several threads)."""
    if not model.has_ref("output_layer"):
        return None
    features = head_input(model, features)
    layer = model.get_ref("output_layer")
    if layer.name.startswith("softmax"):
        logits = layer.ops.affine(features, layer.get_param("W"), layer.get_param("b"))
    elif layer.layers and layer.layers[0].name == "linear":
        logits = layer.layers[0].predict(features)
    else:
        return None
    return numpy.asarray(model.ops.to_numpy(logits), dtype="float64")


def head_scores(model: Model, features, settings: DecisionSettings) -> numpy.ndarray:
    """The scores the component writes to doc.cats, from the encoder's features."""
    logits = head_logits(model, features)
    if logits is not None:
        return scores_from_logits(logits, multi_label=settings.multi_label, temperature=settings.temperature)
    if settings.temperature != 1.0:
        raise ValueError(
            f"[{settings.component}] temperature applies to the softmax head of the spacy_cls "
            f"architectures; this model has another head. Set temperature = 1.0."
        )
    return numpy.asarray(model.ops.to_numpy(model.get_ref("head").predict(head_input(model, features))),
                         dtype=SCORE_DTYPE)


def annotate(docs: Sequence, scores, settings: DecisionSettings, labels_attr: str, uncertainty_attr: str) -> None:
    """Write each doc's decided labels and its uncertainty."""
    docs = list(docs)
    if not docs:
        return
    scores = as_scores(scores, len(settings.labels))
    labels = decide_labels(scores, settings)
    unsure = uncertainty(scores, multi_label=settings.multi_label, measure=settings.uncertainty,
                         thresholds=settings.cuts if settings.multi_label else None)
    for doc, doc_labels, value in zip(docs, labels, unsure):
        doc._.set(labels_attr, doc_labels)
        doc._.set(uncertainty_attr, float(value))

