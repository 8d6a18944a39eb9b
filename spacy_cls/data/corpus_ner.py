"""A corpus reader for JSONL files with a doc label and entity spans per line:

    {"text": "...", "label": "SPORTS", "entities": [[start_char, end_char, "PERSON"], ...]}

It yields `Example`s with both `cats` and `entities`, so that one `spacy train` run
trains `cls_classifier` and `ner` together. Lines it cannot use (blank ones included)
are skipped with one warning that counts and names them: yielded + skipped = lines.
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .checks import SPACY_MAX_LENGTH
from .labels import check_label
from .lines import check_text_file, decoded_lines
from .records import Rejected, RowError

logger = logging.getLogger("spacy_cls")

Entity = Tuple[int, int, str]


@dataclass(frozen=True)
class CatsEntsRow:
    line_no: int
    text: str
    label: str
    entities: Tuple[Entity, ...]


class LineError(ValueError):
    """One line that cannot be used; the message says why."""


def parse_line(line: str) -> Tuple[str, str, Tuple[Entity, ...]]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise LineError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(value, dict):
        raise LineError(f"expected a JSON object, got {type(value).__name__}")
    text, label = value.get("text"), value.get("label")
    if not isinstance(text, str) or not text.strip():
        raise LineError("missing or empty 'text'")
    if not isinstance(label, str) or not label.strip():
        raise LineError("missing or empty 'label'")
    try:
        text.encode("utf-8")
        check_label(label.strip())
    except UnicodeEncodeError as e:
        raise LineError(f"text has a lone surrogate {text[e.start]!r} at character {e.start + 1}") from None
    except RowError as e:
        raise LineError(str(e)) from None
    entities = []
    for item in value.get("entities") or []:
        if not (isinstance(item, (list, tuple)) and len(item) == 3):
            raise LineError(f"entity {item!r} is not [start_char, end_char, label]")
        start, end, ent_label = item
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise LineError(f"entity {item!r} has offsets outside the text (length {len(text)})")
        if not isinstance(ent_label, str) or not ent_label:
            raise LineError(f"entity {item!r} has no label")
        entities.append((start, end, ent_label))
    return text, label.strip(), tuple(entities)


def read_cats_ents(path: Union[str, Path], max_length: int = SPACY_MAX_LENGTH
                   ) -> Tuple[List[CatsEntsRow], List[Tuple[int, str]]]:
    """The usable rows and (line number, reason) for every line skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Corpus file not found: {path}")
    check_text_file(path)
    rows: List[CatsEntsRow] = []
    skipped: List[Tuple[int, str]] = []
    for item in decoded_lines(path, "utf-8"):
        if isinstance(item, Rejected):
            skipped.append((item.line_no, item.reason))
            continue
        line_no, line = item
        try:
            if not line.strip():
                raise LineError("blank line")
            row = CatsEntsRow(line_no, *parse_line(line))
            if len(row.text) > max_length:
                raise LineError(f"text of {len(row.text):,} characters is longer than nlp.max_length ({max_length:,})")
            rows.append(row)
        except LineError as e:
            skipped.append((line_no, str(e)))
    return rows, skipped


class JsonlCatsEntsCorpus:
    """Examples with `cats` (one exclusive label per doc, over all labels) and
    `entities`. The file is read once and kept for later epochs."""

    def __init__(self, path: Union[str, Path], labels: Optional[Sequence[str]] = None, limit: int = 0) -> None:
        self.path = Path(path)
        self.labels = list(dict.fromkeys(labels)) if labels else None
        self.limit = limit
        self._rows: Optional[List[CatsEntsRow]] = None
        self._label_set: List[str] = []

    def __call__(self, nlp: Language) -> Iterator[Example]:
        rows, label_set = self._load(nlp.max_length)
        for row in rows[: self.limit] if self.limit > 0 else rows:
            cats = {label: float(label == row.label) for label in label_set}
            doc = nlp.make_doc(row.text)
            yield Example.from_dict(doc, {"cats": cats, "entities": list(row.entities)})

    def _load(self, max_length: int) -> Tuple[List[CatsEntsRow], List[str]]:
        if self._rows is None:
            rows, skipped = read_cats_ents(self.path, max_length)
            if self.labels is not None:
                allowed = set(self.labels)
                skipped += [
                    (r.line_no, f"label {r.label!r} is not in {self.labels}") for r in rows if r.label not in allowed
                ]
                rows = [r for r in rows if r.label in allowed]
            if skipped:
                shown = ", ".join(f"line {n}: {reason}" for n, reason in skipped[:5])
                more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
                logger.warning("%s: skipped %d of %d lines: %s%s", self.path, len(skipped),
                               len(rows) + len(skipped), shown, more)
            self._rows = rows
            self._label_set = self.labels or sorted({r.label for r in rows})
        return self._rows, self._label_set


@registry.readers("spacy_cls.JsonlCatsEntsCorpus.v1")
def create_jsonl_cats_ents_corpus(
    path: Path, labels: Optional[List[str]] = None, limit: int = 0
) -> Callable[[Language], Iterator[Example]]:
    """JSONL lines {"text", "label", "entities": [[start, end, label], ...]} as
    training examples with cats and entities. labels: the label set (default:
    every label in the file, sorted); limit: read only the first N rows (0: all)."""
    return JsonlCatsEntsCorpus(path, labels=labels, limit=limit)
