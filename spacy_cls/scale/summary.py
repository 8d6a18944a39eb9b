"""The run's summary, counted from what is on disk (so a resumed run reports the
whole output, not only the rows it did itself): rows read, written and rejected,
per-label counts, duplicate ids, and this run's time and speed."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import output

N_EXAMPLES = 10
CUT_NOTE = "longer than the encoder reads: classified on the word pieces it reads"
CUT_WARNING = ("{n:,} docs were longer than the encoder reads and were classified on the word pieces it "
               "read (the component's long-text policy). To read more of each text, set long_text = "
               "\"windows\" (and max_windows) in the model config.")


@dataclass
class Summary:
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rows_cut: int = 0
    labels: Dict[str, int] = field(default_factory=dict)
    duplicate_ids: int = 0
    duplicate_id_examples: List[str] = field(default_factory=list)
    rows_this_run: int = 0
    rows_from_earlier_runs: int = 0
    seconds: float = 0.0
    docs_per_second: float = 0.0
    engine: str = ""
    workers: int = 0
    parts: int = 0
    encoder: Optional[Dict[str, Any]] = None  # with --vectors: which encoder made them

    def as_text(self) -> str:
        lines = [
            f"rows read      {self.rows_read:>12,}",
            f"rows written   {self.rows_written:>12,}",
            f"rows rejected  {self.rows_rejected:>12,}" + ("  (see _rejected.jsonl)" if self.rows_rejected else ""),
            f"parts          {self.parts:>12,}",
            f"this run       {self.rows_this_run:>12,} rows in {self.seconds:.1f} s, "
            f"{self.docs_per_second:,.1f} docs/s ({self.engine}, {self.workers} worker{'s' * (self.workers != 1)})",
        ]
        if self.rows_cut:
            lines.append(f"rows cut       {self.rows_cut:>12,}  ({CUT_NOTE})")
        if self.rows_from_earlier_runs:
            lines.append(f"earlier runs   {self.rows_from_earlier_runs:>12,} rows (resumed)")
        if self.labels:
            width = max(len(label) for label in self.labels)
            lines.append("labels")
            lines += [f"  {label:<{width}}  {n:>12,}" for label, n in sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0]))]
        if self.duplicate_ids:
            lines.append(
                f"DUPLICATE IDS  {self.duplicate_ids:>12,} ids occur more than once in the input "
                f"(each row is kept; e.g. {', '.join(self.duplicate_id_examples[:3])})"
            )
        return "\n".join(lines)


def summarise(out_dir: Path, *, rows_this_run: int, seconds: float, engine: str, workers: int) -> Summary:
    """Count the output folder, write _summary.json, _summary.txt and _rejected.jsonl."""
    summary = Summary(engine=engine, workers=workers, seconds=round(seconds, 3), rows_this_run=rows_this_run)
    labels: Counter = Counter()
    ids: List[pa.Array] = []
    for path in output.part_files(out_dir):
        counts = output.piece_counts(path)
        summary.rows_read += counts["read"]
        summary.rows_written += counts["written"]
        summary.rows_rejected += counts["rejected"]
        summary.rows_cut += counts.get("cut", 0)
        summary.parts += 1
        if summary.encoder is None:
            summary.encoder = output.part_encoder(path)
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in ("id", "label", "labels") if c in names])
        ids.append(table.column("id").combine_chunks())
        if "label" in names:
            # a row the component abstained on has no label (decisions.apply.decide)
            labels.update("(no label)" if v is None else v for v in table.column("label").to_pylist())
        elif "labels" in names:
            labels.update(pc.list_flatten(table.column("labels")).to_pylist())
    rejected_lines = []
    for path in output.rejected_files(out_dir):
        lines = output.read_jsonl_lines(path)
        rejected_lines.extend(lines)
        ids.append(pa.array([json.loads(line)["id"] for line in lines], pa.string()))
    summary.labels = dict(labels)
    summary.rows_from_earlier_runs = max(summary.rows_read - rows_this_run, 0)
    summary.docs_per_second = round(rows_this_run / seconds, 2) if seconds > 0 else 0.0
    if ids:
        counted = pc.value_counts(pa.chunked_array(ids, pa.string()))
        repeated = counted.filter(pc.greater(counted.field("counts"), 1))
        summary.duplicate_ids = len(repeated)
        summary.duplicate_id_examples = repeated.field("values").to_pylist()[:N_EXAMPLES]
    output.write_text_atomic(out_dir / "_summary.json", json.dumps(asdict(summary), indent=2, ensure_ascii=False))
    output.write_text_atomic(out_dir / "_summary.txt", summary.as_text() + "\n")
    output.write_text_atomic(out_dir / "_rejected.jsonl", "".join(line + "\n" for line in rejected_lines))
    return summary


def load_summary(out_dir: Path) -> Summary:
    return Summary(**json.loads((Path(out_dir) / "_summary.json").read_text(encoding="utf8")))
