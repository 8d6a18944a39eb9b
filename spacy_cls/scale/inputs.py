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
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".txt": "lines"}
# What --input-format takes. "lines": one text a line, no columns (a .txt file); a
# folder is searched for .txt files only when the format is asked for.
FORMAT_NAMES = ("jsonl", "csv", "tsv", "parquet", "lines")
_TABLE_SUFFIXES = {suffix for suffix, fmt in FORMATS.items() if fmt != "lines"}
# A carried input column is written as `<name>` and travels as KEEP + name.
KEEP = "__col:"
_SURROGATE = re.compile("[\ud800-\udfff]")

# The normalised rows, in and out of the classifier step. Internal columns start
# with "__" and are dropped before anything is written.
SOURCE = "__source"
ROW = "__row"
ID = "__id"
TEXT = "__text"
PROBLEM = "__problem"
# Per classified batch: the docs the long-text policy cut, counted on its first row.
CUT = "__cut"
# With vectors: the fingerprint of the encoder that made them (JSON), for the metadata.
ENCODER = "__encoder"
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


def find_input_files(spec: Union[str, Path, Sequence[Union[str, Path]]],
                     fmt: Optional[str] = None) -> List[Tuple[Path, str]]:
    """(path, name relative to the input root) for a file, a folder (searched
    recursively for the known extensions, or for `fmt`'s), a glob, or a list of them."""
    check_format_name(fmt)
    if isinstance(spec, (list, tuple)):
        found: List[Tuple[Path, str]] = []
        for item in spec:
            found.extend(find_input_files(item, fmt))
        return _unique(found)
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and _wanted(p, fmt) and not _hidden(p.relative_to(path)))
        if not files:
            wanted = sorted(s for s, f in FORMATS.items() if f == fmt) if fmt else sorted(_TABLE_SUFFIXES)
            raise InputError(f"The folder {path} holds no {', '.join(wanted)} files.")
        return [(p, p.relative_to(path).as_posix()) for p in files]
    if path.is_file():
        format_of(path, fmt)
        return [(path, path.name)]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"No file matches {text}.")
        for p in files:
            format_of(p, fmt)
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


def _wanted(path: Path, fmt: Optional[str]) -> bool:
    suffix = path.suffix.lower()
    if fmt is None:
        return suffix in _TABLE_SUFFIXES
    return FORMATS.get(suffix) == fmt


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def check_format_name(fmt: Optional[str]) -> None:
    if fmt is not None and fmt not in FORMAT_NAMES:
        raise InputError(f"Input format '{fmt}': choose one of {', '.join(FORMAT_NAMES)}.")


def format_of(path: Path, fmt: Optional[str] = None) -> str:
    """The format a file is read in: its extension's, or `fmt` for a file whose
    extension names no format. An extension that names another format than `fmt`
    is refused, so that a .csv is never read as lines (nor a .jsonl as CSV)."""
    check_format_name(fmt)
    by_suffix = FORMATS.get(path.suffix.lower())
    if by_suffix is None:
        if fmt is not None:
            return fmt
        raise InputError(
            f"{path}: unknown file type '{path.suffix}'. Give .jsonl, .csv, .tsv, .parquet or .txt "
            f"(one text a line) files, or name the format with --input-format {'|'.join(FORMAT_NAMES)}."
        )
    if fmt is not None and fmt != by_suffix:
        raise InputError(
            f"{path} is a {path.suffix} file, read as {by_suffix}; --input-format {fmt} does not apply to it. "
            f"Drop --input-format, or rename the file to match its format."
        )
    return by_suffix


def describe_files(spec, text_col: str = "text", fmt: Optional[str] = None) -> List[InputFile]:
    """The input files with their row counts (CSV/TSV files are read once to count)."""
    files = []
    for path, name in find_input_files(spec, fmt):
        file_fmt = format_of(path, fmt)
        files.append(InputFile(path=path, name=name, format=file_fmt, n_rows=count_rows(path, file_fmt)))
    return files


def count_rows(path: Path, fmt: str) -> int:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if fmt in ("jsonl", "lines"):
            return _count_lines(path)
        return sum(batch.num_rows for batch in _csv_batches(path, fmt, columns=[], binary=True))
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


