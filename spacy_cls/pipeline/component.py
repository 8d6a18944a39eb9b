"""The `cls_classifier` and `cls_classifier_multilabel` components.

They are spaCy's `textcat` / `textcat_multilabel` (labels, initialisation, scoring,
serialisation) with three changes: the model is a BERT-family encoder read at its
[CLS] position; every doc, empty ones too, also gets `doc._.cls_vector`; and the
loss is cross-entropy, whose gradient reaches the head's logits unscaled. The
differences from textcat are listed in docs/textcat.md.
"""
import os
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy
import torch
from spacy.language import Language
from spacy.pipeline import MultiLabel_TextCategorizer, TextCategorizer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from . import scorer as _scorer  # noqa: F401  (registers spacy_cls.textcat_scorer.v1)
from ..decisions.apply import DecisionSettings, annotate, check_probability, check_temperature, head_scores, settings_of
from ..decisions.thresholds import check_abstain_threshold, check_thresholds
from ..decisions.uncertainty import check_measure
from ..decisions.weights import BALANCED, check_class_weights, gold_matrix, resolve_class_weights, weighted_loss
from .extensions import CLS_LABELS, CLS_UNCERTAINTY, CLS_VECTOR, install_extensions
from .hooks import install_vector_hooks
from .predictions import ClsScores, vectors_of
from ..layers.encoder import apply_configured_settings, configured_settings, n_cut_docs
from ..fewshot.descriptions import DEFAULT_TEMPERATURE
from ..fewshot.initialize import CFG_KEY as FEW_SHOT_CFG_KEY, FewShotSettings, apply_few_shot
from ..layers.head import NORMALIZE_FEATURES
from ..layers.onnx_encoder import graph_beside_model
from ..models.loaders import default_model_name
from .spans import record_source, register_source
from .validation import check_examples, check_finite_loss, check_initialize_data, check_initialized, label_list

MODEL_CONFIG = """
[model]
@architectures = "spacy_cls.ClsClassifier.v1"
# A Hugging Face model id or a local folder; null picks one by the pipeline's language.
name = null
pooling = "cls"
freeze = false
max_length = null
long_text = "truncate"
stride = 128
# Under long_text = "windows": the most windows read per doc (null: all).
max_windows = 16
exclusive_classes = {exclusive}
dropout = 0.1
mixed_precision = false
nO = null
"""
DEFAULT_MODEL = Config().from_str(MODEL_CONFIG.format(exclusive="true"))["model"]
DEFAULT_MULTILABEL_MODEL = Config().from_str(MODEL_CONFIG.format(exclusive="false"))["model"]

MULTILABEL_SCORE_WEIGHTS: Dict[str, Optional[float]] = {
    "cats_score": 1.0,
    "cats_score_desc": None,
    "cats_micro_p": None,
    "cats_micro_r": None,
    "cats_micro_f": None,
    "cats_macro_p": None,
    "cats_macro_r": None,
    "cats_macro_f": None,
    "cats_macro_auc": None,
    "cats_f_per_type": None,
}
# Weight 0.0, not None: `spacy train` shows accuracy as a column without letting it
# choose the best model.
SCORE_WEIGHTS: Dict[str, Optional[float]] = {**MULTILABEL_SCORE_WEIGHTS, _scorer.ACCURACY_KEY: 0.0,
                                              _scorer.COVERAGE_KEY: None, _scorer.COVERED_ACCURACY_KEY: None}

_FORK_GUARD_INSTALLED = False


def guard_forked_torch() -> None:
    """`nlp.pipe(..., n_process=n)` forks on Linux, and a torch that ran on several
    threads (GNU OpenMP) before the fork deadlocks in the child. Forked children run
    torch on one thread, as PyTorch's DataLoader workers do; call
    `torch.set_num_threads` in a child to change it."""
    global _FORK_GUARD_INSTALLED
    if not _FORK_GUARD_INSTALLED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))
        _FORK_GUARD_INSTALLED = True


