"""spaCy components that classify docs from a BERT-family encoder's [CLS] vector."""
from .extensions import CLS_VECTOR, install_extensions
from .pipeline import ClsClassifier, ClsClassifierMultilabel
from . import architectures, readers  # noqa: F401  (registered functions)

__version__ = "0.1.0"
__all__ = ["CLS_VECTOR", "ClsClassifier", "ClsClassifierMultilabel", "install_extensions"]

install_extensions()
