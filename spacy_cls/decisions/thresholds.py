"""Decision thresholds: per-label thresholds for multi-label classifiers, the confidence
below which an exclusive classifier abstains, and the figures of the decisions.

spaCy's `find-threshold` tunes one global threshold and reloads the pipeline for every
trial; here the scores of a dev set are computed once and every candidate is scored in
numpy. Scores are read as float32, what doc.cats holds. A chosen threshold never sits on
a dev score: it is a short decimal in the middle of the gap between the lowest score kept
and the highest one below it, so the same decisions hold when the pipeline computes the
scores again (in another batch, on another machine) and the value is written exactly.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from .apply import SCORE_DTYPE, DecisionSettings, check_probability, decide

# Candidate thresholds: every score seen on dev is a candidate, thinned to at most this many.
MAX_CANDIDATES = 200
DEFAULT_MIN_THRESHOLD = 0.05
DEFAULT_MIN_POSITIVES = 5
# spaCy's PRFScore adds this to every denominator; the same here, so that the figures
# of `tune` and of `spacy evaluate` are the same numbers.
_EPS = 1e-100


def as_float32_values(scores) -> numpy.ndarray:
    """Scores as float32 (what doc.cats holds), then exactly as float64 for comparing."""
    return numpy.asarray(scores, dtype=SCORE_DTYPE).astype("float64")


def cut_between(lower: float, upper: float) -> float:
    """A threshold t with lower < t < upper: the shortest decimal in the middle half of
    the gap (0.6 between 0.55 and 0.65), else the midpoint."""
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise ValueError(f"No threshold lies between {lower} and {upper}.")
    middle = lower + (upper - lower) / 2
    quarter = (upper - lower) / 4
    for digits in range(1, 18):
        t = float(f"{middle:.{digits}g}")
        if lower + quarter <= t <= upper - quarter and lower < t < upper:
            return t
    return middle


def prf(tp: float, fp: float, fn: float) -> Dict[str, float]:
    """Precision, recall and F as spaCy's PRFScore computes them."""
    p = tp / (tp + fp + _EPS)
    r = tp / (tp + fn + _EPS)
    return {"p": p, "r": r, "f": 2 * ((p * r) / (p + r + _EPS))}


def f1(predicted: numpy.ndarray, truth: numpy.ndarray) -> float:
    predicted, truth = numpy.asarray(predicted, dtype=bool), numpy.asarray(truth, dtype=bool)
    return prf(float((predicted & truth).sum()), float((predicted & ~truth).sum()),
               float((~predicted & truth).sum()))["f"]


def f1_scores(decided: numpy.ndarray, gold: numpy.ndarray, known: Optional[numpy.ndarray] = None) -> Dict[str, object]:
    """Micro- and macro-F1 of the decisions and the F1 of each label, counted as spaCy's
    scorer counts them: a (doc, label) pair is a true or false positive when the label
    is decided, a false negative when a gold label is not (a doc that abstains misses its
    gold label). `known`: the (doc, label) pairs with a gold value (multi-label data may
    leave some out)."""
    decided = numpy.asarray(decided, dtype=bool)
    truth = numpy.asarray(gold) > 0.5
    known = numpy.ones(truth.shape, dtype=bool) if known is None else numpy.asarray(known, dtype=bool)
    tp = (decided & truth & known).sum(axis=0).astype(float)
    fp = (decided & ~truth & known).sum(axis=0).astype(float)
    fn = (~decided & truth & known).sum(axis=0).astype(float)
    per_label = [prf(tp[j], fp[j], fn[j]) for j in range(truth.shape[1])]
    n = len(per_label) + _EPS
    return {
        "micro_f1": prf(float(tp.sum()), float(fp.sum()), float(fn.sum()))["f"],
        "macro_f1": sum(s["f"] for s in per_label) / n if per_label else 0.0,
        "per_label_f1": [s["f"] for s in per_label],
        "counts": {"tp": tp, "fp": fp, "fn": fn},
    }


def _valid_cut(lower: Optional[float], upper: float, floor: float) -> float:
    """A threshold that keeps the scores >= upper, drops those <= lower (the highest score
    under upper, if any) and is never below floor."""
    if lower is not None and lower >= floor:
        return cut_between(lower, upper)
    # every score under `upper` is under the floor too: any t in [floor, upper] will do
    return cut_between(floor, upper) if floor < upper else upper


