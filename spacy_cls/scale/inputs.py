"""Finding the input files, cutting them into row ranges, and reading a range into
the normalised rows that the classifier step takes.

A row's position is its 0-based record number in its file: a physical line of a
JSONL file (a blank line is a row, rejected), a data row of a CSV/TSV file (the
header is not a row) or a row of a Parquet file. Positions are what make a run
resumable and a generated id stable: the id of a row without one is
``<file>:<position + 1>``, the file named relative to the input folder.

Parsing is pyarrow's (CSV/TSV, Parquet); JSONL is read a line at a time with the
standard json module instead of pyarrow's reader, which fails a whole file on one
bad line where each line must be kept or rejected on its own.
"""
from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}

# The normalised rows, in and out of the classifier step. Internal columns start
# with "__" and are dropped before anything is written.
SOURCE = "__source"
ROW = "__row"
ID = "__id"
TEXT = "__text"
PROBLEM = "__problem"
NORMALISED = pa.schema(
    [(SOURCE, pa.string()), (ROW, pa.int64()), (ID, pa.string()), (TEXT, pa.string()), (PROBLEM, pa.string())]
)


class InputError(ValueError):
    """Input that cannot be read at all (as opposed to a row that is rejected)."""


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # relative to the input root: the stable part of generated ids
    format: str
    n_rows: int

    @property
    def key(self) -> str:
        return file_key(self.name)


def file_key(name: str) -> str:
    """A file's name made safe for part-file names, unique per relative path."""
    digest = hashlib.blake2b(name.encode("utf8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:80]}-{digest}"


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of one file."""

    file: InputFile
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


def find_input_files(spec: Union[str, Path, Sequence[Union[str, Path]]]) -> List[Tuple[Path, str]]:
    """(path, name relative to the input root) for a file, a folder (searched
    recursively for the known extensions), a glob, or a list of them."""
    if isinstance(spec, (list, tuple)):
        found: List[Tuple[Path, str]] = []
        for item in spec:
            found.extend(find_input_files(item))
        return _unique(found)
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _known(p) and not _hidden(p.relative_to(path)))
        if not files:
            raise InputError(f"The folder {path} holds no {', '.join(sorted(FORMATS))} files.")
        return [(p, p.relative_to(path).as_posix()) for p in files]
    if path.is_file():
        _format_of(path)
        return [(path, path.name)]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"No file matches {text}.")
        for p in files:
            _format_of(p)
        root = Path(_common_parent(files))
        return [(p, p.relative_to(root).as_posix()) for p in files]
    raise InputError(f"{text} is not a file, a folder or a glob that matches files.")


def _unique(found: List[Tuple[Path, str]]) -> List[Tuple[Path, str]]:
    names = {}
    for path, name in found:
        if name in names and names[name] != path.resolve():
            raise InputError(
                f"Two input files would give their rows the same ids ({name}): "
                f"{names[name]} and {path}. Give their common folder instead."
            )
        names[name] = path.resolve()
    return list({name: (path, name) for path, name in found}.values())


def _common_parent(files: List[Path]) -> str:
    import os

    parents = [str(p.resolve().parent) for p in files]
    return os.path.commonpath(parents)


def _known(path: Path) -> bool:
    return path.suffix.lower() in FORMATS


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type '{path.suffix}'. Give .jsonl, .csv, .tsv or .parquet files."
        )
    return fmt


def describe_files(spec, text_col: str) -> List[InputFile]:
    """The input files with their row counts (CSV/TSV files are read once to count)."""
    files = []
    for path, name in find_input_files(spec):
        fmt = _format_of(path)
        files.append(InputFile(path=path, name=name, format=fmt, n_rows=count_rows(path, fmt)))
    return files


def count_rows(path: Path, fmt: str) -> int:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "jsonl":
            return _count_lines(path)
        return sum(batch.num_rows for batch in _csv_batches(path, fmt, columns=None))
    except InputError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"Cannot read {path}: {e}") from e


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def plan_shards(files: Sequence[InputFile], shard_rows: int,
                done: Optional[dict] = None) -> List[Shard]:
    """Ranges of at most `shard_rows` rows covering each file, less the ranges in
    `done` ({file key: [(start, stop), ...]}) that an earlier run finished."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be at least 1, not {shard_rows}.")
    shards = []
    for file in files:
        for start, stop in _missing(file.n_rows, (done or {}).get(file.key, [])):
            for a in range(start, stop, shard_rows):
                shards.append(Shard(file, a, min(a + shard_rows, stop)))
    return shards


def _missing(n_rows: int, covered: Sequence[Tuple[int, int]]) -> Iterator[Tuple[int, int]]:
    position = 0
    for start, stop in sorted(covered):
        if start > position:
            yield position, min(start, n_rows)
        position = max(position, stop)
    if position < n_rows:
        yield position, n_rows


def read_shard(shard: Shard, text_col: str, id_col: Optional[str]) -> pa.Table:
    """The shard's rows, normalised (see `normalise`)."""
    file = shard.file
    try:
        if file.format == "jsonl":
            return _read_jsonl(shard, text_col, id_col)
        table = _read_table(shard, text_col, id_col)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"Cannot read rows {shard.start + 1}-{shard.stop} of {file.path}: {e}") from e
    if table.num_rows != shard.n_rows:
        raise InputError(
            f"{file.path} has changed since the run was planned: rows {shard.start + 1}-{shard.stop} "
            f"gave {table.num_rows} rows. Start again with --overwrite."
        )
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    n = table.num_rows
    return normalise(
        columns.get(text_col), columns.get(id_col) if id_col else None, n,
        text_col=text_col, id_col=id_col, source=file.name, first_row=shard.start,
    )


