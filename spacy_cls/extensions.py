"""The custom attributes this package writes on spaCy objects."""
from spacy.tokens import Doc

CLS_VECTOR = "cls_vector"


def install_extensions() -> None:
    """Register the attributes once; safe to call any number of times."""
    if not Doc.has_extension(CLS_VECTOR):
        Doc.set_extension(CLS_VECTOR, default=None)
