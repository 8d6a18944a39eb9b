"""spaCy user hooks that make `doc.vector`, `span.vector` and `.similarity` use the
[CLS] vectors (set by a component created with ``set_doc_vector=True``).

- ``doc.vector``: ``doc._.cls_vector``; ``span.vector``: ``span._.cls_vector`` (the
  span's text encoded on its own; see ``spacy_cls.pipeline.spans``).
- ``doc.similarity`` / ``span.similarity``: cosine of the two vectors.

The hooks are module-level functions, so docs keep them when pickled. spaCy does
not save hooks with ``doc.to_bytes``, ``DocBin`` or the docs that ``nlp.pipe(...,
n_process=2)`` sends back from its worker processes; the docs keep a mark, and
``restore_vector_hooks(docs)`` puts the hooks back.
"""
from typing import Iterable, Union

import numpy
from spacy.tokens import Doc, Span

from .attrs import CLS_VECTOR
from .spans import can_compute

# doc.user_data key marking docs whose vectors are [CLS] vectors.
HOOKS_KEY = ("spacy_cls", "vector_hooks")


def doc_vector(doc: Doc) -> numpy.ndarray:
    vector = doc._.get(CLS_VECTOR)
    if vector is None:
        raise ValueError(
            "This doc has [CLS] vector hooks but no doc._.cls_vector; run the pipeline's "
            "cls_classifier component on it."
        )
    return vector


def doc_has_vector(doc: Doc) -> bool:
    return doc._.get(CLS_VECTOR) is not None


def doc_vector_norm(doc: Doc) -> float:
    return float(numpy.linalg.norm(doc.vector))


def span_vector(span: Span) -> numpy.ndarray:
    vector = span._.get(CLS_VECTOR)
    if vector is None:
        raise ValueError(
            f"No [CLS] vector for the span {span.text[:40]!r}: the component that annotated "
            f"its doc is not loaded in this process. Compute span vectors in batches with "
            f"spacy_cls.pipeline.spans.set_span_vectors(nlp, spans)."
        )
    return vector


def span_has_vector(span: Span) -> bool:
    return can_compute(span)


def cosine_similarity(obj: Union[Doc, Span], other) -> float:
    """Cosine of the two objects' vectors; 0.0 when either is all zeros."""
    a = numpy.asarray(obj.vector, dtype=numpy.float32)
    b = numpy.asarray(other.vector, dtype=numpy.float32)
    if a.shape != b.shape:
        raise ValueError(
            f"Cannot compare a [CLS] vector of width {a.shape[-1] if a.ndim else 0} with a "
            f"{type(other).__name__} vector of width {b.shape[-1] if b.ndim else 0}: compare "
            f"docs and spans of pipelines that use the same encoder."
        )
    norms = float(numpy.linalg.norm(a)) * float(numpy.linalg.norm(b))
    return float(numpy.dot(a, b) / norms) if norms else 0.0


def install_vector_hooks(doc: Doc) -> None:
    """Make the doc's and its spans' vectors and similarities use [CLS] vectors."""
    doc.user_hooks["vector"] = doc_vector
    doc.user_hooks["has_vector"] = doc_has_vector
    doc.user_hooks["vector_norm"] = doc_vector_norm
    doc.user_hooks["similarity"] = cosine_similarity
    doc.user_span_hooks["vector"] = span_vector
    doc.user_span_hooks["has_vector"] = span_has_vector
    doc.user_span_hooks["similarity"] = cosine_similarity
    doc.user_data[HOOKS_KEY] = True


def restore_vector_hooks(docs: Union[Doc, Iterable[Doc]]) -> None:
    """Put the hooks back on docs that had them before `doc.to_bytes`, `DocBin` or
    `nlp.pipe(..., n_process=2)`; other docs are left as they are."""
    for doc in [docs] if isinstance(docs, Doc) else docs:
        if doc.user_data.get(HOOKS_KEY):
            install_vector_hooks(doc)
