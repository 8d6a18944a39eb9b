"""Whether line 1 of a table file is a header, when the user did not say.

A wrong "yes" would drop a data row unseen, so line 1 is taken as a header only on clear
evidence; a header missed this way is read as a data row, written or rejected like any
other, and its label shows up in the report as a label used once.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

from .labels import LabelParser
from .records import Rejected
from .spec import ReaderSpec

# How many records are looked at to guess the header and the usual column count.
SAMPLE_SIZE = 1000
LABEL_HEADER_WORDS = frozenset(
    {"label", "labels", "label_id", "label_ids", "label_desc", "label_name", "class", "category",
     "categories", "target", "sentiment", "polarity", "tag", "tags", "topic", "intent", "y"}
)
TEXT_HEADER_WORDS = frozenset(
    {"text", "texts", "text_a", "sentence", "sentences", "sentence1", "review", "content",
     "document", "title", "question", "comment", "body", "tweet", "utterance", "query"}
)

Fields = Tuple[int, List[str], str]  # line number, cells, raw record


def guess_header(sample: Sequence[Union[Fields, Rejected]], spec: ReaderSpec, parser: LabelParser) -> bool:
    if spec.header != "auto":
        return bool(spec.header)
    text_i, label_i = spec.text_column, spec.label_column
    if isinstance(text_i, str) or isinstance(label_i, str):
        return True
    if spec.score_cols is not None:
        if any(isinstance(column, str) for column in spec.score_cols.values()):
            return True
        label_i = min(spec.score_cols.values())
    first = sample[0] if sample else None
    if first is None or isinstance(first, Rejected) or len(first[1]) <= max(text_i, label_i):
        return False
    label_cell, text_cell = first[1][label_i].strip(), first[1][text_i].strip()
    if not label_cell:
        return False
    others = [r[1][label_i] for r in sample[1:] if not isinstance(r, Rejected) and len(r[1]) > label_i]
    others = [cell for cell in others if cell.strip()]
    seen = {part for cell in others for part in cell_parts(cell, spec.label_sep)}
    if seen and set(cell_parts(label_cell, spec.label_sep)) <= seen:
        return False  # line 1's label is a label of other rows
    if label_cell.lower() in LABEL_HEADER_WORDS or text_cell.lower() in TEXT_HEADER_WORDS:
        return True
    if looks_numeric(label_cell, spec.label_sep):
        return False
    # a word above a column of numbers or label ids
    return parser.names is not None or (bool(others) and all(looks_numeric(c, spec.label_sep) for c in others))


def cell_parts(cell: str, sep: Optional[str]) -> List[str]:
    parts = cell.split(sep) if sep else [cell]
    return [p.strip() for p in parts if p.strip()]


def looks_numeric(cell: str, sep: Optional[str]) -> bool:
    parts = cell_parts(cell, sep)
    return bool(parts) and all(p.lstrip("-").replace(".", "", 1).isdigit() for p in parts)


HEADER_WORDS = LABEL_HEADER_WORDS | TEXT_HEADER_WORDS
