"""`explain`: an HTML page of cats and [CLS] attention."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    BatchOpt, CheckOpt, FileOpt, GpuOpt, InputFormatOpt, ModelArg, TextColOpt, TextsArg, fail, load_pipeline, read_texts,
)


def explain_command(
    model: ModelArg,
    texts: TextsArg = None,
    file: FileOpt = None,
    text_col: TextColOpt = "text",
    input_format: InputFormatOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML page to write.")] = Path("explain.html"),
    component: Annotated[Optional[str], typer.Option(help="Name of the cls_classifier component; default: the first.")] = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Write an HTML page: predicted cats, tokens shaded by [CLS] attention."""
    from ..explain.attention import cls_attention, find_component, top_tokens
    from ..explain.html import render_html
    from ..layers.onnx_encoder import is_onnx_encoder, refuse_attention

    nlp = load_pipeline(model, gpu_id, check)
    try:
        pipe = find_component(nlp, component)
    except (KeyError, ValueError) as e:
        fail(str(e))
    if is_onnx_encoder(pipe.encoder):
        fail(str(refuse_attention(pipe.name, nlp.meta)))
    docs = list(nlp.pipe(read_texts(texts, file, text_col=text_col, input_format=input_format), batch_size=batch_size))
    cls_attention(pipe, docs, batch_size=batch_size)
    threshold = pipe.cfg.get("threshold") if pipe.model.attrs.get("multi_label") else None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(docs, threshold=threshold), encoding="utf8")
    for i, doc in enumerate(docs, start=1):
        top = ", ".join(f"{text} {weight:.3f}" for text, weight in top_tokens(doc, 3))
        best = max(doc.cats, key=doc.cats.get) if doc.cats else "-"
        typer.echo(f"[{i}] {best}; most attended: {top}")
    typer.echo(f"Wrote {output} ({len(docs)} docs)")


