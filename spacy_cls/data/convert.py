"""Convert labelled text files to spaCy `.spacy` corpora (DocBin with `doc.cats`).

`convert` reads a file with `read_rows`, writes every accepted row as a Doc, and returns a
`ConversionReport` (also written to `<output>.report.json`). Whatever happens,
`rows_written + len(rejected) == rows_read`.
"""
from __future__ import annotations

import json
import os
import shlex
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import DocBin
from tqdm import tqdm

from .checks import accepted_rows
from .corpus import check_holdout, holdout_split
from .formats import header_line
from .labels import row_cats, declared_labels, resolve_label_set, single_row_labels
from .lines import count_lines, uses_cr_line_ends
from .records import Rejected, Row, describe_rejected, reject
from .spec import DEFAULT_SPEC, ReaderSpec

PathLike = Union[str, Path]
# Files with fewer rows than this get no progress bar.
PROGRESS_MIN_ROWS = 5000
# At most this many shared train/dev texts are listed in the report (all are counted).
MAX_SHARED_LISTED = 1000
MAX_RAW_CHARS = 200
# A training config of this project for the printed train command, by (lang, exclusive).
EXAMPLE_CONFIGS = {
    ("en", True): "configs/en_demo.cfg",
    ("zh", True): "configs/zh_demo.cfg",
    ("en", False): "configs/en_goemotions.cfg",
}


@dataclass
class Holdout:
    """The held-out side of the input: `rows` of it written to `output`."""
    output: str
    fraction: float
    seed: int
    rows: int = 0


@dataclass
class ConversionReport:
    input: str
    output: str
    rows_read: int
    rows_written: int
    rejected: List[Rejected]
    labels: List[str]
    label_counts: Dict[str, int]
    exclusive: bool
    header: bool
    physical_lines: int
    duplicate_texts: int
    conflicting_duplicates: int
    header_line: Optional[str] = None
    single_row_labels: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    dry_run: bool = False
    dev: Optional["ConversionReport"] = None
    holdout: Optional[Holdout] = None
    shared_with_dev: int = 0
    shared_texts: List[str] = field(default_factory=list)
    train_command: Optional[str] = None
    debug_command: Optional[str] = None
    evaluate_command: Optional[str] = None

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected)

    @property
    def report_path(self) -> Path:
        return report_path_for(self.output)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["rows_rejected"] = self.rows_rejected
        data["rejected"] = [_rejected_dict(r) for r in self.rejected]
        if self.dev is not None:
            data["dev"] = self.dev.to_dict()
        return data

    def write_json(self, path: Optional[PathLike] = None) -> Path:
        target = Path(path) if path is not None else self.report_path
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        # a rejected row's raw line may hold a lone surrogate: JSON writes it as \udXXX
        target.write_bytes(text.encode("utf-8", errors="backslashreplace"))
        return target

    def summary(self) -> str:
        lines = _file_summary(self)
        if self.dev is not None:
            lines += _file_summary(self.dev)
        if self.dev is not None or self.holdout is not None:
            lines.append(_shared_summary(self))
        lines.append("dry run: nothing written" if self.dry_run else f"report: {self.report_path}")
        if self.train_command:
            if self.dev is None and self.holdout is None:
                lines.append("DEV.spacy: a dev corpus, e.g. converted with --dev, or held out with --holdout (in the commands below).")
            lines.append("check the data (spaCy's debug data):")
            lines.append(f"  {self.debug_command}")
            lines.append("evaluate a trained pipeline on the dev corpus:")
            lines.append(f"  {self.evaluate_command}")
            lines.append("train:")
            lines.append(f"  {self.train_command}")
        return "\n".join(lines)


