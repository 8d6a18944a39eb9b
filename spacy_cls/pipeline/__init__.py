"""The spaCy components (`cls_classifier`, `cls_classifier_multilabel`), their registered
architectures, training-data checks, and the Doc/Span attributes and vector hooks they set.

The component module pulls in torch and transformers, so it loads on first use; the
names below keep `spacy_cls.pipeline.ClsClassifier` and the factory names working."""
from importlib import import_module

_COMPONENT_NAMES = (
    "ClsClassifier", "ClsClassifierMultilabel", "ClsClassifierMixin",
    "make_cls_classifier", "make_cls_classifier_multilabel",
)


def __getattr__(name: str):
    if name in _COMPONENT_NAMES:
        return getattr(import_module(".component", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
