"""`plot-training`, `plot-confusion`, `plot-vectors`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    BatchOpt, CheckOpt, DataArg, GpuOpt, InputFormatOpt, LabelColOpt, ModelArg, TextColOpt, fail, load_pipeline,
    read_labelled, require_matplotlib,
)


def plot_training_command(
    output_dir: Annotated[Path, typer.Argument(help="A `spacy train` output folder holding the JSONL log, or the log file itself.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write (.png, .svg, .pdf).")] = Path("training_curve.png"),
) -> None:
    """Plot the dev score per evaluation from a ConsoleLogger.v3 JSONL log."""
    require_matplotlib()
    from ..explain.plots import plot_training, read_training_log

    try:
        log = read_training_log(output_dir)
    except (OSError, ValueError) as e:
        fail(str(e))
    plot_training(log, output)
    best = max(range(len(log.scores)), key=log.scores.__getitem__)
    typer.echo(f"Read {len(log.steps)} evaluations from {log.source}; best score {log.scores[best]:.3f} at step {log.steps[best]}")
    typer.echo(f"Wrote {output}")


def plot_confusion_command(
    model: ModelArg,
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write (.png, .svg, .pdf).")] = Path("confusion.png"),
    threshold: Annotated[Optional[float], typer.Option(help="Multi-label: score that counts as predicted; default: the component's threshold.")] = None,
    limit: Annotated[int, typer.Option(help="Use a seeded sample of at most this many docs; 0: all.", min=0)] = 0,
    text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label",
    input_format: InputFormatOpt = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Confusion matrix (exclusive labels) or per-label TP/FP/FN counts (multi-label)."""
    require_matplotlib()
    from ..explain.plots import (
        confusion, is_multilabel, label_counts, plot_confusion, plot_label_counts, predict_cats,
    )

    nlp, pipe, data_set = _pipeline_and_data(model, gpu_id, check, data, text_col, label_col, input_format, limit)
    predicted = predict_cats(nlp, data_set.texts, batch_size)
    title = f"{model} on {data.name}"
    labels = list(pipe.labels)
    if is_multilabel(pipe):
        cut = threshold if threshold is not None else float(pipe.cfg.get("threshold", 0.5))
        counts = label_counts(labels, data_set.gold, predicted, cut)
        plot_label_counts(counts, output, title)
        typer.echo(f"{len(data_set)} docs, threshold {cut:g}: micro F1 {counts.micro_f1:.3f}")
    else:
        result = confusion(labels, data_set.gold, predicted)
        plot_confusion(result, output, title)
        typer.echo(f"{int(result.matrix.sum())} docs: accuracy {result.accuracy:.3f}" + (f" ({result.n_skipped} skipped: not one gold label)" if result.n_skipped else ""))
    typer.echo(f"Wrote {output}")


def plot_vectors_command(
    model: ModelArg,
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write (.png, .svg, .pdf).")] = Path("cls_vectors.png"),
    limit: Annotated[int, typer.Option(help="Use a seeded sample of at most this many docs; 0: all.", min=0)] = 2000,
    text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label",
    input_format: InputFormatOpt = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Project the corpus's [CLS] vectors to 2-D with PCA, coloured by gold label."""
    require_matplotlib()
    from ..explain.plots import cls_vectors, gold_label, plot_projection, project

    nlp, pipe, data_set = _pipeline_and_data(model, gpu_id, check, data, text_col, label_col, input_format, limit)
    try:
        vectors = cls_vectors(nlp, data_set.texts, batch_size)
    except (OSError, ValueError) as e:
        fail(str(e))
    result = project(vectors, [gold_label(cats) for cats in data_set.gold])
    plot_projection(result, output, f"{model} on {data.name}")
    typer.echo(
        f"{len(data_set)} docs; PC 1+2 explain {sum(result.explained):.1%} of the variance; "
        f"nearest-centroid accuracy {result.centroid_accuracy:.3f}"
    )
    typer.echo(f"Wrote {output}")




def _pipeline_and_data(model, gpu_id, check, data, text_col, label_col, input_format, limit):
    """The pipeline, its classifier and the labelled data (a seeded sample of `limit`)."""
    from ..explain.plots import find_textcat

    nlp = load_pipeline(model, gpu_id, check)
    try:
        _, pipe = find_textcat(nlp)
    except ValueError as e:
        fail(str(e))
    data_set = read_labelled(data, nlp, list(pipe.labels), text_col=text_col, label_col=label_col,
                             input_format=input_format).subset(limit)
    return nlp, pipe, data_set
