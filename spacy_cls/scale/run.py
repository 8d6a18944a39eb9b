"""`apply`: classify every row of the input files into a Parquet output folder,
resuming an unfinished run in that folder, on the local or the Ray engine."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence, Union

from . import inputs, output
from .summary import Summary, summarise

ENGINES = ("local", "ray")
DEFAULT_SHARD_ROWS = 10_000
DEFAULT_BATCH_SIZE = 64


def apply(
    pipeline_path: Union[str, Path],
    input_spec: Union[str, Path, Sequence[Union[str, Path]]],
    out_dir: Union[str, Path],
    *,
    text_col: str = "text",
    id_col: Optional[str] = "id",
    vectors: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    engine: str = "local",
    workers: int = 1,
    gpus_per_worker: float = 0,
    address: Optional[str] = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    component: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Summary:
    """Classify the rows of `input_spec` (a file, folder, glob or list of them) with
    the pipeline saved at `pipeline_path`; write part files and a summary to `out_dir`.

    Run again with the same arguments after an interruption: finished parts are kept
    and the remaining rows done. `overwrite=True` starts over.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine='{engine}': choose {' or '.join(ENGINES)}.")
    if batch_size < 1 or workers < 1 or gpus_per_worker < 0:
        raise ValueError("batch_size and workers must be at least 1, and gpus_per_worker at least 0.")
    pipeline_path = Path(pipeline_path)
    if not (pipeline_path / "config.cfg").exists():
        raise ValueError(f"{pipeline_path} is not a saved pipeline folder (it has no config.cfg): give the folder nlp.to_disk wrote.")
    out_dir = Path(out_dir)
    files = inputs.describe_files(input_spec, text_col)
    run_args = {
        "pipeline": str(pipeline_path.resolve()),
        "files": [{"name": f.name, "path": str(f.path.resolve()), "rows": f.n_rows} for f in files],
        "text_col": text_col,
        "id_col": id_col,
        "vectors": vectors,
        "component": component,
    }
    output.prepare(out_dir, run_args, overwrite)
    shards = inputs.plan_shards(files, shard_rows, done=output.done_ranges(out_dir))
    started = time.perf_counter()
    n_rows = sum(shard.n_rows for shard in shards)
    if shards and engine == "local":
        from .local import run_local
        from .predict import Predictor

        predictor = Predictor(pipeline_path, vectors=vectors, batch_size=batch_size, component=component)
        run_local(shards, out_dir, predictor, text_col=text_col, id_col=id_col, progress=progress)
    elif shards:
        from .ray_engine import run_ray

        run_ray(shards, out_dir, pipeline_path, text_col=text_col, id_col=id_col, vectors=vectors,
                batch_size=batch_size, workers=workers, gpus_per_worker=gpus_per_worker, address=address,
                component=component, shard_rows=shard_rows)
    return summarise(out_dir, rows_this_run=n_rows, seconds=time.perf_counter() - started,
                     engine=engine, workers=workers if engine == "ray" else 1)
