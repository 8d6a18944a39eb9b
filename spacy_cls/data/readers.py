"""Read labelled text files (TSV, CSV, JSONL, TREC-style prefixed lines).

`read_rows` yields a `Row` or a `Rejected` for every physical record of a file, so that
no line is ever dropped silently. Line numbers are 1-based physical line numbers (the
header, when there is one, is line 1). The registered reader
`spacy_cls.LabelledTextCorpus.v1` lets a training config read these files directly.
"""
from __future__ import annotations

import codecs
import csv
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

logger = logging.getLogger("spacy_cls")

FORMATS = ("tsv", "csv", "jsonl", "prefixed")
LEVELS = ("coarse", "fine")
Column = Union[int, str]
HeaderMode = Union[bool, str]  # True, False or "auto"

# How many records are looked at to guess the header and the usual column count.
SAMPLE_SIZE = 1000
# Label-column header cells that are taken as a header line in "auto" mode.
HEADER_WORDS = frozenset(
    {"label", "labels", "label_id", "label_ids", "label_desc", "class", "category",
     "target", "sentiment", "y"}
)
SUFFIX_FORMATS = {
    ".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".label": "prefixed",
}


@dataclass(frozen=True)
class Row:
    line_no: int
    text: str
    labels: Tuple[str, ...]


@dataclass(frozen=True)
class Rejected:
    line_no: int
    reason: str
    raw: str


Record = Union[Row, Rejected]


class RowError(Exception):
    """A problem with one record; becomes a `Rejected` with this message as reason."""


def parse_column(value: Optional[Column]) -> Optional[Column]:
    """Column given on a command line or in a config: digits mean a 0-based index."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


@dataclass(frozen=True)
class ReaderSpec:
    """How to read one labelled text file.

    text_col / label_col: a 0-based index or a header name (JSONL: a key). Defaults:
    columns 0 and 1 for tsv/csv, keys "text" and "label" for jsonl.
    header: True, False or "auto" (a header is assumed when a column is given by name,
    or when the first row's label cell does not look like a label).
    quoting: None means off for tsv (csv.QUOTE_NONE: bare quotes are text) and on for csv.
    label_names: file with one label name per line; label cells are then 0-based ids.
    label_map: renames labels (applied after label_names), e.g. {"0": "NEG", "1": "POS"}.
    label_sep: splits a label cell into several labels (multi-label), e.g. ",".
    level: for "prefixed" lines `COARSE:fine text`, use "coarse" (COARSE) or "fine"
    (COARSE:fine) labels.
    """

    format: str = "tsv"
    text_col: Optional[Column] = None
    label_col: Optional[Column] = None
    header: HeaderMode = "auto"
    encoding: str = "utf-8"
    quoting: Optional[bool] = None
    delimiter: Optional[str] = None
    label_map: Mapping[str, str] = field(default_factory=dict)
    label_names: Optional[Union[str, Path]] = None
    label_sep: Optional[str] = None
    level: str = "coarse"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"Unknown format {self.format!r}: use one of {', '.join(FORMATS)}.")
        if self.header not in (True, False, "auto"):
            raise ValueError(f"header must be True, False or 'auto', not {self.header!r}.")
        if self.level not in LEVELS:
            raise ValueError(f"level must be 'coarse' or 'fine', not {self.level!r}.")
        if self.label_sep == "":
            raise ValueError("label_sep must not be empty: leave it unset for single labels.")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, not {self.delimiter!r}.")
        _check_encoding(self.encoding)
        object.__setattr__(self, "text_col", parse_column(self.text_col))
        object.__setattr__(self, "label_col", parse_column(self.label_col))
        object.__setattr__(self, "label_map", {str(k): str(v) for k, v in self.label_map.items()})

    @property
    def text_column(self) -> Column:
        if self.text_col is not None:
            return self.text_col
        return "text" if self.format == "jsonl" else 0

    @property
    def label_column(self) -> Column:
        if self.label_col is not None:
            return self.label_col
        return "label" if self.format == "jsonl" else 1

    @property
    def sep(self) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "," if self.format == "csv" else "\t"

    @property
    def use_quoting(self) -> bool:
        return self.format == "csv" if self.quoting is None else self.quoting


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"Unknown encoding {encoding!r}: use e.g. utf-8, latin-1, gb18030.") from None
    if "\n".encode(encoding) != b"\n":
        raise ValueError(
            f"Encoding {encoding!r} is not supported because lines are split on newline bytes; "
            f"re-encode the file first, e.g. `iconv -f {encoding} -t utf-8 IN > OUT`."
        )


DEFAULT_SPEC = ReaderSpec()


def infer_format(path: Union[str, Path]) -> str:
    """Format from a file suffix (.tsv, .csv, .jsonl, .label); raises if unknown."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise ValueError(
            f"Cannot tell the format of {Path(path).name!r} from its suffix; "
            f"pass the format explicitly (--format {'|'.join(FORMATS)})."
        )
    return SUFFIX_FORMATS[suffix]


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
        return tuple(dict.fromkeys(self.label_map.get(p, p) for p in parts))

    def _parts(self, value: Any) -> List[str]:
        if value is None:
            raise RowError("missing label")
        if isinstance(value, (list, tuple)):
            return [p for p in (_scalar_to_str(v) for v in value) if p]
        text = _scalar_to_str(value)
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


