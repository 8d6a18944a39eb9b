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
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .fingerprint import METADATA_KEY, NotLoaded, cls_output_bound, describe, encoder_fingerprint

logger = logging.getLogger("spacy_cls")

# The key the frozen encoder reads (spacy_cls.layers.precomputed.PRECOMPUTED_CLS);
# spelt out here because `data` imports nothing else from the package.
PRECOMPUTED_CLS = "spacy_cls.precomputed_cls"
VECTOR_COLUMN = "cls_vector"


class VectorCorpusError(ValueError):
    """Vector or label files that cannot make a training corpus."""


# Beyond any [CLS] vector a BERT-family encoder gives when its final LayerNorm is not
# known: see `magnitude_bound`.
FALLBACK_BOUND = 1e4


@dataclass
class VectorRows:
    """The usable vectors of a set of Parquet files, and what was rejected."""

    vectors: Dict[str, numpy.ndarray]
    rejected: List[str]  # "file row N (id X): reason"
    n_read: int
    encoders: Dict[str, dict]  # fingerprint -> the record, from the files' metadata
    unrecorded: List[Path]  # files without one
    width: int


def read_vectors(path: Union[str, Path], id_col: str = "id", *, width: Optional[int] = None,
                 bound: Optional[float] = None) -> Dict[str, numpy.ndarray]:
    """{id: float32 [CLS] vector} from Parquet files (a folder, one file, or a glob)."""
    return read_vector_rows(path, id_col, width=width, bound=bound).vectors


def read_vector_rows(path: Union[str, Path], id_col: str = "id", *, width: Optional[int] = None,
                     bound: Optional[float] = None) -> VectorRows:
    """Every row of the Parquet files, kept or rejected with its file, row, id and
    reason. The vector column may be any list of numbers (`list`, `large_list`,
    `fixed_size_list`; float16/32/64 or integers: what pyarrow, pandas and Ray write).
    A row is rejected when its id is null, its vector is null, has another width
    than `width` (None: the width most rows have), holds a NaN, an infinity or a
    null, or a value beyond `bound` (None: FALLBACK_BOUND)."""
    import pyarrow.parquet as pq

    files = _parquet_files(path)
    bound = FALLBACK_BOUND if bound is None else bound
    columns = []
    encoders: Dict[str, dict] = {}
    unrecorded: List[Path] = []
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
            schema = parquet.schema_arrow
        except Exception as e:  # noqa: BLE001  (pyarrow raises several kinds)
            raise VectorCorpusError(f"Cannot read the vectors file {file}: {e}") from e
        for column in (id_col, VECTOR_COLUMN):
            if column not in schema.names:
                raise VectorCorpusError(
                    f"{file} has no '{column}' column ({', '.join(schema.names)}): give the output of "
                    f"python -m spacy_cls apply --vectors, or Parquet with an id column and a "
                    f"'{VECTOR_COLUMN}' list column."
                )
        record = _encoder_record(schema.metadata or {})
        if record is None:
            unrecorded.append(file)
        else:
            encoders[record.get("fingerprint", "?")] = record
        table = parquet.read(columns=[id_col, VECTOR_COLUMN])
        columns.append((file, table.column(id_col), table.column(VECTOR_COLUMN).combine_chunks()))
    if len(encoders) > 1:
        names = [describe(record) for record in encoders.values()]
        raise VectorCorpusError(
            f"The vectors in {path} were made by {len(names)} different encoders ({'; '.join(names[:3])}): "
            f"a head can learn from one encoder's vectors only. Make them again into one folder with the "
            f"encoder this head will run with."
        )
    if width is None:
        width = _common_width([c for _, _, c in columns])
    found: Dict[str, numpy.ndarray] = {}
    rejected: List[str] = []
    repeated: List[str] = []
    n_read = 0
    for file, id_column, vector_column in columns:
        ids = id_column.to_pylist()
        matrix, problems = _vector_matrix(vector_column, width, bound)
        n_read += len(ids)
        for i, ident in enumerate(ids):
            name = None if ident is None else (str(int(ident)) if isinstance(ident, float) and ident.is_integer()
                                               else str(ident))
            problem = f"'{id_col}' is null" if name is None else problems[i]
            if problem:
                rejected.append(f"{file.name} row {i + 1} (id {name!r}): {problem}")
                continue
            if name in found:
                repeated.append(name)
            found[name] = matrix[i]
    if repeated:
        raise VectorCorpusError(
            f"{path}: {len(repeated)} ids have more than one vector (e.g. {', '.join(repeated[:3])}); "
            f"a label cannot tell which row it belongs to. Give every input row its own id."
        )
    return VectorRows(found, rejected, n_read, encoders, unrecorded, width)


