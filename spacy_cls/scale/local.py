"""The single-machine engine: shard by shard in this process, one progress bar."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

from . import inputs, output
from .predict import Predictor


def run_local(shards: Sequence[inputs.Shard], out_dir: Path, predictor: Predictor, *, text_col: str,
              id_col: Optional[str], keep: Sequence[str] = (), progress: bool = True) -> int:
    """Classify and write every shard; returns the rows read."""
    from tqdm import tqdm

    total = sum(shard.n_rows for shard in shards)
    step = max(predictor.batch_size * 4, 1)
    done = 0
    with tqdm(total=total, unit="doc", disable=not progress, smoothing=0.1) as bar:
        for shard in shards:
            rows = inputs.read_shard(shard, text_col, id_col, keep)
            parts = []
            for start in range(0, rows.num_rows, step):
                parts.append(predictor.predict(rows.slice(start, step)))
                bar.update(min(step, rows.num_rows - start))
            if parts:
                output.write_pieces(out_dir, pa.concat_tables(parts))
            done += rows.num_rows
    return done
