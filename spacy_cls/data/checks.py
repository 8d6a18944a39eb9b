"""The rows a file gives for training: read, then checked against the label set and the
tokenizer's length limit. Both the converter and the corpus reader use this, so that
they accept (and hold out) exactly the same rows."""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Iterable, Iterator, List, Optional, Tuple, Union

from .formats import read_rows
from .labels import check_labels
from .records import Record, Rejected, Row, reject, split_records
from .spec import ReaderSpec

# spaCy's default `nlp.max_length`: longer texts make the tokenizer raise E088.
SPACY_MAX_LENGTH = 1_000_000


def check_length(records: Iterable[Record], max_length: int) -> Iterator[Record]:
    """Rejects rows whose text spaCy's tokenizer would refuse (E088)."""
    for record in records:
        if isinstance(record, Row) and len(record.text) > max_length:
            record = reject(
                record,
                f"text of {len(record.text):,} characters is longer than nlp.max_length "
                f"({max_length:,}), which spaCy's tokenizer refuses: split the text into parts, "
                f"or raise nlp.max_length",
            )
        yield record


def accepted_rows(path: Union[str, Path], spec: ReaderSpec, *, exclusive: bool,
                  allowed: Optional[Collection[str]] = None,
                  max_length: int = SPACY_MAX_LENGTH) -> Tuple[List[Row], List[Rejected]]:
    """Every record of the file, as accepted rows and rejected ones (in file order)."""
    records = check_length(check_labels(read_rows(path, spec), exclusive, allowed), max_length)
    return split_records(records)
