"""Teacher scores from `python -m spacy_cls apply` output: the `score_<label>` columns
of its part files, by row id (docs/scale.md). The teacher can label millions of texts
on Ray, and the student's corpus reads the scores instead of running the teacher."""
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy

from ..scale.output import part_files
from ..scale.predict import SCORE_PREFIX


class ApplyScoresError(ValueError):
    """Apply output that cannot give teacher scores."""


def read_apply_scores(out_dir: Path) -> Tuple[List[str], bool, Dict[str, numpy.ndarray]]:
    """(labels, multi_label, {row id: scores}) from an apply output folder. Rows whose
    scores are missing or not probabilities are left out here; the corpus reports them."""
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    parts = part_files(out_dir) if out_dir.is_dir() else []
    if not parts:
        raise ApplyScoresError(
            f"{out_dir} holds no apply output (part-*.parquet files): run "
            f"`python -m spacy_cls apply TEACHER TEXTS {out_dir}` first, with the same TEXTS as the corpus reads."
        )
    labels: List[str] = []
    multi_label = False
    scores: Dict[str, numpy.ndarray] = {}
    for path in parts:
        table = pq.read_table(path)
        names = [c[len(SCORE_PREFIX):] for c in table.column_names if c.startswith(SCORE_PREFIX)]
        if not names or "id" not in table.column_names:
            raise ApplyScoresError(f"{path} has no id and score_<label> columns: it is not apply output.")
        if labels and names != labels:
            raise ApplyScoresError(f"{path} has the labels {names}, other part files {labels}: one apply run per folder.")
        labels, multi_label = names, "labels" in table.column_names
        ids = table.column("id").to_pylist()
        matrix = numpy.stack([table.column(SCORE_PREFIX + n).to_numpy(zero_copy_only=False) for n in names], axis=1)
        for ident, row in zip(ids, matrix.astype("float64")):
            # an id on several rows cannot say which scores are whose: NaN makes it a rejection
            scores[str(ident)] = numpy.full(len(names), numpy.nan) if str(ident) in scores else row
    return labels, multi_label, scores


def score_problem(row: numpy.ndarray, multi_label: bool) -> str:
    """Why a row of apply scores cannot be a teacher target ("" when it can)."""
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in row):
        return f"the apply output's scores are not probabilities from 0 to 1: {row.tolist()}"
    if not multi_label and abs(float(row.sum()) - 1.0) > 1e-3:
        return f"the apply output's exclusive scores sum to {float(row.sum()):.6g}, not 1"
    return ""
