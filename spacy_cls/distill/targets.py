"""Soft targets from a teacher's scores: a temperature, then the mix with gold cats."""
from typing import Dict, Mapping, Optional, Sequence

import numpy

# Probabilities are clipped this far from 0 and 1 before taking logs.
EPS = 1e-7


def check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(
            f"temperature = {temperature!r}: give a number above 0 (1.0: the teacher's scores as they are; "
            f"2.0 to 4.0 soften them, as in Hinton et al.'s distillation)."
        )


def check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"alpha = {alpha!r}: the weight of the teacher's soft cats on gold texts is from 0 to 1 "
            f"(1.0: soft targets only, 0.0: gold cats only, 0.5: the mean of the two)."
        )


def soften(probs: numpy.ndarray, temperature: float, *, multi_label: bool) -> numpy.ndarray:
    """The teacher's probabilities at a temperature: softmax(logits / T) for exclusive
    classes, sigmoid(logit / T) per label for multi-label. log p differs from the
    logits by a constant per row, so the softmax of log(p) / T is that of logits / T."""
    check_temperature(temperature)
    p = numpy.clip(numpy.asarray(probs, dtype="float64"), EPS, 1 - EPS)
    if multi_label:
        logits = numpy.log(p) - numpy.log1p(-p)
        return 1.0 / (1.0 + numpy.exp(-logits / temperature))
    z = numpy.log(p) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = numpy.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mix(soft: Sequence[float], gold: Optional[Mapping[str, float]], labels: Sequence[str],
        alpha: float, *, multi_label: bool) -> Dict[str, float]:
    """cats for one text: alpha * soft + (1 - alpha) * gold, label by label. Without
    gold (an unlabelled text) the soft cats alone. A label the gold cats leave out is
    0.0 for exclusive classes (the components read it so) and soft only for
    multi-label (unknown). Cross-entropy is linear in its target, so training on the
    mix is training on alpha * CE(soft) + (1 - alpha) * CE(gold)."""
    cats = {}
    for label, value in zip(labels, soft):
        if gold is not None and (label in gold or not multi_label):
            value = alpha * float(value) + (1.0 - alpha) * float(gold.get(label, 0.0))
        cats[label] = float(value)
    return cats
