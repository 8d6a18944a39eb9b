"""spacy-transformers' HFShim, loading only what was checked, and strict about weights.

Saving is HFShim's. Loading is not: ``HFShim.from_bytes`` writes the saved tokenizer
file names as given, passes the saved tokenizer settings to
``AutoTokenizer.from_pretrained`` and unpickles the weights without
``weights_only=True``, so a tampered pipeline can run code or write files while it
loads. This shim reads the same format, checked first (`models.saved_checks`).

It is also strict about weights: where HFShim falls back to ``strict=False`` and
keeps random values for tensors missing from the file, this shim accepts leftover
tensors (old buffers such as ``position_ids``, with a warning) and raises when a
parameter is missing.
"""
import warnings
from typing import Dict

import torch
from spacy.util import SimpleFrozenDict
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.util import make_tempdir
from thinc.api import get_torch_default_device

from ..models.saved_checks import (
    check_encoder_fits,
    check_state_fits,
    load_saved_weights,
    read_saved_encoder,
    refuse,
    write_tokenizer_folder,
)


class PartialWeightsError(ValueError):
    pass


class StrictHFShim(HFShim):
    def from_bytes(self, bytes_data: bytes) -> "StrictHFShim":
        saved = read_saved_encoder(bytes_data)
        if not saved.config:
            self._hfmodel = HFObjects(None, None, None, saved.init_tokenizer_config, saved.init_transformer_config)
            return self
        device = get_torch_default_device()
        state = load_saved_weights(saved.state, device)
        # Before any module is built for real: the config's model on the meta device
        # against the saved tensors (every parameter there, same shapes, no buffer
        # or size beyond the limits).
        config, skeleton = check_encoder_fits(saved.config, state, self.model_cls, check_missing=check_parameters)
        check_state_fits(skeleton, state)
        with make_tempdir() as folder:
            write_tokenizer_folder(folder, saved)
            tokenizer = self.tokenizer_cls.from_pretrained(
                str(folder), **saved.tokenizer_settings, trust_remote_code=False, local_files_only=True
            )
            vocab_file_contents = None
            if hasattr(tokenizer, "vocab_file"):
                vocab_file = folder / tokenizer.vocab_files_names["vocab_file"]
                vocab_file_contents = vocab_file.read_bytes() if vocab_file.is_file() else None
        transformer = self.model_cls.from_config(config, trust_remote_code=False)
        load_state_strictly(transformer, state)
        transformer.to(device)
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents, SimpleFrozenDict(), SimpleFrozenDict())
        self._model = transformer
        return self


def check_parameters(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    missing = sorted(name for name, _ in model.named_parameters() if name not in state)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise PartialWeightsError(
            f"The saved encoder weights lack {len(missing)} of the encoder's parameters "
            f"({shown}). Loading would leave them random. The pipeline was probably saved "
            "with another transformers version: install the version it was trained with "
            "(its meta.json lists it), or train it again."
        )


def load_state_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Load `state` into `model`: every parameter must be there; tensors the file has
    and the model lacks (old buffers) are dropped with a warning."""
    check_parameters(model, state)
    unexpected = sorted(set(state) - set(model.state_dict()))
    try:
        # Not strict: buffers a transformers version adds or drops may differ.
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise refuse(f"its weights do not fit its model config ({str(err).splitlines()[-1].strip()})") from None
    if unexpected:
        warnings.warn(
            f"The saved encoder state has {len(unexpected)} tensor(s) this transformers version's "
            f"model does not use ({', '.join(unexpected[:5])}); every parameter was loaded.",
            stacklevel=3,
        )
