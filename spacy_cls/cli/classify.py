"""`classify`: print each text's cats and [CLS] vector shape."""
from __future__ import annotations


import typer

from .common import ModelArg, TextsArg, FileOpt, BatchOpt, GpuOpt, CheckOpt, load_pipeline, read_texts


def classify_command(
    model: ModelArg,
    texts: TextsArg = None,
    file: FileOpt = None,
    batch_size: BatchOpt = 32,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Print each text's cats (highest first) and the shape of its [CLS] vector."""
    from ..pipeline.extensions import CLS_VECTOR

    nlp = load_pipeline(model, gpu_id, check)
    for i, doc in enumerate(nlp.pipe(read_texts(texts, file), batch_size=batch_size), start=1):
        typer.echo(f"[{i}] {doc.text}")
        width = max((len(label) for label in doc.cats), default=0)
        for label, score in sorted(doc.cats.items(), key=lambda kv: (-kv[1], kv[0])):
            typer.echo(f"    {label:<{width}}  {score:.3f}")
        vector = doc._.get(CLS_VECTOR) if doc.has_extension(CLS_VECTOR) else None
        typer.echo(f"    cls_vector: {tuple(vector.shape) if vector is not None else None}")


