"""Score a labelled set once: the logits of every doc, kept for tuning and metrics in numpy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy

from .calibration import brier_score, expected_calibration_error, nll, sigmoid, softmax
from .thresholds import decide, f1_scores, threshold_vector


@dataclass
class ScoredSet:
    """What `collect` returns: the component's labels, logits (n_docs, n_labels) and the
    gold matrix (1 / 0), and the texts."""

    labels: List[str]
    logits: numpy.ndarray
    gold: numpy.ndarray
    multi_label: bool
    texts: List[str]

    def probabilities(self, temperature: float = 1.0) -> numpy.ndarray:
        if self.multi_label:
            return sigmoid(self.logits)
        return softmax(self.logits, temperature)


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


def collect(nlp, component_name: str, data: Union[str, Path, Iterable], *, batch_size: int = 64) -> ScoredSet:
    """Run the pipeline's earlier components and the classifier's encoder once over
    `data` (a .spacy path, or docs with gold cats) and keep the head's logits."""
    component = nlp.get_pipe(component_name)
    labels = list(component.labels)
    if isinstance(data, (str, Path)):
        source = str(data)
        gold_docs = read_docbin(nlp, data)
    else:
        source = "the docs"
        gold_docs = list(data)
    gold = gold_of(gold_docs, labels, source)
    texts = [doc.text for doc in gold_docs]
    names = nlp.pipe_names
    before = names[: names.index(component_name)]
    disabled = [name for name in names if name not in before]
    chunks = []
    with nlp.select_pipes(disable=disabled):
        docs = list(nlp.pipe(texts, batch_size=batch_size))
    from .apply import head_logits

    for start in range(0, len(docs), batch_size):
        features = component.encoder.predict(docs[start:start + batch_size]).features
        chunks.append(head_logits(component.model, features))
    logits = numpy.concatenate(chunks) if chunks else numpy.zeros((0, len(labels)))
    return ScoredSet(labels, logits, gold, bool(component.model.attrs.get("multi_label")), texts)


def evaluate(
    scored: ScoredSet,
    *,
    temperature: float = 1.0,
    threshold: float = 0.5,
    thresholds: Optional[Dict[str, float]] = None,
    abstain_threshold: Optional[float] = None,
) -> Dict[str, object]:
    """Micro/macro-F1 of the decisions, accuracy (exclusive), and the calibration
    measures (ECE, Brier, NLL) of the scores, under the given settings."""
    probs = scored.probabilities(temperature)
    cut = threshold_vector(scored.labels, threshold, thresholds) if scored.multi_label else None
    decided = decide(probs, multi_label=scored.multi_label, threshold=threshold, thresholds=cut,
                     abstain_threshold=abstain_threshold)
    out: Dict[str, object] = f1_scores(decided, scored.gold)
    out["per_label_f1"] = dict(zip(scored.labels, out["per_label_f1"]))
    out["ece"] = expected_calibration_error(probs, scored.gold, multi_label=scored.multi_label)
    out["brier"] = brier_score(probs, scored.gold)
    if not scored.multi_label:
        correct = probs.argmax(axis=1) == scored.gold.argmax(axis=1)
        out["accuracy"] = float(correct.mean())
        out["nll"] = nll(scored.logits, scored.gold, temperature)
        out["temperature"] = float(temperature)
        covered = decided.any(axis=1)
        out["coverage"] = float(covered.mean())
        out["covered_accuracy"] = float(correct[covered].mean()) if covered.any() else float("nan")
    return out
