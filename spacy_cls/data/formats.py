"""Parsing each format into records: tables (TSV, CSV), JSONL, and TREC-style prefixed
lines. `read_rows` yields a `Row` or a `Rejected` for every record of a file."""
from __future__ import annotations

import csv
import json
from collections import Counter
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

from .header import SAMPLE_SIZE, Fields, guess_header
from .labels import LabelParser
from .lines import Line, check_text_file, decoded_lines
from .records import Record, Rejected, Row, RowError
from .spec import DEFAULT_SPEC, Column, ReaderSpec


def read_rows(path: Union[str, Path], spec: Optional[ReaderSpec] = None) -> Iterator[Record]:
    """A `Row` or a `Rejected` for every record of the file, in file order.

    Line numbers are 1-based physical line numbers (a header is line 1). Raises (before
    the first record) for problems with the whole file: a missing file, a file that is
    not text (a .spacy DocBin, say), a column name not in the header, an unreadable
    label names file.
    """
    path = Path(path)
    spec = spec if spec is not None else DEFAULT_SPEC
    if not path.is_file():
        raise FileNotFoundError(f"Input file not found: {path}")
    check_text_file(path)
    parser = LabelParser(spec)
    if spec.format == "jsonl":
        return _read_jsonl(path, spec, parser)
    if spec.format == "prefixed":
        return _read_prefixed(path, spec, parser)
    records = _read_table(path, spec, parser)
    first = next(records, None)  # surface header/column errors now, not on first use
    return chain([first], records) if first is not None else iter(())


def detect_header(path: Union[str, Path], spec: ReaderSpec) -> bool:
    """Whether `read_rows` treats line 1 as a header."""
    return header_line(path, spec) is not None


def header_line(path: Union[str, Path], spec: ReaderSpec) -> Optional[str]:
    """Line 1 as it stands in the file when `read_rows` takes it as a header, else None."""
    if spec.format == "jsonl":
        return None
    path = Path(path)
    if spec.format == "prefixed":
        first = next(decoded_lines(path, spec.encoding), None) if spec.header is True else None
        return None if first is None else (first.raw if isinstance(first, Rejected) else first[1])
    sample = list(islice(_table_fields(path, spec), SAMPLE_SIZE))
    if sample and guess_header(sample, spec, LabelParser(spec)):
        first = sample[0]
        return first.raw if isinstance(first, Rejected) else first[2]
    return None


# ---------------------------------------------------------------------------
# Tables


def _split_lines(lines: Iterable[Union[Line, Rejected]], sep: str) -> Iterator[Union[Fields, Rejected]]:
    # Without quoting, a record is one line cut at each delimiter: str.split does exactly
    # that. csv.reader with QUOTE_NONE would instead fail on a carriage return in a cell.
    for item in lines:
        yield item if isinstance(item, Rejected) else (item[0], item[1].split(sep), item[1])


def _quoted_records(lines: Iterable[Union[Line, Rejected]], sep: str) -> Iterator[Union[Fields, Rejected]]:
    """csv-module parsing: a quoted field may span lines; the record gets its first line
    number, and its raw text is the lines it was read from."""
    pending: List[Rejected] = []
    consumed: List[Line] = []

    def feed() -> Iterator[str]:
        for item in lines:
            if isinstance(item, Rejected):
                pending.append(item)
                continue
            consumed.append(item)
            yield item[1] + "\n"

    reader = csv.reader(feed(), delimiter=sep)
    while True:
        try:
            fields: Union[List[str], Rejected] = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            first, last = (consumed[0][0], consumed[-1][0]) if consumed else (0, 0)
            span = f"line {first}" if first == last else f"lines {first}-{last}"
            fields = Rejected(first, f"CSV error: {e} ({span})", "\n".join(t for _, t in consumed))
        yield from pending
        pending.clear()
        if isinstance(fields, Rejected):
            yield fields
        elif consumed:
            yield consumed[0][0], fields, "\n".join(t for _, t in consumed)
        consumed.clear()
    yield from pending


def _table_fields(path: Path, spec: ReaderSpec) -> Iterator[Union[Fields, Rejected]]:
    lines = decoded_lines(path, spec.encoding)
    if spec.use_quoting:
        return _quoted_records(lines, spec.sep)
    return _split_lines(lines, spec.sep)


def _read_table(path: Path, spec: ReaderSpec, parser: LabelParser) -> Iterator[Record]:
    records = _table_fields(path, spec)
    sample = list(islice(records, SAMPLE_SIZE))
    records = chain(sample, records)
    header: Optional[List[str]] = None
    if sample and guess_header(sample, spec, parser):
        first = next(records)
        if isinstance(first, Rejected):
            raise ValueError(f"Cannot read the header line of {path}: {first.reason}.")
        header = first[1]
    text_i = _resolve_column(spec.text_column, header, "text")
    score_i = None
    if spec.score_cols is not None:
        score_i = {label: _resolve_column(column, header, f"score of {label!r}")
                   for label, column in spec.score_cols.items()}
        label_i = max(score_i.values())
    else:
        label_i = _resolve_column(spec.label_column, header, "label")
    n_columns = len(header) if header is not None else _usual_width(sample)
    for record in records:
        if isinstance(record, Rejected):
            yield record
        else:
            yield _table_row(record, text_i, label_i, n_columns, spec, parser, score_i)


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


