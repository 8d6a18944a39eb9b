"""[CLS] vectors for spans (sentences, entities, any slice of a doc): `span._.cls_vector`.

A span's vector is the encoder's raw [CLS] row for the span's text on its own. The
batch API runs the encoder once per batch of spans and caches each row in the doc
(``doc.user_data``, under spaCy's own key for a span extension value, so that it is
saved with ``doc.to_bytes`` and ``DocBin(store_user_data=True)``):

    from spacy_cls.pipeline.spans import set_span_vectors
    set_span_vectors(nlp, [sent for doc in docs for sent in doc.sents])
    doc_sents = [sent._.cls_vector for sent in docs[0].sents]

Reading ``span._.cls_vector`` for a span that is not cached encodes that one span
with the component that annotated the doc, if it is loaded in this process, and
caches the row; otherwise it is None.
"""
import uuid
import weakref
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch
from spacy_transformers.layers import TransformerListener
from spacy_transformers.pipeline_component import Transformer

from .attrs import CLS_VECTOR

# doc.user_data key naming the component whose encoder gives this doc's span vectors.
SOURCE_KEY = ("spacy_cls", "vector_source")
DEFAULT_BATCH_SIZE = 32


@dataclass
class _Source:
    component: "weakref.ReferenceType"
    nlp: Optional["weakref.ReferenceType"]


# Live components by key, so that a doc (which may be pickled or serialised) can
# name the component that annotated it without holding a reference to it.
_SOURCES = {}


def register_source(component, nlp: Optional[Language] = None) -> str:
    """Give a `cls_classifier` component a key that docs can record."""
    key = f"{getattr(component, 'name', 'cls')}-{uuid.uuid4().hex[:12]}"
    _SOURCES[key] = _Source(weakref.ref(component), weakref.ref(nlp) if nlp is not None else None)
    return key


def record_source(doc: Doc, key: str, *, preferred: bool) -> None:
    """Name the component whose encoder computes this doc's span vectors on demand:
    the first component to annotate the doc, unless a later one is `preferred` (it
    also sets doc.vector, and span.vector must come from the same encoder)."""
    if preferred or SOURCE_KEY not in doc.user_data:
        doc.user_data[SOURCE_KEY] = key


def _live_source(doc: Doc) -> Optional[Tuple[object, Optional[Language]]]:
    source = _SOURCES.get(doc.user_data.get(SOURCE_KEY))
    component = source.component() if source is not None else None
    if component is None:
        return None
    return component, source.nlp() if source.nlp is not None else None


def _cache_key(span: Span) -> Tuple[str, str, int, int]:
    # spaCy's own key for a span extension value: moved with the span's doc by
    # Doc.to_bytes, DocBin and Span.as_doc(copy_user_data=True).
    return ("._.", CLS_VECTOR, span.start_char, span.end_char)


def get_span_vector(span: Span) -> Optional[numpy.ndarray]:
    """Getter of `span._.cls_vector`."""
    cached = span.doc.user_data.get(_cache_key(span))
    if cached is not None:
        return cached
    source = _live_source(span.doc)
    if source is None:
        return None
    component, nlp = source
    return set_span_vectors(nlp if nlp is not None else component, [span], component=component)[0]


def set_span_vector(span: Span, value: Optional[numpy.ndarray]) -> None:
    """Setter of `span._.cls_vector`."""
    if value is None:
        span.doc.user_data.pop(_cache_key(span), None)
    else:
        span.doc.user_data[_cache_key(span)] = numpy.asarray(value, dtype=numpy.float32)


def can_compute(span: Span) -> bool:
    """Whether `span._.cls_vector` is cached or can be computed in this process."""
    return _cache_key(span) in span.doc.user_data or _live_source(span.doc) is not None


