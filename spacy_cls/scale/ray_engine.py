"""The Ray Data engine: Ray Data's batch-inference recipe (a callable class run by
an actor pool through `map_batches`), with this package's reading and writing.

Reading is a Ray task per shard (`inputs.read_shard`) rather than `read_parquet` /
`read_json`: ids must come from each row's position in its file, and a bad JSON line
must be rejected on its own. Writing is a Ray task per batch (`output.write_pieces`)
rather than `write_parquet`, which names files by write task: part files named by
the input rows they hold are what lets a restarted run skip finished work.

Ray Data restarts an actor that dies and retries its batch (`max_restarts` and
`max_task_retries` default to -1 for actor pools), so a lost worker costs time,
not rows.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Type, Union

import pyarrow as pa

from . import inputs, output
from .predict import Predictor

# CPUs each read or write task asks for: small, so that they still run beside
# actors that hold most of a machine.
IO_CPUS = 0.25


def apply_ray(
    data: Any,
    pipeline_path: Union[str, Path],
    *,
    text_col: str = "text",
    id_col: Optional[str] = "id",
    vectors: bool = False,
    workers: int = 1,
    gpus_per_worker: float = 0,
    batch_size: int = 64,
    cpus_per_worker: Optional[float] = None,
    component: Optional[str] = None,
    shard_rows: int = 10_000,
    predictor_cls: Type[Predictor] = Predictor,
    rows_per_call: Optional[int] = None,
    **ray_remote_args: Any,
):
    """Classify a Ray Dataset (or input paths: a file, folder, glob or list) with a
    saved pipeline, on an actor pool of `workers` actors, each loading the pipeline
    once from `pipeline_path`. Returns a lazy `ray.data.Dataset` with the columns
    `id`, `label` (or `labels`), `score_<label>` per label, `cls_vector` (with
    `vectors=True`) and `reason`: null for classified rows, why for rejected ones
    (their other columns are null). Chain your own steps, or `write_parquet`.

    A Dataset must have the `id_col` column; paths may lack it (ids are then
    ``<file>:<row number>``). `predictor_cls`: a `Predictor` subclass to run instead.
    `rows_per_call`: rows an actor gets per call (default `batch_size`), run in model
    batches of `batch_size`.
    """
    rows = normalised_dataset(data, text_col, id_col, shard_rows)
    classified = classify_dataset(
        rows, pipeline_path, vectors=vectors, workers=workers, gpus_per_worker=gpus_per_worker,
        batch_size=batch_size, cpus_per_worker=cpus_per_worker, component=component,
        predictor_cls=predictor_cls, rows_per_call=rows_per_call, **ray_remote_args,
    )
    return classified.map_batches(public_columns, batch_format="pyarrow", batch_size=None, num_cpus=IO_CPUS)


def normalised_dataset(data: Any, text_col: str, id_col: Optional[str], shard_rows: int):
    import ray.data

    if isinstance(data, ray.data.Dataset):
        names = data.schema().names if data.schema() is not None else []
        if not id_col or id_col not in names:
            raise ValueError(
                f"The Dataset has no '{id_col}' column ({', '.join(names)}): add one (ids must stay the same "
                f"from run to run), or give the input files' paths, whose rows are named by file and row."
            )
        return data.map_batches(_normalise_batch, batch_format="pyarrow", batch_size=None, num_cpus=IO_CPUS,
                                fn_kwargs={"text_col": text_col, "id_col": id_col})
    files = inputs.describe_files(data, text_col)
    return shards_dataset(inputs.plan_shards(files, shard_rows), text_col, id_col)


def shards_dataset(shards: Sequence[inputs.Shard], text_col: str, id_col: Optional[str], keep: Sequence[str] = ()):
    import ray.data

    items = [
        {"path": str(s.file.path), "name": s.file.name, "format": s.file.format, "n_rows": s.file.n_rows,
         "start": s.start, "stop": s.stop}
        for s in shards
    ]
    return ray.data.from_items(items, override_num_blocks=max(len(items), 1)).map_batches(
        _read_shards, batch_size=1, batch_format="pyarrow", num_cpus=IO_CPUS,
        fn_kwargs={"text_col": text_col, "id_col": id_col, "keep": list(keep)},
    )


def _read_shards(batch: pa.Table, text_col: str, id_col: Optional[str], keep: Sequence[str] = ()) -> pa.Table:
    tables = []
    for item in batch.to_pylist():
        file = inputs.InputFile(Path(item["path"]), item["name"], item["format"], item["n_rows"])
        tables.append(inputs.read_shard(inputs.Shard(file, item["start"], item["stop"]), text_col, id_col, keep))
    return pa.concat_tables(tables) if tables else inputs.NORMALISED.empty_table()


def _normalise_batch(batch: pa.Table, text_col: str, id_col: str) -> pa.Table:
    n = batch.num_rows
    texts = batch.column(text_col).to_pylist() if text_col in batch.column_names else None
    ids = batch.column(id_col).to_pylist()
    return inputs.normalise(texts, ids, n, text_col=text_col, id_col=id_col, source=None, rows=[-1] * n)


def classify_dataset(rows, pipeline_path: Union[str, Path], *, vectors: bool, workers: int,
                     gpus_per_worker: float, batch_size: int, cpus_per_worker: Optional[float] = None,
                     component: Optional[str] = None, predictor_cls: Type[Predictor] = Predictor,
                     rows_per_call: Optional[int] = None, **ray_remote_args: Any):
    """The classify stage: `rows` through an actor pool of `workers` Predictors, each
    call `rows_per_call` rows (default and at least: `batch_size`) run in model batches
    of `batch_size`. Calls of 1,024 rows measured the same steady rate as calls of one
    model batch (64) on SST-2 (benchmarks/results/scale.md): Ray's per-call cost is not
    where its time goes, so one call per model batch stays the default."""
    from ray.data import ActorPoolStrategy

    if workers < 1:
        raise ValueError(f"workers={workers}: give at least 1.")
    cpus = cpus_per_worker if cpus_per_worker is not None else worker_cpus(workers)
    return rows.map_batches(
        predictor_cls,
        fn_constructor_kwargs={
            "pipeline_path": str(Path(pipeline_path).resolve()), "vectors": vectors, "batch_size": batch_size,
            "component": component, "num_threads": max(1, math.floor(cpus)), "use_gpu": gpus_per_worker > 0,
        },
        batch_size=max(batch_size, rows_per_call or batch_size),
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus_per_worker or None,
        **ray_remote_args,
    )


def worker_cpus(workers: int) -> float:
    """CPUs per actor: the cluster's CPUs less a reserve for read and write tasks,
    shared among the workers, and no more than the largest node has."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1))
    largest = max((float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")), default=total)
    reserve = 1.0 if total >= 4 else 2 * IO_CPUS
    share = (total - reserve) / workers
    return round(max(min(share, largest - IO_CPUS), IO_CPUS), 2)


def public_columns(batch: pa.Table) -> pa.Table:
    reason = batch.column(inputs.PROBLEM)
    kept = batch.drop_columns([c for c in batch.column_names if c.startswith("__")])
    return kept.append_column("reason", reason)


def _write_batch(batch: pa.Table, out_dir: str) -> pa.Table:
    counts = output.write_pieces(Path(out_dir), batch)
    return pa.table({"read": [c["read"] for c in counts]}, schema=pa.schema([("read", pa.int64())]))


def start_local_ray(**init_args: Any) -> None:
    """A one-machine Ray cluster on this machine, reachable from it only."""
    import os

    # On Linux, Ray swaps 127.0.0.1 for the machine's routable address unless it
    # runs in single-machine mode (this switch); the processes it starts inherit it.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    init_args.setdefault("include_dashboard", False)
    ray.init(address="local", _node_ip_address="127.0.0.1", **init_args)


def run_ray(shards: Sequence[inputs.Shard], out_dir: Path, pipeline_path: Union[str, Path], *, text_col: str,
            id_col: Optional[str], vectors: bool, batch_size: int, workers: int, gpus_per_worker: float,
            address: Optional[str], component: Optional[str], shard_rows: int, keep: Sequence[str] = (),
            progress: bool = True, predictor_cls: Type[Predictor] = Predictor) -> int:
    """Classify `shards` on Ray and write their parts to `out_dir`; returns rows read.
    Uses the Ray this process is connected to, else `address`, else a new local one.
    Shows one progress bar of rows written, in place of Ray Data's per-operator log."""
    import ray
    from tqdm import tqdm

    started = False
    if not ray.is_initialized():
        init_args = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            ray.init(address=address, **init_args)
        else:
            start_local_ray(**init_args)
        started = True
    total = sum(shard.n_rows for shard in shards)
    done = 0
    try:
        with quiet_ray_data(), tqdm(total=total, unit="doc", disable=not progress, smoothing=0.1) as bar:
            for n in write_parts(shards, out_dir, pipeline_path, text_col=text_col, id_col=id_col, keep=keep,
                                 vectors=vectors, batch_size=batch_size, workers=workers,
                                 gpus_per_worker=gpus_per_worker, component=component, shard_rows=shard_rows,
                                 predictor_cls=predictor_cls):
                done += n
                bar.update(n)
        return done
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def quiet_ray_data():
    """Ray Data without its progress bars and its INFO lines (the plan, each
    operator's start and finish, the stats): the caller shows one bar instead."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = {name: getattr(context, name) for name in _QUIET if hasattr(context, name)}
    loggers = {name: logging.getLogger(name).level for name in ("ray", "ray.data")}
    for name in saved:
        setattr(context, name, False)
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Advice about actor pools and blocks, meant for those who tune Ray Data.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")
            yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


_QUIET = ("enable_progress_bars", "enable_operator_progress_bars", "verbose_stats_logs",
          "enable_auto_log_stats", "print_on_execution_start")


def write_parts(shards: Sequence[inputs.Shard], out_dir: Path, pipeline_path: Union[str, Path], *, text_col: str,
                id_col: Optional[str], vectors: bool, batch_size: int, workers: int, gpus_per_worker: float,
                component: Optional[str], shard_rows: int, keep: Sequence[str] = (),
                predictor_cls: Type[Predictor] = Predictor, rows_per_call: Optional[int] = None) -> Iterator[int]:
    """Run the read, classify and write stages on the connected Ray cluster, yielding
    the rows of each write batch as it finishes."""
    rows = shards_dataset(shards, text_col, id_col, keep)
    classified = classify_dataset(rows, pipeline_path, vectors=vectors, workers=workers,
                                  gpus_per_worker=gpus_per_worker, batch_size=batch_size,
                                  component=component, predictor_cls=predictor_cls, rows_per_call=rows_per_call)
    written = classified.map_batches(_write_batch, batch_size=shard_rows, batch_format="pyarrow",
                                     num_cpus=IO_CPUS, fn_kwargs={"out_dir": str(Path(out_dir).resolve())})
    for batch in written.iter_batches(batch_format="pyarrow", batch_size=None):
        yield sum(batch.column("read").to_pylist())


def ray_node_addresses() -> List[str]:
    import ray

    return sorted({node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")})
