"""Labels: turning a raw label cell into label names, checking them, and `doc.cats`."""
from __future__ import annotations

import math
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .records import Record, Row, RowError, reject
from .spec import ReaderSpec


def load_label_names(path: Union[str, Path], encoding: str = "utf-8") -> List[str]:
    """One label name per line; line i (0-based) names label id i."""
    names = Path(path).read_text(encoding=encoding).splitlines()
    while names and not names[-1].strip():
        names.pop()
    names = [name.strip() for name in names]
    if not names:
        raise ValueError(f"Label names file {path} is empty: it needs one label name per line.")
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank:
        raise ValueError(f"Label names file {path} has empty lines ({blank[:5]}): remove them.")
    bad = [name for name in names if _bad_character(name)]
    if bad:
        raise ValueError(f"Label names file {path} has names with control characters: {bad[:5]}.")
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1)
    if duplicates:
        raise ValueError(f"Label names file {path} repeats names: {duplicates[:5]}.")
    return names


class LabelParser:
    """Turns a raw label cell into label names: split, look up ids, rename."""

    def __init__(self, spec: ReaderSpec) -> None:
        self.names_file = spec.label_names
        self.names = load_label_names(spec.label_names, spec.encoding) if spec.label_names else None
        self.label_map = dict(spec.label_map)
        self.sep = spec.label_sep

    def label_set(self) -> Optional[List[str]]:
        """All labels when a names file is given, in id order; None otherwise."""
        if self.names is None:
            return None
        return list(dict.fromkeys(self.label_map.get(n, n) for n in self.names))

    def __call__(self, value: Any) -> Tuple[str, ...]:
        parts = [self._name(part) for part in self._parts(value)]
        if not parts:
            raise RowError("empty label")
        labels = tuple(dict.fromkeys(self.label_map.get(p, p) for p in parts))
        for label in labels:
            check_label(label)
        return labels

    def scores(self, value: Any) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, float], ...]]:
        """Soft labels {label: probability} as (labels, (label, score) pairs); each name
        goes through the label names and the label map as a label cell does."""
        if not value:
            raise RowError("empty soft labels: give at least one {label: probability}")
        pairs: Dict[str, float] = {}
        for key, score in value.items():
            label = self.label_map.get(self._name(scalar_label(key)), self._name(scalar_label(key)))
            check_label(label)
            if label in pairs:
                raise RowError(f"soft labels name {label!r} twice (after the label names and the label map)")
            pairs[label] = score_value(score, label)
        return tuple(pairs), tuple(pairs.items())

    def _parts(self, value: Any) -> List[str]:
        if value is None:
            raise RowError("missing label")
        if isinstance(value, (list, tuple)):
            return [p for p in (scalar_label(v) for v in value) if p]
        text = scalar_label(value)
        if self.sep is None:
            return [text] if text else []
        return [p.strip() for p in text.split(self.sep) if p.strip()]

    def _name(self, part: str) -> str:
        if self.names is None:
            return part
        try:
            index = int(part)
        except ValueError:
            raise RowError(f"label {part!r} is not an integer id into {self.names_file}") from None
        if not 0 <= index < len(self.names):
            raise RowError(
                f"unknown label id {index}: {self.names_file} has {len(self.names)} names "
                f"(ids 0-{len(self.names) - 1})"
            )
        return self.names[index]


