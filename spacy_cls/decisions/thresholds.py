"""Decision thresholds: per-label thresholds for multi-label classifiers, and the
confidence below which an exclusive classifier abstains.

spaCy's `find-threshold` tunes one global threshold and reloads the pipeline for every
trial; here the scores of a dev set are computed once and every candidate is scored in
numpy.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy

# Candidate thresholds: every score seen on dev is a candidate, thinned to at most this many.
MAX_CANDIDATES = 200
DEFAULT_MIN_THRESHOLD = 0.05
DEFAULT_MIN_POSITIVES = 5


def f1(predicted: numpy.ndarray, truth: numpy.ndarray) -> float:
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_threshold(scores: numpy.ndarray, truth: numpy.ndarray, *, min_threshold: float) -> (float, float):
    """(threshold, F1) maximising the F1 of `scores >= threshold` against `truth`, over
    thresholds >= min_threshold; ties go to the higher threshold (fewer positives)."""
    truth = truth.astype(bool)
    candidates = numpy.unique(scores[scores >= min_threshold])
    if len(candidates) > MAX_CANDIDATES:
        candidates = numpy.unique(numpy.quantile(candidates, numpy.linspace(0, 1, MAX_CANDIDATES)))
    best = (float(min_threshold), f1(scores >= min_threshold, truth))
    for t in candidates:
        score = f1(scores >= t, truth)
        if score >= best[1]:
            best = (float(t), score)
    # The same decisions on this set hold for any cut between the chosen score and the
    # next lower one: take the middle, the cut farthest from both.
    below = scores[scores < best[0]]
    if len(below) and best[0] > min_threshold:
        best = (max(float(min_threshold), (best[0] + float(below.max())) / 2), best[1])
    return best


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
    probs = numpy.asarray(probs, dtype="float64")
    gold = numpy.asarray(gold) > 0.5
    if probs.shape != gold.shape or probs.shape[1] != len(labels):
        raise ValueError(f"Scores {probs.shape} and gold {gold.shape} do not match {len(labels)} labels.")
    if not 0 <= min_threshold <= 1:
        raise ValueError(f"min_threshold is {min_threshold}: it must be in [0, 1].")
    tuned: Dict[str, float] = {}
    for j, label in enumerate(labels):
        if gold[:, j].sum() < min_positives:
            tuned[label] = float(default)
        else:
            tuned[label] = best_threshold(probs[:, j], gold[:, j], min_threshold=min_threshold)[0]
    return tuned


def threshold_vector(labels: Sequence[str], default: float, thresholds: Optional[Mapping[str, float]]) -> numpy.ndarray:
    thresholds = thresholds or {}
    return numpy.array([float(thresholds.get(label, default)) for label in labels], dtype="float64")


def check_thresholds(value: Optional[Mapping[str, float]], component: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ValueError(
            f"[{component}] thresholds must be null or a table {{label: threshold}}, not {value!r} "
            f"(`python -m spacy_cls tune` writes one)."
        )
    for label, t in value.items():
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ValueError(f"[{component}] thresholds[{label!r}] is {t!r}: a threshold is a number in [0, 1].")


def check_abstain_threshold(value: Optional[float], component: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(
            f"[{component}] abstain_threshold is {value!r}: null (always decide) or a number in [0, 1], "
            f"the top score below which a doc gets no label."
        )


def decide(
    probs: numpy.ndarray,
    *,
    multi_label: bool,
    threshold: float,
    thresholds: Optional[numpy.ndarray] = None,
    abstain_threshold: Optional[float] = None,
) -> numpy.ndarray:
    """(n_docs, n_labels) booleans: the labels each doc is given. Multi-label: each score
    against its label's threshold (or the global one); exclusive: the arg-max, unless its
    score is under `abstain_threshold` (then no label)."""
    probs = numpy.asarray(probs, dtype="float64")
    if multi_label:
        cut = thresholds if thresholds is not None else numpy.full(probs.shape[1], threshold)
        return probs >= cut[None, :]
    chosen = numpy.zeros(probs.shape, dtype=bool)
    if probs.shape[0] == 0 or probs.shape[1] == 0:
        return chosen
    top = probs.argmax(axis=1)
    keep = numpy.ones(len(top), dtype=bool)
    if abstain_threshold is not None:
        keep = probs.max(axis=1) >= abstain_threshold
    chosen[numpy.arange(len(top))[keep], top[keep]] = True
    return chosen


def f1_scores(decided: numpy.ndarray, gold: numpy.ndarray) -> Dict[str, object]:
    """Micro- and macro-F1 of the decisions, and the F1 of each label."""
    truth = numpy.asarray(gold) > 0.5
    per_label = [f1(decided[:, j], truth[:, j]) for j in range(truth.shape[1])]
    return {
        "micro_f1": f1(decided, truth),
        "macro_f1": float(numpy.mean(per_label)) if per_label else 0.0,
        "per_label_f1": per_label,
    }


def coverage_curve(probs: numpy.ndarray, gold: numpy.ndarray, cuts: Sequence[float]) -> List[Dict[str, float]]:
    """For each abstain threshold: the share of docs that get a label (coverage) and the
    accuracy on those docs."""
    probs = numpy.asarray(probs, dtype="float64")
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    correct = top == numpy.asarray(gold).argmax(axis=1)
    rows = []
    for cut in cuts:
        kept = conf >= cut
        rows.append({
            "threshold": float(cut),
            "coverage": float(kept.mean()) if len(kept) else 0.0,
            "accuracy": float(correct[kept].mean()) if kept.any() else math.nan,
        })
    return rows


def abstain_for_accuracy(probs: numpy.ndarray, gold: numpy.ndarray, target: float) -> Optional[float]:
    """The lowest abstain threshold whose covered docs reach `target` accuracy (so the
    largest coverage that does): 0.0 when every doc together does; None when no
    threshold reaches it."""
    if not 0 < target <= 1:
        raise ValueError(f"The target accuracy is {target}: it must be in (0, 1].")
    probs = numpy.asarray(probs, dtype="float64")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == numpy.asarray(gold).argmax(axis=1)
    order = numpy.argsort(-conf, kind="stable")
    running = numpy.cumsum(correct[order]) / numpy.arange(1, len(order) + 1)
    sorted_conf = conf[order]
    if len(order) and running[-1] >= target:
        return 0.0
    best = None
    for i in range(len(order)):
        # a cut at sorted_conf[i] keeps every doc scoring >= it (ties included)
        if i + 1 < len(order) and sorted_conf[i + 1] == sorted_conf[i]:
            continue
        if running[i] >= target:
            best = float(sorted_conf[i])
    return best
