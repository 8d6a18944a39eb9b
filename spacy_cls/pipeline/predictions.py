"""What the components' `predict` returns: the score array that spaCy's textcat returns,
which `get_loss` and `set_annotations` take, carrying the batch's [CLS] vectors too.

The scores are one small host array (n_docs x n_labels), like the `doc.cats` they
become; the vectors ride along so that `set_annotations` does not run the encoder a
second time. An array derived from it (a slice, `repeat`, arithmetic) has different
rows, so it carries no vectors and `set_annotations` computes them again.
"""
from typing import Optional

import numpy


class ClsScores(numpy.ndarray):
    """(n_docs, n_labels) float32 scores; `cls_vectors` is (n_docs, hidden) float32,
    or None for an array derived from the scores."""

    cls_vectors: Optional[numpy.ndarray]

    @classmethod
    def of(cls, scores, cls_vectors) -> "ClsScores":
        result = numpy.asarray(scores, dtype=numpy.float32).view(cls)
        vectors = numpy.asarray(cls_vectors, dtype=numpy.float32)
        if vectors.shape[0] != result.shape[0]:
            raise ValueError(f"{vectors.shape[0]} [CLS] vectors for {result.shape[0]} rows of scores.")
        result.cls_vectors = vectors
        return result

    def __array_finalize__(self, obj) -> None:
        self.cls_vectors = None

    def __reduce__(self):
        # Pickled (e.g. sent to another process) as plain scores.
        return numpy.asarray(self).__reduce__()


def vectors_of(scores) -> Optional[numpy.ndarray]:
    """The [CLS] vectors that came with `scores`, if any."""
    return getattr(scores, "cls_vectors", None)