class ClsClassifierMixin:
    """What both components add to spaCy's text categorisers."""

    model: Model
    _lang: Optional[str]
    # Marks the component for pipeline.spans.is_cls_component.
    gives_cls_vectors = True
    # True: doc.vector, span.vector and .similarity use the [CLS] vectors (spacy_cls.pipeline.hooks).
    set_doc_vector: bool = False
    # Key under which docs name this component as the encoder of their spans (spacy_cls.pipeline.spans).
    vector_source: Optional[str] = None
    # Updates made in this process; named when the loss stops being finite.
    _n_updates: int = 0
    # True while initialize runs, after its own checks of the data.
    _data_checked: bool = False

    # Decision settings (docs/decisions.md), from the factory's config; each is checked
    # when set, so no value that could give NaN scores or meaningless labels is held.
    class_weights = None
    _temperature: float = 1.0
    _thresholds: Optional[Dict[str, float]] = None
    _abstain_threshold: Optional[float] = None
    _uncertainty: str = "margin"

    def _set_decision_settings(self, class_weights, uncertainty, threshold, **settings) -> None:
        check_class_weights(class_weights, self.name)
        check_probability(threshold, self.name, "threshold")
        self.class_weights = class_weights
        self.uncertainty = uncertainty
        for key, value in settings.items():
            setattr(self, key, value)

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value) -> None:
        value = check_temperature(value, self.name)
        if value != 1.0 and self.model.attrs.get("multi_label"):
            raise ValueError(f"[{self.name}] temperature applies to exclusive classes; a multi-label classifier keeps 1.0.")
        self._temperature = value

    @property
    def abstain_threshold(self) -> Optional[float]:
        return self._abstain_threshold

    @abstain_threshold.setter
    def abstain_threshold(self, value) -> None:
        if value is not None and self.model.attrs.get("multi_label"):
            raise ValueError(f"[{self.name}] abstain_threshold applies to exclusive classes; use thresholds.")
        self._abstain_threshold = check_abstain_threshold(value, self.name)

    @property
    def thresholds(self) -> Optional[Dict[str, float]]:
        """{label: threshold} as configured (a key may be a label's escaped config form;
        `decision_settings().thresholds` has the labels)."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, value) -> None:
        check_thresholds(value, self.name)
        if value and not self.model.attrs.get("multi_label"):
            raise ValueError(f"[{self.name}] thresholds apply to multi-label classifiers; use abstain_threshold.")
        self._thresholds = {key: float(t) for key, t in value.items()} if value is not None else None
        if value is not None and self.labels:
            self.decision_settings()  # a label it does not have fails now

    @property
    def uncertainty(self) -> str:
        return self._uncertainty

    @uncertainty.setter
    def uncertainty(self, value: str) -> None:
        check_measure(value, self.name)
        self._uncertainty = value

    def decision_settings(self) -> DecisionSettings:
        """The settings that decide this component's labels (docs/decisions.md), checked:
        the same object `set_annotations`, the scorer, `apply`, `rank-uncertain` and
        `tune` decide with."""
        return settings_of(self)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, object]:
        """spaCy's Pipe.score, with the component's decision settings for its scorer
        (`decisions`); a `threshold` given here replaces the global threshold."""
        settings = self.decision_settings()
        if kwargs.get("threshold") is not None and settings.multi_label:
            settings = settings.replace(threshold=kwargs["threshold"])
        kwargs.setdefault("decisions", settings)
        return super().score(examples, **kwargs)

    @property
    def encoder(self) -> Model:
        return self.model.get_ref("encoder")

    @property
    def n_cut_docs(self) -> int:
        """Docs that lost text in this process: longer than the encoder's maximum length
        (long_text='truncate'), or needing more than max_windows windows ('windows')."""
        return n_cut_docs(self.encoder)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()):
        with self._config_wins():
            loaded = super().from_bytes(bytes_data, exclude=exclude)
        self.decision_settings()  # settings read with the labels (and cfg) are checked now
        return loaded

    def from_disk(self, path, *, exclude=tuple()):
        with self._config_wins(), graph_beside_model(self._own_encoder(), path, saving=False):
            loaded = super().from_disk(path, exclude=exclude)
        self.decision_settings()
        return loaded

    def to_disk(self, path, *, exclude=tuple()):
        with graph_beside_model(self._own_encoder(), path, saving=True):
            return super().to_disk(path, exclude=exclude)

    def _own_encoder(self) -> Optional[Model]:
        return self.model.get_ref("encoder") if self.model.has_ref("encoder") else None

    @contextmanager
    def _config_wins(self):
        encoder = self.encoder if self.model.has_ref("encoder") else None
        own_encoder = encoder is not None and encoder.name == "hf_cls_encoder"
        configured = configured_settings(encoder) if own_encoder else None
        yield
        if own_encoder:
            apply_configured_settings(encoder, configured)

    def predict(self, docs: Iterable[Doc]) -> ClsScores:
        """Scores (n_docs x n_labels), as textcat's `predict` returns them, with the
        docs' [CLS] vectors attached for `set_annotations`."""
        docs = list(docs)
        check_initialized(self.model, self.name)
        settings = self.decision_settings()
        encoded = self.encoder.predict(docs)
        scores = head_scores(self.model, encoded.features, settings)
        return ClsScores.of(scores, self.model.ops.to_numpy(encoded.cls))

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        """Set doc.cats from `scores` and doc._.cls_vector from the vectors `predict`
        attached to them; scores from elsewhere get their vectors from the encoder."""
        docs = list(docs)
        cls_vectors = vectors_of(scores)
        scores = numpy.asarray(self.model.ops.to_numpy(scores))
        if scores.shape[0] != len(docs):
            raise ValueError(
                f"{self.name}: set_annotations got {scores.shape[0]} rows of scores for {len(docs)} "
                f"docs. Pass the docs and what `predict` returned for those same docs."
            )
        if cls_vectors is None:
            cls_vectors = self.model.ops.to_numpy(self.encoder.predict(docs).cls)
        cls_vectors = cls_vectors.astype(numpy.float32, copy=False)
        labels = self.labels
        for i, doc in enumerate(docs):
            for j, label in enumerate(labels):
                doc.cats[label] = float(scores[i, j])
            doc._.set(CLS_VECTOR, numpy.array(cls_vectors[i], dtype=numpy.float32))
        annotate(docs, scores, self.decision_settings(), CLS_LABELS, CLS_UNCERTAINTY)
        if self.vector_source is None:
            self.vector_source = register_source(self)
        for doc in docs:
            record_source(doc, self.vector_source, preferred=self.set_doc_vector)
            if self.set_doc_vector:
                install_vector_hooks(doc)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        examples = list(examples)
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        validate_examples(examples, f"{type(self).__name__}.update")
        exclusive = not self.model.attrs.get("multi_label")
        # An exclusive classifier cannot skip a label it does not know: the doc would have none.
        check_examples(examples, "batch", self.name, exclusive, self.labels if exclusive else None)
        # Our own encoder reads the raw text, so every example counts; an encoder that
        # reads a `transformer` component gets nothing for a batch without spaCy tokens
        # (the transformer skips it, as spaCy's textcat does), so neither can this.
        if not self.reads_raw_text and not any(len(eg.predicted) for eg in examples):
            return losses
        check_initialized(self.model, self.name)
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        self._n_updates += 1
        check_finite_loss(loss, self._n_updates, self.name)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Floats2d) -> Tuple[float, Floats2d]:
        """Mean cross-entropy (softmax) or binary cross-entropy (sigmoid) per doc,
        against hard (0/1) or soft cats; the gradient is with respect to the head's
        logits: (p - y) / n_docs.
        `scores` is what `predict` returns, or the scores of `begin_update`."""
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.get_loss")
        self._validate_categories(examples)
        truths, not_missing = self._examples_to_truth(examples)
        ops = self.model.ops
        scores = ops.asarray2f(numpy.asarray(scores) if isinstance(scores, ClsScores) else scores)
        not_missing = ops.asarray(not_missing)
        weights = self._loss_weights()
        if weights is not None:
            weights = ops.asarray1f(numpy.asarray(weights, dtype="float32"))
        return weighted_loss(scores, truths, not_missing, weights,
                             multi_label=bool(self.model.attrs.get("multi_label")), xp=ops.xp)

    def _examples_to_truth(self, examples: Iterable[Example]):
        """textcat's truth matrix; an exclusive classifier's soft rows, which may sum to
        1 within validation.SOFT_SUM_TOLERANCE, are divided by their sum (a hard row sums
        to exactly 1 and is unchanged)."""
        truths, not_missing = super()._examples_to_truth(examples)
        if not self.model.attrs.get("multi_label") and truths.shape[0]:
            sums = truths.sum(axis=1, keepdims=True)
            truths = truths / self.model.ops.xp.where(sums > 0, sums, 1.0)
        return truths, not_missing

    def _loss_weights(self) -> Optional[List[float]]:
        """One weight per label (docs/decisions.md), or None: "balanced" was computed at
        initialize and saved in the component's cfg; a table is read from the config."""
        if self.class_weights is None:
            return None
        if self.class_weights == BALANCED:
            weights = self.cfg.get("balanced_class_weights")
            if weights is None or len(weights) != len(self.labels):
                raise ValueError(
                    f"[{self.name}] class_weights = \"balanced\" is computed from the training "
                    f"examples at initialize: call nlp.initialize() before training."
                )
            return weights
        return resolve_class_weights(self.class_weights, self.labels, None,
                                     multi_label=bool(self.model.attrs.get("multi_label")), component=self.name)

    def _initialize_class_weights(self, get_examples: Callable[[], Iterable[Example]]) -> None:
        if self.class_weights == BALANCED:
            truths = gold_matrix(get_examples(), self.labels)
            self.cfg["balanced_class_weights"] = resolve_class_weights(
                BALANCED, self.labels, truths, multi_label=bool(self.model.attrs.get("multi_label")),
                component=self.name,
            )
        else:
            self.cfg.pop("balanced_class_weights", None)
            self._loss_weights()  # a table naming an unknown label fails here, not at the first update

    def _validate_categories(self, examples: Iterable[Example]) -> None:
        if self._data_checked:
            return
        check_examples(examples, "batch", self.name, not self.model.attrs.get("multi_label"))

    @property
    def reads_raw_text(self) -> bool:
        """True for the component's own encoder; False when it reads the rows of a
        `transformer` component, which needs spaCy tokens."""
        return self.encoder.name == "hf_cls_encoder"

    @contextmanager
    def _initializing(self, get_examples: Callable[[], Iterable[Example]], nlp, labels):
        """Check the data (validation.check_initialize_data), then let spaCy's
        initialize run without checking it again with the stricter per-batch rule:
        spaCy's placeholder example for "no data" has no cats at all."""
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        self._pick_default_encoder()
        exclusive = not self.model.attrs.get("multi_label")
        check_initialize_data(
            get_examples, nlp=nlp, labels=labels, current_labels=self.labels, component=self.name, exclusive=exclusive
        )
        self._data_checked = True
        try:
            yield
        finally:
            self._data_checked = False

    def _few_shot_settings(self, get_examples, labels, descriptions, templates, temperature, contrastive):
        """The label list and the checked few-shot settings; with neither labels nor
        labelled examples, the labels are those of the descriptions."""
        labels = label_list(labels, self.name)
        if labels is None and descriptions and not self.labels and not any(eg.reference.cats for eg in get_examples()):
            labels = list(descriptions)
        known = list(dict.fromkeys([*self.labels, *(labels or [])])) if (labels or self.labels) else None
        settings = FewShotSettings.of(known, descriptions, templates, temperature, contrastive, self.name)
        return labels, settings

    def _initialize_few_shot(self, get_examples, settings: "FewShotSettings") -> None:
        self.cfg.pop(FEW_SHOT_CFG_KEY, None)
        self.model.attrs[NORMALIZE_FEATURES] = False
        if settings.active:
            apply_few_shot(self, get_examples, settings)

    def _pick_default_encoder(self) -> None:
        encoder = self.encoder
        if not encoder.attrs.get("name") and "name" in encoder.attrs:
            encoder.attrs["name"] = default_model_name(self._lang)


