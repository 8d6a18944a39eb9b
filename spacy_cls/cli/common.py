"""Options and helpers shared by the commands that use a trained pipeline."""
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


def read_texts(texts: Optional[List[str]], file: Optional[Path]) -> List[str]:
    if texts and file is not None:
        fail("Give texts or --file, not both.")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"Cannot read {file}: {e}")
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            fail(f"{file} has no texts (one text a line).")
        return texts
    if not texts:
        fail("No texts: give them as arguments or with --file (one text a line).")
    return list(texts)


def fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)