def best_threshold(scores: numpy.ndarray, truth: numpy.ndarray, *, min_threshold: float) -> Tuple[float, float]:
    """(threshold, F1) maximising the F1 of `scores >= threshold` against `truth`, over
    thresholds >= min_threshold; ties go to the higher threshold (fewer positives)."""
    s = as_float32_values(scores).ravel()
    truth = numpy.asarray(truth).astype(bool).ravel()
    distinct = numpy.unique(s[numpy.isfinite(s) & (s >= min_threshold)])
    if len(distinct) == 0:
        return float(min_threshold), f1(s >= min_threshold, truth)
    if len(distinct) > MAX_CANDIDATES:
        picks = numpy.unique(numpy.linspace(0, len(distinct) - 1, MAX_CANDIDATES).round().astype(int))
        distinct = distinct[picks]
    best_value, best_f1 = float(distinct[0]), -1.0
    for v in distinct:
        score = f1(s >= v, truth)
        if score >= best_f1:
            best_value, best_f1 = float(v), score
    below = s[s < best_value]
    lower = float(below.max()) if len(below) else None
    return _valid_cut(lower, best_value, float(min_threshold)), best_f1


def tune_thresholds(
    probs: numpy.ndarray,
    gold: numpy.ndarray,
    labels: Sequence[str],
    *,
    default: float,
    min_threshold: float = DEFAULT_MIN_THRESHOLD,
    min_positives: int = DEFAULT_MIN_POSITIVES,
) -> Dict[str, float]:
    """A threshold per label, chosen to maximise that label's F1 on (probs, gold); never
    below `min_threshold`; labels with fewer than `min_positives` gold docs keep
    `default` (the component's global threshold): too few to tune on."""
    probs = as_float32_values(probs)
    gold = numpy.asarray(gold) > 0.5
    if probs.ndim != 2 or probs.shape != gold.shape or probs.shape[1] != len(labels):
        raise ValueError(f"Scores {probs.shape} and gold {gold.shape} do not match {len(labels)} labels.")
    min_threshold = check_probability(min_threshold, "tune", "min_threshold")
    tuned: Dict[str, float] = {}
    for j, label in enumerate(labels):
        if gold[:, j].sum() < min_positives:
            tuned[label] = float(default)
        else:
            tuned[label] = best_threshold(probs[:, j], gold[:, j], min_threshold=min_threshold)[0]
    return tuned


def check_thresholds(value, component: str) -> None:
    """The values of a {label: threshold} table (its labels are checked once the
    component knows its labels)."""
    if value is None:
        return
    if not hasattr(value, "items"):
        raise ValueError(
            f"[{component}] thresholds must be null or a table {{label: threshold}}, not {value!r} "
            f"(`python -m spacy_cls tune` writes one)."
        )
    for label, t in value.items():
        check_probability(t, component, f"thresholds[{label!r}]")


def check_abstain_threshold(value, component: str) -> Optional[float]:
    if value is None:
        return None
    return check_probability(value, component, "abstain_threshold",
                             " (the top score below which a doc gets no label), or null to always decide")


def _exclusive(labels_or_n) -> DecisionSettings:
    n = labels_or_n if isinstance(labels_or_n, int) else len(labels_or_n)
    return DecisionSettings(labels=tuple(str(i) for i in range(n)), multi_label=False, threshold=0.0)


def coverage_curve(probs: numpy.ndarray, gold: numpy.ndarray, cuts: Sequence[float],
                   settings: Optional[DecisionSettings] = None) -> List[Dict[str, float]]:
    """For each abstain threshold: the share of docs that get a label (coverage) and the
    accuracy on those docs, with the decisions of `decide`."""
    probs = numpy.asarray(probs)
    settings = settings or _exclusive(probs.shape[1])
    truth = numpy.asarray(gold).argmax(axis=1)
    rows = []
    for cut in cuts:
        decided = decide(probs, settings.replace(abstain_threshold=float(cut)))
        kept = decided.any(axis=1)
        correct = kept & (decided.argmax(axis=1) == truth)
        rows.append({
            "threshold": float(cut),
            "coverage": float(kept.mean()) if len(kept) else 0.0,
            "accuracy": float(correct[kept].mean()) if kept.any() else math.nan,
        })
    return rows


def abstain_for_accuracy(probs: numpy.ndarray, gold: numpy.ndarray, target: float) -> Optional[float]:
    """The abstain threshold with the largest coverage whose covered docs reach `target`
    accuracy: 0.0 when every doc together does; None when no threshold reaches it. The
    threshold lies in the middle of the gap below the lowest top score kept."""
    if isinstance(target, bool) or not 0 < target <= 1:
        raise ValueError(f"The target accuracy is {target}: it must be in (0, 1].")
    s = as_float32_values(probs)
    finite = numpy.isfinite(s).all(axis=1)
    s, truth = s[finite], numpy.asarray(gold)[finite].argmax(axis=1)
    if len(s) == 0:
        return None
    conf = s.max(axis=1)
    correct = s.argmax(axis=1) == truth
    levels = numpy.unique(conf)[::-1]  # distinct top scores, highest first
    best = None
    for i, level in enumerate(levels):
        kept = conf >= level
        if correct[kept].mean() >= target:
            best = i
    if best is None:
        return None
    if best == len(levels) - 1:
        return 0.0
    return cut_between(float(levels[best + 1]), float(levels[best]))
