"""`rank-uncertain`: the texts the classifier is least sure about, as JSONL to annotate."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, GpuOpt, ModelArg, fail, load_pipeline


def rank_uncertain_command(
    model: ModelArg,
    input_path: Annotated[Path, typer.Argument(help="Texts: .jsonl ({\"text\": ...} a line; other keys kept as meta) or a UTF-8 file with one text a line.")],
    n: Annotated[int, typer.Option("-n", help="How many texts to write.", min=1)] = 500,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .jsonl.")] = Path("uncertain.jsonl"),
    fmt: Annotated[str, typer.Option("--format", help="prodigy: {text, meta} (Label Studio imports it too); label-studio: {data: {...}}.")] = "prodigy",
    component: Annotated[Optional[str], typer.Option(help="The classifier to read (default: the pipeline's only one).")] = None,
    text_key: Annotated[str, typer.Option(help="JSONL key holding the text.")] = "text",
    batch_size: Annotated[int, typer.Option(help="Docs per batch.", min=1)] = 64,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Write the N texts of INPUT the classifier is least sure about (doc._.cls_uncertainty,
    highest first) as JSONL, with the scores in meta, for the next annotation round.
    Skipped lines (blank, bad JSON, no text) are reported with their line numbers."""
    from ..decisions.rank import FORMATS, InputText, rank_uncertain, read_texts

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if not input_path.exists():
        fail(f"{input_path} does not exist.")
    try:
        read = list(read_texts(input_path, text_key=text_key))
    except (OSError, ValueError) as e:
        fail(str(e))
    items = [r for r in read if isinstance(r, InputText)]
    skipped = [r for r in read if not isinstance(r, InputText)]
    for s in skipped[:10]:
        typer.echo(f"skipped line {s.line_no}: {s.reason}", err=True)
    if len(skipped) > 10:
        typer.echo(f"... and {len(skipped) - 10} more skipped lines", err=True)
    if not items:
        fail(f"{input_path} has no texts to rank ({len(skipped)} lines skipped).")
    nlp = load_pipeline(model, gpu_id, check)
    try:
        rows, name = rank_uncertain(nlp, component, items, n, fmt=fmt, batch_size=batch_size)
    except ValueError as e:
        fail(str(e))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    typer.echo(f"Read {len(read)} lines: {len(items)} texts, {len(skipped)} skipped. "
               f"Wrote the {len(rows)} most uncertain ({nlp.get_pipe(name).uncertainty}) to {output}")
