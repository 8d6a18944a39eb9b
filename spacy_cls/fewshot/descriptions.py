"""Zero-shot: a head built from the encoder's vectors of one description per label.

Each label's description is put into each template ("This review is {}."), encoded with
the component's own pooling, and the unit-length mean of those vectors becomes the
label's row of the head, divided by a temperature. With the head reading unit-length
features, a doc's logit for a label is then cos(doc, description) / temperature.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy

PLACEHOLDER = "{}"
DEFAULT_TEMPLATES = (PLACEHOLDER,)
DEFAULT_TEMPERATURE = 0.05
# Cosines lie in [-1, 1]: below 1e-3 the softmax is a hard arg-max of tiny differences,
# above 10 every label scores alike.
TEMPERATURE_RANGE = (1e-3, 10.0)
# Multi-label without examples: a label is on when the doc is closer to it than the
# labels' descriptions are to one another; with one label, this cosine is the cut.
SINGLE_LABEL_COSINE = 0.5
MAX_DESCRIPTION_CHARS = 2000


def check_description_settings(
    labels: Optional[Sequence[str]],
    descriptions: Optional[Mapping[str, str]],
    templates: Optional[Sequence[str]],
    temperature: float,
    component: str,
) -> None:
    where = f"[initialize.components.{component}]"
    if descriptions is None:
        if templates is not None:
            raise ValueError(f"{where} description_templates needs label_descriptions: give one description a label.")
        return
    if not isinstance(descriptions, Mapping) or not descriptions:
        raise ValueError(f"{where} label_descriptions must be a table of label = description, e.g. "
                         f'label_descriptions = {{"POS": "a positive review", "NEG": "a negative review"}}.')
    for label, text in descriptions.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where} label_descriptions: the description of {label!r} must be a non-empty text.")
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"{where} label_descriptions: the description of {label!r} has {len(text)} characters; "
                             f"keep it to a sentence or two (at most {MAX_DESCRIPTION_CHARS}).")
    if labels is not None:
        unknown = [label for label in descriptions if label not in labels]
        if unknown:
            raise ValueError(f"{where} label_descriptions names labels the component does not have: {unknown}. "
                             f"Its labels: {list(labels)}.")
    for template in templates or ():
        if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
            raise ValueError(f"{where} description_templates: {template!r} must hold '{{}}' once, where the "
                             f"description goes, e.g. \"This review is {{}}.\"")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise ValueError(f"{where} description_temperature = {temperature!r}: use a number from "
                         f"{TEMPERATURE_RANGE[0]} to {TEMPERATURE_RANGE[1]} (0.05 is usual: logits 20 x cosine).")


def description_prompts(labels: Sequence[str], descriptions: Mapping[str, str],
                        templates: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    """The texts encoded for each label: each template with the label's description
    (its own name where it has none) in place of '{}'."""
    chosen = tuple(templates) if templates else DEFAULT_TEMPLATES
    return {
        label: [template.replace(PLACEHOLDER, descriptions.get(label, label).strip()) for template in chosen]
        for label in labels
    }


def unit_rows(X: numpy.ndarray) -> numpy.ndarray:
    norms = numpy.linalg.norm(X, axis=-1, keepdims=True)
    return X / numpy.maximum(norms, 1e-12)


def label_directions(vectors: Mapping[str, numpy.ndarray], labels: Sequence[str]) -> numpy.ndarray:
    """(n_labels, width): each label's unit-length mean of its unit-length prompt vectors."""
    return unit_rows(numpy.stack([unit_rows(numpy.asarray(vectors[label], dtype="float64")).mean(axis=0)
                                  for label in labels]))


def description_head(directions: numpy.ndarray, temperature: float, *, multi_label: bool) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Head weights (W, b) whose logits on unit-length features are cosine / temperature;
    for multi-label, less the labels' mean cosine to one another (see SINGLE_LABEL_COSINE)."""
    W = directions / temperature
    b = numpy.zeros(directions.shape[0])
    if multi_label:
        n = directions.shape[0]
        if n == 1:
            b[:] = -SINGLE_LABEL_COSINE / temperature
        else:
            cosines = directions @ directions.T
            mutual = (cosines.sum(axis=1) - numpy.diag(cosines)) / (n - 1)
            b = -mutual / temperature
    return W.astype("float32"), b.astype("float32")


def declared_pooling(model_name: Optional[str]) -> Optional[str]:
    """The pooling a sentence-transformers checkpoint folder declares (1_Pooling/config.json),
    or None when the checkpoint says nothing (or is not a local folder)."""
    if not model_name:
        return None
    from ..models.loaders import PACKAGE_PREFIX, ModelLoadError, package_folder

    try:
        folder = package_folder(model_name) if model_name.startswith(PACKAGE_PREFIX) else Path(model_name).expanduser()
        config = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf8"))
    except (ModelLoadError, OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    for key, name in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_max_tokens", "max")):
        if config.get(key) is True:
            return name
    return None


def pooling_warning(pooling: str, model_name: Optional[str]) -> Optional[str]:
    """A warning for zero-shot with a pooling the checkpoint was not trained to compare."""
    if pooling == "mean":
        return None
    declared = declared_pooling(model_name)
    if declared == pooling:
        return None
    trained = (f"it declares {declared} pooling" if declared
               else "most sentence-embedding checkpoints (all-MiniLM, m3e) were trained with mean pooling")
    return (f"Zero-shot compares the docs' {pooling} vectors with the descriptions', and the checkpoint "
            f"{model_name!r} was not trained to make those comparable ({trained}). Set pooling = \"mean\" "
            f"in the component's model block for zero-shot and few-shot use.")
