"""Turn doc texts into padded word-piece batches, applying the long-text policy.

Policies for a text longer than the encoder's maximum length:
- ``truncate``: keep the first window ([CLS] + the first ``max_length - 2`` pieces + [SEP]);
  the encoder warns once per pipeline and counts the cut docs.
- ``windows``: cut the text into windows of ``max_length`` pieces that overlap by
  ``stride`` pieces, encode each, and average the windows' vectors per doc. With
  ``max_windows`` set, a doc reads at most its first ``max_windows`` windows (memory
  in training grows with the windows of a batch); the rest is cut, warned and counted
  as under ``truncate``.
"""
import re
from dataclasses import dataclass
from typing import List, Optional

import numpy

LONG_TEXT_POLICIES = ("truncate", "windows")
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def length_sorted_parts(batch: WindowBatch, max_rows: int, pass_cost: int) -> List[numpy.ndarray]:
    """Row indices in groups of rows of similar length, each run as one forward pass
    padded to its own longest row. The rows are sorted by length and cut where that
    minimises the padded word pieces plus `pass_cost` word pieces per pass (what one
    more pass costs in fixed overhead); `max_rows` > 0 caps the rows of a group."""
    lengths = batch.attention_mask.sum(axis=1)
    n_rows = len(lengths)
    if n_rows == 0:
        return []
    order = numpy.argsort(lengths, kind="stable")
    cuts = _best_cuts(lengths[order].tolist(), max_rows if max_rows > 0 else n_rows, pass_cost)
    if len(cuts) == 2:
        return [numpy.arange(n_rows)]
    return [order[start:end] for start, end in zip(cuts[:-1], cuts[1:])]


def _best_cuts(sorted_lengths: List[int], max_rows: int, pass_cost: int) -> List[int]:
    """Dynamic programme over the sorted lengths: best[j] is the least cost of the
    first j rows, a group (i, j] costing pass_cost + (j - i) * sorted_lengths[j - 1]."""
    n = len(sorted_lengths)
    best = numpy.zeros(n + 1, dtype=numpy.int64)
    start = numpy.zeros(n + 1, dtype=numpy.int64)
    positions = numpy.arange(n + 1, dtype=numpy.int64)
    for j in range(1, n + 1):
        first = max(0, j - max_rows)
        costs = best[first:j] + pass_cost + (j - positions[first:j]) * sorted_lengths[j - 1]
        k = int(numpy.argmin(costs))
        best[j], start[j] = costs[k], first + k
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    return cuts[::-1]


def check_policy(long_text: str, max_length: int, stride: int, max_windows: Optional[int] = None) -> None:
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
    if max_windows is not None and max_windows < 1:
        raise ValueError(
            f"max_windows={max_windows}: use a number of windows of at least 1, or null "
            f"to read every window of every doc."
        )


def encode_texts(
    tokenizer,
    texts: List[str],
    max_length: int,
    long_text: str,
    stride: int,
    max_windows: Optional[int] = None,
) -> WindowBatch:
    """Tokenise with the fast tokenizer. Special-token strings inside the text
    ("[CLS]", "[SEP]", ...) are read as plain text, never as control tokens; code
    points UTF-8 cannot hold are replaced first (`encodable_text`)."""
    windows = long_text == "windows"
    encoding = tokenizer(
        [encodable_text(text) for text in texts],
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
    # Each row's position among its doc's windows (rows of a doc are consecutive).
    first_row = numpy.searchsorted(sample_map, sample_map)
    rank = numpy.arange(len(sample_map)) - first_row
    limit = (max_windows or len(sample_map)) if windows else 1
    kept = rank < limit
    n_cut = len(numpy.unique(sample_map[~kept]))
    if not kept.all():
        keep = numpy.flatnonzero(kept)
        rows = [rows[i] for i in keep]
        sample_map = sample_map[keep]
    input_ids, attention_mask = pad_rows(rows, tokenizer.pad_token_id or 0)
    return WindowBatch(input_ids, attention_mask, sample_map, len(texts), n_cut)


def encodable_text(text: str) -> str:
    """`text` with each surrogate code point (U+D800-U+DFFF, as left by JSON escapes
    like "\\ud800" or by decoding bytes with errors="surrogateescape") replaced by
    U+FFFD, one for one, so character offsets stay. Hugging Face's fast tokenizers, like
    UTF-8, cannot take such code points."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def pad_rows(rows: List[List[int]], pad_id: int):
    length = max((len(r) for r in rows), default=0)
    input_ids = numpy.full((len(rows), length), pad_id, dtype="int64")
    attention_mask = numpy.zeros((len(rows), length), dtype="int64")
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask
