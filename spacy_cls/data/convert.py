"""Convert labelled text files to spaCy `.spacy` corpora (DocBin with `doc.cats`).

`convert` reads a file with `read_rows`, writes every accepted row as a Doc, and returns a
`ConversionReport` (also written to `<output>.report.json`). Whatever happens,
`rows_written + len(rejected) == rows_read`.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from .readers import (
    DEFAULT_SPEC,
    ReaderSpec,
    Rejected,
    Row,
    cats_for,
    check_labels,
    declared_labels,
    describe_rejected,
    detect_header,
    read_rows,
    resolve_label_set,
    split_records,
)

PathLike = Union[str, Path]
# Files with fewer rows than this get no progress bar.
PROGRESS_MIN_ROWS = 5000
# At most this many shared train/dev texts are listed in the report (all are counted).
MAX_SHARED_LISTED = 1000
MAX_RAW_CHARS = 200


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
    warnings: List[str] = field(default_factory=list)
    dry_run: bool = False
    dev: Optional["ConversionReport"] = None
    shared_with_dev: int = 0
    shared_texts: List[str] = field(default_factory=list)

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
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return target

    def summary(self) -> str:
        lines = _file_summary(self)
        if self.dev is not None:
            lines += _file_summary(self.dev)
            lines.append(_shared_summary(self))
        lines.append("dry run: nothing written" if self.dry_run else f"report: {self.report_path}")
        return "\n".join(lines)


def report_path_for(output: PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def _rejected_dict(rejected: Rejected) -> Dict[str, Any]:
    raw = rejected.raw if len(rejected.raw) <= MAX_RAW_CHARS else rejected.raw[:MAX_RAW_CHARS] + "…"
    return {"line_no": rejected.line_no, "reason": rejected.reason, "raw": raw}


def _file_summary(report: ConversionReport) -> List[str]:
    mode = "exclusive" if report.exclusive else "multi-label"
    lines = [
        f"{report.input} -> {report.output}",
        f"  read {report.rows_read:,}  written {report.rows_written:,}  rejected {report.rows_rejected:,}"
        f"  (header line: {'yes' if report.header else 'no'})",
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
    line = f"texts in both {report.input} and {report.dev.input if report.dev else 'dev'}: {report.shared_with_dev:,}"
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
    nlp: Optional[Language] = None,
    progress: Optional[bool] = None,
    write_report: bool = True,
    dry_run: bool = False,
) -> ConversionReport:
    """Convert `input_path` (and optionally a dev pair `(dev_input, dev_output)`) to `.spacy`.

    The label set is `labels` if given, else the names in `spec.label_names`, else the
    labels seen in the input. Dev rows with labels outside that set are rejected.
    `progress=None` shows a bar for large files on a terminal. `dry_run=True` reads and
    reports without writing the `.spacy` or report files.
    """
    _check_output(output_path)
    if dev is not None:
        _check_output(dev[1])
    tokenizer_nlp = None if dry_run else (nlp if nlp is not None else spacy.blank(lang))
    rows, rejected = _read(input_path, spec, exclusive, declared_labels(spec, labels))
    label_set = resolve_label_set(spec, rows, labels)
    pairs = [(Path(input_path), Path(output_path), rows, rejected)]
    if dev is not None:
        dev_rows, dev_rejected = _read(dev[0], spec, exclusive, label_set)
        pairs.append((Path(dev[0]), Path(dev[1]), dev_rows, dev_rejected))
    reports = []
    for source, target, file_rows, file_rejected in pairs:
        written = len(file_rows)
        if tokenizer_nlp is not None:
            written = _write_docbin(target, tokenizer_nlp, file_rows, label_set, _progress(progress, written, source))
        reports.append(_report(source, target, spec, file_rows, file_rejected, written, label_set, exclusive, dry_run))
    report = reports[0]
    if dev is not None:
        report.dev = reports[1]
        shared = _shared_texts(rows, pairs[1][2])
        report.shared_with_dev = len(shared)
        report.shared_texts = shared[:MAX_SHARED_LISTED]
    if write_report and not dry_run:
        for file_report in reports[1:] + [report]:
            file_report.write_json()
    return report


def _check_output(output_path: PathLike) -> None:
    if Path(output_path).suffix != ".spacy":
        raise ValueError(
            f"Output {output_path} must end with .spacy (spaCy's corpus reader skips other files)."
        )


def _read(path: PathLike, spec: ReaderSpec, exclusive: bool,
          allowed: Optional[Sequence[str]]) -> Tuple[List[Row], List[Rejected]]:
    return split_records(check_labels(read_rows(path, spec), exclusive, allowed))


def _report(input_path: Path, output_path: Path, spec: ReaderSpec, rows: List[Row], rejected: List[Rejected],
            written: int, label_set: List[str], exclusive: bool, dry_run: bool) -> ConversionReport:
    report = ConversionReport(
        input=str(input_path),
        output=str(output_path),
        rows_read=len(rows) + len(rejected),
        rows_written=written,
        rejected=sorted(rejected, key=lambda r: r.line_no),
        labels=list(label_set),
        label_counts=_label_counts(rows, label_set),
        exclusive=exclusive,
        header=detect_header(input_path, spec),
        physical_lines=_count_lines(Path(input_path)),
        duplicate_texts=_duplicate_count(rows),
        conflicting_duplicates=_conflict_count(rows),
        dry_run=dry_run,
    )
    report.warnings = _warnings(report, spec)
    if report.rows_written + report.rows_rejected != report.rows_read:
        raise RuntimeError(
            f"Internal error: {input_path}: {report.rows_read} rows read but {written} written "
            f"and {report.rows_rejected} rejected; please report this."
        )
    return report


def _progress(progress: Optional[bool], n_rows: int, path: Path) -> Optional[Dict[str, Any]]:
    if progress is False or (progress is None and n_rows < PROGRESS_MIN_ROWS):
        return None
    return {"total": n_rows, "desc": f"{path.name}", "unit": " docs", "disable": None if progress is None else False}


def _write_docbin(output_path: Path, nlp: Language, rows: List[Row], label_set: List[str],
                  progress: Optional[Dict[str, Any]]) -> int:
    """Writes one Doc per row; returns the number of Docs written."""
    docbin = DocBin(attrs=[], store_user_data=False)  # text and cats are all training needs
    docs: Iterable[Doc] = (nlp.make_doc(row.text) for row in rows)
    if progress is not None:
        docs = tqdm(docs, **progress)
    for row, doc in zip(rows, docs):
        doc.cats = cats_for(row.labels, label_set)
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


def _count_lines(path: Path) -> int:
    count, last = 0, b""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk
    return count + (1 if last and not last.endswith(b"\n") else 0)


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
    return warnings