class ClsClassifier(ClsClassifierMixin, TextCategorizer):
    """Exclusive classes: softmax over the labels, one gold label a doc."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "cls_classifier",
        *,
        threshold: float = 0.0,
        scorer: Optional[Callable] = None,
        lang: Optional[str] = None,
        set_doc_vector: bool = False,
        class_weights=None,
        temperature: float = 1.0,
        abstain_threshold: Optional[float] = None,
        uncertainty: str = "margin",
    ) -> None:
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._lang = lang
        self.set_doc_vector = set_doc_vector
        self._set_decision_settings(class_weights, uncertainty, threshold, temperature=temperature,
                                    abstain_threshold=abstain_threshold)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp=None,
        labels=None,
        positive_label=None,
        label_descriptions: Optional[Dict[str, str]] = None,
        description_templates: Optional[List[str]] = None,
        description_temperature: float = DEFAULT_TEMPERATURE,
        contrastive: Optional[Dict[str, Any]] = None,
    ):
        """spaCy's textcat initialize, plus the few-shot settings (docs/fewshot.md):
        `label_descriptions` (a description per label: the head then works before any
        example, and is the warm start of what follows), `description_templates`,
        `description_temperature`, and `contrastive` (the contrastive stage on the
        encoder, then the head fitted on the examples)."""
        labels, few_shot = self._few_shot_settings(get_examples, labels, label_descriptions, description_templates,
                                                   description_temperature, contrastive)
        with self._initializing(get_examples, nlp, labels):
            super().initialize(get_examples, nlp=nlp, labels=labels, positive_label=positive_label)
        self._initialize_class_weights(get_examples)
        self.decision_settings()
        self._initialize_few_shot(get_examples, few_shot)


class ClsClassifierMultilabel(ClsClassifierMixin, MultiLabel_TextCategorizer):
    """Independent labels: a sigmoid per label, `threshold` for the scorer."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "cls_classifier_multilabel",
        *,
        threshold: float = 0.5,
        scorer: Optional[Callable] = None,
        lang: Optional[str] = None,
        set_doc_vector: bool = False,
        class_weights=None,
        thresholds: Optional[Dict[str, float]] = None,
        uncertainty: str = "margin",
    ) -> None:
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._lang = lang
        self.set_doc_vector = set_doc_vector
        self._set_decision_settings(class_weights, uncertainty, threshold, thresholds=thresholds)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp=None,
        labels=None,
        label_descriptions: Optional[Dict[str, str]] = None,
        description_templates: Optional[List[str]] = None,
        description_temperature: float = DEFAULT_TEMPERATURE,
        contrastive: Optional[Dict[str, Any]] = None,
    ):
        """spaCy's textcat_multilabel initialize, plus the few-shot settings of
        `ClsClassifier.initialize` (docs/fewshot.md)."""
        labels, few_shot = self._few_shot_settings(get_examples, labels, label_descriptions, description_templates,
                                                   description_temperature, contrastive)
        with self._initializing(get_examples, nlp, labels):
            super().initialize(get_examples, nlp=nlp, labels=labels)
        self._initialize_class_weights(get_examples)
        self.decision_settings()  # thresholds naming a label the component lacks fail here
        self._initialize_few_shot(get_examples, few_shot)


