"""`spacy_cls.VectorCorpus.v1`: training examples whose [CLS] vectors were computed
beforehand (`python -m spacy_cls apply --vectors`, on one machine or a cluster),
joined by id with a labels file. A frozen encoder with pooling="cls" reads each
doc's vector instead of running, so `spacy train` trains only the head.

The labels file (.jsonl, .csv, .tsv or .parquet) has an id column and a label
column: one label (exclusive), or a list of labels or a `label_sep`-separated
string (multi-label). With a text column, the docs carry their text too.
Every labels row is either yielded or rejected (logged with its row number and
reason): no vector for its id, or no usable label. Vectors without a labels row
are not training data and are only counted.
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

logger = logging.getLogger("spacy_cls")

# The key the frozen encoder reads (spacy_cls.layers.precomputed.PRECOMPUTED_CLS);
# spelt out here because `data` imports nothing else from the package.
PRECOMPUTED_CLS = "spacy_cls.precomputed_cls"
VECTOR_COLUMN = "cls_vector"


class VectorCorpusError(ValueError):
    """Vector or label files that cannot make a training corpus."""


def read_vectors(path: Union[str, Path], id_col: str = "id") -> Dict[str, numpy.ndarray]:
    """{id: float32 [CLS] vector} from Parquet parts written by `apply --vectors`
    (a folder, one file, or a glob)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = _parquet_files(path)
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=None)
    for column in (id_col, VECTOR_COLUMN):
        if column not in table.column_names:
            raise VectorCorpusError(
                f"{path} has no '{column}' column ({', '.join(table.column_names)}): give the output of "
                f"python -m spacy_cls apply --vectors."
            )
    ids = [str(i) for i in table.column(id_col).to_pylist()]
    vectors = table.column(VECTOR_COLUMN).combine_chunks()
    if vectors.null_count:
        raise VectorCorpusError(f"{path}: {vectors.null_count} rows have no {VECTOR_COLUMN}.")
    width = vectors.type.list_size
    flat = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(numpy.float32, copy=False)
    matrix = flat.reshape(len(ids), width)
    found: Dict[str, numpy.ndarray] = {}
    repeated = []
    for i, ident in enumerate(ids):
        if ident in found:
            repeated.append(ident)
        found[ident] = matrix[i]
    if repeated:
        raise VectorCorpusError(
            f"{path}: {len(repeated)} ids have more than one vector (e.g. {', '.join(repeated[:3])}); "
            f"a label cannot tell which row it belongs to. Give every input row its own id."
        )
    return found


def _parquet_files(path: Union[str, Path]) -> List[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith(("_", ".")))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(path)))
    if not files:
        raise VectorCorpusError(f"No Parquet files at {path}.")
    return files


def read_label_rows(path: Union[str, Path]) -> Tuple[List[str], List[dict]]:
    """(column names, rows as dicts) of a .jsonl, .csv, .tsv or .parquet labels file."""
    import pyarrow as pa
    from pyarrow import csv, json as pa_json, parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            table = pa_json.read_json(path)
        elif suffix in (".csv", ".tsv"):
            tsv = suffix == ".tsv"
            table = csv.read_csv(
                path,
                parse_options=csv.ParseOptions(delimiter="\t" if tsv else ",", quote_char=False if tsv else '"'),
                convert_options=csv.ConvertOptions(strings_can_be_null=False, column_types=_all_strings(path, tsv)),
            )
        else:
            raise VectorCorpusError(f"{path}: give the labels as .jsonl, .csv, .tsv or .parquet.")
    except (OSError, pa.ArrowException) as e:
        raise VectorCorpusError(f"Cannot read the labels file {path}: {e}") from e
    return table.column_names, table.to_pylist()


def _all_strings(path: Path, tsv: bool) -> Dict[str, object]:
    import pyarrow as pa
    from pyarrow import csv

    parse = csv.ParseOptions(delimiter="\t" if tsv else ",", quote_char=False if tsv else '"')
    return {name: pa.string() for name in csv.open_csv(path, parse_options=parse).schema.names}


