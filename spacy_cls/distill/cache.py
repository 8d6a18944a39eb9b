"""The teacher's scores on disk: one SQLite file per teacher, a row per text.

The file is named by a fingerprint of the teacher: a hash of every file of its
pipeline folder (so a retrained or edited teacher gets a new file) and of the
component read. Rows are keyed by a hash of the text and hold the component's
scores as it gives them (its own temperature applied), before the distillation
temperature, so one cache serves every temperature and alpha.
"""
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

CACHE_ENV = "SPACY_CLS_TEACHER_CACHE"


def default_cache_dir() -> Path:
    """``$SPACY_CLS_TEACHER_CACHE``, else ``$XDG_CACHE_HOME/spacy_cls/teacher_scores``
    (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spacy_cls" / "teacher_scores"


def folder_fingerprint(folder: Path, component: str) -> str:
    """A hash of the names and bytes of every file under `folder`, and `component`."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"component={component}\n".encode("utf8"))
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf8", "surrogatepass") + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf8", "surrogatepass"), digest_size=16).hexdigest()


class TeacherCacheError(ValueError):
    """A cache file that belongs to another teacher set-up."""


class ScoreCache:
    """Scores of one teacher (labels in a fixed order), by text."""

    def __init__(self, folder: Path, fingerprint: str, labels: Sequence[str], multi_label: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{fingerprint}.sqlite"
        self.labels = list(labels)
        self._db = sqlite3.connect(str(self.path))
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, probs BLOB)")
        meta = {"labels": self.labels, "multi_label": bool(multi_label)}
        row = self._db.execute("SELECT value FROM meta WHERE key = 'teacher'").fetchone()
        if row is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('teacher', ?)", (json.dumps(meta),))
        elif json.loads(row[0]) != meta:
            raise TeacherCacheError(
                f"The teacher score cache {self.path} was written for {row[0]}, not {json.dumps(meta)}: "
                f"delete the file (the scores are computed again)."
            )

    def get_many(self, texts: Iterable[str]) -> Dict[str, numpy.ndarray]:
        keys = {text_key(t): t for t in texts}
        found: Dict[str, numpy.ndarray] = {}
        items = list(keys)
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, probs FROM scores WHERE key IN ({marks})", chunk):
                found[keys[key]] = numpy.frombuffer(blob, dtype="<f4").copy()
        return found

    def put_many(self, pairs: Iterable[Tuple[str, numpy.ndarray]]) -> None:
        rows: List[Tuple[str, bytes]] = [
            (text_key(text), numpy.asarray(probs, dtype="<f4").tobytes()) for text, probs in pairs
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def open_cache(cache_dir: Optional[Path], fingerprint: str, labels: Sequence[str], multi_label: bool) -> ScoreCache:
    return ScoreCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), fingerprint, labels, multi_label)