@Language.factory(
    "cls_classifier",
    assigns=["doc.cats", f"doc._.{CLS_VECTOR}", f"doc._.{CLS_LABELS}", f"doc._.{CLS_UNCERTAINTY}"],
    default_config={
        "threshold": 0.0,
        "set_doc_vector": False,
        "class_weights": None,
        "temperature": 1.0,
        "abstain_threshold": None,
        "uncertainty": "margin",
        "model": DEFAULT_MODEL,
        "scorer": {"@scorers": "spacy_cls.textcat_scorer.v1"},
    },
    default_score_weights=SCORE_WEIGHTS,
)
def make_cls_classifier(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    scorer: Optional[Callable],
    set_doc_vector: bool,
    class_weights: Optional[Union[str, Dict[str, float]]] = None,
    temperature: float = 1.0,
    abstain_threshold: Optional[float] = None,
    uncertainty: str = "margin",
) -> ClsClassifier:
    install_extensions()
    guard_forked_torch()
    component = ClsClassifier(
        nlp.vocab, model, name, threshold=threshold, scorer=scorer, lang=nlp.lang, set_doc_vector=set_doc_vector,
        class_weights=class_weights, temperature=temperature, abstain_threshold=abstain_threshold,
        uncertainty=uncertainty,
    )
    component.vector_source = register_source(component, nlp)
    return component