def _scalar_to_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dict, list)) or value is None:
        raise RowError(f"label value {value!r} is not a string or number")
    return str(value).strip()


# ---------------------------------------------------------------------------
# Physical lines


Line = Tuple[int, str]


def _decoded_lines(path: Path, encoding: str) -> Iterator[Union[Line, Rejected]]:
    """Each physical line, decoded on its own so that one bad line can't spoil the file."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                yield Rejected(line_no, _decode_reason(e, raw, encoding),
                               raw.decode(encoding, errors="backslashreplace"))
                continue
            yield line_no, text.lstrip("\ufeff") if line_no == 1 else text


def _decode_reason(error: UnicodeDecodeError, raw: bytes, encoding: str) -> str:
    return (
        f"cannot decode as {encoding} (byte 0x{raw[error.start]:02x} at byte {error.start + 1}); "
        f"if the file is not {encoding}, give its encoding (e.g. --encoding latin-1)"
    )


# ---------------------------------------------------------------------------
# Table formats (tsv, csv)


Fields = Tuple[int, List[str]]


def _split_lines(lines: Iterable[Union[Line, Rejected]], sep: str) -> Iterator[Union[Fields, Rejected]]:
    for item in lines:
        yield item if isinstance(item, Rejected) else (item[0], item[1].split(sep))


def _quoted_records(lines: Iterable[Union[Line, Rejected]], sep: str) -> Iterator[Union[Fields, Rejected]]:
    """csv-module parsing: a quoted field may span lines; the record gets its first line."""
    pending: List[Rejected] = []
    consumed: List[int] = []

    def feed() -> Iterator[str]:
        for item in lines:
            if isinstance(item, Rejected):
                pending.append(item)
                continue
            consumed.append(item[0])
            yield item[1] + "\n"

    reader = csv.reader(feed(), delimiter=sep)
    while True:
        try:
            fields: Union[List[str], Rejected] = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            first = consumed[0] if consumed else 0
            fields = Rejected(first, f"CSV error: {e} (lines {first}-{consumed[-1] if consumed else 0})", "")
        yield from pending
        pending.clear()
        if isinstance(fields, Rejected):
            yield fields
        elif consumed:
            yield consumed[0], fields
        consumed.clear()
    yield from pending


def _table_fields(path: Path, spec: ReaderSpec) -> Iterator[Union[Fields, Rejected]]:
    lines = _decoded_lines(path, spec.encoding)
    if spec.use_quoting:
        return _quoted_records(lines, spec.sep)
    return _split_lines(lines, spec.sep)


def _peek(items: Iterator[Any], n: int) -> Tuple[List[Any], Iterator[Any]]:
    sample = list(islice(items, n))
    return sample, chain(sample, items)


def _is_blank(fields: List[str]) -> bool:
    return all(not f.strip() for f in fields)


def _guess_header(sample: List[Union[Fields, Rejected]], spec: ReaderSpec, parser: LabelParser) -> bool:
    if spec.header != "auto":
        return bool(spec.header)
    label_i = spec.label_column
    if isinstance(spec.text_column, str) or isinstance(label_i, str):
        return True
    first = sample[0] if sample else None
    if first is None or isinstance(first, Rejected) or len(first[1]) <= label_i:
        return False
    cell = first[1][label_i].strip()
    if not cell:
        return False
    if cell.lower() in HEADER_WORDS:
        return True
    try:
        parser(cell)
    except RowError:
        return True
    if parser.names is not None or _looks_numeric(cell, spec.label_sep):
        return False
    seen = set()
    for record in sample[1:]:
        if not isinstance(record, Rejected) and len(record[1]) > label_i:
            seen.update(_cell_parts(record[1][label_i], spec.label_sep))
    return bool(seen) and not set(_cell_parts(cell, spec.label_sep)) <= seen


def _cell_parts(cell: str, sep: Optional[str]) -> List[str]:
    parts = cell.split(sep) if sep else [cell]
    return [p.strip() for p in parts if p.strip()]


def _looks_numeric(cell: str, sep: Optional[str]) -> bool:
    parts = _cell_parts(cell, sep)
    return bool(parts) and all(p.lstrip("-").replace(".", "", 1).isdigit() for p in parts)


def _resolve_column(column: Column, header: Optional[List[str]], what: str) -> int:
    if isinstance(column, int):
        if column < 0:
            raise ValueError(f"The {what} column index must be 0 or more, not {column}.")
        return column
    if header is None:
        raise ValueError(
            f"The {what} column is given by name ({column!r}) but the file is read without a "
            f"header; give a 0-based index instead, or say that the file has a header (--header)."
        )
    names = [h.strip() for h in header]
    if column not in names:
        raise ValueError(
            f"The {what} column {column!r} is not in the header {names}; "
            f"give one of these names or a 0-based index."
        )
    return names.index(column)


def detect_header(path: Union[str, Path], spec: ReaderSpec) -> bool:
    """Whether `read_rows` will treat the first line as a header."""
    if spec.format == "jsonl":
        return False
    if spec.format == "prefixed":
        return spec.header is True
    sample, _ = _peek(_table_fields(Path(path), spec), SAMPLE_SIZE)
    return _guess_header(sample, spec, LabelParser(spec))


def _read_table(path: Path, spec: ReaderSpec, parser: LabelParser) -> Iterator[Record]:
    sample, records = _peek(_table_fields(path, spec), SAMPLE_SIZE)
    header: Optional[List[str]] = None
    if _guess_header(sample, spec, parser) and sample:
        first = next(records)
        if isinstance(first, Rejected):
            raise ValueError(f"Cannot read the header line of {path}: {first.reason}.")
        header = first[1]
    text_i = _resolve_column(spec.text_column, header, "text")
    label_i = _resolve_column(spec.label_column, header, "label")
    n_columns = len(header) if header is not None else _usual_width(sample)
    for record in records:
        if isinstance(record, Rejected):
            yield record
        else:
            yield _table_row(record, text_i, label_i, n_columns, spec, parser)


def _usual_width(sample: List[Union[Fields, Rejected]]) -> int:
    widths = Counter(len(r[1]) for r in sample if not isinstance(r, Rejected) and not _is_blank(r[1]))
    return widths.most_common(1)[0][0] if widths else 0


def _table_row(record: Fields, text_i: int, label_i: int, n_columns: int,
               spec: ReaderSpec, parser: LabelParser) -> Record:
    line_no, fields = record
    raw = spec.sep.join(fields)
    try:
        if _is_blank(fields):
            raise RowError("blank line")
        needed = max(text_i, label_i) + 1
        if len(fields) < needed:
            raise RowError(f"missing column: {len(fields)} columns, the text and label need {needed}")
        if len(fields) != n_columns:
            raise RowError(f"wrong column count: {len(fields)} columns instead of {n_columns}"
                           f"{_width_hint(spec)}")
        return Row(line_no, _text(fields[text_i]), parser(fields[label_i]))
    except RowError as e:
        return Rejected(line_no, str(e), raw)


def _width_hint(spec: ReaderSpec) -> str:
    if spec.use_quoting:
        return " (quoting is on: a bare quote may have merged lines; try quoting off)"
    if spec.format == "csv":
        return " (quoting is off: a delimiter inside the text splits it; try quoting on)"
    return ""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise RowError(f"text is not a string: {value!r}")
    text = value.strip()
    if not text:
        raise RowError("empty text")
    return text


# ---------------------------------------------------------------------------
# JSONL and prefixed lines


def _read_jsonl(path: Path, spec: ReaderSpec, parser: LabelParser) -> Iterator[Record]:
    for item in _decoded_lines(path, spec.encoding):
        if isinstance(item, Rejected):
            yield item
            continue
        line_no, line = item
        try:
            yield Row(line_no, *_jsonl_row(line, spec, parser))
        except RowError as e:
            yield Rejected(line_no, str(e), line)


def _jsonl_row(line: str, spec: ReaderSpec, parser: LabelParser) -> Tuple[str, Tuple[str, ...]]:
    if not line.strip():
        raise RowError("blank line")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise RowError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    text = _json_field(value, spec.text_column, "text")
    return _text(text), parser(_json_field(value, spec.label_column, "label"))


def _json_field(value: Any, key: Column, what: str) -> Any:
    if isinstance(value, dict):
        if key not in value:
            raise RowError(f"missing {what} field {key!r}")
        return value[key]
    if isinstance(value, list) and isinstance(key, int):
        if key >= len(value):
            raise RowError(f"missing column: {what} is item {key} of a list of {len(value)}")
        return value[key]
    raise RowError(f"expected a JSON object with a {what} field {key!r}, got {type(value).__name__}")


def _read_prefixed(path: Path, spec: ReaderSpec, parser: LabelParser) -> Iterator[Record]:
    lines = _decoded_lines(path, spec.encoding)
    if spec.header is True:
        next(lines, None)
    for item in lines:
        if isinstance(item, Rejected):
            yield item
            continue
        line_no, line = item
        try:
            yield Row(line_no, *_prefixed_row(line, spec.level, parser))
        except RowError as e:
            yield Rejected(line_no, str(e), line)


def _prefixed_row(line: str, level: str, parser: LabelParser) -> Tuple[str, Tuple[str, ...]]:
    if not line.strip():
        raise RowError("blank line")
    parts = line.split(None, 1)
    coarse, colon, fine = parts[0].partition(":")
    if not (colon and coarse and fine):
        raise RowError(f"expected a 'COARSE:fine' label before the text, got {parts[0]!r}")
    text = _text(parts[1] if len(parts) > 1 else "")
    return text, parser(coarse if level == "coarse" else parts[0])


# ---------------------------------------------------------------------------
# Public reading API


def read_rows(path: Union[str, Path], spec: Optional[ReaderSpec] = None) -> Iterator[Record]:
    """A `Row` or a `Rejected` for every record of the file, in file order.

    Raises (before the first record) for problems with the whole file: a missing file,
    a column name not in the header, an unreadable label names file.
    """
    path = Path(path)
    spec = spec if spec is not None else DEFAULT_SPEC
    if not path.is_file():
        raise FileNotFoundError(f"Input file not found: {path}")
    parser = LabelParser(spec)
    if spec.format == "jsonl":
        return _read_jsonl(path, spec, parser)
    if spec.format == "prefixed":
        return _read_prefixed(path, spec, parser)
    records = _read_table(path, spec, parser)
    first = next(records, None)  # surface header/column errors now, not on first use
    return chain([first], records) if first is not None else iter(())


def check_labels(records: Iterable[Record], exclusive: bool,
                 allowed: Optional[Collection[str]] = None) -> Iterator[Record]:
    """Rejects rows with several labels in exclusive mode, or a label outside `allowed`."""
    allowed_set = set(allowed) if allowed is not None else None
    for record in records:
        if isinstance(record, Row):
            reason = _label_problem(record.labels, exclusive, allowed_set)
            if reason:
                record = Rejected(record.line_no, reason, record.text)
        yield record


def _label_problem(labels: Tuple[str, ...], exclusive: bool, allowed: Optional[set]) -> Optional[str]:
    if exclusive and len(labels) > 1:
        return f"{len(labels)} labels {list(labels)} but labels are exclusive (use multi-label mode)"
    unknown = [label for label in labels if allowed is not None and label not in allowed]
    if unknown:
        return f"label {unknown[0]!r} is not in the label set"
    return None


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


# ---------------------------------------------------------------------------
# Corpus reader for training configs


SPLITS = ("all", "train", "dev")


def check_split(split: str, holdout: float) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
    if split == "all" and holdout:
        raise ValueError(
            f"holdout={holdout} needs split='train' or split='dev' (the two sides of the "
            f"held-out split); use split='all' with holdout=0 to read every row."
        )
    if split != "all" and not 0.0 < holdout < 1.0:
        raise ValueError(
            f"split={split!r} needs a held-out fraction between 0 and 1 (e.g. holdout=0.1), "
            f"not {holdout}."
        )


def holdout_indexes(n_rows: int, holdout: float, seed: int) -> Set[int]:
    """The rows (0-based, among the accepted rows) that a fixed `holdout` fraction puts
    on the dev side; the same file, fraction and seed always give the same rows."""
    n_dev = min(n_rows, max(1, round(n_rows * holdout))) if n_rows else 0
    return set(random.Random(seed).sample(range(n_rows), n_dev))


class LabelledTextCorpus:
    """Yields `Example`s with `cats` from a labelled text file; rejected rows are skipped
    with one warning. The file is parsed once and the rows kept for later epochs.

    split="train" / "dev" with holdout=f keeps one side of a fixed random split of the
    accepted rows (f of them on the dev side, chosen by `seed`), for files that come
    without a dev set. The label set is taken from all rows, so both sides agree.
    """

    def __init__(self, path: Union[str, Path], spec: ReaderSpec, *, exclusive: bool = True,
                 labels: Optional[Sequence[str]] = None, limit: int = 0,
                 split: str = "all", holdout: float = 0.0, seed: int = 0) -> None:
        check_split(split, holdout)
        self.path = Path(path)
        self.spec = spec
        self.exclusive = exclusive
        self.labels = list(labels) if labels is not None else None
        self.limit = limit
        self.split = split
        self.holdout = holdout
        self.seed = seed
        self._rows: Optional[List[Row]] = None
        self._label_set: List[str] = []

    def __call__(self, nlp: Language) -> Iterator[Example]:
        rows, label_set = self._load()
        for row in rows[: self.limit] if self.limit > 0 else rows:
            yield Example.from_dict(nlp.make_doc(row.text), {"cats": cats_for(row.labels, label_set)})

    def _load(self) -> Tuple[List[Row], List[str]]:
        if self._rows is None:
            allowed = declared_labels(self.spec, self.labels)
            records = check_labels(read_rows(self.path, self.spec), self.exclusive, allowed)
            rows, rejected = split_records(records)
            if rejected:
                logger.warning(
                    "%s: skipped %d rejected rows of %d: %s", self.path, len(rejected),
                    len(rows) + len(rejected), describe_rejected(rejected),
                )
            self._label_set = resolve_label_set(self.spec, rows, self.labels)
            self._rows = self._select(rows)
        return self._rows, self._label_set

    def _select(self, rows: List[Row]) -> List[Row]:
        if self.split == "all":
            return rows
        dev = holdout_indexes(len(rows), self.holdout, self.seed)
        keep_dev = self.split == "dev"
        return [row for i, row in enumerate(rows) if (i in dev) == keep_dev]


@registry.readers("spacy_cls.LabelledTextCorpus.v1")
def create_labelled_text_corpus(
    path: Path,
    format: str = "tsv",
    text_col: Optional[Union[int, str]] = None,
    label_col: Optional[Union[int, str]] = None,
    header: Union[bool, str] = "auto",
    encoding: str = "utf-8",
    quoting: Optional[bool] = None,
    delimiter: Optional[str] = None,
    label_map: Optional[Dict[str, str]] = None,
    label_names: Optional[Path] = None,
    label_sep: Optional[str] = None,
    level: str = "coarse",
    exclusive: bool = True,
    labels: Optional[List[str]] = None,
    limit: int = 0,
    split: str = "all",
    holdout: float = 0.0,
    seed: int = 0,
) -> Callable[[Language], Iterator[Example]]:
    """Read a TSV/CSV/JSONL/prefixed file straight into training examples.
    split="train"|"dev" with holdout=0.1 keeps one side of a fixed 90/10 split (by seed)."""
    spec = ReaderSpec(
        format=format, text_col=text_col, label_col=label_col, header=header,
        encoding=encoding, quoting=quoting, delimiter=delimiter, label_map=label_map or {},
        label_names=label_names, label_sep=label_sep, level=level,
    )
    return LabelledTextCorpus(path, spec, exclusive=exclusive, labels=labels, limit=limit,
                              split=split, holdout=holdout, seed=seed)