def scalar_label(value: Any) -> str:
    """A label value read from JSON (or a table cell) as a label name.

    JSON numbers that are whole (1, 1.0) become "1". Booleans, NaN and infinities are
    refused rather than turned into "True", "nan" or "inf"."""
    if isinstance(value, bool):
        raise RowError(
            f"label {str(value).lower()} is a JSON boolean: write labels as strings "
            f"(\"{str(value).lower()}\") or integer ids"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(
                f"label {value} is not a finite number (JSON NaN, Infinity, or a number too large "
                f"for a float such as 1e999): write labels as strings or integer ids"
            )
        if value.is_integer():
            value = int(value)
    if isinstance(value, (dict, list)) or value is None:
        raise RowError(f"label value {value!r} is not a string or number")
    return str(value).strip()


def score_value(value: Any, label: str) -> float:
    """A soft label's probability: a finite number from 0 to 1 (a table cell is parsed)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RowError(f"score of {label!r} is {value!r}, not a number from 0 to 1") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowError(f"score of {label!r} is {value!r}, not a number from 0 to 1")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise RowError(f"score of {label!r} is {value!r}: a probability is a finite number from 0 to 1 "
                       f"(NaN, negative values and values above 1 are refused)")
    return float(value)


def _bad_character(text: str) -> Optional[str]:
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)


def check_label(label: str) -> None:
    """Refuses labels with control characters or lone surrogates."""
    char = _bad_character(label)
    if char is None:
        return
    hint = ""
    if char == "\r":
        hint = "; the file may mix line endings (CR and LF): convert it to LF line endings"
    elif unicodedata.category(char) == "Cs":
        hint = "; a lone UTF-16 surrogate (e.g. a JSON \\ud800 escape without its pair) cannot be saved"
    raise RowError(f"label {label!r} contains the control character {char!r}{hint}")


def check_labels(records: Iterable[Record], exclusive: bool,
                 allowed: Optional[Collection[str]] = None) -> Iterator[Record]:
    """Rejects rows with several labels in exclusive mode, or a label outside `allowed`."""
    allowed_set = set(allowed) if allowed is not None else None
    for record in records:
        if isinstance(record, Row):
            reason = _label_problem(record.labels, exclusive and not record.soft, allowed_set)
            if reason is None and exclusive and record.soft:
                reason = _soft_sum_problem(record.scores)
            if reason:
                record = reject(record, reason)
        yield record


def _label_problem(labels: Tuple[str, ...], exclusive: bool, allowed: Optional[set]) -> Optional[str]:
    if exclusive and len(labels) > 1:
        return f"{len(labels)} labels {list(labels)} but labels are exclusive (use multi-label mode)"
    unknown = [label for label in labels if allowed is not None and label not in allowed]
    if unknown:
        return f"label {unknown[0]!r} is not in the label set"
    return None


# Soft labels of exclusive classes sum to 1 within this much (the components' rule).
SOFT_SUM_TOLERANCE = 1e-3


def _soft_sum_problem(scores) -> Optional[str]:
    total = math.fsum(score for _, score in scores)
    if abs(total - 1.0) <= SOFT_SUM_TOLERANCE:
        return None
    return (f"soft labels sum to {total:.6g}, but labels are exclusive, so the scores are a distribution "
            f"that sums to 1 (within {SOFT_SUM_TOLERANCE}): divide them by their sum, or use multi-label mode")


def row_cats(row: Row, label_set: Sequence[str]) -> Dict[str, float]:
    """doc.cats of a row: its soft labels (0.0 for labels it does not name), or `cats_for`."""
    if row.scores is None:
        return cats_for(row.labels, label_set)
    scores = dict(row.scores)
    return {label: scores.get(label, 0.0) for label in label_set}


def cats_for(labels: Sequence[str], label_set: Sequence[str]) -> Dict[str, float]:
    """doc.cats: 1.0 for the row's labels, 0.0 for every other label of the set."""
    present = set(labels)
    return {label: 1.0 if label in present else 0.0 for label in label_set}


def resolve_label_set(spec: ReaderSpec, rows: Iterable[Row],
                      labels: Optional[Sequence[str]] = None) -> List[str]:
    """Explicit labels, else the label names file, else the labels seen (sorted)."""
    if labels is not None:
        return list(dict.fromkeys(labels))
    from_names = LabelParser(spec).label_set()
    if from_names is not None:
        return from_names
    return sorted({label for row in rows for label in row.labels})


def declared_labels(spec: ReaderSpec, labels: Optional[Sequence[str]] = None) -> Optional[List[str]]:
    """The label set known before reading (explicit or from label names), if any."""
    if labels is not None:
        return list(dict.fromkeys(labels))
    return LabelParser(spec).label_set()


def single_row_labels(rows: Iterable[Row]) -> Dict[str, int]:
    """Labels found on one row only, with that row's line number, when other labels
    repeat: in a file where labels recur, a label used once is most likely a typo."""
    counts: Counter = Counter()
    first_line: Dict[str, int] = {}
    for row in rows:
        for label in row.labels:
            counts[label] += 1
            first_line.setdefault(label, row.line_no)
    if not any(n > 1 for n in counts.values()):
        return {}
    return {label: first_line[label] for label, n in counts.items() if n == 1}
