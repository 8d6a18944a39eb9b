"""Rank unlabelled texts by the classifier's uncertainty and write the most uncertain as
JSONL an annotation tool imports.

Formats:
- "prodigy" (default): {"text": ..., "meta": {...}} a line, what Prodigy's JSONL loader
  reads (https://prodi.gy/docs/api-loaders); Label Studio also imports such flat records,
  each key becoming a task variable ($text) (https://labelstud.io/guide/tasks).
- "label-studio": {"data": {"text": ..., ...}}, Label Studio's task format
  (https://labelstud.io/guide/task_format).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy

FORMATS = ("prodigy", "label-studio")


@dataclass
class InputText:
    line_no: int
    text: str
    meta: Dict = field(default_factory=dict)


@dataclass
class Skipped:
    line_no: int
    reason: str


def read_texts(path: Union[str, Path], *, text_key: str = "text") -> Iterator[Union[InputText, Skipped]]:
    """Texts to rank, one per line: .jsonl (an object with `text_key`; its other keys
    are kept as meta) or plain text. Every line gives an InputText or a Skipped with
    its 1-based line number."""
    path = Path(path)
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    with path.open(encoding="utf8", errors="strict") as file:
        line_no = 0
        while True:
            try:
                line = file.readline()
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not UTF-8 after line {line_no} ({e.reason}); re-save it as UTF-8.") from e
            if not line:
                return
            line_no += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                yield Skipped(line_no, "blank line")
                continue
            if not is_jsonl:
                yield InputText(line_no, line.strip())
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield Skipped(line_no, f"not JSON: {e.msg}")
                continue
            if not isinstance(record, dict):
                yield Skipped(line_no, "not a JSON object")
                continue
            text = record.get(text_key)
            if not isinstance(text, str) or not text.strip():
                yield Skipped(line_no, f"no non-empty string under {text_key!r}")
                continue
            meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
            extra = {k: v for k, v in record.items() if k not in (text_key, "meta")}
            yield InputText(line_no, text, {**extra, **meta})


def most_uncertain(uncertainties: numpy.ndarray, n: int) -> List[int]:
    """Indexes of the n highest uncertainties, highest first (ties: input order)."""
    order = numpy.argsort(-numpy.asarray(uncertainties, dtype="float64"), kind="stable")
    return [int(i) for i in order[:n]]


def record(item: InputText, cats: Dict[str, float], uncertainty: float, measure: str,
           decided: List[str], fmt: str) -> Dict:
    meta = {
        **item.meta,
        "line": item.line_no,
        "uncertainty": round(float(uncertainty), 6),
        "uncertainty_measure": measure,
        "predicted": decided,
        "scores": {label: round(float(score), 6) for label, score in cats.items()},
    }
    if fmt == "prodigy":
        return {"text": item.text, "meta": meta}
    if fmt == "label-studio":
        return {"data": {"text": item.text, **{k: v for k, v in meta.items() if k != "text"}}}
    raise ValueError(f"Unknown format {fmt!r}: use one of {list(FORMATS)}.")


def rank_uncertain(
    nlp,
    component_name: Optional[str],
    items: List[InputText],
    n: int,
    *,
    fmt: str = "prodigy",
    batch_size: int = 64,
    docs: Optional[List] = None,
) -> Tuple[List[Dict], str]:
    """Classify `items` (or take `docs`, the items already classified) and return the
    `n` most uncertain as records, with the name of the component read."""
    from .apply import decide_labels, scores_of_cats, settings_of
    from .uncertainty import uncertainty

    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use one of {list(FORMATS)}.")
    if n < 1:
        raise ValueError(f"n is {n}: ask for 1 text or more.")
    name = component_name or find_classifier(nlp)
    component = nlp.get_pipe(name)
    settings = settings_of(component)
    if docs is None:
        docs = list(nlp.pipe((item.text for item in items), batch_size=batch_size))
    elif len(docs) != len(items):
        raise ValueError(f"{len(docs)} docs for {len(items)} items.")
    # decided from this component's own scores (doc._.cls_labels holds the last classifier's)
    scores, _ = scores_of_cats([doc.cats for doc in docs], settings.labels)
    decided = decide_labels(scores, settings)
    values = uncertainty(scores, multi_label=settings.multi_label, measure=settings.uncertainty,
                         thresholds=settings.cuts if settings.multi_label else None)
    chosen = most_uncertain(values, n)
    rows = [record(items[i], {label: docs[i].cats[label] for label in component.labels}, values[i],
                   settings.uncertainty, decided[i], fmt) for i in chosen]
    return rows, name


def find_classifier(nlp) -> str:
    names = [name for name, pipe in nlp.pipeline if getattr(pipe, "gives_cls_vectors", False)
             and hasattr(pipe, "uncertainty")]
    if not names:
        raise ValueError("The pipeline has no cls_classifier or cls_classifier_multilabel component.")
    if len(names) > 1:
        raise ValueError(f"The pipeline has several classifiers {names}: name one with --component.")
    return names[0]
