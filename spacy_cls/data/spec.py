"""`ReaderSpec`: how to read one labelled text file, checked when it is made."""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

FORMATS = ("tsv", "csv", "jsonl", "prefixed")
LEVELS = ("coarse", "fine")
Column = Union[int, str]
HeaderMode = Union[bool, str]  # True, False or "auto"

SUFFIX_FORMATS = {
    ".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".label": "prefixed",
}


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
    or when line 1 reads as column names; see `header.guess_header`).
    quoting: None means off for tsv (csv.QUOTE_NONE: bare quotes are text) and on for csv.
    label_names: file with one label name per line; label cells are then 0-based ids.
    label_map: renames labels (applied after label_names), e.g. {"0": "NEG", "1": "POS"}.
    label_sep: splits a label cell into several labels (multi-label), e.g. ",".
    level: for "prefixed" lines `COARSE:fine text`, use "coarse" (COARSE) or "fine"
    (COARSE:fine) labels.
    score_cols: soft labels from a table, {label: column} (a 0-based index or a header
    name); the label column is then not read. A JSONL record gives soft labels as an
    object in its label field (or under "cats"): {"POS": 0.8, "NEG": 0.2}.
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
    score_cols: Optional[Mapping[str, Column]] = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"Unknown format {self.format!r}: use one of {', '.join(FORMATS)}.")
        if self.header not in (True, False, "auto"):
            raise ValueError(f"header must be True, False or 'auto', not {self.header!r}.")
        if self.level not in LEVELS:
            raise ValueError(f"level must be 'coarse' or 'fine', not {self.level!r}.")
        if self.label_sep == "":
            raise ValueError("label_sep must not be empty: leave it unset for single labels.")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in "\r\n"):
            raise ValueError(f"delimiter must be one character other than a line break, not {self.delimiter!r}.")
        check_encoding(self.encoding)
        object.__setattr__(self, "text_col", parse_column(self.text_col))
        object.__setattr__(self, "label_col", parse_column(self.label_col))
        object.__setattr__(self, "label_map", {str(k): str(v) for k, v in self.label_map.items()})
        if self.score_cols is not None:
            if self.format not in ("tsv", "csv") or not self.score_cols:
                raise ValueError(
                    "score_cols (one score column per label) is for tsv/csv files, and names at least one "
                    "label; JSONL gives soft labels as an object: {\"text\": ..., \"cats\": {\"POS\": 0.8, \"NEG\": 0.2}}."
                )
            object.__setattr__(self, "score_cols", {str(k): parse_column(v) for k, v in self.score_cols.items()})

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


def check_encoding(encoding: str) -> None:
    """Accepts text encodings that write a line break as the byte 0x0a."""
    unsupported = (
        f"Encoding {encoding!r} is not supported because lines are split on newline bytes; "
        f"re-encode the file first, e.g. `iconv -f {encoding} -t utf-8 IN > OUT`."
    )
    try:
        if codecs.lookup(encoding).name == "utf-8-sig":  # each line decodes; a BOM is dropped
            return
        newline = "\n".encode(encoding)
    except LookupError as e:
        # codecs such as rot13, base64 or zlib are found but are not text encodings
        what = f"Encoding {encoding!r} is not a text encoding" if "text encoding" in str(e) \
            else f"Unknown encoding {encoding!r}"
        raise ValueError(
            f"{what}: give the file's character encoding, e.g. utf-8, latin-1, cp1252, gb18030."
        ) from None
    except ValueError:
        raise ValueError(unsupported) from None
    try:
        decodes = b"\n".decode(encoding) == "\n"
    except ValueError:
        decodes = False
    if newline != b"\n" or not decodes:
        raise ValueError(unsupported)


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
