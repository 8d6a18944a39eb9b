"""Callbacks for the [initialize] block of a training config."""
from typing import Callable

from spacy.language import Language
from spacy.util import registry
from spacy_transformers.layers import TransformerModel
from thinc.api import Model

from .loaders import PACKAGE_PREFIX, ModelLoadError, package_folder


@registry.callbacks("spacy_cls.resolve_package_names.v1")
def create_resolve_package_names() -> Callable[[Language], Language]:
    """Let a spacy-transformers `transformer` component name its checkpoint as
    ``package:<python package>/<folder>``, like `cls_classifier` does:

        [initialize.before_init]
        @callbacks = "spacy_cls.resolve_package_names.v1"

    The names are resolved to folders only when the pipeline is initialized for
    training; a trained pipeline loads its weights from its own files, so loading it
    with spacy.load does not need the package.
    """
    return resolve_package_names


def resolve_package_names(nlp: Language) -> Language:
    for _, component in nlp.components:
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            name = node.attrs.get("name") if isinstance(node, TransformerModel) else None
            if isinstance(name, str) and name.startswith(PACKAGE_PREFIX):
                folder = package_folder(name)
                if not (folder / "config.json").exists():
                    raise ModelLoadError(
                        f"The transformer model '{name}' resolves to '{folder}', which holds "
                        f"no Hugging Face checkpoint (config.json). Name a folder that does."
                    )
                node.attrs["name"] = str(folder)
    return nlp
