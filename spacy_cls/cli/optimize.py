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
    int8_embeddings: Annotated[bool, typer.Option("--int8-embeddings/--fp32-embeddings", help="With --int8: quantise the embedding tables too, or keep them in float32.")] = True,
    int8_fp32_layers: Annotated[str, typer.Option("--int8-fp32-layers", help="With --int8: encoder layers to keep in float32, e.g. 0,1 (0 is the first, -1 the last).")] = "",
    calibrate: Annotated[Optional[Path], typer.Option("--calibrate", help="With --int8: texts (.txt, one a line; or JSONL/CSV/TSV/Parquet with a text column) on which to measure which layers to keep in float32.")] = None,
    text_col: Annotated[str, typer.Option("--text-col", help="The text column of --calibrate.")] = "text",
    calibrate_limit: Annotated[int, typer.Option("--calibrate-limit", help="Texts of --calibrate read at most.", min=1)] = 1000,
    int8_agreement: Annotated[float, typer.Option("--int8-agreement", help="With --calibrate: keep layers in float32 until the labels agree with float32 on this percent of the texts.", min=0.0, max=100.0)] = 99.5,
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
    from ..models.onnx import Int8Recipe
    from ..pipeline.optimize import Int8Calibration, optimize_to_disk

    if not pipeline.exists():
        fail(f"No pipeline at {pipeline}.")
    if not int8 and (int8_fp32_layers or not int8_embeddings or calibrate):
        fail("--int8-fp32-layers, --fp32-embeddings and --calibrate say what int8 quantisation leaves in float32: add --int8.")
    if int8_fp32_layers and calibrate:
        fail("Give --int8-fp32-layers or --calibrate (which measures the layers), not both.")
    try:
        layers = tuple(int(part) for part in int8_fp32_layers.split(",") if part.strip())
    except ValueError:
        fail(f"--int8-fp32-layers '{int8_fp32_layers}': give layer numbers separated by commas, e.g. 0,1.")
    recipe = Int8Recipe(embeddings=int8_embeddings, fp32_layers=layers)
    calibration = None
    if calibrate is not None:
        calibration = Int8Calibration(texts=_calibration_texts(calibrate, text_col, calibrate_limit), target=int8_agreement)
    try:
        done = optimize_to_disk(pipeline, output, int8=int8, component=component, threads=threads, check=check,
                                int8_recipe=recipe, calibration=calibration)
    except (OSError, ValueError) as e:
        fail(str(e))
    for item in done:
        last_layer = "last layer at [CLS] only" if item.cls_only else "full last layer"
        typer.echo(
            f"{item.name}: pooling={item.pooling}, {last_layer}, {item.recipe.describe() if item.recipe else 'float32'}, "
            f"graph {item.graph_bytes / 1e6:.1f} MB (sha256 {item.sha256[:12]}...)"
        )
        if item.calibration is not None:
            typer.echo(f"{item.name}: {item.calibration.summary()}")
    typer.echo(f"Saved to {output}. Load it with spacy.load('{output}').")


def _calibration_texts(source: Path, text_col: str, limit: int):
    from ..distill.texts import read_texts

    if not source.exists():
        fail(f"No calibration texts at {source}.")
    texts = []
    try:
        for _, text, _problem in read_texts(source, text_col, None):
            if text is not None:
                texts.append(text)
            if len(texts) >= limit:
                break
    except ValueError as e:
        fail(str(e))
    if not texts:
        fail(f"{source} holds no readable text (column '{text_col}'): nothing to calibrate on.")
    return texts
