"""What a component's `initialize` does with label descriptions and a contrastive block,
after spaCy's own initialisation has set its labels and shapes."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy
from spacy.training import Example
from wasabi import msg

from ..layers.head import NORMALIZE_FEATURES
from .contrastive import ContrastiveSettings, _features, run_contrastive_stage
from .descriptions import (
    DEFAULT_TEMPERATURE,
    check_description_settings,
    description_head,
    description_prompts,
    label_directions,
    pooling_warning,
    unit_rows,
)
from .head_fit import fit_head

# Saved in the component's cfg (what the head was built from).
CFG_KEY = "few_shot"


@dataclass(frozen=True)
class FewShotSettings:
    descriptions: Optional[Dict[str, str]]
    templates: Optional[List[str]]
    temperature: float
    contrastive: Optional[ContrastiveSettings]

    @property
    def active(self) -> bool:
        return self.descriptions is not None or self.contrastive is not None

    @classmethod
    def of(cls, labels: Optional[Sequence[str]], descriptions: Optional[Mapping[str, str]],
           templates: Optional[Sequence[str]], temperature: float, contrastive: Optional[Mapping],
           component: str) -> "FewShotSettings":
        """Checked before any weight changes: bad settings fail initialize at once."""
        check_description_settings(labels, descriptions, templates, temperature, component)
        return cls(dict(descriptions) if descriptions is not None else None,
                   list(templates) if templates is not None else None,
                   float(temperature), ContrastiveSettings.from_config(contrastive, component))


def labelled_examples(get_examples: Callable[[], Iterable[Example]], labels: Sequence[str]):
    """Texts and their 0/1 label matrix, from the examples that carry cats."""
    texts: List[str] = []
    rows: List[List[float]] = []
    for eg in get_examples():
        cats = eg.reference.cats
        if not cats:
            continue
        texts.append(eg.reference.text)
        rows.append([1.0 if cats.get(label, 0.0) >= 0.5 else 0.0 for label in labels])
    return texts, numpy.asarray(rows, dtype="float32").reshape(len(rows), len(labels))


def apply_few_shot(component, get_examples: Callable[[], Iterable[Example]], settings: FewShotSettings) -> None:
    name = component.name
    encoder = component.encoder
    if encoder.name != "hf_cls_encoder":
        raise ValueError(
            f"[{name}] label_descriptions and the contrastive stage need the component's own encoder "
            f"(spacy_cls.ClsClassifier.v1 or an spacy_cls.HFClsEncoder.v1 encoder); this one is "
            f"'{encoder.name}'. Remove them from [initialize.components.{name}], or give the component "
            f"its own encoder."
        )
    labels = list(component.labels)
    check_description_settings(labels, settings.descriptions, settings.templates, settings.temperature, name)
    multi_label = bool(component.model.attrs.get("multi_label"))
    pooling = encoder.attrs.get("pooling", "cls")
    prompts = description_prompts(labels, settings.descriptions, settings.templates) if settings.descriptions else None
    report = None
    if settings.contrastive is not None:
        texts, gold = labelled_examples(get_examples, labels)
        if not texts:
            raise ValueError(
                f"[{name}] the contrastive stage trains on labelled examples, and initialize got none. "
                f"Give the training corpus (spacy train does), or remove [initialize.components.{name}.contrastive]."
            )
        anchor_texts, anchor_gold = texts, gold
        if prompts:
            # The descriptions take part as examples of their labels.
            extra = [(prompt, [1.0 if other == label else 0.0 for other in labels])
                     for label in labels for prompt in prompts[label]]
            anchor_texts = texts + [prompt for prompt, _ in extra]
            anchor_gold = numpy.concatenate([gold, numpy.asarray([row for _, row in extra], dtype="float32")])
        if settings.contrastive.epochs > 0:
            report = run_contrastive_stage(encoder, anchor_texts, anchor_gold, settings.contrastive, component=name)
    W0 = b0 = None
    if prompts:
        vectors = {label: _features(encoder, prompts[label]) for label in labels}
        W0, b0 = description_head(label_directions(vectors, labels), settings.temperature, multi_label=multi_label)
        if settings.contrastive is None:
            warning = pooling_warning(pooling, encoder.attrs.get("name"))
            if warning:
                warnings.warn(f"[{name}] {warning}", UserWarning, stacklevel=3)
    if settings.contrastive is not None:
        features = unit_rows(numpy.asarray(_features(encoder, texts), dtype="float64"))
        W, b = fit_head(features, gold, multi_label=multi_label, prior_W=W0, prior_b=b0)
    else:
        W, b = W0, b0
    set_head(component, W, b)
    component.model.attrs[NORMALIZE_FEATURES] = True
    component.cfg[CFG_KEY] = {
        "label_descriptions": settings.descriptions,
        "description_templates": settings.templates,
        "description_temperature": settings.temperature if settings.descriptions else None,
        "contrastive": settings.contrastive.as_dict() if settings.contrastive else None,
        "examples": len(texts) if settings.contrastive is not None else 0,
    }
    if report is not None:
        for line in report.lines():
            msg.info(f"{name}: {line}")


def set_head(component, W: numpy.ndarray, b: numpy.ndarray) -> None:
    output_layer = component.model.get_ref("output_layer")
    linear = output_layer.layers[0] if output_layer.layers else output_layer
    ops = linear.ops
    if tuple(linear.get_param("W").shape) != tuple(W.shape):
        raise ValueError(f"[{component.name}] the head is {linear.get_param('W').shape}, the fitted weights "
                         f"{W.shape}: initialize the component before its few-shot settings.")
    linear.set_param("W", ops.asarray2f(W))
    linear.set_param("b", ops.asarray1f(b))


__all__ = ["DEFAULT_TEMPERATURE", "CFG_KEY", "FewShotSettings", "apply_few_shot"]
