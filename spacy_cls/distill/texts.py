"""Unlabelled texts for the teacher: the files `apply` reads (JSONL, CSV, TSV, Parquet,
with the same row ids), or a .txt file of one text a line (id ``<file>:<line>``)."""
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

from ..data.lines import check_text_file, decoded_lines
from ..data.records import Rejected
from ..scale import inputs

# (id, text, problem): text is None and problem says why when the row is rejected.
TextRow = Tuple[str, Optional[str], Optional[str]]
PLAIN_SUFFIXES = (".txt",)


def read_texts(source: Union[str, Path], text_col: str, id_col: Optional[str]) -> Iterator[TextRow]:
    path = Path(source)
    if path.is_file() and path.suffix.lower() in PLAIN_SUFFIXES:
        yield from _plain_lines(path)
        return
    try:
        files = inputs.describe_files(str(source), text_col)
    except inputs.InputError as e:
        raise ValueError(f"{e} (the teacher corpus also reads a .txt file of one text a line)") from None
    for file in files:
        if file.n_rows == 0:
            continue
        table = inputs.read_shard(inputs.Shard(file, 0, file.n_rows), text_col, id_col)
        for ident, text, problem in zip(table.column(inputs.ID).to_pylist(), table.column(inputs.TEXT).to_pylist(),
                                        table.column(inputs.PROBLEM).to_pylist()):
            if problem is None and not text.strip():
                problem = "empty text"
            yield str(ident), text if problem is None else None, problem


def _plain_lines(path: Path) -> Iterator[TextRow]:
    check_text_file(path)
    for item in decoded_lines(path, "utf-8"):
        if isinstance(item, Rejected):
            yield f"{path.name}:{item.line_no}", None, item.reason
            continue
        line_no, line = item
        text = line.strip()
        yield f"{path.name}:{line_no}", text or None, None if text else "blank line"