def read_shard(shard: Shard, text_col: str, id_col: Optional[str], keep: Sequence[str] = ()) -> pa.Table:
    """The shard's rows, normalised (see `normalise`), with the `keep` columns
    carried as strings (KEEP + name)."""
    values, problems = read_values(shard, [text_col, id_col, *keep])
    return normalise(
        values.get(text_col), values.get(id_col) if id_col else None, shard.n_rows,
        text_col=text_col, id_col=id_col, source=shard.file.name, first_row=shard.start, problems=problems,
        keep={name: values.get(name) for name in keep},
    )


@dataclass
class InputRow:
    """One row for the commands that read texts a row at a time (rank-uncertain,
    the plots, classify --file): the same reading and the same reasons as `apply`."""

    source: str
    row: int  # 1-based position: line (JSONL, lines), data row (CSV/TSV) or row (Parquet)
    id: str
    text: Optional[str]
    values: Dict[str, Any]  # the other columns asked for (JSON values as they are)
    problem: Optional[str]


def read_rows(spec: Union[str, Path, Sequence[Union[str, Path]]], *, text_col: str = "text",
              id_col: Optional[str] = "id", columns: Sequence[str] = (), fmt: Optional[str] = None,
              all_columns: bool = False, shard_rows: int = 10_000) -> Iterator[InputRow]:
    """Every row of the input files, kept or rejected (`problem`), in file order.
    `columns`: other columns to hand back in `values`; `all_columns`: every column."""
    for file in describe_files(spec, text_col, fmt):
        for shard in plan_shards([file], shard_rows):
            wanted = None if all_columns and file.format != "lines" else [text_col, id_col, *columns]
            values, problems = read_values(shard, wanted)
            extra = [c for c in values if c not in (text_col, id_col)] if all_columns else list(columns)
            table = normalise(values.get(text_col), values.get(id_col) if id_col else None, shard.n_rows,
                              text_col=text_col, id_col=id_col, source=file.name, first_row=shard.start,
                              problems=problems)
            ids = table.column(ID).to_pylist()
            texts = table.column(TEXT).to_pylist()
            reasons = table.column(PROBLEM).to_pylist()
            for i in range(shard.n_rows):
                row_values = {c: values[c][i] for c in extra
                              if values.get(c) is not None and values[c][i] is not _ABSENT}
                problem = reasons[i]
                if problem is None:
                    problem = next((_surrogate_problem(_nested_text(v, c), c) for c, v in row_values.items()
                                    if _surrogate_problem(_nested_text(v, c), c)), None)
                yield InputRow(file.name, shard.start + i + 1, ids[i], texts[i] if problem is None else None,
                               row_values, problem)


def read_values(shard: Shard, columns: Optional[Sequence[Optional[str]]]) -> Tuple[Dict[str, Optional[list]], List[Optional[str]]]:
    """({column: its shard.n_rows values}, a problem or None per row) for the
    columns asked for that the file has (None: all of them). A format without
    columns ("lines") gives its text under every name asked for as text."""
    wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c]
    file = shard.file
    try:
        if file.format == "jsonl":
            values, problems = _read_jsonl(shard, wanted)
        elif file.format == "lines":
            values, problems = _read_lines(shard, wanted)
        else:
            values, problems = _read_table(shard, wanted)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"Cannot read rows {shard.start + 1}-{shard.stop} of {file.path}: {e}") from e
    if len(problems) != shard.n_rows:
        raise InputError(
            f"{file.path} has changed since the run was planned: rows {shard.start + 1}-{shard.stop} "
            f"gave {len(problems)} rows. Start again with --overwrite."
        )
    return values, problems


def _read_table(shard: Shard, wanted: Optional[List[str]]) -> Tuple[Dict[str, list], List[Optional[str]]]:
    file = shard.file
    if file.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(file.path)
        names = pf.schema_arrow.names
        columns = names if wanted is None else [c for c in wanted if c in names]
        pieces, offset = [], 0
        for group in range(pf.num_row_groups):
            size = pf.metadata.row_group(group).num_rows
            if offset < shard.stop and offset + size > shard.start:
                part = pf.read_row_group(group, columns=columns)
                pieces.append(part.slice(max(shard.start - offset, 0), shard.stop - max(offset, shard.start)))
            offset += size
        table = pa.concat_tables(pieces) if pieces else None
        n = table.num_rows if table is not None else 0
        values = {c: table.column(c).to_pylist() for c in columns} if table is not None else {}
        return values, [None] * n
    pieces, offset = [], 0
    for batch in _csv_batches(file.path, file.format, columns=wanted, binary=True):
        size = batch.num_rows
        if offset + size > shard.start:
            pieces.append(batch.slice(max(shard.start - offset, 0), shard.stop - max(offset, shard.start)))
        offset += size
        if offset >= shard.stop:
            break
    table = pa.Table.from_batches(pieces) if pieces else None
    if table is None:
        return {}, []
    problems: List[Optional[str]] = [None] * table.num_rows
    values: Dict[str, list] = {}
    for name in table.column_names:
        decoded = []
        for i, raw in enumerate(table.column(name).to_pylist()):
            try:
                decoded.append(raw.decode("utf8") if raw is not None else None)
            except UnicodeDecodeError as e:
                decoded.append(None)
                problems[i] = problems[i] or f"'{name}' is not UTF-8 ({e.reason} at byte {e.start})"
        values[name] = decoded
    return values, problems


