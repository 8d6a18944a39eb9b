"""`rank-uncertain`: the texts the classifier is least sure about, as JSONL to annotate."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CheckOpt, GpuOpt, InputFormatOpt, ModelArg, fail, load_pipeline, read_input


def rank_uncertain_command(
    model: ModelArg,
    input_path: Annotated[Path, typer.Argument(help="Texts: a .jsonl, .csv, .tsv or .parquet file (its other columns kept as meta), a .txt file with one text a line, or a folder of them.")],
    n: Annotated[int, typer.Option("-n", help="How many texts to write.", min=1)] = 500,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .jsonl.")] = Path("uncertain.jsonl"),
    fmt: Annotated[str, typer.Option("--format", help="prodigy: {text, meta} (Label Studio imports it too); label-studio: {data: {...}}.")] = "prodigy",
    component: Annotated[Optional[str], typer.Option(help="The classifier to read (default: the pipeline's only one).")] = None,
    text_col: Annotated[str, typer.Option("--text-col", "--text-key", help="Column (or JSON field) with the text.")] = "text",
    input_format: InputFormatOpt = None,
    batch_size: Annotated[int, typer.Option(help="Docs per batch.", min=1)] = 64,
    gpu_id: GpuOpt = -1,
    check: CheckOpt = True,
) -> None:
    """Write the N texts of INPUT the classifier is least sure about (doc._.cls_uncertainty,
    highest first) as JSONL, with the scores in meta, for the next annotation round.
    INPUT is read as `apply` reads it; every row that is not ranked (blank, bad JSON,
    no text, not valid Unicode, or a text the pipeline fails on) is written with its
    row and reason to OUTPUT's <name>_rejected.jsonl."""
    from ..decisions.rank import FORMATS, InputText, rank_uncertain
    from ..scale.output import jsonl_line
    from ..scale.predict import classify_texts

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if not input_path.exists():
        fail(f"{input_path} does not exist.")
    rejected_path = output.with_name(f"{output.stem}_rejected.jsonl")
    rejected = []
    rows = read_input(input_path, text_col=text_col, id_col=None, input_format=input_format, all_columns=True,
                      what="texts to rank", rejected=rejected)
    nlp = load_pipeline(model, gpu_id, check)
    results = classify_texts(nlp, [row.text for row in rows], batch_size)
    items, docs = [], []
    for row, result in zip(rows, results):
        if isinstance(result, str):
            row.problem = result
            rejected.append(row)
            continue
        values = dict(row.values)
        meta = values.pop("meta", None)
        meta = meta if isinstance(meta, dict) else ({"meta": meta} if meta is not None else {})
        extra = {"source": row.source, **values} if input_path.is_dir() else values
        items.append(InputText(row.row, row.text, {**extra, **meta}))
        docs.append(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    with rejected_path.open("w", encoding="utf8") as file:
        for row in sorted(rejected, key=lambda r: (r.source, r.row)):
            file.write(jsonl_line({"id": row.id, "source": row.source, "row": row.row, "reason": row.problem}) + "\n")
    if not items:
        fail(f"{input_path} has no texts the pipeline could rank ({len(rejected)} rows rejected, see {rejected_path}).")
    try:
        ranked, name = rank_uncertain(nlp, component, items, n, fmt=fmt, batch_size=batch_size, docs=docs)
    except ValueError as e:
        fail(str(e))
    with output.open("w", encoding="utf8") as file:
        for record in ranked:
            file.write(jsonl_line(record) + "\n")
    n_read = len(items) + len(rejected)
    typer.echo(f"Read {n_read} rows: {len(items)} ranked, {len(rejected)} rejected"
               f"{f' (see {rejected_path})' if rejected else ''}. "
               f"Wrote the {len(ranked)} most uncertain ({nlp.get_pipe(name).uncertainty}) to {output}")
