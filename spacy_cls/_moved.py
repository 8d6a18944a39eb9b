"""Old module paths (before the subpackages) still import, for one release, with a
DeprecationWarning: `spacy_cls.readers` is `spacy_cls.data.readers`, and so on.

A finder on `sys.meta_path` answers only for the names below, so no alias module
sits in the tree; remove this file in the release after 0.2."""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "architectures": "pipeline.architectures",
    "validation": "pipeline.validation",
    "extensions": "pipeline.extensions",
    "hooks": "pipeline.hooks",
    "spans": "pipeline.spans",
    "init_callbacks": "models.callbacks",
    "loaders": "models.loaders",
    "quantize": "models.quantize",
    "readers": "data.readers",
    "convert": "data.convert",
    "corpus_ner": "data.corpus_ner",
    "attention": "explain.attention",
    "explain_html": "explain.html",
    "plots": "explain.plots",
}
PACKAGE = __name__.rpartition(".")[0]


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MOVED:
            return None
        new = f"{PACKAGE}.{MOVED[name]}"
        warnings.warn(f"{fullname} moved to {new}; the old path goes in the next release.",
                      DeprecationWarning, stacklevel=3)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
