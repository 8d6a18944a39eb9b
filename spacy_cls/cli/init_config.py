"""`init-config`: a commented training config for the user's own labelled file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional, Tuple

import typer

from .common import fail
from .convert import EncodingOpt, FormatOpt, LabelColOpt, LabelSepOpt, TextColOpt

# Used when the checkpoint's tokenizer cannot be read here (a hub name, say).
FALLBACK_MAX_LENGTH = 512


def init_config_command(
    output: Annotated[Path, typer.Argument(help="The config file to write ('-': print it).")],
    train: Annotated[Path, typer.Option("--train", help="Labelled training file: .tsv, .csv, .jsonl or prefixed lines.")],
    lang: Annotated[str, typer.Option("--lang", help="en or zh.")],
    dev: Annotated[Optional[Path], typer.Option("--dev", help="Labelled dev file; default: hold out 10% of --train.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Checkpoint: a local folder, package:<package>/<folder>, or a hub id; default: the offline checkpoint for --lang.")] = None,
    few_shot: Annotated[bool, typer.Option("--few-shot", help="Few labelled examples: a frozen encoder with mean pooling, the head trained alone.")] = False,
    fmt: FormatOpt = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    label_sep: LabelSepOpt = None,
    multilabel: Annotated[bool, typer.Option("--multilabel", help="Rows may have several labels (default: guessed from the data; cells split on --label-sep, ',' by default).")] = False,
    encoding: EncodingOpt = "utf-8",
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Write a training config for TRAIN (and DEV): the reader settings that read it, its
    label set, the checkpoint, a max length that fits 99% of its texts and a budget sized
    to its rows, every choice commented. Then: python -m spacy train OUTPUT --output training"""
    from ..data.init_config import DEFAULT_MODELS, LANGS, render_config, spec_for, survey

    if lang not in LANGS:
        fail(f"--lang {lang}: choose one of {', '.join(LANGS)}.")
    if output != Path("-") and output.exists() and not force:
        fail(f"{output} exists: give another path, or --force to replace it.")
    for path in (train, dev):
        if path is not None and not path.is_file():
            fail(f"{path} is not a file.")
    model = model or DEFAULT_MODELS[lang]
    if multilabel and label_sep is None:
        label_sep = ","
    count_pieces, model_max = _word_piece_counter(model, lang)
    try:
        spec = spec_for(train, format=fmt, text_col=text_col, label_col=label_col, label_sep=label_sep,
                        encoding=encoding)
        found = survey(train, spec, count_pieces=count_pieces, lang=lang)
        dev_found = survey(dev, spec_for(dev, format=fmt, text_col=text_col, label_col=label_col,
                                         label_sep=label_sep, encoding=encoding),
                           count_pieces=count_pieces, lang=lang) if dev is not None else None
        if multilabel:
            found.multi_label = True
        text = render_config(train=found, spec=spec, lang=lang, model=model, model_max_length=model_max,
                             dev=dev_found, few_shot=few_shot)
    except (OSError, ValueError) as e:
        fail(str(e))
    for report in [found] + ([dev_found] if dev_found else []):
        for rejected in report.rejected[:5]:
            typer.echo(f"{report.path}: rejected line {rejected.line_no}: {rejected.reason}", err=True)
        if len(report.rejected) > 5:
            typer.echo(f"{report.path}: ... and {len(report.rejected) - 5} more rejected lines", err=True)
    if output == Path("-"):
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf8")
    kind = "multi-label" if found.multi_label else "exclusive"
    typer.echo(f"{train}: {found.rows} rows read, {len(found.rejected)} rejected; {len(found.labels)} labels ({kind}).")
    if dev_found is not None:
        typer.echo(f"{dev}: {dev_found.rows} rows read, {len(dev_found.rejected)} rejected.")
    unknown = sorted(set(dev_found.labels) - set(found.labels)) if dev_found else []
    if unknown:
        typer.echo(f"Warning: the dev file has labels the training file lacks: {', '.join(unknown[:10])}", err=True)
    typer.echo(f"Wrote {output}. Train with:\n  python -m spacy train {output} --output training")


def _word_piece_counter(model: str, lang: str) -> Tuple[Optional[object], int]:
    """Count word pieces with the checkpoint's own tokenizer when it is on this machine;
    otherwise (None, FALLBACK_MAX_LENGTH) and the lengths are estimated."""
    from ..models.loaders import PACKAGE_PREFIX, ModelLoadError, package_folder

    try:
        folder = package_folder(model) if model.startswith(PACKAGE_PREFIX) else Path(model).expanduser()
    except ModelLoadError as e:
        fail(str(e))
    if not (folder / "config.json").is_file():
        typer.echo(f"Note: {model} is not a checkpoint folder on this machine; text lengths are estimated.", err=True)
        return None, FALLBACK_MAX_LENGTH
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # lengths over the model's limit are what is measured here
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        fail(f"Cannot read the tokenizer of {model}: {e}")
    limit = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 100_000 else FALLBACK_MAX_LENGTH

    def count(texts: List[str]) -> List[int]:
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]]

    return count, int(limit)
