"""What reading a labelled file gives for each record: a `Row` or a `Rejected`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union


@dataclass(frozen=True)
class Row:
    line_no: int
    text: str
    labels: Tuple[str, ...]
    # The record as it stands in the file, for the report when a later check rejects it.
    raw: str = field(default="", compare=False, repr=False)
    # Soft labels: (label, probability) for each label named, `labels` then naming them all.
    scores: Optional[Tuple[Tuple[str, float], ...]] = None

    @property
    def soft(self) -> bool:
        return self.scores is not None


@dataclass(frozen=True)
class Rejected:
    line_no: int
    reason: str
    raw: str


Record = Union[Row, Rejected]


class RowError(Exception):
    """A problem with one record; becomes a `Rejected` with this message as reason."""


def reject(row: Row, reason: str) -> Rejected:
    return Rejected(row.line_no, reason, row.raw or row.text)


def split_records(records: Iterable[Record]) -> Tuple[List[Row], List[Rejected]]:
    rows: List[Row] = []
    rejected: List[Rejected] = []
    for record in records:
        (rows if isinstance(record, Row) else rejected).append(record)  # type: ignore[arg-type]
    return rows, rejected


def describe_rejected(rejected: Sequence[Rejected], n: int = 5) -> str:
    lines = ", ".join(f"line {r.line_no}: {r.reason}" for r in rejected[:n])
    more = f" (and {len(rejected) - n} more)" if len(rejected) > n else ""
    return lines + more
