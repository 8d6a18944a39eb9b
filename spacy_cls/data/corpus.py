"""`spacy_cls.LabelledTextCorpus.v1`: a labelled text file read straight into training
examples by `spacy train`, optionally one side of a fixed held-out split."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .checks import accepted_rows
from .labels import row_cats, declared_labels, resolve_label_set
from .lines import check_text_file
from .records import Row, describe_rejected
from .spec import ReaderSpec

logger = logging.getLogger("spacy_cls")

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


def check_holdout(holdout: float) -> None:
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"Holding rows out needs a held-out fraction between 0 and 1 (e.g. 0.1), not {holdout}.")


def holdout_indexes(n_rows: int, holdout: float, seed: int) -> Set[int]:
    """The rows (0-based, among the accepted rows) that a fixed `holdout` fraction puts
    on the dev side; the same file, fraction and seed always give the same rows."""
    n_dev = min(n_rows, max(1, round(n_rows * holdout))) if n_rows else 0
    return set(random.Random(seed).sample(range(n_rows), n_dev))


def holdout_split(rows: Sequence[Row], holdout: float, seed: int) -> Tuple[List[Row], List[Row]]:
    """(train side, dev side) of the accepted rows, each in file order."""
    dev = holdout_indexes(len(rows), holdout, seed)
    return ([row for i, row in enumerate(rows) if i not in dev],
            [row for i, row in enumerate(rows) if i in dev])


class LabelledTextCorpus:
    """Yields `Example`s with `cats` from a labelled text file; rejected rows are skipped
    with one warning that counts them, so that yielded + rejected = read. The file is
    parsed once and the rows kept for later epochs.

    split="train" / "dev" with holdout=f keeps one side of a fixed random split of the
    accepted rows (f of them on the dev side, chosen by `seed`), for files that come
    without a dev set. The label set is taken from all rows, so both sides agree.
    """

    def __init__(self, path: Union[str, Path], spec: ReaderSpec, *, exclusive: bool = True,
                 labels: Optional[Sequence[str]] = None, limit: int = 0,
                 split: str = "all", holdout: float = 0.0, seed: int = 0) -> None:
        check_split(split, holdout)
        self.path = Path(path)
        if self.path.is_file():
            check_text_file(self.path)  # a .spacy path fails here, at config resolution
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
        rows, label_set = self._load(nlp.max_length)
        for row in rows[: self.limit] if self.limit > 0 else rows:
            yield Example.from_dict(nlp.make_doc(row.text), {"cats": row_cats(row, label_set)})

    def _load(self, max_length: int) -> Tuple[List[Row], List[str]]:
        if self._rows is None:
            allowed = declared_labels(self.spec, self.labels)
            rows, rejected = accepted_rows(self.path, self.spec, exclusive=self.exclusive,
                                           allowed=allowed, max_length=max_length)
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
        train, dev = holdout_split(rows, self.holdout, self.seed)
        return dev if self.split == "dev" else train


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
    score_cols: Optional[Dict[str, Union[int, str]]] = None,
    exclusive: bool = True,
    labels: Optional[List[str]] = None,
    limit: int = 0,
    split: str = "all",
    holdout: float = 0.0,
    seed: int = 0,
) -> Callable[[Language], Iterator[Example]]:
    """Read a TSV/CSV/JSONL/prefixed file straight into training examples.
    split="train"|"dev" with holdout=0.1 keeps one side of a fixed 90/10 split (by seed).
    Soft labels: a JSONL object {"POS": 0.8, "NEG": 0.2} as the label (or under "cats"),
    or score_cols = {"POS": "p_pos", "NEG": "p_neg"} for a table's score columns."""
    spec = ReaderSpec(
        format=format, text_col=text_col, label_col=label_col, header=header,
        encoding=encoding, quoting=quoting, delimiter=delimiter, label_map=label_map or {},
        label_names=label_names, label_sep=label_sep, level=level, score_cols=score_cols,
    )
    return LabelledTextCorpus(path, spec, exclusive=exclusive, labels=labels, limit=limit,
                              split=split, holdout=holdout, seed=seed)
