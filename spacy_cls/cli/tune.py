"""`tune`: fit thresholds / temperature on a dev set and write them into the pipeline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, fail


def tune_command(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline folder saved by nlp.to_disk / spacy train.")],
    dev: Annotated[Path, typer.Argument(help="Labelled dev set: a .spacy DocBin with doc.cats (see `convert`).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the tuned pipeline here (default: tune PIPELINE in place).")] = None,
    component: Annotated[Optional[str], typer.Option(help="The classifier to tune (default: the pipeline's only one).")] = None,
    min_threshold: Annotated[float, typer.Option(help="Multi-label: no tuned threshold goes below this.", min=0.0, max=1.0)] = 0.05,
    min_positives: Annotated[int, typer.Option(help="Multi-label: labels with fewer gold docs on DEV keep the global threshold.", min=1)] = 5,
    abstain_accuracy: Annotated[Optional[float], typer.Option(help="Exclusive: also set the abstain threshold that keeps this accuracy (e.g. 0.95) on the docs that get a label.", min=0.0, max=1.0)] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Reliability diagram (PNG); needs matplotlib.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    check: CheckOpt = True,
) -> None:
    """Tune the decisions of a trained classifier on DEV, running the encoder once: a
    threshold per label (multi-label) or a softmax temperature and optional abstain
    threshold (exclusive). They are written into the pipeline's config, so spacy.load
    applies them. Tune on a dev set you do not report scores on."""
    from ..decisions.tune import tune_pipeline

    if plot is not None:
        from .common import require_matplotlib

        require_matplotlib()
    if not check:
        from ..models.safe_load import disable_checks_for_this_process

        disable_checks_for_this_process()
    try:
        result = tune_pipeline(pipeline, dev, output=output, component=component, min_threshold=min_threshold,
                               min_positives=min_positives, abstain_accuracy=abstain_accuracy, plot=plot)
    except (OSError, ValueError) as e:
        fail(str(e))
    typer.echo(f"{result.component}: {result.n_docs} dev docs, {'multi-label' if result.multi_label else 'exclusive'}")
    rows = [("macro-F1", "macro_f1"), ("micro-F1", "micro_f1"), ("ECE", "ece"), ("Brier", "brier")]
    if not result.multi_label:
        rows += [("NLL", "nll"), ("accuracy", "accuracy"), ("coverage", "coverage")]
    typer.echo(f"  {'':<10} {'before':>8} {'after':>8}")
    for title, key in rows:
        typer.echo(f"  {title:<10} {result.before[key]:>8.4f} {result.after[key]:>8.4f}")
    if result.coverage:
        typer.echo("  abstain below | coverage | accuracy on covered (after)")
        for row in result.coverage:
            typer.echo(f"  {row['threshold']:>13.2f} | {row['coverage']:>8.3f} | {row['accuracy']:.4f}")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    typer.echo(f"Wrote {', '.join(sorted(result.settings))} into {result.output / 'config.cfg'}")
    if result.plot is not None:
        typer.echo(f"Reliability diagram: {result.plot}")
    if json_path is not None:
        payload = {"component": result.component, "n_docs": result.n_docs, "settings": result.settings,
                   "before": result.before, "after": result.after, "coverage": result.coverage, "notes": result.notes}
        json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
