"""`train`: spaCy's training loop, data parallel over N processes (torchrun or Ray Train)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import fail


def train_command(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="A training config (what spacy train takes).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for model-best, model-last and distributed.json (written by rank 0).")] = None,
    workers: Annotated[int, typer.Option(help="Processes; each takes its share of every batch.", min=1)] = 2,
    engine: Annotated[str, typer.Option(help="torchrun: processes on this machine; ray: Ray Train's TorchTrainer.")] = "torchrun",
    address: Annotated[Optional[str], typer.Option(help="--engine ray: an existing cluster (default: start one on 127.0.0.1).")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="One GPU a worker (nccl); default: CPU (gloo).")] = False,
    check_sync: Annotated[bool, typer.Option("--check-sync", help="After every step, check that all ranks hold byte-equal weights (slower; for tests).")] = False,
) -> None:
    """Train CONFIG as `spacy train` does, in WORKERS processes: each batch is cut into one
    share a worker, the gradients are all-reduced before every optimizer step, and only
    rank 0 evaluates, logs and saves. Config overrides as for spacy train:
    --paths.train data/train.spacy ... (docs/distributed.md)"""
    from spacy.cli._util import parse_config_overrides

    from ..distributed.launch import DistributedError, train_distributed

    if not config.is_file():
        fail(f"{config} does not exist.")
    try:
        overrides = parse_config_overrides(list(ctx.args))
        report = train_distributed(config, output, workers=workers, engine=engine, overrides=overrides,
                                   use_gpu=gpu, address=address, check_sync=check_sync)
    except (DistributedError, ValueError, ImportError) as e:
        fail(str(e))
    if report:
        typer.echo(f"{report['world_size']} workers, {report['steps']} steps in {report['seconds']:.1f} s; "
                   f"all-reduce {1000 * report['allreduce_seconds_per_step']:.1f} ms a step "
                   f"({report['values']:,} values in {report['buckets']} buckets)")