class VectorCorpus:
    def __init__(self, vectors: Union[str, Path], labels_path: Union[str, Path], *, id_col: str = "id",
                 label_col: str = "label", text_col: Optional[str] = "text", label_sep: Optional[str] = None,
                 exclusive: bool = True, labels: Optional[Sequence[str]] = None, limit: int = 0) -> None:
        self.vectors_path = vectors
        self.labels_path = Path(labels_path)
        self.id_col = id_col
        self.label_col = label_col
        self.text_col = text_col
        self.label_sep = label_sep
        self.exclusive = exclusive
        self.labels = list(labels) if labels is not None else None
        self.limit = limit
        self._rows: Optional[List[Tuple[str, Tuple[str, ...], numpy.ndarray]]] = None
        self._label_set: List[str] = []

    def __call__(self, nlp: Language) -> Iterator[Example]:
        rows, label_set = self._load()
        for text, chosen, vector in rows[: self.limit] if self.limit > 0 else rows:
            doc = nlp.make_doc(text)
            doc.user_data[PRECOMPUTED_CLS] = vector
            yield Example.from_dict(doc, {"cats": {label: float(label in chosen) for label in label_set}})

    def _load(self):
        if self._rows is None:
            vectors = read_vectors(self.vectors_path, self.id_col)
            columns, records = read_label_rows(self.labels_path)
            for column in (self.id_col, self.label_col):
                if column not in columns:
                    raise VectorCorpusError(f"{self.labels_path} has no '{column}' column ({', '.join(columns)}).")
            rows, rejected, seen = [], [], set()
            for number, record in enumerate(records, start=1):
                problem, parsed = self._parse(record, vectors, seen)
                if problem:
                    rejected.append(f"row {number}: {problem}")
                else:
                    rows.append(parsed)
            if rejected:
                logger.warning("%s: skipped %d rejected rows of %d: %s", self.labels_path, len(rejected),
                               len(records), "; ".join(rejected[:5]))
            unlabelled = len(vectors) - len(seen)
            if unlabelled:
                logger.info("%s: %d vectors have no row in %s (not used).", self.vectors_path, unlabelled, self.labels_path)
            if not rows:
                raise VectorCorpusError(
                    f"No labels row of {self.labels_path} has a vector in {self.vectors_path}: are the ids the "
                    f"same ('{self.id_col}' in both)? {'; '.join(rejected[:3])}"
                )
            found = sorted({label for _, chosen, _ in rows for label in chosen})
            self._label_set = self.labels if self.labels is not None else found
            unknown = sorted(set(found) - set(self._label_set))
            if unknown:
                raise VectorCorpusError(f"{self.labels_path} has labels not in `labels`: {', '.join(unknown)}.")
            self._rows = rows
        return self._rows, self._label_set

    def _parse(self, record: dict, vectors: Dict[str, numpy.ndarray], seen: set):
        ident = record.get(self.id_col)
        if ident is None:
            return f"no {self.id_col}", None
        ident = str(int(ident)) if isinstance(ident, float) and ident.is_integer() else str(ident)
        if ident in seen:
            return f"id {ident!r} labelled twice", None
        vector = vectors.get(ident)
        if vector is None:
            return f"no vector for id {ident!r}", None
        chosen = self._labels_of(record.get(self.label_col))
        if isinstance(chosen, str):
            return f"id {ident!r}: {chosen}", None
        seen.add(ident)
        text = record.get(self.text_col) if self.text_col else None
        return None, (text if isinstance(text, str) else "", chosen, vector)

    def _labels_of(self, value) -> Union[str, Tuple[str, ...]]:
        """The labels, or a str saying why there are none usable."""
        if value is None:
            return "no label"
        if isinstance(value, (list, tuple)):
            parts = [str(v) for v in value]
        elif self.label_sep and isinstance(value, str):
            parts = [p.strip() for p in value.split(self.label_sep) if p.strip()]
        else:
            parts = [str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)]
        if self.exclusive and len(parts) != 1:
            return f"{len(parts)} labels for an exclusive classifier (use exclusive = false for multi-label)"
        return tuple(dict.fromkeys(parts))


@registry.readers("spacy_cls.VectorCorpus.v1")
def create_vector_corpus(
    vectors: Path,
    labels_path: Path,
    id_col: str = "id",
    label_col: str = "label",
    text_col: Optional[str] = "text",
    label_sep: Optional[str] = None,
    exclusive: bool = True,
    labels: Optional[List[str]] = None,
    limit: int = 0,
) -> Callable[[Language], Iterator[Example]]:
    """Examples from [CLS] vectors written by `apply --vectors` (`vectors`: the output
    folder) joined by id with `labels_path`; train with freeze = true and pooling = "cls"."""
    return VectorCorpus(vectors, labels_path, id_col=id_col, label_col=label_col, text_col=text_col,
                        label_sep=label_sep, exclusive=exclusive, labels=labels, limit=limit)