def _encoder_record(metadata: Dict[bytes, bytes]) -> Optional[dict]:
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _is_list(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _common_width(arrays) -> int:
    import pyarrow.compute as pc

    counts: Dict[int, int] = {}
    for array in arrays:
        if not _is_list(array.type):
            continue
        lengths = pc.list_value_length(array).drop_null().to_numpy(zero_copy_only=False)
        for value, n in zip(*numpy.unique(lengths, return_counts=True)):
            counts[int(value)] = counts.get(int(value), 0) + int(n)
    return max(counts, key=lambda w: (counts[w], w)) if counts else 0


def _vector_matrix(array, width: int, bound: float) -> Tuple[numpy.ndarray, List[Optional[str]]]:
    """(n, width) float32 rows of a list column, and why each unusable row is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(array)
    matrix = numpy.zeros((n, width), dtype=numpy.float32)
    if not _is_list(array.type):
        return matrix, [f"'{VECTOR_COLUMN}' is a column of {array.type}, not a list of numbers"] * n
    value_type = array.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        return matrix, [f"'{VECTOR_COLUMN}' holds lists of {value_type}, not of numbers"] * n
    problems: List[Optional[str]] = [None] * n
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(numpy.int64)
    # flatten() leaves out null lists' values, so rows start at the running sum of lengths.
    flat = array.flatten()
    native = pa.types.is_float32(value_type) or pa.types.is_float64(value_type)
    values = (flat if native else flat.cast(pa.float64())).to_numpy(zero_copy_only=False) if len(flat) else numpy.zeros(0)
    sized = valid & (lengths == width)
    rows = numpy.flatnonzero(sized)
    if rows.size == n and values.size == n * width:
        block = values.reshape(n, width)
    elif rows.size and width:
        starts = numpy.concatenate([[0], numpy.cumsum(numpy.where(valid, lengths, 0))[:-1]]).astype(numpy.int64)
        block = values[starts[rows, None] + numpy.arange(width)]
    else:
        block = numpy.zeros((rows.size, width))
    finite = numpy.isfinite(block)
    in_range = numpy.abs(numpy.where(finite, block, 0.0)) <= bound
    good = finite.all(axis=1) & in_range.all(axis=1)
    if good.all() and rows.size == n:
        matrix = block.astype(numpy.float32, copy=False)
    else:
        matrix[rows[good]] = block[good]
    for i in numpy.flatnonzero(~valid):
        problems[i] = f"no vector ('{VECTOR_COLUMN}' is null)"
    for i in numpy.flatnonzero(valid & ~sized):
        problems[i] = f"a vector of {lengths[i]} values; the encoder gives {width}"
    for k in numpy.flatnonzero(~good):
        i, row = rows[k], block[k]
        if not finite[k].all():
            j = int(numpy.flatnonzero(~finite[k])[0])
            problems[i] = f"value {j + 1} of the vector is {row[j]} (NaN, infinite or null)"
        else:
            j = int(numpy.flatnonzero(~in_range[k])[0])
            problems[i] = (f"value {j + 1} of the vector is {row[j]:.6g}, beyond the {bound:.6g} "
                           f"that this encoder's [CLS] output can reach")
    return matrix, problems


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
    from pyarrow import csv, parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            return _jsonl_rows(path)
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


# The key of a labels row that could not be read: its reason.
UNREADABLE = "\0unreadable"


def _jsonl_rows(path: Path) -> Tuple[List[str], List[dict]]:
    """A JSONL labels file a line at a time: a line that is blank, not JSON or not an
    object becomes a row holding only why (UNREADABLE), rejected with its number."""
    rows: List[dict] = []
    columns: Dict[str, None] = {}
    with path.open("rb") as f:
        for raw in f:
            try:
                line = raw.decode("utf8").strip()
                record = json.loads(line) if line else None
            except UnicodeDecodeError as e:
                rows.append({UNREADABLE: f"not UTF-8 ({e.reason})"})
                continue
            except (ValueError, RecursionError) as e:
                rows.append({UNREADABLE: f"not valid JSON ({e})"})
                continue
            if not isinstance(record, dict):
                rows.append({UNREADABLE: "blank line" if not line else f"a JSON {type(record).__name__}, not an object"})
                continue
            columns.update(dict.fromkeys(record))
            rows.append(record)
    return list(columns), rows


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
        self._found: Optional[VectorRows] = None
        self._checked = False
        self.rejected: List[str] = []

    def __call__(self, nlp: Language) -> Iterator[Example]:
        rows, label_set = self._load(nlp)
        if not self._checked:
            self._check_encoder(nlp)
            rows = self._rows
        for text, chosen, vector in rows[: self.limit] if self.limit > 0 else rows:
            doc = nlp.make_doc(text)
            doc.user_data[PRECOMPUTED_CLS] = vector
            yield Example.from_dict(doc, {"cats": {label: float(label in chosen) for label in label_set}})

    def _load(self, nlp: Optional[Language] = None):
        if self._rows is None:
            width = bound = None
            if nlp is not None:
                try:
                    mine = encoder_fingerprint(nlp)
                except NotLoaded:
                    mine = None
                width = (mine or {}).get("width")
                bound = cls_output_bound(nlp)
            found = read_vector_rows(self.vectors_path, self.id_col, width=width, bound=bound)
            self._check_recorded(found)
            self._found = found
            if found.rejected:
                logger.warning("%s: rejected %d of %d vector rows: %s", self.vectors_path, len(found.rejected),
                               found.n_read, "; ".join(found.rejected[:5]))
            vectors = found.vectors
            columns, records = read_label_rows(self.labels_path)
            for column in (self.id_col, self.label_col):
                if column not in columns:
                    raise VectorCorpusError(f"{self.labels_path} has no '{column}' column ({', '.join(columns)}).")
            rows, rejected, seen = [], [], set()
            unusable = {entry.split("(id ", 1)[1].split("):", 1)[0] for entry in found.rejected if "(id " in entry}
            for number, record in enumerate(records, start=1):
                problem, parsed = self._parse(record, vectors, seen)
                if problem and problem.startswith("no vector for id") and repr(_id_text(record.get(self.id_col))) in unusable:
                    problem = f"the vector of id {_id_text(record.get(self.id_col))!r} is rejected (see above)"
                if problem:
                    rejected.append(f"row {number}: {problem}")
                else:
                    rows.append(parsed)
            self.rejected = rejected
            if rejected:
                logger.warning("%s: skipped %d rejected rows of %d: %s", self.labels_path, len(rejected),
                               len(records), "; ".join(rejected[:5]))
            unlabelled = len(vectors) - len(seen)
            if unlabelled:
                logger.info("%s: %d vectors have no row in %s (not used).", self.vectors_path, unlabelled, self.labels_path)
            if not rows:
                raise VectorCorpusError(
                    f"No labels row of {self.labels_path} has a usable vector in {self.vectors_path}: are the ids "
                    f"the same ('{self.id_col}' in both)? {'; '.join(rejected[:3])}"
                )
            found_labels = sorted({label for _, chosen, _ in rows for label in chosen})
            self._label_set = self.labels if self.labels is not None else found_labels
            unknown = sorted(set(found_labels) - set(self._label_set))
            if unknown:
                raise VectorCorpusError(f"{self.labels_path} has labels not in `labels`: {', '.join(unknown)}.")
            self._rows = rows
        return self._rows, self._label_set

    def _check_recorded(self, found: "VectorRows") -> None:
        key = str(Path(self.vectors_path).resolve())
        if found.unrecorded and key not in _WARNED_UNRECORDED:
            _WARNED_UNRECORDED.add(key)
            logger.warning(
                "%s: %d Parquet files do not say which encoder made their vectors (not written by "
                "python -m spacy_cls apply --vectors; e.g. %s). They are used as they are: they must come "
                "from the encoder that runs at inference, the training pipeline's, or the head learns "
                "from vectors it will never see.", self.vectors_path, len(found.unrecorded), found.unrecorded[0].name,
            )

    def _check_encoder(self, nlp: Language) -> None:
        """Once the training pipeline's encoder has its weights: refuse vectors that
        another encoder made, and vectors beyond its output's range."""
        try:
            mine = encoder_fingerprint(nlp)
        except NotLoaded:
            return
        self._checked = True
        if mine is None:
            return
        for record in self._found.encoders.values():
            if record.get("fingerprint") != mine["fingerprint"]:
                raise VectorCorpusError(
                    f"The vectors in {self.vectors_path} were made by the encoder {describe(record)}, and this "
                    f"pipeline trains its head on the encoder {describe(mine)}. At inference the head would "
                    f"read the second encoder's vectors: make the vectors with python -m spacy_cls apply "
                    f"--vectors on a pipeline whose encoder is the one this config loads (its checkpoint as "
                    f"it is, for a frozen encoder), or train on the encoder that made them."
                )
        bound = cls_output_bound(nlp)
        width = mine.get("width")
        kept, dropped = [], []
        for row in self._rows or []:
            vector = row[2]
            if width and vector.shape != (width,):
                dropped.append(f"a vector of {vector.shape[0]} values; the encoder gives {width}")
            elif bound is not None and float(numpy.abs(vector).max(initial=0.0)) > bound:
                dropped.append(f"a value of {float(numpy.abs(vector).max()):.6g}, beyond the {bound:.6g} "
                               f"that this encoder's [CLS] output can reach")
            else:
                kept.append(row)
        if dropped:
            logger.warning("%s: rejected %d more vector rows against the encoder's output: %s",
                           self.vectors_path, len(dropped), "; ".join(dropped[:5]))
            if not kept:
                raise VectorCorpusError(f"No vector in {self.vectors_path} fits this encoder: {dropped[0]}.")
            self._rows = kept

    def _parse(self, record: dict, vectors: Dict[str, numpy.ndarray], seen: set):
        if UNREADABLE in record:
            return record[UNREADABLE], None
        ident = _id_text(record.get(self.id_col))
        if ident is None:
            return f"no {self.id_col}", None
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


def _id_text(ident) -> Optional[str]:
    if ident is None:
        return None
    return str(int(ident)) if isinstance(ident, float) and ident.is_integer() else str(ident)


# Vector folders already warned about (no encoder fingerprint): one warning a process.
_WARNED_UNRECORDED: set = set()


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
