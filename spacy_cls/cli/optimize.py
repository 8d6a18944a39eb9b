"""`optimize`: write a copy of a trained pipeline whose encoder runs on ONNX Runtime (CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, fail


def optimize_command(
    pipeline: Annotated[Path, typer.Argument(help="A trained pipeline folder (what spacy.load takes).")],
    output: Annotated[Path, typer.Argument(help="Folder for the optimized copy.")],
    int8: Annotated[bool, typer.Option("--int8", help="Quantise the encoder's weights to int8 (ONNX Runtime's dynamic quantisation).")] = False,
    component: Annotated[Optional[str], typer.Option("--component", "-c", help="The component to optimize; default: every cls_classifier component with its own encoder.")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads saved in the config; 0: as many as torch uses.", min=0)] = 0,
    check: CheckOpt = True,
) -> None:
    """Export the trained encoder to ONNX Runtime for CPU inference. The copy loads with
    spacy.load and gives the same doc.cats and doc._.cls_vector; it cannot be trained
    (train the original, then optimize again). On a GPU, use the original pipeline."""
    try:
        from ..models.onnx import require_onnxruntime

        require_onnxruntime()
    except ImportError as e:
        fail(str(e))
    from ..pipeline.optimize import optimize_to_disk

    if not pipeline.exists():
        fail(f"No pipeline at {pipeline}.")
    try:
        done = optimize_to_disk(pipeline, output, int8=int8, component=component, threads=threads, check=check)
    except (OSError, ValueError) as e:
        fail(str(e))
    for item in done:
        last_layer = "last layer at [CLS] only" if item.cls_only else "full last layer"
        typer.echo(
            f"{item.name}: pooling={item.pooling}, {last_layer}, {'int8' if item.int8 else 'float32'}, "
            f"graph {item.graph_bytes / 1e6:.1f} MB (sha256 {item.sha256[:12]}...)"
        )
    typer.echo(f"Saved to {output}. Load it with spacy.load('{output}').")
