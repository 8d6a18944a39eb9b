"""Commands that use a trained pipeline: classify, explain, plot-training,
plot-confusion, plot-vectors. `register(app)` adds them to the package's typer app."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, NoReturn, Optional

import typer

ModelArg = Annotated[str, typer.Argument(help="A pipeline: installed package name or folder (what spacy.load takes).")]
TextsArg = Annotated[Optional[List[str]], typer.Argument(help="Texts to read; or give --file.", show_default=False)]
FileOpt = Annotated[Optional[Path], typer.Option("--file", "-f", help="UTF-8 file with one text a line (blank lines skipped).")]
DataArg = Annotated[Path, typer.Argument(help="Labelled data: a .spacy DocBin, or a .jsonl file with {\"text\", \"label\"} lines.")]
BatchOpt = Annotated[int, typer.Option(help="Docs per batch.", min=1)]
GpuOpt = Annotated[int, typer.Option("--gpu-id", "-g", help="GPU to run on; -1: CPU.")]


def register(app: typer.Typer) -> None:
    app.command("classify")(classify_command)
    app.command("explain")(explain_command)
    app.command("plot-training")(plot_training_command)
    app.command("plot-confusion")(plot_confusion_command)
    app.command("plot-vectors")(plot_vectors_command)


def classify_command(
    model: ModelArg,
    texts: TextsArg = None,
    file: FileOpt = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
) -> None:
    """Print each text's cats (highest first) and the shape of its [CLS] vector."""
    from .extensions import CLS_VECTOR

    nlp = _load(model, gpu_id)
    for i, doc in enumerate(nlp.pipe(_texts(texts, file), batch_size=batch_size), start=1):
        typer.echo(f"[{i}] {doc.text}")
        width = max((len(label) for label in doc.cats), default=0)
        for label, score in sorted(doc.cats.items(), key=lambda kv: (-kv[1], kv[0])):
            typer.echo(f"    {label:<{width}}  {score:.3f}")
        vector = doc._.get(CLS_VECTOR) if doc.has_extension(CLS_VECTOR) else None
        typer.echo(f"    cls_vector: {tuple(vector.shape) if vector is not None else None}")


def explain_command(
    model: ModelArg,
    texts: TextsArg = None,
    file: FileOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML page to write.")] = Path("explain.html"),
    component: Annotated[Optional[str], typer.Option(help="Name of the cls_classifier component; default: the first.")] = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
) -> None:
    """Write an HTML page: predicted cats, tokens shaded by [CLS] attention."""
    from .attention import cls_attention, find_component, top_tokens
    from .explain_html import render_html

    nlp = _load(model, gpu_id)
    try:
        pipe = find_component(nlp, component)
    except (KeyError, ValueError) as e:
        _fail(str(e))
    docs = list(nlp.pipe(_texts(texts, file), batch_size=batch_size))
    cls_attention(pipe, docs, batch_size=batch_size)
    threshold = pipe.cfg.get("threshold") if pipe.model.attrs.get("multi_label") else None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(docs, threshold=threshold), encoding="utf8")
    for i, doc in enumerate(docs, start=1):
        top = ", ".join(f"{text} {weight:.3f}" for text, weight in top_tokens(doc, 3))
        best = max(doc.cats, key=doc.cats.get) if doc.cats else "-"
        typer.echo(f"[{i}] {best}; most attended: {top}")
    typer.echo(f"Wrote {output} ({len(docs)} docs)")


def plot_training_command(
    output_dir: Annotated[Path, typer.Argument(help="A `spacy train` output folder holding the JSONL log, or the log file itself.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write (.png, .svg, .pdf).")] = Path("training_curve.png"),
) -> None:
    """Plot the dev score per evaluation from a ConsoleLogger.v3 JSONL log."""
    _require_matplotlib()
    from .plots import plot_training, read_training_log

    try:
        log = read_training_log(output_dir)
    except (OSError, ValueError) as e:
        _fail(str(e))
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
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
) -> None:
    """Confusion matrix (exclusive labels) or per-label TP/FP/FN counts (multi-label)."""
    _require_matplotlib()
    from .plots import (
        confusion, find_textcat, is_multilabel, label_counts, load_labelled_texts, plot_confusion,
        plot_label_counts, predict_cats,
    )

    nlp = _load(model, gpu_id)
    try:
        _, pipe = find_textcat(nlp)
        data_set = load_labelled_texts(data, nlp).subset(limit)
    except (OSError, ValueError) as e:
        _fail(str(e))
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
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
) -> None:
    """Project the corpus's [CLS] vectors to 2-D with PCA, coloured by gold label."""
    _require_matplotlib()
    from .plots import cls_vectors, gold_label, load_labelled_texts, plot_projection, project

    nlp = _load(model, gpu_id)
    try:
        data_set = load_labelled_texts(data, nlp).subset(limit)
        vectors = cls_vectors(nlp, data_set.texts, batch_size)
    except (OSError, ValueError) as e:
        _fail(str(e))
    result = project(vectors, [gold_label(cats) for cats in data_set.gold])
    plot_projection(result, output, f"{model} on {data.name}")
    typer.echo(
        f"{len(data_set)} docs; PC 1+2 explain {sum(result.explained):.1%} of the variance; "
        f"nearest-centroid accuracy {result.centroid_accuracy:.3f}"
    )
    typer.echo(f"Wrote {output}")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _fail("The plot commands need matplotlib: pip install 'spacy-cls[plots]' (or pip install matplotlib).")


def _load(model: str, gpu_id: int):
    import spacy

    import spacy_cls  # noqa: F401  (factories and extensions)

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        return spacy.load(model)
    except (OSError, ValueError) as e:
        _fail(f"Could not load the pipeline '{model}': {e}")


def _texts(texts: Optional[List[str]], file: Optional[Path]) -> List[str]:
    if texts and file is not None:
        _fail("Give texts or --file, not both.")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"Cannot read {file}: {e}")
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            _fail(f"{file} has no texts (one text a line).")
        return texts
    if not texts:
        _fail("No texts: give them as arguments or with --file (one text a line).")
    return list(texts)


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)
