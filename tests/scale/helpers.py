"""Input files and checks shared by the scale tests."""
import json
from pathlib import Path
from typing import List

import pyarrow.parquet as pq

from toy_pipelines import EXCLUSIVE, MULTILABEL

TEXTS = [text for text, _ in EXCLUSIVE["en"] + MULTILABEL]


def write_jsonl(path: Path, n: int, *, with_ids: bool = True, bad_every: int = 0) -> List[dict]:
    """n rows cycling through the toy texts; every `bad_every`-th row has no text."""
    rows = []
    for i in range(n):
        row = {"text": TEXTS[i % len(TEXTS)] + f" {i % 7}"}
        if with_ids:
            row["id"] = f"doc-{i}"
        if bad_every and i % bad_every == bad_every - 1:
            row.pop("text")
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    return rows


def read_output(out_dir: Path):
    return pq.read_table(out_dir).to_pandas()


def rejected_ids(out_dir: Path) -> List[str]:
    lines = (out_dir / "_rejected.jsonl").read_text(encoding="utf8").splitlines()
    return [json.loads(line)["id"] for line in lines]
