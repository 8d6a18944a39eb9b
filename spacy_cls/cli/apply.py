"""`apply`: classify many documents from files into a folder of Parquet parts."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, InputFormatOpt, fail


def apply_command(
    pipeline: Annotated[Path, typer.Argument(help="A saved pipeline folder (what nlp.to_disk wrote).")],
    input: Annotated[str, typer.Argument(help="A .jsonl, .csv, .tsv or .parquet file, a folder of them, or a glob (quote it).")],
    output_dir: Annotated[Path, typer.Argument(help="Folder for the Parquet parts, the summary and the rejected rows.")],
    text_col: Annotated[str, typer.Option(help="Column (or JSON field) with the text.")] = "text",
    id_col: Annotated[str, typer.Option(help="Column with each row's id; rows without one are named <file>:<row number>.")] = "id",
    keep_cols: Annotated[Optional[str], typer.Option(help="Input columns to copy into the output, comma-separated (e.g. text,title); written as strings.")] = None,
    input_format: InputFormatOpt = None,
    vectors: Annotated[bool, typer.Option("--vectors", help="Also write each doc's [CLS] vector (cls_vector).")] = False,
    batch_size: Annotated[int, typer.Option(help="Docs per batch.", min=1)] = 64,
    engine: Annotated[str, typer.Option(help="local: this process; ray: a Ray cluster.")] = "local",
    workers: Annotated[int, typer.Option(help="Ray actors, each with its own copy of the pipeline.", min=1)] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray actor (0: CPU).", min=0)] = 0,
    address: Annotated[Optional[str], typer.Option(help="An existing Ray cluster (e.g. auto, or ray://host:10001); default: start one on this machine.")] = None,
    shard_rows: Annotated[Optional[int], typer.Option(help="Rows per part file at most: the unit that a restarted run skips. Default: a hundredth of the input, 250 to 10,000.", min=1)] = None,
    component: Annotated[Optional[str], typer.Option(help="The classifier to read, when the pipeline has several.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over instead of finishing the run in OUTPUT_DIR.")] = False,
    check: CheckOpt = True,
) -> None:
    """Classify every row of INPUT with PIPELINE into Parquet parts in OUTPUT_DIR.

    Run it again with the same arguments to finish an interrupted run."""
    from ..data.fingerprint import describe
    from ..scale import apply
    from ..scale.summary import CUT_WARNING
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
    keep = [c.strip() for c in (keep_cols or "").split(",") if c.strip()]
    try:
        summary = apply(
            pipeline, input, output_dir, text_col=text_col, id_col=id_col or None, keep_cols=keep,
            input_format=input_format, vectors=vectors, batch_size=batch_size, engine=engine, workers=workers,
            gpus_per_worker=gpus_per_worker, address=address, shard_rows=shard_rows, component=component,
            overwrite=overwrite,
        )
    except KeyboardInterrupt:
        typer.echo(
            f"\nInterrupted. The finished parts in {output_dir} are kept: run the same command again "
            f"(without --overwrite) to classify only the rows still missing.", err=True,
        )
        raise typer.Exit(130)
    except (InputError, OutputError, ValueError, OSError) as e:
        fail(str(e))
    typer.echo(summary.as_text())
    if summary.rows_cut:
        typer.echo("Warning: " + CUT_WARNING.format(n=summary.rows_cut), err=True)
    if summary.encoder:
        typer.echo(f"Vectors made by the encoder {describe(summary.encoder)} (recorded in the parts' metadata; "
                   f"VectorCorpus.v1 checks it against the encoder it trains with).")
    typer.echo(f"Parts, _summary.json and _rejected.jsonl are in {output_dir}")