def set_span_vectors(
    nlp_or_component: Union[Language, object],
    spans: Iterable[Span],
    *,
    component: Union[str, object, None] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> numpy.ndarray:
    """Encode the spans' texts in batches, set each `span._.cls_vector` and return
    the rows, (n_spans, hidden) float32, in the order of `spans`.

    nlp_or_component: a pipeline with a `cls_classifier` component, or the component
    itself. A component that listens to a shared `transformer` needs the pipeline,
    which runs that transformer on the spans first.
    component: the component (or its name) when the pipeline has several.
    """
    spans = list(spans)
    vectors = span_vectors(nlp_or_component, spans, component=component, batch_size=batch_size)
    for span, vector in zip(spans, vectors):
        set_span_vector(span, vector)
    return vectors


def span_vectors(
    nlp_or_component: Union[Language, object],
    spans: Iterable[Span],
    *,
    component: Union[str, object, None] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> numpy.ndarray:
    """The raw [CLS] rows of the spans' texts, (n_spans, hidden) float32, without
    caching them; one encoder call per batch of `batch_size` spans."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    spans = list(spans)
    nlp, pipe = _resolve(nlp_or_component, component)
    upstream = _upstream_transformers(nlp, pipe)
    rows: List[numpy.ndarray] = []
    for batch in minibatch(spans, batch_size):
        docs = [_span_doc(span) for span in batch]
        for transformer in upstream:
            transformer.set_annotations(docs, transformer.predict(docs))
        cls = pipe.encoder.predict(docs).cls
        rows.append(pipe.model.ops.to_numpy(cls).astype(numpy.float32, copy=False))
    if not rows:
        return numpy.zeros((0, _cls_width(pipe.encoder)), dtype=numpy.float32)
    return numpy.concatenate(rows)


def _span_doc(span: Span) -> Doc:
    """A doc of the span's tokens and text alone. (Span.as_doc would copy the span's
    vector, which the vector hooks compute from this very doc.)"""
    words = [token.text for token in span]
    spaces = [bool(token.whitespace_) for token in span]
    if spaces:
        spaces[-1] = False
    return Doc(span.doc.vocab, words=words, spaces=spaces)


def _cls_width(encoder) -> int:
    if encoder.has_dim("nI"):
        return encoder.get_dim("nI")
    hf = encoder.shims[0]._hfmodel if encoder.shims else None
    return hf.transformer.config.hidden_size if hf is not None and hf.transformer is not None else 0


def is_cls_component(obj) -> bool:
    """Whether obj is a cls_classifier component. The components carry this mark so that
    span vectors find them without importing the component module (which imports this one)."""
    return getattr(type(obj), "gives_cls_vectors", False) is True


def _resolve(nlp_or_component, component) -> Tuple[Optional[Language], object]:
    if is_cls_component(nlp_or_component):
        return None, nlp_or_component
    if not isinstance(nlp_or_component, Language):
        raise TypeError(
            f"Expected a spaCy pipeline (Language) or a cls_classifier component, "
            f"got {type(nlp_or_component).__name__}."
        )
    nlp = nlp_or_component
    if is_cls_component(component):
        return nlp, component
    if isinstance(component, str):
        pipe = nlp.get_pipe(component)
        if not is_cls_component(pipe):
            raise ValueError(f"The component '{component}' is not a cls_classifier component.")
        return nlp, pipe
    candidates = [pipe for _, pipe in nlp.pipeline if is_cls_component(pipe)]
    if not candidates:
        raise ValueError(
            "The pipeline has no cls_classifier component to encode spans with; "
            f"its components are {nlp.pipe_names}."
        )
    preferred = [pipe for pipe in candidates if getattr(pipe, "set_doc_vector", False)]
    return nlp, (preferred or candidates)[0]


def _upstream_transformers(nlp: Optional[Language], pipe) -> List[Transformer]:
    """The `transformer` components whose outputs the component's encoder reads."""
    listeners = [node for node in pipe.encoder.walk() if isinstance(node, TransformerListener)]
    if not listeners:
        return []
    if nlp is None:
        raise ValueError(
            f"The component '{pipe.name}' reads its [CLS] rows from a shared transformer, "
            f"so span vectors need the whole pipeline: pass nlp, e.g. "
            f"set_span_vectors(nlp, spans), not the component."
        )
    upstream = [
        proc for _, proc in nlp.pipeline
        if isinstance(proc, Transformer) and any(listener in proc.listeners for listener in listeners)
    ]
    if not upstream:
        raise ValueError(
            f"The component '{pipe.name}' listens to a transformer, but no enabled "
            f"`transformer` component of the pipeline feeds it; enable it or add one."
        )
    return upstream
