"""How far a classifier's scores can be read as probabilities, and temperature scaling.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides
an exclusive classifier's logits by one number T fitted to minimise the negative
log-likelihood of held-out gold labels: T > 1 softens over-confident scores, and the
arg-max, so accuracy, does not change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy

# The temperature is searched in [T_MIN, T_MAX]. A dev set the model separates perfectly
# drives the fitted T towards 0 (ever sharper scores); a fit at a bound is reported.
T_MIN, T_MAX = 0.05, 20.0
DEFAULT_BINS = 15


def softmax(logits: numpy.ndarray, temperature: float = 1.0) -> numpy.ndarray:
    """softmax(logits / temperature) in float64, computed in log space (see
    apply.scores_from_logits, which rounds the same values to float32)."""
    z = numpy.asarray(logits, dtype="float64")
    top = z.max(axis=1, keepdims=True)
    with numpy.errstate(invalid="ignore", over="ignore", under="ignore"):
        shifted = numpy.where(z == top, 0.0, z - top) / temperature
    return numpy.exp(shifted - numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True)))


def sigmoid(logits: numpy.ndarray) -> numpy.ndarray:
    z = numpy.asarray(logits, dtype="float64")
    return numpy.exp(-numpy.logaddexp(0.0, -z))


def gold_index(gold: numpy.ndarray) -> numpy.ndarray:
    """The gold class of each doc of a (n_docs, n_labels) 0/1 matrix."""
    return numpy.asarray(gold).argmax(axis=1)


def nll(logits: numpy.ndarray, gold: numpy.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold classes under softmax(logits / T)."""
    z = numpy.asarray(logits, dtype="float64")
    top = z.max(axis=1, keepdims=True)
    with numpy.errstate(invalid="ignore", over="ignore", under="ignore"):
        shifted = numpy.where(z == top, 0.0, z - top) / temperature
    log_norm = numpy.log(numpy.exp(shifted).sum(axis=1))
    picked = shifted[numpy.arange(len(shifted)), gold_index(gold)]
    return float((log_norm - picked).mean())


def fit_temperature(logits: numpy.ndarray, gold: numpy.ndarray, *, iterations: int = 100) -> float:
    """The T minimising the NLL of `gold` (n_docs, n_labels one-hot) under softmax(logits / T).

    The NLL is convex in 1/T, so unimodal in log T: a golden-section search over log T
    finds the minimum without a gradient or an optimiser dependency.
    """
    logits = numpy.asarray(logits, dtype="float64")
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError("Temperature scaling needs at least one doc with scores for every label.")
    if logits.shape[1] < 2:
        raise ValueError("Temperature scaling needs two labels or more.")
    lo, hi = numpy.log(T_MIN), numpy.log(T_MAX)
    ratio = (numpy.sqrt(5.0) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, gold, numpy.exp(a)), nll(logits, gold, numpy.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, gold, numpy.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, gold, numpy.exp(b))
    return float(min(max(numpy.exp((lo + hi) / 2), T_MIN), T_MAX))


def at_bound(temperature: float) -> bool:
    return numpy.isclose(temperature, T_MIN, rtol=1e-3) or numpy.isclose(temperature, T_MAX, rtol=1e-3)


def confidences(probs: numpy.ndarray, gold: numpy.ndarray, multi_label: bool):
    """(confidence, correct) pairs the calibration error is measured on: for exclusive
    classes the top score and whether it is the gold class; for multi-label every
    (doc, label) score and whether the label is gold."""
    probs = numpy.asarray(probs, dtype="float64")
    gold = numpy.asarray(gold)
    if multi_label:
        return probs.ravel(), (gold.ravel() > 0.5).astype("float64")
    top = probs.argmax(axis=1)
    return probs.max(axis=1), (top == gold_index(gold)).astype("float64")


def expected_calibration_error(
    probs: numpy.ndarray, gold: numpy.ndarray, *, multi_label: bool = False, n_bins: int = DEFAULT_BINS
) -> float:
    """ECE with `n_bins` equal-width confidence bins: the bins' mean |accuracy -
    confidence|, weighted by how many scores fall in each (Guo et al. 2017)."""
    conf, correct = confidences(probs, gold, multi_label)
    if len(conf) == 0:
        return float("nan")
    bins = numpy.minimum((conf * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            error += mask.sum() * abs(correct[mask].mean() - conf[mask].mean())
    return float(error / len(conf))


def brier_score(probs: numpy.ndarray, gold: numpy.ndarray) -> float:
    """Mean over docs of the squared error summed over labels (Brier 1950)."""
    diff = numpy.asarray(probs, dtype="float64") - numpy.asarray(gold, dtype="float64")
    return float((diff ** 2).sum(axis=1).mean()) if len(diff) else float("nan")


def reliability_bins(
    probs: numpy.ndarray, gold: numpy.ndarray, *, multi_label: bool = False, n_bins: int = DEFAULT_BINS
) -> Dict[str, list]:
    conf, correct = confidences(probs, gold, multi_label)
    bins = numpy.minimum((conf * n_bins).astype(int), n_bins - 1)
    out: Dict[str, list] = {"lower": [], "confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out["lower"].append(b / n_bins)
            out["confidence"].append(float(conf[mask].mean()))
            out["accuracy"].append(float(correct[mask].mean()))
            out["count"].append(int(mask.sum()))
    return out


def plot_reliability(
    curves: Dict[str, Dict[str, list]], path: Path, *, title: str = "Reliability", n_bins: int = DEFAULT_BINS
) -> Path:
    """A reliability diagram: per confidence bin, the share correct, one line per curve
    (e.g. before / after); the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, bins in curves.items():
        ax.plot(bins["confidence"], bins["accuracy"], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean score in bin)")
    ax.set_ylabel("share correct")
    ax.set_title(f"{title} ({n_bins} bins)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
