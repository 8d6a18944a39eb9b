"""Pairs of training examples for the contrastive stage: a pair is positive (target 1)
when its two examples share a label, negative (target 0) when they share none; an
exclusive example has one label, a multi-label one any number."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy

Pair = Tuple[int, int, float]


def contrastive_pairs(gold: numpy.ndarray, pairs_per_example: int, seed: int) -> List[Pair]:
    """`pairs_per_example` pairs for each example (row of the 0/1 matrix `gold`,
    examples x labels), alternating positive and negative partners drawn at random;
    a kind of partner an example lacks (a label seen once, or every example sharing a
    label) is skipped. The same inputs and seed give the same pairs."""
    gold = numpy.asarray(gold, dtype=bool)
    rng = numpy.random.default_rng(seed)
    pairs: List[Pair] = []
    for i in range(gold.shape[0]):
        shares = (gold & gold[i]).any(axis=1)
        positives = numpy.flatnonzero(shares)
        positives = positives[positives != i]
        negatives = numpy.flatnonzero(~shares)
        negatives = negatives[negatives != i]
        for k in range(pairs_per_example):
            pool, target = (positives, 1.0) if k % 2 == 0 else (negatives, 0.0)
            if len(pool):
                pairs.append((i, int(pool[rng.integers(len(pool))]), target))
    order = rng.permutation(len(pairs))
    return [pairs[j] for j in order]


def pair_counts(pairs: Sequence[Pair]) -> Tuple[int, int]:
    positive = sum(1 for _, _, target in pairs if target == 1.0)
    return positive, len(pairs) - positive
