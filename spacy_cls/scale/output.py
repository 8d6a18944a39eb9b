"""The output folder: part files named by the input rows they hold, written under a
temporary name and renamed into place, so that a part is either whole or absent.

    OUTPUT_DIR/part-<file key>-<first row>-<last row>.parquet   classified rows
    OUTPUT_DIR/_rejected/<file key>-<first row>-<last row>.jsonl rejected rows of that range
    OUTPUT_DIR/_run.json      the arguments that decide the output (checked on resume)
    OUTPUT_DIR/_summary.json, _summary.txt, _rejected.jsonl   made at the end of each run

A range's rejected file is renamed into place before its part file, and the part
file is what marks the range done: a restarted run reads the part names, skips
their ranges and redoes the rest. Names starting with "_" or "." are skipped by
pyarrow, pandas and Ray when they read OUTPUT_DIR as a Parquet data set.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..data.fingerprint import METADATA_KEY
from . import inputs

PIECE_META = b"spacy_cls.piece"
ENCODER_META = METADATA_KEY  # what VectorCorpus.v1 reads
REJECTED_DIR = "_rejected"
RUN_FILE = "_run.json"
LOCK_FILE = "_lock.json"
# What each key of _run.json is, for the message that refuses a resume.
RUN_KEYS = {
    "pipeline": "the pipeline folder", "pipeline_fingerprint": "the pipeline's files",
    "files": "the input files (their names, formats, sizes or modification times)", "text_col": "--text-col",
    "id_col": "--id-col", "keep_cols": "--keep-cols", "vectors": "--vectors",
    "component": "--component", "shard_rows": "--shard-rows (the shard plan)",
}
_PART = re.compile(r"^part-(?P<key>.+)-(?P<first>\d{12})-(?P<last>\d{12})\.parquet$")


class OutputError(ValueError):
    """An output folder that cannot be used as asked."""


def prepare(out_dir: Path, run_args: dict, overwrite: bool) -> bool:
    """Make `out_dir` ready; True when it resumes an earlier run with the same arguments."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / RUN_FILE
    if overwrite:
        clear(out_dir)
    for stale in out_dir.glob(".tmp-*"):
        stale.unlink()
    if run_file.exists():
        earlier = json.loads(run_file.read_text(encoding="utf8"))
        if earlier != run_args:
            changed = sorted(k for k in set(earlier) | set(run_args) if earlier.get(k) != run_args.get(k))
            raise OutputError(
                f"{out_dir} holds another job's output, and this run would not continue it: "
                f"{'; '.join(RUN_KEYS.get(k, k) for k in changed)} differ. Give the same input, pipeline "
                f"and options to finish that job, --overwrite to start over, or another output folder."
            )
        _drop_orphans(out_dir)
        return True
    if any(out_dir.glob("part-*.parquet")):
        raise OutputError(f"{out_dir} holds part files of an unknown run: use --overwrite or another output folder.")
    _write_atomic(run_file, json.dumps(run_args, indent=2).encode("utf8"))
    return False


