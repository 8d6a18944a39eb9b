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
_LAZY = {"ClsClassifier": "pipeline", "ClsClassifierMultilabel": "pipeline", "architectures": None}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


install_extensions()
