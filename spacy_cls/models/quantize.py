"""Faster CPU prediction on a loaded pipeline: dynamic int8 quantisation of the
encoder's linear layers (`quantize_pipeline`), or bfloat16 (`bfloat16_pipeline`).

The linear layers' weights are stored as int8 and their inputs quantised on the
fly, which speeds up CPU inference at a small cost in accuracy (measured in
benchmarks/results/inference.md). The float weights stay: the pipeline still
saves them, and `spacy.load` plus `quantize_pipeline` (or the encoder setting
``quantize_int8 = true``) quantises again. Fine-tuning a quantised encoder is
refused; training the head on a frozen one is allowed.

bfloat16 sets the encoder's ``mixed_precision = true`` with
``mixed_precision_dtype = "bfloat16"``: on a CPU with bfloat16 arithmetic (AVX-512
BF16, AMX) prediction runs on a bfloat16 copy of the weights and fine-tuning under
bfloat16 autocast; on a GPU it is bfloat16 autocast.
"""
import copy
import warnings
from typing import List

import torch
from spacy.language import Language
from thinc.api import Model

QUANTIZE_FLAG = "quantize_int8"


def quantize_encoder(transformer: torch.nn.Module) -> torch.nn.Module:
    """An int8 copy of `transformer` for inference: its linear layers quantised,
    every other weight shared with the original rather than copied."""
    devices = {param.device.type for param in transformer.parameters()}
    if devices - {"cpu"}:
        raise ValueError(
            "int8 quantisation (quantize_int8) runs on CPU only, and this encoder is on "
            f"{', '.join(sorted(devices))}. On a GPU use mixed_precision = true instead."
        )
    quantize_dynamic = getattr(getattr(torch, "ao", None), "quantization", None)
    quantize_dynamic = getattr(quantize_dynamic, "quantize_dynamic", None)
    if quantize_dynamic is None:
        raise ValueError(
            f"This torch ({torch.__version__}) has no torch.ao.quantization.quantize_dynamic; "
            f"set quantize_int8 = false, or use a torch version that has it."
        )
    shared = {id(tensor): tensor for tensor in [*transformer.parameters(), *transformer.buffers()]}
    clone = copy.deepcopy(transformer, shared)
    clone.eval()
    with warnings.catch_warnings():
        # torch marks its eager-mode quantisation API as deprecated in favour of torchao.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*", category=UserWarning)
        return quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_pipeline(nlp: Language, enable: bool = True) -> List[str]:
    """Make every `cls_classifier` encoder in `nlp` predict with int8 linear layers
    (`enable=False` switches back). Returns the component names it changed. The
    setting is saved with the pipeline; the int8 copy is made on first use."""
    settings = {QUANTIZE_FLAG: enable}
    if enable:
        settings.update(_BFLOAT16_OFF)
    return _set_encoder_settings(nlp, settings, "nothing to quantise")


def bfloat16_pipeline(nlp: Language, enable: bool = True) -> List[str]:
    """Make every `cls_classifier` encoder in `nlp` run in bfloat16 (`enable=False`:
    float32 again). Turns int8 quantisation off, which cannot run beside it. Returns
    the component names it changed; the setting is saved with the pipeline."""
    if enable:
        settings = {"mixed_precision": True, "mixed_precision_dtype": "bfloat16", QUANTIZE_FLAG: False}
    else:
        settings = dict(_BFLOAT16_OFF)
    return _set_encoder_settings(nlp, settings, "nothing to switch to bfloat16")


_BFLOAT16_OFF = {"mixed_precision": False, "mixed_precision_dtype": "float16"}


def _set_encoder_settings(nlp: Language, settings: dict, nothing: str) -> List[str]:
    changed = []
    for name, encoder in _encoders(nlp):
        encoder.attrs.update(settings)
        # A loaded pipeline runs with its config's settings, so the config that
        # nlp.to_disk writes must say so too (get_pipe_config returns the stored config).
        _set_in_config(nlp.get_pipe_config(name).get("model", {}), settings)
        changed.append(name)
    if not changed:
        raise ValueError(
            "No component with a spacy_cls encoder in this pipeline "
            f"({', '.join(nlp.pipe_names) or 'empty'}): {nothing}."
        )
    return changed


def _encoders(nlp: Language):
    for name, component in nlp.components:
        model = getattr(component, "model", None)
        if not isinstance(model, Model) or not model.has_ref("encoder"):
            continue
        encoder = model.get_ref("encoder")
        if QUANTIZE_FLAG in encoder.attrs:
            yield name, encoder


def _set_in_config(section: dict, settings: dict) -> None:
    """Set each key of `settings` where the encoder's block of the config has it."""
    if QUANTIZE_FLAG in section:
        for key, value in settings.items():
            section[key] = value
    for value in section.values():
        if isinstance(value, dict):
            _set_in_config(value, settings)
