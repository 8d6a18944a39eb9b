"""Read labelled text files (TSV, CSV, JSONL, TREC-style prefixed lines).

`read_rows` yields a `Row` or a `Rejected` for every physical record of a file, so that
no line is ever dropped silently. The registered reader `spacy_cls.LabelledTextCorpus.v1`
lets a training config read these files directly.

This module gathers the public names; each part lives in its own module:
`spec` (ReaderSpec), `lines` (physical lines and decoding), `header` (the header guess),
`labels` (label cells, label sets, cats), `formats` (parsing, `read_rows`), `checks`
(the rows accepted for training) and `corpus` (the corpus reader and held-out split).
"""
from .checks import SPACY_MAX_LENGTH, accepted_rows, check_length
from .corpus import (
    SPLITS,
    LabelledTextCorpus,
    check_holdout,
    check_split,
    create_labelled_text_corpus,
    holdout_indexes,
    holdout_split,
)
from .formats import detect_header, header_line, read_rows
from .header import HEADER_WORDS, SAMPLE_SIZE
from .labels import (
    LabelParser,
    cats_for,
    check_labels,
    declared_labels,
    load_label_names,
    resolve_label_set,
    row_cats,
    single_row_labels,
)
from .lines import check_text_file
from .records import Record, Rejected, Row, RowError, describe_rejected, split_records
from .spec import DEFAULT_SPEC, FORMATS, LEVELS, Column, HeaderMode, ReaderSpec, infer_format, parse_column

__all__ = [
    "Column", "DEFAULT_SPEC", "FORMATS", "HEADER_WORDS", "HeaderMode", "LEVELS", "LabelParser",
    "LabelledTextCorpus", "Record", "Rejected", "ReaderSpec", "Row", "RowError", "SAMPLE_SIZE",
    "SPACY_MAX_LENGTH", "SPLITS", "accepted_rows", "cats_for", "check_holdout", "check_labels",
    "check_length", "check_split", "check_text_file", "create_labelled_text_corpus",
    "declared_labels", "describe_rejected", "detect_header", "header_line", "holdout_indexes",
    "holdout_split", "infer_format", "load_label_names", "parse_column", "read_rows",
    "resolve_label_set", "row_cats", "single_row_labels", "split_records",
]