def _is_blank(fields: List[str]) -> bool:
    return all(not f.strip() for f in fields)


def _usual_width(sample: List[Union[Fields, Rejected]]) -> int:
    widths = Counter(len(r[1]) for r in sample if not isinstance(r, Rejected) and not _is_blank(r[1]))
    return widths.most_common(1)[0][0] if widths else 0


def _table_row(record: Fields, text_i: int, label_i: int, n_columns: int,
               spec: ReaderSpec, parser: LabelParser, score_i: Optional[dict] = None) -> Record:
    line_no, fields, raw = record
    try:
        if _is_blank(fields):
            raise RowError("blank line")
        needed = max(text_i, label_i) + 1
        if len(fields) < needed:
            raise RowError(f"missing column: {len(fields)} columns, the text and label need {needed}"
                           f"{_merge_hint(spec, raw)}")
        if len(fields) != n_columns:
            raise RowError(f"wrong column count: {len(fields)} columns instead of {n_columns}"
                           f"{_width_hint(spec, raw, len(fields) > n_columns)}")
        if score_i is not None:
            labels, scores = parser.scores({label: fields[i] for label, i in score_i.items()})
            return Row(line_no, text_value(fields[text_i]), labels, raw, scores)
        return Row(line_no, text_value(fields[text_i]), parser(fields[label_i]), raw)
    except RowError as e:
        return Rejected(line_no, str(e), raw)


def _merge_hint(spec: ReaderSpec, raw: str) -> str:
    if spec.use_quoting and "\n" in raw:
        return (" (quoting is on and a quote opened on this line closes on a later one, so the "
                "lines were read as one record; if \" is part of the texts, read with --no-quoting)")
    return ""


def _width_hint(spec: ReaderSpec, raw: str, too_many: bool) -> str:
    merged = _merge_hint(spec, raw)
    if merged or not too_many:
        return merged
    sep = "tab" if spec.sep == "\t" else repr(spec.sep)
    if spec.use_quoting:
        return f" (a {sep} inside the text splits it: put that text in double quotes)"
    return (f" (quoting is off, so a {sep} inside the text splits it: remove it, or quote "
            f"the text and read with --quoting)")


def text_value(value: Any) -> str:
    if not isinstance(value, str):
        raise RowError(f"text is not a string: {value!r}")
    text = value.strip()
    if not text:
        raise RowError("empty text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RowError(
            f"text has a lone surrogate {text[e.start]!r} at character {e.start + 1}, which no "
            f"UTF-8 file can hold (e.g. a JSON \\ud800 escape without its pair): fix or remove it"
        ) from None
    return text


# ---------------------------------------------------------------------------
# JSONL and prefixed lines


def _read_jsonl(path: Path, spec: ReaderSpec, parser: LabelParser) -> Iterator[Record]:
    for item in decoded_lines(path, spec.encoding):
        if isinstance(item, Rejected):
            yield item
            continue
        line_no, line = item
        try:
            text, labels, scores = _jsonl_row(line, spec, parser)
            yield Row(line_no, text, labels, line, scores)
        except RowError as e:
            yield Rejected(line_no, str(e), line)


# The key of soft labels in a JSONL record, read when it has no label field and no
# label key was given: {"text": ..., "cats": {"POS": 0.8, "NEG": 0.2}}.
CATS_KEY = "cats"


def _jsonl_row(line: str, spec: ReaderSpec, parser: LabelParser):
    if not line.strip():
        raise RowError("blank line")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise RowError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise RowError("invalid JSON: nested too deeply") from None
    text = _json_field(value, spec.text_column, "text")
    key = spec.label_column
    if spec.label_col is None and isinstance(value, dict) and key not in value and CATS_KEY in value:
        key = CATS_KEY
    label = _json_field(value, key, "label")
    if isinstance(label, dict):
        return (text_value(text), *parser.scores(label))
    return text_value(text), parser(label), None


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
    lines = decoded_lines(path, spec.encoding)
    if spec.header is True:
        next(lines, None)
    for item in lines:
        if isinstance(item, Rejected):
            yield item
            continue
        line_no, line = item
        try:
            yield Row(line_no, *_prefixed_row(line, spec.level, parser), line)
        except RowError as e:
            yield Rejected(line_no, str(e), line)


def _prefixed_row(line: str, level: str, parser: LabelParser) -> Tuple[str, Tuple[str, ...]]:
    if not line.strip():
        raise RowError("blank line")
    parts = line.split(None, 1)
    coarse, colon, fine = parts[0].partition(":")
    if not (colon and coarse and fine):
        raise RowError(f"expected a 'COARSE:fine' label before the text, got {parts[0]!r}")
    text = text_value(parts[1] if len(parts) > 1 else "")
    return text, parser(coarse if level == "coarse" else parts[0])