class FolderLock:
    """An exclusive hold on an output folder: `_lock.json`, created only if absent,
    holding this process's pid, host and a token; removed on release. A lock whose
    process is gone (same host, pid not running) is stale and taken over."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self.token = uuid.uuid4().hex
        self.held = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.path)
                if _stale(holder, self.path):
                    self.path.unlink(missing_ok=True)
                    continue
                raise OutputError(_held_message(self.path, holder)) from None
            with os.fdopen(fd, "w", encoding="utf8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        raise OutputError(_held_message(self.path, _read_lock(self.path)))

    def release(self) -> None:
        if self.held and (_read_lock(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False


def _read_lock(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _stale(holder, path: Path) -> bool:
    if holder is None:
        return True
    if not holder:
        # Unreadable: a writer that died between creating and filling it, if old.
        try:
            return time.time() - path.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held_message(path: Path, holder) -> str:
    who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
           if holder else "a process that is still writing its lock")
    return (f"{path.parent} is in use by another apply run ({who}). Wait for it to finish, or give another "
            f"output folder. If that run is no longer alive, delete {path} and run again.")


def clear(out_dir: Path) -> None:
    """Remove what a run wrote (and nothing else)."""
    for path in out_dir.glob("part-*.parquet"):
        path.unlink()
    shutil.rmtree(out_dir / REJECTED_DIR, ignore_errors=True)
    for name in (RUN_FILE, "_summary.json", "_summary.txt", "_rejected.jsonl"):
        (out_dir / name).unlink(missing_ok=True)


def done_ranges(out_dir: Path) -> Dict[str, List[Tuple[int, int]]]:
    """{file key: [(start, stop), ...]} of the rows that finished parts hold."""
    done: Dict[str, List[Tuple[int, int]]] = {}
    for path in out_dir.glob("part-*.parquet"):
        match = _PART.match(path.name)
        if match:
            done.setdefault(match["key"], []).append((int(match["first"]), int(match["last"]) + 1))
    return done


def _drop_orphans(out_dir: Path) -> None:
    parts = {p.name[len("part-"):-len(".parquet")] for p in out_dir.glob("part-*.parquet")}
    for path in (out_dir / REJECTED_DIR).glob("*.jsonl"):
        if path.stem not in parts:
            path.unlink()


def write_pieces(out_dir: Path, table: pa.Table) -> List[dict]:
    """Write classified rows (the Predictor's output) as one part per run of
    consecutive rows of one file; returns each part's counts."""
    written = []
    for source, first, last, rows in _runs(table):
        written.append(_write_piece(out_dir, source, first, last, table.take(pa.array(rows))))
    return written


def _runs(table: pa.Table) -> Iterator[Tuple[str, int, int, numpy.ndarray]]:
    sources = table.column(inputs.SOURCE).to_pylist()
    positions = table.column(inputs.ROW).to_numpy()
    by_source: Dict[str, List[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    for source, idx in by_source.items():
        idx_a = numpy.asarray(idx)
        order = idx_a[numpy.argsort(positions[idx_a], kind="stable")]
        rows = positions[order]
        if len(numpy.unique(rows)) != len(rows):
            raise RuntimeError(f"Rows of {source} came back twice from the classifier step; nothing was written.")
        breaks = numpy.flatnonzero(numpy.diff(rows) != 1) + 1
        for run in numpy.split(order, breaks):
            yield source, int(positions[run[0]]), int(positions[run[-1]]), run


def _write_piece(out_dir: Path, source: str, first: int, last: int, piece: pa.Table) -> dict:
    name = f"{inputs.file_key(source)}-{first:012d}-{last:012d}"
    problems = piece.column(inputs.PROBLEM)
    rejected_mask = problems.is_valid()
    rejected = piece.filter(rejected_mask)
    accepted = piece.filter(pc.invert(rejected_mask))
    cut = int(pc.sum(piece.column(inputs.CUT)).as_py() or 0) if inputs.CUT in piece.column_names else 0
    counts = {"source": source, "first": first, "last": last, "read": piece.num_rows,
              "written": accepted.num_rows, "rejected": rejected.num_rows, "cut": cut}
    if counts["read"] != counts["written"] + counts["rejected"]:
        raise RuntimeError(f"Row accounting failed for {name}: {counts}")
    if rejected.num_rows:
        lines = [
            jsonl_line({"id": i, "source": source, "row": r + 1, "reason": p})
            for i, r, p in zip(rejected.column("id").to_pylist(), rejected.column(inputs.ROW).to_pylist(),
                               rejected.column(inputs.PROBLEM).to_pylist())
        ]
        (out_dir / REJECTED_DIR).mkdir(exist_ok=True)
        _write_atomic(out_dir / REJECTED_DIR / f"{name}.jsonl", ("\n".join(lines) + "\n").encode("utf8"))
    public = accepted.drop_columns([c for c in accepted.column_names if c.startswith("__")])
    metadata = {PIECE_META: json.dumps(counts).encode("utf8")}
    encoder = _first_valid(piece, inputs.ENCODER) if inputs.ENCODER in piece.column_names else None
    if encoder is not None:
        metadata[ENCODER_META] = encoder.encode("utf8")
    public = public.replace_schema_metadata(metadata)
    tmp = out_dir / f".tmp-{uuid.uuid4().hex}-part-{name}.parquet"
    pq.write_table(public, tmp)
    os.replace(tmp, out_dir / f"part-{name}.parquet")
    return counts


# Characters that str.splitlines (and so many JSONL readers) breaks a line at, and
# that json.dumps(ensure_ascii=False) leaves raw: the C0 ones it escapes already.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ESCAPED_RE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def jsonl_line(record) -> str:
    """`record` as one JSON line that no line splitter cuts and UTF-8 can hold:
    readable text, with the line separators Python and JavaScript split on, and any
    lone surrogate, as JSON escapes."""
    return _ESCAPED_RE.sub(lambda m: _LINE_BREAKS.get(m.group(), f"\\u{ord(m.group()):04x}"),
                           json.dumps(record, ensure_ascii=False))


def read_jsonl_lines(path: Path) -> List[str]:
    """The lines of a JSONL file this package wrote, split at newlines only."""
    return [line for line in path.read_text(encoding="utf8").split("\n") if line.strip()]


def _first_valid(table: pa.Table, column: str):
    values = table.column(column).drop_null()
    return values[0].as_py() if len(values) else None


def part_encoder(path: Path):
    """The encoder fingerprint a part file records (None: written without vectors)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[ENCODER_META]) if ENCODER_META in meta else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, text.encode("utf8"))


def part_files(out_dir: Path) -> List[Path]:
    return sorted(p for p in out_dir.glob("part-*.parquet") if _PART.match(p.name))


def piece_counts(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PIECE_META])


def rejected_files(out_dir: Path) -> List[Path]:
    return sorted((out_dir / REJECTED_DIR).glob("*.jsonl"))
