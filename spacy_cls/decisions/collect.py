"""Score a labelled set once: the logits of every doc, kept for tuning and metrics in numpy.

The scores are computed from the logits by `apply.scores_from_logits` (the function the
component's `predict` calls) and decided by `apply.decide` (what sets doc._.cls_labels),
so the figures here are those of the pipeline on the same docs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy

from .apply import DecisionSettings, decide, head_logits, scores_from_logits
from .calibration import brier_score, expected_calibration_error, nll
from .thresholds import f1_scores


@dataclass
class ScoredSet:
    """What `collect` returns: the component's labels, logits (n_docs, n_labels), the
    gold matrix (1 / 0) and which gold values are given (multi-label docs may leave a
    label out), the texts, and (if asked) the encoder's features."""

    labels: List[str]
    logits: numpy.ndarray
    gold: numpy.ndarray
    multi_label: bool
    texts: List[str]
    known: Optional[numpy.ndarray] = None
    features: Optional[numpy.ndarray] = None
    component: str = "classifier"

    def probabilities(self, temperature: float = 1.0) -> numpy.ndarray:
        """The float32 scores the pipeline gives these docs at this temperature."""
        return scores_from_logits(self.logits, multi_label=self.multi_label,
                                  temperature=1.0 if self.multi_label else temperature)

    def settings(self, **values) -> DecisionSettings:
        values.setdefault("threshold", 0.5 if self.multi_label else 0.0)
        return DecisionSettings(labels=tuple(self.labels), multi_label=self.multi_label, component=self.component,
                                **values)


def read_docbin(nlp, path: Union[str, Path]) -> list:
    from spacy.tokens import DocBin

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.suffix != ".spacy":
        raise ValueError(
            f"{path}: expected a .spacy file (a DocBin with doc.cats). Make one from TSV, CSV or "
            f"JSONL with `python -m spacy_cls convert`."
        )
    docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    if not docs:
        raise ValueError(f"{path} holds no docs.")
    return docs


def gold_of(docs: Sequence, labels: Sequence[str], source: str) -> numpy.ndarray:
    gold = numpy.zeros((len(docs), len(labels)), dtype="float64")
    known = set(labels)
    for i, doc in enumerate(docs):
        if not doc.cats:
            raise ValueError(f"{source}: doc {i + 1} has no cats; every doc needs its gold labels.")
        extra = set(doc.cats) - known
        if extra:
            raise ValueError(
                f"{source}: doc {i + 1} has labels the component does not know: {sorted(extra)} "
                f"(its labels: {list(labels)})."
            )
        for j, label in enumerate(labels):
            gold[i, j] = 1.0 if doc.cats.get(label, 0.0) >= 0.5 else 0.0
    return gold


def collect(nlp, component_name: str, data: Union[str, Path, Iterable], *, batch_size: Optional[int] = None,
            keep_features: bool = False) -> ScoredSet:
    """Run the pipeline's earlier components and the classifier's encoder once over
    `data` (a .spacy path, or docs with gold cats) and keep the head's logits, in
    batches of `batch_size` docs (default: the pipeline's, as nlp.pipe and nlp.evaluate)."""
    component = nlp.get_pipe(component_name)
    labels = list(component.labels)
    batch_size = batch_size or nlp.batch_size
    if isinstance(data, (str, Path)):
        source = str(data)
        gold_docs = read_docbin(nlp, data)
    else:
        source = "the docs"
        gold_docs = list(data)
    multi_label = bool(component.model.attrs.get("multi_label"))
    gold = gold_of(gold_docs, labels, source)
    known = numpy.array([[label in doc.cats for label in labels] for doc in gold_docs], dtype=bool)
    if not multi_label:
        known[:] = True
    texts = [doc.text for doc in gold_docs]
    names = nlp.pipe_names
    before = names[: names.index(component_name)]
    disabled = [name for name in names if name not in before]
    with nlp.select_pipes(disable=disabled):
        docs = list(nlp.pipe(texts, batch_size=batch_size))
    chunks, kept = [], []
    for start in range(0, len(docs), batch_size):
        features = component.encoder.predict(docs[start:start + batch_size]).features
        logits = head_logits(component.model, features)
        if logits is None:
            raise ValueError(f"{component_name}: its head is not a spacy_cls head; its decisions cannot be tuned here.")
        chunks.append(logits)
        if keep_features:
            kept.append(numpy.asarray(component.model.ops.to_numpy(features), dtype="float32"))
    logits = numpy.concatenate(chunks) if chunks else numpy.zeros((0, len(labels)))
    return ScoredSet(labels, logits, gold, multi_label, texts, known=known,
                     features=numpy.concatenate(kept) if kept else None, component=component_name)