def report_path_for(output: PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def _rejected_dict(rejected: Rejected) -> Dict[str, Any]:
    raw = rejected.raw if len(rejected.raw) <= MAX_RAW_CHARS else rejected.raw[:MAX_RAW_CHARS] + "…"
    return {"line_no": rejected.line_no, "reason": rejected.reason, "raw": raw}


def _file_summary(report: ConversionReport) -> List[str]:
    mode = "exclusive" if report.exclusive else "multi-label"
    header = f"line 1: {report.header_line!r}" if report.header else "no"
    written = f"written {report.rows_written:,}"
    if report.holdout is not None:
        written += (f" ({report.rows_written - report.holdout.rows:,} to {report.output}, "
                    f"{report.holdout.rows:,} held out to {report.holdout.output})")
    lines = [
        f"{report.input} -> {report.output}",
        f"  read {report.rows_read:,}  {written}  rejected {report.rows_rejected:,}  (header: {header})",
        f"  labels ({len(report.labels)}, {mode}): {_label_distribution(report)}",
        f"  duplicate texts: {report.duplicate_texts:,} (with conflicting labels: {report.conflicting_duplicates:,})",
    ]
    if report.rejected:
        lines.append(f"  rejected: {describe_rejected(report.rejected)}")
    lines += [f"  warning: {w}" for w in report.warnings]
    return lines


def _label_distribution(report: ConversionReport, n: int = 10) -> str:
    counts = Counter(report.label_counts).most_common()
    total = report.rows_written or 1  # percent of rows (multi-label rows count for each label)
    shown = ", ".join(f"{label} {count:,} ({100 * count / total:.1f}%)" for label, count in counts[:n])
    return shown + (f", … {len(counts) - n} more" if len(counts) > n else "")


def _shared_summary(report: ConversionReport) -> str:
    other = report.dev.input if report.dev else f"the held-out rows ({report.holdout.output})"
    line = f"texts in both {report.input} and {other}: {report.shared_with_dev:,}"
    if report.shared_texts:
        line += "  e.g. " + " | ".join(repr(t[:60]) for t in report.shared_texts[:3])
    return line


def convert(
    input_path: PathLike,
    output_path: PathLike,
    spec: ReaderSpec = DEFAULT_SPEC,
    *,
    lang: str = "en",
    exclusive: bool = True,
    labels: Optional[Sequence[str]] = None,
    dev: Optional[Tuple[PathLike, PathLike]] = None,
    holdout: float = 0.0,
    holdout_output: Optional[PathLike] = None,
    seed: int = 0,
    nlp: Optional[Language] = None,
    progress: Optional[bool] = None,
    write_report: bool = True,
    dry_run: bool = False,
) -> ConversionReport:
    """Convert `input_path` (and optionally a dev pair `(dev_input, dev_output)`) to `.spacy`.

    The label set is `labels` if given, else the names in `spec.label_names`, else the
    labels seen in the input. Dev rows with labels outside that set are rejected.
    `holdout=f` with `holdout_output` writes a fixed fraction f of the accepted rows
    (chosen by `seed`) there instead of to `output_path`: the same rows that
    `spacy_cls.LabelledTextCorpus.v1` with split="dev", holdout=f and seed holds out.
    Rows whose text is longer than `nlp.max_length` are rejected.
    `progress=None` shows a bar for large files on a terminal. `dry_run=True` reads and
    reports without writing the `.spacy` or report files.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    _check_holdout_options(holdout, holdout_output, dev)
    inputs = [input_path] + ([Path(dev[0])] if dev is not None else [])
    outputs = {"output": output_path}
    if dev is not None:
        outputs["dev output"] = Path(dev[1])
    if holdout_output is not None:
        outputs["held-out output"] = Path(holdout_output)
    _check_outputs(inputs, outputs)
    nlp = nlp if nlp is not None else spacy.blank(lang)
    rows, rejected = accepted_rows(input_path, spec, exclusive=exclusive,
                                   allowed=declared_labels(spec, labels), max_length=nlp.max_length)
    label_set = resolve_label_set(spec, rows, labels)
    parts = [(output_path, rows)]
    if holdout_output is not None:
        parts = list(zip((output_path, Path(holdout_output)), holdout_split(rows, holdout, seed)))
    written = [_write(target, nlp, part, label_set, progress, input_path, rejected, dry_run)
               for target, part in parts]
    report = _report(input_path, output_path, spec, rows, rejected, sum(written), label_set,
                     exclusive, dry_run)
    if holdout_output is not None:
        report.holdout = Holdout(str(holdout_output), holdout, seed, written[1])
        _set_shared(report, parts[0][1], parts[1][1])
    reports = [report]
    if dev is not None:
        dev_rows, dev_rejected = accepted_rows(dev[0], spec, exclusive=exclusive, allowed=label_set,
                                               max_length=nlp.max_length)
        dev_written = _write(Path(dev[1]), nlp, dev_rows, label_set, progress, Path(dev[0]),
                             dev_rejected, dry_run)
        report.dev = _report(Path(dev[0]), Path(dev[1]), spec, dev_rows, dev_rejected, dev_written,
                             label_set, exclusive, dry_run)
        _set_shared(report, rows, dev_rows)
        reports.append(report.dev)
    if not dry_run:
        report.train_command = train_command(report, lang)
        report.debug_command = debug_data_command(report, lang)
        report.evaluate_command = evaluate_command(report)
    if write_report and not dry_run:
        for file_report in reports[1:] + [report]:
            file_report.write_json()
    return report


def _check_holdout_options(holdout: float, holdout_output: Optional[PathLike],
                           dev: Optional[Tuple[PathLike, PathLike]]) -> None:
    if holdout_output is None and not holdout:
        return
    if holdout_output is None:
        raise ValueError(f"A held-out fraction ({holdout}) needs an output for the held-out rows "
                         f"(--holdout-output dev.spacy).")
    check_holdout(holdout)
    if dev is not None:
        raise ValueError("Give a dev file (--dev) or a held-out fraction of the input (--holdout), not both.")


def _check_outputs(inputs: Sequence[Path], outputs: Dict[str, Path]) -> None:
    for output in outputs.values():
        if output.suffix != ".spacy":
            raise ValueError(
                f"Output {output} must end with .spacy (spaCy's corpus reader skips other files)."
            )
    named = list(outputs.items())
    for i, (role, output) in enumerate(named):
        for other_role, other in named[:i]:
            if _same_file(output, other):
                raise ValueError(
                    f"The {role} {output} is the same file as the {other_role}: it would overwrite it. "
                    f"Give each output its own path, e.g. train.spacy and dev.spacy."
                )
        for source in inputs:
            if _same_file(output, source):
                raise ValueError(f"The {role} {output} is the input file {source}: give another path.")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _set_shared(report: ConversionReport, train: Sequence[Row], dev: Sequence[Row]) -> None:
    shared = _shared_texts(train, dev)
    report.shared_with_dev = len(shared)
    report.shared_texts = shared[:MAX_SHARED_LISTED]


# spaCy's own reader with every argument given: `spacy debug data` validates a corpus block
# given on the command line without filling in its defaults ("gold_preproc missing").
CORPUS_BLOCK = {"@readers": "spacy.Corpus.v1", "gold_preproc": False, "max_length": 0, "limit": 0, "augmenter": None}


def _dev_path(report: ConversionReport) -> str:
    return str(report.dev.output if report.dev else report.holdout.output if report.holdout else "DEV.spacy")


def corpus_overrides(report: ConversionReport) -> List[str]:
    """The command-line overrides that point a project config at the written `.spacy`
    files through spaCy's own corpus reader; `spacy train` and `spacy debug data` take
    the same ones."""
    args = ["--paths.train", str(report.output), "--paths.dev", _dev_path(report)]
    for corpus in ("train", "dev"):
        block = {"@readers": CORPUS_BLOCK["@readers"], "path": f"${{paths.{corpus}}}", **CORPUS_BLOCK}
        args += [f"--corpora.{corpus}", json.dumps(block)]
    return args


def _command(args: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


def train_command(report: ConversionReport, lang: str) -> str:
    config = EXAMPLE_CONFIGS.get((lang, report.exclusive), "CONFIG.cfg")
    return _command(["python", "-m", "spacy", "train", config, "--output", "training", *corpus_overrides(report)])


def debug_data_command(report: ConversionReport, lang: str) -> str:
    config = EXAMPLE_CONFIGS.get((lang, report.exclusive), "CONFIG.cfg")
    return _command(["python", "-m", "spacy", "debug", "data", config, *corpus_overrides(report)])


def evaluate_command(report: ConversionReport) -> str:
    return _command(["python", "-m", "spacy", "evaluate", "training/model-best", _dev_path(report)])


def _report(input_path: Path, output_path: Path, spec: ReaderSpec, rows: List[Row], rejected: List[Rejected],
            written: int, label_set: List[str], exclusive: bool, dry_run: bool) -> ConversionReport:
    """`rejected` includes rows refused while writing, which `rows` still holds."""
    written_rows = rows if len(rows) == written else _rows_written(rows, rejected)
    first_line = header_line(input_path, spec)
    report = ConversionReport(
        input=str(input_path),
        output=str(output_path),
        rows_read=len(written_rows) + len(rejected),
        rows_written=written,
        rejected=sorted(rejected, key=lambda r: r.line_no),
        labels=list(label_set),
        label_counts=_label_counts(written_rows, label_set),
        exclusive=exclusive,
        header=first_line is not None,
        header_line=first_line,
        physical_lines=count_lines(Path(input_path)),
        duplicate_texts=_duplicate_count(written_rows),
        conflicting_duplicates=_conflict_count(written_rows),
        single_row_labels=single_row_labels(written_rows),
        dry_run=dry_run,
    )
    report.warnings = _warnings(report, spec)
    if report.rows_written + report.rows_rejected != report.rows_read:
        raise RuntimeError(
            f"Internal error: {input_path}: {report.rows_read} rows read but {written} written "
            f"and {report.rows_rejected} rejected; please report this."
        )
    return report


def _rows_written(rows: List[Row], rejected: List[Rejected]) -> List[Row]:
    refused = {r.line_no for r in rejected}
    return [row for row in rows if row.line_no not in refused]


def _progress(progress: Optional[bool], n_rows: int, path: Path) -> Optional[Dict[str, Any]]:
    if progress is False or (progress is None and n_rows < PROGRESS_MIN_ROWS):
        return None
    return {"total": n_rows, "desc": f"{path.name}", "unit": " docs", "disable": None if progress is None else False}


def _write(output_path: Path, nlp: Language, rows: List[Row], label_set: List[str],
           progress: Optional[bool], source: Path, rejected: List[Rejected], dry_run: bool) -> int:
    """Writes one Doc per row; a row the tokenizer refuses goes to `rejected`.
    Returns the number of Docs written (in a dry run: the rows that would be)."""
    if dry_run:
        return len(rows)
    docbin = DocBin(attrs=[], store_user_data=False)  # text and cats are all training needs
    bar = _progress(progress, len(rows), source)
    for row in tqdm(rows, **bar) if bar is not None else rows:
        try:
            doc = nlp.make_doc(row.text)
        except (ValueError, UnicodeError) as e:  # a custom tokenizer's refusal, say
            rejected.append(reject(row, f"the tokenizer refused the text: {e}"))
            continue
        doc.cats = row_cats(row, label_set)
        docbin.add(doc)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    docbin.to_disk(output_path)
    return len(docbin)


def _label_counts(rows: Iterable[Row], label_set: Sequence[str]) -> Dict[str, int]:
    counts = Counter(label for row in rows for label in row.labels)
    return {label: counts.get(label, 0) for label in label_set}


def _duplicate_count(rows: Sequence[Row]) -> int:
    """Rows whose text already appeared earlier in the same file."""
    return len(rows) - len({row.text for row in rows})


def _conflict_count(rows: Iterable[Row]) -> int:
    """Distinct texts that appear with different label sets."""
    by_text: Dict[str, set] = defaultdict(set)
    for row in rows:
        by_text[row.text].add(frozenset(row.labels))
    return sum(1 for label_sets in by_text.values() if len(label_sets) > 1)


def _shared_texts(train: Iterable[Row], dev: Iterable[Row]) -> List[str]:
    """Distinct dev texts that are also train texts, in dev order."""
    train_texts = {row.text for row in train}
    return [text for text in dict.fromkeys(row.text for row in dev) if text in train_texts]


def _warnings(report: ConversionReport, spec: ReaderSpec) -> List[str]:
    warnings = []
    records_lines = report.rows_read + (1 if report.header else 0)
    if spec.use_quoting and records_lines < report.physical_lines:
        warnings.append(
            f"{report.physical_lines:,} lines gave {records_lines:,} records: quoted fields span "
            f"lines. If the texts contain bare \" characters, read with quoting off."
        )
    if report.rows_written == 0:
        warnings.append("no rows were written: check the format, columns and encoding options.")
    unused = [label for label, n in report.label_counts.items() if n == 0]
    if unused:
        warnings.append(f"{len(unused)} labels have no rows: {unused[:10]}")
    for label, line_no in list(report.single_row_labels.items())[:10]:
        hint = "; if line 1 is a header, pass --header" if line_no == 1 and not report.header else ""
        warnings.append(
            f"label {label!r} is on one row only (line {line_no}): a typo? Fix it, or give the "
            f"label set (--labels) to reject other labels{hint}"
        )
    if len(report.single_row_labels) > 10:
        warnings.append(f"… and {len(report.single_row_labels) - 10} more labels on one row only")
    if uses_cr_line_ends(Path(report.input)):
        warnings.append("the file has CR (classic Mac) line endings: its lines were split at each CR")
    return warnings
