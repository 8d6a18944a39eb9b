"""Options and helpers shared by the commands that use a trained pipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, NoReturn, Optional

import typer

ModelArg = Annotated[str, typer.Argument(help="A pipeline: installed package name or folder (what spacy.load takes).")]
TextsArg = Annotated[Optional[List[str]], typer.Argument(help="Texts to read; or give --file.", show_default=False)]
FileOpt = Annotated[Optional[Path], typer.Option("--file", "-f", help="Texts: .jsonl/.csv/.tsv/.parquet (the 'text' column), or any other UTF-8 file with one text a line (blank lines skipped).")]
InputFormatOpt = Annotated[Optional[str], typer.Option(help="Read the input as jsonl, csv, tsv, parquet or lines (one text a line); default: from each file's extension. A .csv is always read as CSV.")]
TextColOpt = Annotated[str, typer.Option(help="Column (or JSON field) with the text.")]
DataArg = Annotated[Path, typer.Argument(help="Labelled data: a .spacy DocBin, or a .jsonl, .csv, .tsv or .parquet file with a text and a label column (see --text-col, --label-col).")]
LabelColOpt = Annotated[str, typer.Option(help="Column (or JSON field) with the gold label: one label, or (JSONL, Parquet) a list of labels.")]
BatchOpt = Annotated[int, typer.Option(help="Docs per batch.", min=1)]
GpuOpt = Annotated[int, typer.Option("--gpu-id", "-g", help="GPU to run on; -1: CPU.")]
CheckOpt = Annotated[bool, typer.Option(
    "--check/--no-check",
    help="Check the whole pipeline folder before loading it (links leaving it, code, sizes); "
         "--no-check only for pipelines you trust.")]

def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("The plot commands need matplotlib: pip install 'spacy-cls[plots]' (or pip install matplotlib).")


def load_pipeline(model: str, gpu_id: int, check: bool = True):
    """The pipeline, loaded through `load_checked` (the folder checked first) unless
    `check` is false, which also turns the components' folder checks off."""
    import spacy

    from ..models.safe_load import disable_checks_for_this_process, load_checked

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    if not check:
        disable_checks_for_this_process()
    try:
        return load_checked(model, check=check)
    except (OSError, ValueError) as e:
        fail(f"Could not load the pipeline '{model}': {e}")


def read_texts(texts: Optional[List[str]], file: Optional[Path], *, text_col: str = "text",
               input_format: Optional[str] = None) -> List[str]:
    if texts and file is not None:
        fail("Give texts or --file, not both.")
    if file is not None:
        from ..scale.inputs import FORMATS

        fmt = input_format or (None if file.suffix.lower() in FORMATS else "lines")
        rows = read_input(file, text_col=text_col, id_col=None, input_format=fmt, quiet=("blank line",))
        return [row.text for row in rows]
    if not texts:
        fail("No texts: give them as arguments or with --file (one text a line).")
    return list(texts)


def read_input(path: Path, *, text_col: str = "text", id_col: Optional[str] = None, columns=(),
               input_format: Optional[str] = None, all_columns: bool = False, what: str = "texts",
               rejected: Optional[list] = None, quiet: tuple = ()):
    """The rows of `path` that have a text, read as `apply` reads its input; the
    rejected ones are counted on stderr (the first few with their row and reason)
    and added to `rejected`."""
    from ..scale.inputs import InputError, read_rows

    kept = []
    rejected = rejected if rejected is not None else []
    try:
        for row in read_rows(path, text_col=text_col, id_col=id_col, columns=columns, fmt=input_format,
                             all_columns=all_columns):
            (rejected if row.problem else kept).append(row)
    except (InputError, OSError) as e:
        fail(str(e))
    report_rejected([r for r in rejected if r.problem not in quiet], len(kept) + len(rejected))
    if not kept:
        reasons = sorted({r.problem for r in rejected})[:3]
        fail(f"{path} has no {what} ({len(rejected)} rows rejected: {'; '.join(reasons) or 'the file is empty'}).")
    return kept


def read_labelled(path: Path, nlp, labels, *, text_col: str, label_col: str, input_format: Optional[str]):
    """(texts, gold cats) from a .spacy DocBin, or from any input `apply` reads with
    a text and a label column; a row whose label is missing or not one of `labels`
    is rejected with its row and reason."""
    from ..explain.plots import LabelledTexts, load_labelled_texts

    if path.suffix.lower() == ".spacy":
        try:
            return load_labelled_texts(path, nlp)
        except (OSError, ValueError) as e:
            fail(str(e))
    rows = read_input(path, text_col=text_col, id_col=None, columns=[label_col], input_format=input_format,
                      what="labelled texts")
    known = set(labels)
    texts, gold, rejected = [], [], []
    for row in rows:
        chosen = _labels_of(row.values.get(label_col))
        unknown = [label for label in chosen if label not in known]
        if not chosen or unknown:
            row.problem = (f"no '{label_col}' value" if not chosen else
                           f"label {unknown[0]!r} is not one of the pipeline's ({', '.join(labels)})")
            rejected.append(row)
            continue
        texts.append(row.text)
        gold.append({label: float(label in chosen) for label in labels})
    report_rejected(rejected, len(rows))
    if not texts:
        fail(f"No row of {path} has a text in '{text_col}' and a label of the pipeline in '{label_col}' "
             f"({'; '.join(sorted({r.problem for r in rejected})[:3])}).")
    return LabelledTexts(texts, gold)


def _labels_of(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    text = str(value).strip()
    return [text] if text else []


def report_rejected(rejected, n_read: int, shown: int = 10) -> None:
    """The rejected rows on stderr: the first `shown` with their reasons, and the count."""
    if not rejected:
        return
    sources = {row.source for row in rejected}
    for row in rejected[:shown]:
        unit = "line" if row.source.lower().endswith((".jsonl", ".ndjson", ".json", ".txt")) else "row"
        where = f"{unit} {row.row}" if len(sources) == 1 else f"{row.source} {unit} {row.row}"
        typer.echo(f"skipped {where}: {row.problem}", err=True)
    if len(rejected) > shown:
        typer.echo(f"... and {len(rejected) - shown} more skipped rows", err=True)
    typer.echo(f"Read {n_read} rows: {n_read - len(rejected)} kept, {len(rejected)} skipped.", err=True)


def fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)