def _csv_batches(path: Path, fmt: str, columns: Optional[List[str]], binary: bool = False) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    # TSV files (SST-2, most corpus dumps) use quotes as text, not as quoting.
    parse = csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", quote_char=False if fmt == "tsv" else '"',
                             newlines_in_values=fmt != "tsv")
    header = csv.open_csv(path, parse_options=parse,
                          convert_options=csv.ConvertOptions(column_types={}, strings_can_be_null=False),
                          read_options=csv.ReadOptions(block_size=1 << 16)).schema.names
    include = header if columns is None else ([c for c in dict.fromkeys(columns) if c in header] or header[:1])
    # Strings as they are: "007" stays an id and "42" stays a text. Read as bytes so
    # that a cell that is not UTF-8 rejects its row, not the file.
    kind = pa.binary() if binary else pa.string()
    convert = csv.ConvertOptions(include_columns=include, column_types={c: kind for c in include},
                                 strings_can_be_null=False, check_utf8=not binary)
    reader = csv.open_csv(path, parse_options=parse, convert_options=convert,
                          read_options=csv.ReadOptions(block_size=1 << 22))
    yield from reader


def _physical_lines(shard: Shard) -> Iterator[bytes]:
    with shard.file.path.open("rb") as f:
        for i, raw in enumerate(f):
            if i < shard.start:
                continue
            if i >= shard.stop:
                break
            yield raw


