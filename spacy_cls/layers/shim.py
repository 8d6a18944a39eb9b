"""spacy-transformers' HFShim, strict about weights on load.

When a saved state dict does not match the model built from the saved config,
``HFShim.from_bytes`` warns and loads with ``strict=False``: tensors missing from
the file keep their random initial values and the pipeline runs on them. Most such
differences across transformers versions are buffers (``position_ids``), which is
harmless; a missing weight matrix is not. This shim keeps the fallback for leftover
tensors and raises when a parameter is missing.
"""
import warnings
from io import BytesIO
import srsly
import torch
from spacy_transformers.layers.hf_shim import HFShim


class PartialWeightsError(ValueError):
    pass


class StrictHFShim(HFShim):
    def from_bytes(self, bytes_data: bytes) -> "StrictHFShim":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            super().from_bytes(bytes_data)
        fell_back = False
        for warning in caught:
            if "strict=False" in str(warning.message):
                fell_back = True
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if fell_back:
            check_saved_parameters(self._model, srsly.msgpack_loads(bytes_data)["state"])
        return self


def check_saved_parameters(model: torch.nn.Module, state_bytes: bytes) -> None:
    """Raise if a parameter of `model` is not in the saved state; tensors the file has
    and the model lacks (old buffers) are dropped with a warning, as before."""
    saved = set(torch.load(BytesIO(state_bytes), map_location="cpu", weights_only=True))
    missing = sorted(name for name, _ in model.named_parameters() if name not in saved)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise PartialWeightsError(
            f"The saved encoder weights lack {len(missing)} of the encoder's parameters "
            f"({shown}). Loading would leave them random. The pipeline was probably saved "
            "with another transformers version: install the version it was trained with "
            "(its meta.json lists it), or train it again."
        )
    unexpected = sorted(saved - set(model.state_dict()))
    warnings.warn(
        f"The saved encoder state has {len(unexpected)} tensor(s) this transformers version's "
        f"model does not use ({', '.join(unexpected[:5])}); every parameter was loaded.",
        stacklevel=2,
    )