def _read_table(shard: Shard, text_col: str, id_col: Optional[str]) -> pa.Table:
    file = shard.file
    wanted = [c for c in (text_col, id_col) if c]
    if file.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(file.path)
        columns = [c for c in dict.fromkeys(wanted) if c in pf.schema_arrow.names]
        pieces, offset = [], 0
        for group in range(pf.num_row_groups):
            size = pf.metadata.row_group(group).num_rows
            if offset < shard.stop and offset + size > shard.start:
                part = pf.read_row_group(group, columns=columns)
                pieces.append(part.slice(max(shard.start - offset, 0), shard.stop - max(offset, shard.start)))
            offset += size
        if not pieces:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        return pa.concat_tables(pieces).combine_chunks()
    pieces, offset = [], 0
    for batch in _csv_batches(file.path, file.format, columns=wanted):
        size = batch.num_rows
        if offset + size > shard.start:
            pieces.append(batch.slice(max(shard.start - offset, 0), shard.stop - max(offset, shard.start)))
        offset += size
        if offset >= shard.stop:
            break
    if not pieces:
        return pa.table({})
    return pa.Table.from_batches(pieces)


def _csv_batches(path: Path, fmt: str, columns: Optional[List[str]]) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    # TSV files (SST-2, most corpus dumps) use quotes as text, not as quoting.
    parse = csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", quote_char=False if fmt == "tsv" else '"',
                             newlines_in_values=fmt != "tsv")
    header = csv.open_csv(path, parse_options=parse).schema.names
    include = [c for c in dict.fromkeys(columns or []) if c in header] or header[:1]
    # Strings as they are: "007" stays an id and "42" stays a text.
    convert = csv.ConvertOptions(include_columns=include, column_types={c: pa.string() for c in include},
                                 strings_can_be_null=False)
    reader = csv.open_csv(path, parse_options=parse, convert_options=convert,
                          read_options=csv.ReadOptions(block_size=1 << 22))
    yield from reader


