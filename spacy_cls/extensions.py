"""The custom attributes this package writes on spaCy objects."""
from spacy.tokens import Doc, Span

CLS_VECTOR = "cls_vector"
# Per spaCy token: last-layer attention from [CLS] (set by spacy_cls.attention.cls_attention).
CLS_ATTENTION = "cls_attention"


def install_extensions() -> None:
    """Register the attributes once; safe to call any number of times."""
    if not Doc.has_extension(CLS_VECTOR):
        Doc.set_extension(CLS_VECTOR, default=None)
    if not Doc.has_extension(CLS_ATTENTION):
        Doc.set_extension(CLS_ATTENTION, default=None)
    if not Span.has_extension(CLS_VECTOR):
        # Per span: the [CLS] row of the span's text, cached in the doc (spacy_cls.spans).
        from .spans import get_span_vector, set_span_vector

        Span.set_extension(CLS_VECTOR, getter=get_span_vector, setter=set_span_vector)
