"""`convert`: a labelled text file to a .spacy corpus, with a report of every row."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Dict, List, Optional, Tuple

import typer

from ..data.convert import convert
from ..data.readers import FORMATS, LEVELS, ReaderSpec, infer_format, load_label_names


def parse_label_map(items: List[str]) -> Dict[str, str]:
    """`["0=NEG,1=POS"]` or `["0=NEG", "1=POS"]` -> {"0": "NEG", "1": "POS"}."""
    mapping: Dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            old, eq, new = pair.partition("=")
            if not eq or not old.strip() or not new.strip():
                raise typer.BadParameter(f"{pair!r} is not OLD=NEW, e.g. --label-map 0=NEG,1=POS")
            mapping[old.strip()] = new.strip()
    return mapping


def parse_score_cols(items: List[str]) -> Dict[str, str]:
    columns: Dict[str, str] = {}
    for item in items:
        label, sep, column = item.partition("=")
        if not sep or not label.strip() or not column.strip():
            raise typer.BadParameter(f"{item!r} is not LABEL=COLUMN, e.g. --score-col POS=p_pos --score-col NEG=p_neg")
        columns[label.strip()] = column.strip()
    return columns


def parse_labels(labels: Optional[str], labels_file: Optional[Path]) -> Optional[List[str]]:
    if labels is not None and labels_file is not None:
        raise typer.BadParameter("give --labels or --labels-file, not both")
    if labels_file is not None:
        return load_label_names(labels_file)
    if labels is not None:
        return [label.strip() for label in labels.split(",") if label.strip()]
    return None


# Options of `convert`, as annotated types to keep the signature readable.
InputArg = Annotated[Path, typer.Argument(help="Labelled file: .tsv, .csv, .jsonl, or prefixed lines.")]
OutputArg = Annotated[Path, typer.Argument(help="Output DocBin, ending in .spacy.")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", "-f", help=f"{'|'.join(FORMATS)}; default: from the input's suffix (.label: prefixed).")]
TextColOpt = Annotated[Optional[str], typer.Option(
    help="Text column: header name or 0-based index (jsonl: key). Default 0 / 'text'.")]
LabelColOpt = Annotated[Optional[str], typer.Option(
    help="Label column: header name or 0-based index (jsonl: key). Default 1 / 'label'.")]
HeaderOpt = Annotated[Optional[bool], typer.Option(
    "--header/--no-header", help="Whether line 1 is a header; default: guess.")]
EncodingOpt = Annotated[str, typer.Option(help="File encoding, e.g. utf-8, latin-1, gb18030.")]
QuotingOpt = Annotated[Optional[bool], typer.Option(
    "--quoting/--no-quoting", help="CSV quote handling; default off for tsv, on for csv.")]
DelimiterOpt = Annotated[Optional[str], typer.Option(help="Field delimiter; default tab (tsv) or comma (csv).")]
LabelMapOpt = Annotated[Optional[List[str]], typer.Option(help="Rename labels: OLD=NEW[,OLD=NEW...], repeatable.")]
LabelNamesOpt = Annotated[Optional[Path], typer.Option(
    help="File with one label name per line; label cells are 0-based ids into it.")]
LabelSepOpt = Annotated[Optional[str], typer.Option(
    help="Separator of several labels in one cell (multi-label); default ',' with --multilabel.")]
ScoreColOpt = Annotated[Optional[List[str]], typer.Option(
    help="Soft labels from a table: LABEL=COLUMN (a header name or 0-based index), one per label, "
         "repeatable; the label column is then not read. JSONL takes {\"cats\": {\"POS\": 0.8, \"NEG\": 0.2}}.")]
LevelOpt = Annotated[str, typer.Option(help=f"Prefixed format: {' or '.join(LEVELS)} labels.")]
MultilabelOpt = Annotated[bool, typer.Option(
    "--multilabel", help="Rows may have several labels (textcat_multilabel).")]
LabelsOpt = Annotated[Optional[str], typer.Option(
    help="Comma-separated label set; rows with other labels are rejected.")]
LabelsFileOpt = Annotated[Optional[Path], typer.Option(help="Label set, one label per line (like --labels).")]
LangOpt = Annotated[str, typer.Option(help="spaCy language code for the tokenizer (spacy.blank), e.g. en, zh.")]
DevOpt = Annotated[Optional[Tuple[Path, Path]], typer.Option(
    metavar="DEVFILE DEVOUTPUT",
    help="Also convert a dev file (same options and label set) and count texts shared with the input.")]
HoldoutOpt = Annotated[float, typer.Option(
    help="Hold out this fraction of the input's accepted rows (e.g. 0.1) and write them to "
         "--holdout-output: the rows that spacy_cls.LabelledTextCorpus.v1 with split='dev', "
         "the same holdout and seed holds out.")]
HoldoutOutputOpt = Annotated[Optional[Path], typer.Option(
    help="Output (.spacy) for the held-out rows of --holdout.")]
SeedOpt = Annotated[int, typer.Option(help="Seed that chooses the held-out rows (as the reader's seed).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Read and report only: write no .spacy or report file.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit with status 1 if any row is rejected.")]
ProgressOpt = Annotated[Optional[bool], typer.Option(
    "--progress/--no-progress", help="Progress bar; default: on a terminal for large files.")]


def convert_command(
    input_path: InputArg,
    output_path: OutputArg,
    fmt: FormatOpt = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    header: HeaderOpt = None,
    encoding: EncodingOpt = "utf-8",
    quoting: QuotingOpt = None,
    delimiter: DelimiterOpt = None,
    label_map: LabelMapOpt = None,
    label_names: LabelNamesOpt = None,
    label_sep: LabelSepOpt = None,
    score_col: ScoreColOpt = None,
    level: LevelOpt = "coarse",
    multilabel: MultilabelOpt = False,
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    lang: LangOpt = "en",
    dev: DevOpt = None,
    holdout: HoldoutOpt = 0.0,
    holdout_output: HoldoutOutputOpt = None,
    seed: SeedOpt = 0,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Convert a labelled text file to a .spacy corpus with doc.cats, plus a JSON report."""
    try:
        spec = ReaderSpec(
            format=fmt or infer_format(input_path),
            text_col=text_col,
            label_col=label_col,
            header="auto" if header is None else header,
            encoding=encoding,
            quoting=quoting,
            delimiter=delimiter,
            label_map=parse_label_map(label_map or []),
            label_names=label_names,
            label_sep=label_sep if label_sep is not None or not multilabel else ",",
            level=level,
            score_cols=parse_score_cols(score_col) if score_col else None,
        )
        report = convert(
            input_path, output_path, spec, lang=lang, exclusive=not multilabel,
            labels=parse_labels(labels, labels_file), dev=_dev_pair(dev), holdout=holdout,
            holdout_output=holdout_output, seed=seed, progress=progress, dry_run=dry_run,
        )
    except (ValueError, OSError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.summary())
    rejected = report.rows_rejected + (report.dev.rows_rejected if report.dev else 0)
    if report.rows_written == 0 or (report.dev is not None and report.dev.rows_written == 0):
        raise typer.Exit(1)
    if strict and rejected:
        typer.echo(f"Error: {rejected} rows rejected (--strict).", err=True)
        raise typer.Exit(1)


def _dev_pair(dev: Optional[Tuple[Optional[Path], Optional[Path]]]) -> Optional[Tuple[Path, Path]]:
    if dev is None or dev[0] is None or dev[1] is None:
        return None
    return dev[0], dev[1]