def _read_jsonl(shard: Shard, text_col: str, id_col: Optional[str]) -> pa.Table:
    texts: List[Any] = []
    ids: List[Any] = []
    problems: List[Optional[str]] = []
    with shard.file.path.open("rb") as f:
        for i, raw in enumerate(f):
            if i < shard.start:
                continue
            if i >= shard.stop:
                break
            text = ident = problem = None
            try:
                line = raw.decode("utf8").strip()
                record = json.loads(line) if line else None
            except UnicodeDecodeError as e:
                problem = f"not UTF-8 ({e.reason} at byte {e.start})"
            except json.JSONDecodeError as e:
                problem = f"not valid JSON ({e.msg} at column {e.colno})"
            else:
                if record is None and not line:
                    problem = "blank line"
                elif not isinstance(record, dict):
                    problem = f"a JSON {type(record).__name__}, not an object with a '{text_col}' field"
                else:
                    text = record.get(text_col, _ABSENT)
                    ident = record.get(id_col, _ABSENT) if id_col else _ABSENT
            texts.append(text)
            ids.append(ident)
            problems.append(problem)
    n = len(texts)
    if n != shard.n_rows:
        raise InputError(
            f"{shard.file.path} has changed since the run was planned: it ends before line {shard.stop}. "
            f"Start again with --overwrite."
        )
    return normalise(texts, ids if id_col else None, n, text_col=text_col, id_col=id_col,
                     source=shard.file.name, first_row=shard.start, problems=problems)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def normalise(texts: Optional[Sequence[Any]], ids: Optional[Sequence[Any]], n_rows: int, *,
              text_col: str, id_col: Optional[str], source: Optional[str], first_row: int = 0,
              problems: Optional[Sequence[Optional[str]]] = None, rows: Optional[Sequence[int]] = None) -> pa.Table:
    """Columns `__source`, `__row`, `__id`, `__text`, `__problem` for `n_rows` rows.

    `texts` / `ids` are the values of the text and id columns (None: the column is
    missing). A row is rejected (`__problem` set) when its text is missing or not a
    string, or its id is missing or null while the input has an id column. A row
    without an id column gets ``<source>:<row number>``.
    """
    out_ids: List[str] = []
    out_texts: List[Optional[str]] = []
    out_problems: List[Optional[str]] = []
    positions = list(rows) if rows is not None else list(range(first_row, first_row + n_rows))
    for i in range(n_rows):
        generated = f"{source}:{positions[i] + 1}" if source is not None else None
        problem = problems[i] if problems is not None else None
        text = texts[i] if texts is not None else _ABSENT
        ident = ids[i] if ids is not None else _ABSENT
        if problem is None:
            problem = _text_problem(text, text_col) or _id_problem(ident, id_col, generated)
        out_ids.append(_id_value(ident, generated))
        out_texts.append(text if problem is None else None)
        out_problems.append(problem)
    return pa.table(
        [pa.array([source] * n_rows, pa.string()), pa.array(positions, pa.int64()), pa.array(out_ids, pa.string()),
         pa.array(out_texts, pa.string()), pa.array(out_problems, pa.string())],
        schema=NORMALISED,
    )


def _text_problem(text: Any, text_col: str) -> Optional[str]:
    if text is _ABSENT:
        return f"no '{text_col}' column"
    if text is None:
        return f"'{text_col}' is null"
    if not isinstance(text, str):
        return f"'{text_col}' is of type {type(text).__name__}, not a string"
    return None


def _id_problem(ident: Any, id_col: Optional[str], generated: Optional[str]) -> Optional[str]:
    if ident is _ABSENT:
        return None if generated is not None else f"no '{id_col}' column (and no file to name the row by)"
    if ident is None:
        return f"'{id_col}' is null"
    if isinstance(ident, (dict, list)):
        return f"'{id_col}' is of type {type(ident).__name__}, not a string or number"
    return None


def _id_value(ident: Any, generated: Optional[str]) -> Optional[str]:
    if ident is _ABSENT or ident is None or isinstance(ident, (dict, list)):
        return generated
    if isinstance(ident, float) and ident.is_integer():
        return str(int(ident))
    return str(ident)
