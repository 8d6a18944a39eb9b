"""The custom attributes this package writes on spaCy objects."""
from spacy.tokens import Doc, Span

from .attrs import CLS_ATTENTION, CLS_LABELS, CLS_UNCERTAINTY, CLS_VECTOR

__all__ = ["CLS_ATTENTION", "CLS_LABELS", "CLS_UNCERTAINTY", "CLS_VECTOR", "install_extensions"]


def install_extensions() -> None:
    """Register the attributes once; safe to call any number of times."""
    if not Doc.has_extension(CLS_VECTOR):
        Doc.set_extension(CLS_VECTOR, default=None)
    if not Doc.has_extension(CLS_ATTENTION):
        Doc.set_extension(CLS_ATTENTION, default=None)
    if not Doc.has_extension(CLS_LABELS):
        Doc.set_extension(CLS_LABELS, default=None)
    if not Doc.has_extension(CLS_UNCERTAINTY):
        Doc.set_extension(CLS_UNCERTAINTY, default=None)
    if not Span.has_extension(CLS_VECTOR):
        # Per span: the [CLS] row of the span's text, cached in the doc (spacy_cls.pipeline.spans).
        Span.set_extension(CLS_VECTOR, getter=_get_span_vector, setter=_set_span_vector)


# spacy_cls.pipeline.spans imports spacy-transformers: load it when a span vector is first used.
def _get_span_vector(span: Span):
    from .spans import get_span_vector

    return get_span_vector(span)


def _set_span_vector(span: Span, value) -> None:
    from .spans import set_span_vector

    set_span_vector(span, value)
