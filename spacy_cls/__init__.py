"""spaCy components that classify docs from a BERT-family encoder's [CLS] vector."""
from importlib import import_module

from .extensions import CLS_VECTOR, install_extensions
from . import readers  # noqa: F401  (registered corpus readers; spaCy-only imports)

__version__ = "0.1.0"
__all__ = ["CLS_VECTOR", "ClsClassifier", "ClsClassifierMultilabel", "install_extensions"]

# The components pull in torch, transformers and spacy-transformers (seconds to import).
# They load on first use: spaCy finds the factories and architectures through this
# package's entry points, and `spacy_cls.ClsClassifier` imports them when asked for, so
# `python -m spacy_cls convert` and other torch-free tools start without them.
_COMPONENTS = ("ClsClassifier", "ClsClassifierMultilabel")


def __getattr__(name: str):
    if name in _COMPONENTS:
        return getattr(import_module(".pipeline", __name__), name)
    if name == "architectures":
        return import_module(".architectures", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


install_extensions()
