"""spaCy components that classify docs from a BERT-family encoder's [CLS] vector."""
from importlib import import_module

from . import _moved
from .data import readers  # noqa: F401  (registered corpus readers; spaCy-only imports)
from .pipeline.extensions import CLS_VECTOR, install_extensions

__version__ = "0.1.0"
__all__ = ["CLS_VECTOR", "ClsClassifier", "ClsClassifierMultilabel", "install_extensions", "load_checked",
           "train_distributed"]

# The components pull in torch, transformers and spacy-transformers (seconds to import).
# They load on first use: spaCy finds the factories and architectures through this
# package's entry points, and `spacy_cls.ClsClassifier` imports them when asked for, so
# `python -m spacy_cls convert` and other torch-free tools start without them.
_LAZY = {
    "ClsClassifier": (".pipeline.component", "ClsClassifier"),
    "ClsClassifierMultilabel": (".pipeline.component", "ClsClassifierMultilabel"),
    "load_checked": (".models.safe_load", "load_checked"),
    "train_distributed": (".distributed.launch", "train_distributed"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module, __name__), attr)
    if name in _moved.MOVED:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_moved.install()
install_extensions()