def _read_lines(shard: Shard, wanted: Optional[List[str]]) -> Tuple[Dict[str, list], List[Optional[str]]]:
    texts: List[Any] = []
    problems: List[Optional[str]] = []
    for raw in _physical_lines(shard):
        text = problem = None
        try:
            text = raw.decode("utf8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            problem = f"not UTF-8 ({e.reason} at byte {e.start})"
        else:
            if not text.strip():
                text, problem = None, "blank line"
            else:
                text = text.strip()
        texts.append(text)
        problems.append(problem)
    # A line is a text: it answers to whichever name the text column was given.
    names = wanted if wanted else ["text"]
    return {name: texts for name in names[:1]}, problems


def _read_jsonl(shard: Shard, wanted: Optional[List[str]]) -> Tuple[Dict[str, list], List[Optional[str]]]:
    records: List[Optional[dict]] = []
    problems: List[Optional[str]] = []
    for raw in _physical_lines(shard):
        record = problem = None
        try:
            line = raw.decode("utf8").strip()
            parsed = json.loads(line) if line else None
        except UnicodeDecodeError as e:
            problem = f"not UTF-8 ({e.reason} at byte {e.start})"
        except json.JSONDecodeError as e:
            problem = f"not valid JSON ({e.msg} at column {e.colno})"
        except RecursionError:
            problem = "not valid JSON (nested too deeply)"
        else:
            if parsed is None and not line:
                problem = "blank line"
            elif not isinstance(parsed, dict):
                problem = f"a JSON {type(parsed).__name__}, not an object"
            else:
                record = parsed
        records.append(record)
        problems.append(problem)
    names = wanted if wanted is not None else list(dict.fromkeys(k for r in records if r for k in r))
    values = {name: [r.get(name, _ABSENT) if r is not None else None for r in records] for name in names}
    return values, problems


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def normalise(texts: Optional[Sequence[Any]], ids: Optional[Sequence[Any]], n_rows: int, *,
              text_col: str, id_col: Optional[str], source: Optional[str], first_row: int = 0,
              problems: Optional[Sequence[Optional[str]]] = None, rows: Optional[Sequence[int]] = None,
              keep: Optional[Dict[str, Optional[Sequence[Any]]]] = None) -> pa.Table:
    """Columns `__source`, `__row`, `__id`, `__text`, `__problem` (and KEEP + name
    for each `keep` column, as strings) for `n_rows` rows.

    `texts` / `ids` are the values of the text and id columns (None: the column is
    missing). A row is rejected (`__problem` set) when its text is missing, not a
    string or not valid Unicode (a lone surrogate, which JSON's \\ud800 escapes can
    give), or its id is missing, null or not valid Unicode while the input has an id
    column. A row without an id column gets ``<source>:<row number>``. Ids and
    sources are made writable (a lone surrogate becomes its \\uXXXX escape) so that a
    rejected row can still be named.
    """
    out_ids: List[str] = []
    out_texts: List[Optional[str]] = []
    out_problems: List[Optional[str]] = []
    kept: Dict[str, List[Optional[str]]] = {name: [] for name in (keep or {})}
    positions = list(rows) if rows is not None else list(range(first_row, first_row + n_rows))
    safe_source = writable(source) if source is not None else None
    for i in range(n_rows):
        generated = f"{safe_source}:{positions[i] + 1}" if source is not None else None
        problem = problems[i] if problems is not None else None
        text = texts[i] if texts is not None else _ABSENT
        ident = ids[i] if ids is not None else _ABSENT
        if problem is None:
            problem = _text_problem(text, text_col) or _id_problem(ident, id_col, generated)
        carried = {}
        for name, values in (keep or {}).items():
            value = _carried(values[i] if values is not None else None)
            problem = problem or _surrogate_problem(value, name)
            carried[name] = value
        out_ids.append(_id_value(ident, generated))
        out_texts.append(text if problem is None else None)
        out_problems.append(problem)
        for name in kept:
            kept[name].append(carried[name] if problem is None else None)
    arrays = [pa.array([safe_source] * n_rows, pa.string()), pa.array(positions, pa.int64()),
              pa.array(out_ids, pa.string()), pa.array(out_texts, pa.string()), pa.array(out_problems, pa.string())]
    fields = list(NORMALISED)
    for name, values in kept.items():
        arrays.append(pa.array(values, pa.string()))
        fields.append(pa.field(KEEP + name, pa.string()))
    return pa.table(arrays, schema=pa.schema(fields))


def writable(value: str) -> str:
    """`value` with each lone surrogate as its \\uXXXX escape: a string UTF-8 can hold."""
    return value.encode("utf8", "backslashreplace").decode("utf8") if _SURROGATE.search(value) else value


def _surrogate_problem(value: Any, column: str) -> Optional[str]:
    if not isinstance(value, str):
        return None
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return (f"'{writable(column)}' holds a lone surrogate (U+{ord(found.group()):04X} at character {found.start() + 1}): "
            f"not valid Unicode; fix the text (or its JSON \\u escapes) and run again")


def _nested_text(value: Any, key: str = "") -> str:
    """A value's strings and keys, all of them, as one string (to look for surrogates in)."""
    if isinstance(value, str):
        return key + value
    if isinstance(value, dict):
        return key + "".join(_nested_text(v, str(k)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return key + "".join(_nested_text(v) for v in value)
    return key


def _carried(value: Any) -> Optional[str]:
    if value is None or value is _ABSENT:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _text_problem(text: Any, text_col: str) -> Optional[str]:
    if text is _ABSENT:
        return f"no '{text_col}' column"
    if text is None:
        return f"'{text_col}' is null"
    if not isinstance(text, str):
        return f"'{text_col}' is of type {type(text).__name__}, not a string"
    return _surrogate_problem(text, text_col)


def _id_problem(ident: Any, id_col: Optional[str], generated: Optional[str]) -> Optional[str]:
    if ident is _ABSENT:
        return None if generated is not None else f"no '{id_col}' column (and no file to name the row by)"
    if ident is None:
        return f"'{id_col}' is null"
    if isinstance(ident, (dict, list)):
        return f"'{id_col}' is of type {type(ident).__name__}, not a string or number"
    return _surrogate_problem(ident, id_col)


def _id_value(ident: Any, generated: Optional[str]) -> Optional[str]:
    if ident is _ABSENT or ident is None or isinstance(ident, (dict, list)):
        return generated
    if isinstance(ident, float) and ident.is_integer():
        return str(int(ident))
    return writable(str(ident))
