"""The head fitted on the examples' unit-length vectors after the contrastive stage:
multinomial (exclusive) or per-label (multi-label) logistic regression, as SetFit fits
scikit-learn's LogisticRegression, with the penalty pulling the weights towards a prior:
the description head when there are descriptions (so that they stay a warm start the
examples refine), else zero (plain L2, scikit-learn's C = 1)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy
import torch

PENALTY = 1.0
MAX_ITER = 200


def fit_head(features: numpy.ndarray, gold: numpy.ndarray, *, multi_label: bool,
             prior_W: Optional[numpy.ndarray] = None, prior_b: Optional[numpy.ndarray] = None,
             penalty: float = PENALTY) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(W, b) minimising the summed log loss over the examples plus
    penalty / 2 * ||W - prior_W||^2 (the bias is not penalised)."""
    X = torch.as_tensor(numpy.asarray(features, dtype="float64"))
    Y = torch.as_tensor(numpy.asarray(gold, dtype="float64"))
    n_labels, width = Y.shape[1], X.shape[1]
    W0 = torch.zeros((n_labels, width), dtype=torch.float64) if prior_W is None \
        else torch.as_tensor(numpy.asarray(prior_W, dtype="float64"))
    b0 = torch.zeros(n_labels, dtype=torch.float64) if prior_b is None \
        else torch.as_tensor(numpy.asarray(prior_b, dtype="float64"))
    W = W0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([W, b], max_iter=MAX_ITER, line_search_fn="strong_wolfe")
    targets = Y.argmax(dim=1)

    def closure():
        optimizer.zero_grad()
        logits = X @ W.T + b
        if multi_label:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, Y, reduction="sum")
        else:
            loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        loss = loss + 0.5 * penalty * ((W - W0) ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return W.detach().numpy().astype("float32"), b.detach().numpy().astype("float32")