@Language.factory(
    "cls_classifier_multilabel",
    assigns=["doc.cats", f"doc._.{CLS_VECTOR}", f"doc._.{CLS_LABELS}", f"doc._.{CLS_UNCERTAINTY}"],
    default_config={
        "threshold": 0.5,
        "set_doc_vector": False,
        "class_weights": None,
        "thresholds": None,
        "uncertainty": "margin",
        "model": DEFAULT_MULTILABEL_MODEL,
        "scorer": {"@scorers": "spacy_cls.textcat_multilabel_scorer.v1"},
    },
    default_score_weights=MULTILABEL_SCORE_WEIGHTS,
)
def make_cls_classifier_multilabel(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    scorer: Optional[Callable],
    set_doc_vector: bool,
    class_weights: Optional[Union[str, Dict[str, float]]] = None,
    thresholds: Optional[Dict[str, float]] = None,
    uncertainty: str = "margin",
) -> ClsClassifierMultilabel:
    install_extensions()
    guard_forked_torch()
    component = ClsClassifierMultilabel(
        nlp.vocab, model, name, threshold=threshold, scorer=scorer, lang=nlp.lang, set_doc_vector=set_doc_vector,
        class_weights=class_weights, thresholds=thresholds, uncertainty=uncertainty,
    )
    component.vector_source = register_source(component, nlp)
    return component
