"""`apply`: classify every row of the input files into a Parquet output folder,
resuming an unfinished run in that folder, on the local or the Ray engine."""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from . import inputs, output
from .summary import Summary, summarise

ENGINES = ("local", "ray")
MAX_SHARD_ROWS = 10_000
MIN_SHARD_ROWS = 250
DEFAULT_BATCH_SIZE = 64
# Pipeline files up to this size are hashed whole; larger ones by size, head and tail.
_HASH_WHOLE = 16 << 20


def default_shard_rows(n_rows: int) -> int:
    """About a hundred parts, each of 250 to 10,000 rows: a small input is cut
    finely enough that an interrupted run keeps most of its work."""
    return max(MIN_SHARD_ROWS, min(MAX_SHARD_ROWS, math.ceil(n_rows / 100)))


def apply(
    pipeline_path: Union[str, Path],
    input_spec: Union[str, Path, Sequence[Union[str, Path]]],
    out_dir: Union[str, Path],
    *,
    text_col: str = "text",
    id_col: Optional[str] = "id",
    keep_cols: Sequence[str] = (),
    input_format: Optional[str] = None,
    vectors: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    engine: str = "local",
    workers: int = 1,
    gpus_per_worker: float = 0,
    address: Optional[str] = None,
    shard_rows: Optional[int] = None,
    component: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Summary:
    """Classify the rows of `input_spec` (a file, folder, glob or list of them) with
    the pipeline saved at `pipeline_path`; write part files and a summary to `out_dir`.

    `keep_cols`: input columns to copy into the output (as strings). `shard_rows`:
    rows per part at most (None: `default_shard_rows` of the input's size).
    Run again with the same arguments after an interruption: finished parts are kept
    and the remaining rows done. `overwrite=True` starts over. The folder is locked
    while a run writes to it (`_lock.json`).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine='{engine}': choose {' or '.join(ENGINES)}.")
    if batch_size < 1 or workers < 1 or gpus_per_worker < 0:
        raise ValueError("batch_size and workers must be at least 1, and gpus_per_worker at least 0.")
    if shard_rows is not None and shard_rows < 1:
        raise ValueError(f"shard_rows must be at least 1, not {shard_rows}.")
    keep_cols = check_keep_cols(keep_cols, id_col)
    pipeline_path = Path(pipeline_path)
    if not (pipeline_path / "config.cfg").exists():
        raise ValueError(f"{pipeline_path} is not a saved pipeline folder (it has no config.cfg): give the folder nlp.to_disk wrote.")
    out_dir = Path(out_dir)
    files = inputs.describe_files(input_spec, text_col, input_format)
    if shard_rows is None:
        shard_rows = default_shard_rows(sum(f.n_rows for f in files))
    run_args = {
        "pipeline": str(pipeline_path.resolve()),
        "pipeline_fingerprint": pipeline_fingerprint(pipeline_path),
        "files": [file_record(f) for f in files],
        "text_col": text_col,
        "id_col": id_col,
        "keep_cols": list(keep_cols),
        "vectors": vectors,
        "component": component,
        "shard_rows": shard_rows,
    }
    with output.FolderLock(out_dir):
        output.prepare(out_dir, run_args, overwrite)
        shards = inputs.plan_shards(files, shard_rows, done=output.done_ranges(out_dir))
        started = time.perf_counter()
        n_rows = sum(shard.n_rows for shard in shards)
        if shards and engine == "local":
            from .local import run_local
            from .predict import Predictor

            predictor = Predictor(pipeline_path, vectors=vectors, batch_size=batch_size, component=component)
            run_local(shards, out_dir, predictor, text_col=text_col, id_col=id_col, keep=keep_cols,
                      progress=progress)
        elif shards:
            from .ray_engine import run_ray

            run_ray(shards, out_dir, pipeline_path, text_col=text_col, id_col=id_col, keep=keep_cols,
                    vectors=vectors, batch_size=batch_size, workers=workers, gpus_per_worker=gpus_per_worker,
                    address=address, component=component, shard_rows=shard_rows, progress=progress)
        return summarise(out_dir, rows_this_run=n_rows, seconds=time.perf_counter() - started,
                         engine=engine, workers=workers if engine == "ray" else 1)


def check_keep_cols(keep_cols: Sequence[str], id_col: Optional[str]) -> tuple:
    from .predict import RESERVED, SCORE_PREFIX

    kept = tuple(dict.fromkeys(c for c in keep_cols if c))
    for name in kept:
        if name in RESERVED or name.startswith((SCORE_PREFIX, "__")):
            raise ValueError(
                f"--keep-cols {name}: the output has a column of its own by that name "
                f"({', '.join(RESERVED)}, {SCORE_PREFIX}<label>): rename that input column, or leave it out."
            )
        if name == id_col:
            raise ValueError(f"--keep-cols {name}: the id is in the output already (its 'id' column).")
    return kept


def file_record(file: inputs.InputFile) -> dict:
    stat = file.path.stat()
    return {"name": file.name, "path": str(file.path.resolve()), "format": file.format, "rows": file.n_rows,
            "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def pipeline_fingerprint(pipeline_path: Path) -> str:
    """A digest of the saved pipeline's files (names and contents; the largest by
    size, head and tail), the same wherever the folder is copied."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in Path(pipeline_path).rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(pipeline_path).as_posix()}\0{size}\0".encode("utf8", "surrogatepass"))
        with path.open("rb") as f:
            if size <= _HASH_WHOLE:
                digest.update(f.read())
            else:
                digest.update(f.read(1 << 20))
                f.seek(size - (1 << 20))
                digest.update(f.read())
    return digest.hexdigest()
