"""`apply`: classify many documents from files into a folder of Parquet parts."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, fail


def apply_command(
    pipeline: Annotated[Path, typer.Argument(help="A saved pipeline folder (what nlp.to_disk wrote).")],
    input: Annotated[str, typer.Argument(help="A .jsonl, .csv, .tsv or .parquet file, a folder of them, or a glob (quote it).")],
    output_dir: Annotated[Path, typer.Argument(help="Folder for the Parquet parts, the summary and the rejected rows.")],
    text_col: Annotated[str, typer.Option(help="Column (or JSON field) with the text.")] = "text",
    id_col: Annotated[str, typer.Option(help="Column with each row's id; rows without one are named <file>:<row number>.")] = "id",
    vectors: Annotated[bool, typer.Option("--vectors", help="Also write each doc's [CLS] vector (cls_vector).")] = False,
    batch_size: Annotated[int, typer.Option(help="Docs per batch.", min=1)] = 64,
    engine: Annotated[str, typer.Option(help="local: this process; ray: a Ray cluster.")] = "local",
    workers: Annotated[int, typer.Option(help="Ray actors, each with its own copy of the pipeline.", min=1)] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray actor (0: CPU).", min=0)] = 0,
    address: Annotated[Optional[str], typer.Option(help="An existing Ray cluster (e.g. auto, or ray://host:10001); default: start one on this machine.")] = None,
    shard_rows: Annotated[int, typer.Option(help="Rows per part file at most: the unit that a restarted run skips.", min=1)] = 10_000,
    component: Annotated[Optional[str], typer.Option(help="The classifier to read, when the pipeline has several.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over instead of finishing the run in OUTPUT_DIR.")] = False,
    check: CheckOpt = True,
) -> None:
    """Classify every row of INPUT with PIPELINE into Parquet parts in OUTPUT_DIR.

    Run it again with the same arguments to finish an interrupted run."""
    from ..scale import apply
    from ..scale.inputs import InputError
    from ..scale.output import OutputError

    if engine not in ("local", "ray"):
        fail(f"--engine {engine}: choose local or ray.")
    if engine == "ray":
        try:
            import ray.data  # noqa: F401
        except ImportError:
            fail("--engine ray needs Ray Data: pip install 'spacy-cls[ray]'.")
    if not check:  # the local engine and Ray workers started here load with the setting
        from ..models.safe_load import disable_checks_for_this_process

        disable_checks_for_this_process()
    try:
        summary = apply(
            pipeline, input, output_dir, text_col=text_col, id_col=id_col or None, vectors=vectors,
            batch_size=batch_size, engine=engine, workers=workers, gpus_per_worker=gpus_per_worker,
            address=address, shard_rows=shard_rows, component=component, overwrite=overwrite,
        )
    except (InputError, OutputError, ValueError, OSError) as e:
        fail(str(e))
    typer.echo(summary.as_text())
    typer.echo(f"Parts, _summary.json and _rejected.jsonl are in {output_dir}")