def metrics(scores: numpy.ndarray, gold: numpy.ndarray, settings: DecisionSettings,
            known: Optional[numpy.ndarray] = None) -> Dict[str, object]:
    """The figures of the decisions on float32 `scores` under `settings`.

    Exclusive classes, with abstained docs counted both ways:
    - `macro_f1`, `micro_f1`, `accuracy`: over every doc; a doc with no label misses its
      gold label (an error). These are what the scorer reports (`cats_macro_f`,
      `cats_micro_f`, `cats_accuracy`).
    - `covered_macro_f1`, `covered_micro_f1`, `covered_accuracy`: over the docs that got a
      label only (abstained docs left out); `coverage` is their share.
    Multi-label: `macro_f1`, `micro_f1` with each label's threshold. Both: `ece`, `brier`
    of the scores."""
    decided = decide(scores, settings)
    out: Dict[str, object] = {}
    counted = f1_scores(decided, gold, known)
    out["macro_f1"], out["micro_f1"] = counted["macro_f1"], counted["micro_f1"]
    out["per_label_f1"] = dict(zip(settings.labels, counted["per_label_f1"]))
    probs = numpy.asarray(scores, dtype="float32").astype("float64")
    out["ece"] = expected_calibration_error(probs, gold, multi_label=settings.multi_label)
    out["brier"] = brier_score(probs, gold)
    if not settings.multi_label:
        covered = decided.any(axis=1)
        correct = covered & (decided.argmax(axis=1) == numpy.asarray(gold).argmax(axis=1))
        out["accuracy"] = float(correct.mean()) if len(correct) else float("nan")
        out["coverage"] = float(covered.mean()) if len(covered) else float("nan")
        out["n_abstained"] = int((~covered).sum())
        if covered.any():
            on_covered = f1_scores(decided[covered], numpy.asarray(gold)[covered])
            out["covered_accuracy"] = float(correct[covered].mean())
            out["covered_macro_f1"], out["covered_micro_f1"] = on_covered["macro_f1"], on_covered["micro_f1"]
        else:
            out["covered_accuracy"] = out["covered_macro_f1"] = out["covered_micro_f1"] = float("nan")
    return out


def evaluate(
    scored: ScoredSet,
    *,
    temperature: float = 1.0,
    threshold: Optional[float] = None,
    thresholds: Optional[Mapping[str, float]] = None,
    abstain_threshold: Optional[float] = None,
    settings: Optional[DecisionSettings] = None,
) -> Dict[str, object]:
    """The figures (see `metrics`) of the pipeline on `scored` under the given settings,
    and for exclusive classes the NLL and the temperature."""
    if settings is None:
        values = {"thresholds": thresholds, "abstain_threshold": abstain_threshold}
        if threshold is not None:
            values["threshold"] = threshold
        if not scored.multi_label:
            values["temperature"] = temperature
        settings = scored.settings(**values)
    out = metrics(scored.probabilities(settings.temperature), scored.gold, settings, scored.known)
    if not scored.multi_label:
        out["nll"] = nll(scored.logits, scored.gold, settings.temperature)
        out["temperature"] = settings.temperature
    return out
