"""Turn doc texts into padded word-piece batches, applying the long-text policy.

Policies for a text longer than the encoder's maximum length:
- ``truncate``: keep the first window ([CLS] + the first ``max_length - 2`` pieces + [SEP]);
  the encoder warns once per pipeline and counts the cut docs.
- ``windows``: cut the text into windows of ``max_length`` pieces that overlap by
  ``stride`` pieces, encode each, and average the windows' vectors per doc.
"""
from dataclasses import dataclass
from typing import List

import numpy

LONG_TEXT_POLICIES = ("truncate", "windows")


@dataclass
class WindowBatch:
    """Padded word pieces of a batch of docs; one row per window, ``doc_index``
    says which doc each row belongs to (several rows per doc under ``windows``)."""

    input_ids: numpy.ndarray  # (n_windows, length) int64
    attention_mask: numpy.ndarray  # (n_windows, length) int64
    doc_index: numpy.ndarray  # (n_windows,) int64
    n_docs: int
    n_cut: int  # docs longer than max_length that lost text

    @property
    def n_real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def n_padded_tokens(self) -> int:
        return int(self.attention_mask.size)


def check_policy(long_text: str, max_length: int, stride: int) -> None:
    if long_text not in LONG_TEXT_POLICIES:
        raise ValueError(
            f"Unknown long_text policy '{long_text}'. Choose one of "
            f"{', '.join(LONG_TEXT_POLICIES)}."
        )
    if long_text == "windows" and not 0 <= stride < max_length - 2:
        raise ValueError(
            f"stride={stride} must be at least 0 and smaller than max_length - 2 "
            f"({max_length - 2}): it is the overlap between consecutive windows."
        )


def encode_texts(
    tokenizer, texts: List[str], max_length: int, long_text: str, stride: int
) -> WindowBatch:
    """Tokenise with the fast tokenizer. Special-token strings inside the text
    ("[CLS]", "[SEP]", ...) are read as plain text, never as control tokens."""
    windows = long_text == "windows"
    encoding = tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=max_length,
        stride=stride if windows else 0,
        return_overflowing_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        split_special_tokens=True,
        padding=False,
    )
    sample_map = numpy.asarray(encoding["overflow_to_sample_mapping"], dtype="int64")
    rows = encoding["input_ids"]
    first_of_doc = numpy.ones(len(sample_map), dtype=bool)
    first_of_doc[1:] = sample_map[1:] != sample_map[:-1]
    n_cut = len(sample_map) - int(first_of_doc.sum())
    n_cut = len(numpy.unique(sample_map[~first_of_doc])) if n_cut else 0
    if not windows:
        keep = numpy.flatnonzero(first_of_doc)
        rows = [rows[i] for i in keep]
        sample_map = sample_map[keep]
    input_ids, attention_mask = pad_rows(rows, tokenizer.pad_token_id or 0)
    return WindowBatch(input_ids, attention_mask, sample_map, len(texts), n_cut)


def pad_rows(rows: List[List[int]], pad_id: int):
    length = max((len(r) for r in rows), default=0)
    input_ids = numpy.full((len(rows), length), pad_id, dtype="int64")
    attention_mask = numpy.zeros((len(rows), length), dtype="int64")
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask
