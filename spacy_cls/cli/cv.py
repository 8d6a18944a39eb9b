"""`cv`: mean and standard deviation of the dev scores over folds and seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import fail


def cv_command(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="A training config (what spacy train takes).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the fold corpora, each run's scores and the table; rerun to resume.")] = Path("cv"),
    folds: Annotated[int, typer.Option(help="Folds of the training corpus; 1: train on it whole and score on the config's dev corpus.", min=1)] = 5,
    seeds: Annotated[int, typer.Option(help="Seeds per fold (system.seed, system.seed + 1, ...).", min=1)] = 1,
    gpu_id: Annotated[int, typer.Option("--gpu-id", "-g", help="GPU to train on; -1: CPU.")] = -1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete the runs already in OUTPUT and start over (without it, OUTPUT must be new or hold this same experiment).")] = False,
) -> None:
    """Run spaCy's training over K folds of the config's training corpus and/or N seeds
    and print each dev score's mean ± standard deviation in percent (also OUTPUT/cv.md and
    cv.json). A rerun into OUTPUT resumes the same experiment (same config and overrides,
    data, folds and seeds) and refuses another one. Config overrides as for spacy train:
    --paths.train data/train.spacy ..."""
    from spacy.cli._util import parse_config_overrides

    from ..decisions.cv import run_cross_validation

    if not config.exists():
        fail(f"{config} does not exist.")
    try:
        overrides = parse_config_overrides(list(ctx.args))
        table = run_cross_validation(config, output, folds=folds, seeds=seeds, overrides=overrides, use_gpu=gpu_id,
                                     overwrite=overwrite, log=typer.echo)
    except (OSError, ValueError) as e:
        fail(str(e))
    typer.echo(table["markdown"])
    typer.echo(f"Wrote {output / 'cv.md'} and {output / 'cv.json'}")
