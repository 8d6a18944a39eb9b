"""A complete copy of `model-best` that survives a training run killed mid-checkpoint.

`spacy train` saves a new best pipeline by deleting `model-best` and copying
`model-last` in its place (`save_checkpoint` in spacy/training/loop.py); a run killed
in between leaves `model-best` missing or half-copied. spaCy offers no hook inside
that step, so this logger acts right after it: each time `model-best` was replaced,
it makes `model-best.complete` a hard-linked copy (no extra disk space; the copy is
built under a temporary name and renamed into place), wrapping the logger that
prints. `restore_model_best` puts the copy back after a killed run.
"""
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, IO, Optional, Tuple

from spacy.language import Language
from spacy.util import registry

BEST = "model-best"
LAST = "model-last"
COPY = "model-best.complete"
BUILDING = ".model-best.complete.building"
REPLACED = ".model-best.complete.replaced"

Logger = Callable[[Language, IO, IO], Tuple[Callable[[Optional[Dict]], None], Callable[[], None]]]


@registry.loggers("spacy_cls.KeepBestLogger.v1")
def create_keep_best_logger(logger: Optional[Logger] = None) -> Logger:
    """Log with `logger` (spacy.ConsoleLogger.v3 by default) and keep
    `model-best.complete` beside `model-best`:

        [training.logger]
        @loggers = "spacy_cls.KeepBestLogger.v1"

        [training.logger.logger]
        @loggers = "spacy.ConsoleLogger.v3"
        progress_bar = "eval"
    """
    inner = logger or registry.loggers.get("spacy.ConsoleLogger.v3")()

    def setup(nlp: Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr):
        log_inner, finalize_inner = inner(nlp, stdout, stderr)
        keeper = BestKeeper()

        def log_step(info: Optional[Dict]) -> None:
            if info and info.get("output_path"):
                keeper.update(Path(info["output_path"]).parent)
            log_inner(info)

        def finalize() -> None:
            finalize_inner()
            keeper.finish()

        return log_step, finalize

    return setup


class BestKeeper:
    def __init__(self) -> None:
        self.output: Optional[Path] = None
        self._stamp: Optional[Tuple[int, int, int]] = None

    def update(self, output: Path) -> None:
        """Called after spaCy saved a checkpoint: copy `model-best` if it was replaced."""
        self.output = output
        meta = output / BEST / "meta.json"
        if not meta.is_file():
            return
        stat = meta.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)
        if stamp != self._stamp:
            keep_copy(output)
            self._stamp = stamp

    def finish(self) -> None:
        """At the end of a run the copy is dropped, unless `model-best` is not (or not
        entirely) the pipeline it copies: a run interrupted while replacing it."""
        if self.output is not None and same_files(self.output / BEST, self.output / COPY, by_inode=True):
            shutil.rmtree(self.output / COPY)


def keep_copy(output: Path) -> Path:
    """Make `output/model-best.complete` a copy of `output/model-best`, so that a
    complete one exists at every moment (under REPLACED while the two renames run)."""
    building, target, replaced = output / BUILDING, output / COPY, output / REPLACED
    for leftover in (building, replaced):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.copytree(output / BEST, building, copy_function=_link_or_copy)
    if target.exists():
        os.replace(target, replaced)
    os.replace(building, target)
    if replaced.exists():
        shutil.rmtree(replaced)
    return target


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:  # file systems without hard links
        shutil.copy2(source, destination)
    return destination


def _listing(folder: Path, by_inode: bool) -> Dict[str, Tuple[int, int]]:
    listing = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            listing[str(path.relative_to(folder))] = (stat.st_size, stat.st_ino if by_inode else 0)
    return listing


def same_files(a: Path, b: Path, by_inode: bool = False) -> bool:
    """Whether `a` and `b` hold the same files with the same sizes (and, by_inode, are
    hard links of each other)."""
    if not (a.is_dir() and b.is_dir()):
        return False
    return _listing(a, by_inode) == _listing(b, by_inode) != {}


def restore_model_best(output: os.PathLike) -> Optional[Path]:
    """After a killed `spacy train` run: if `output/model-best` is missing, or not a
    full copy of `model-last` nor of the kept copy, replace it with the last complete
    copy. Returns the folder it restored from, or None when `model-best` was fine."""
    output = Path(output)
    best = output / BEST
    if same_files(best, output / LAST) or same_files(best, output / COPY):
        return None
    source = next((output / name for name in (COPY, REPLACED) if (output / name / "meta.json").is_file()), None)
    if source is None:
        raise FileNotFoundError(
            f"{best} is missing or incomplete, and {output} holds no {COPY} to restore it "
            f"from: train with [training.logger] @loggers = \"spacy_cls.KeepBestLogger.v1\" "
            f"to keep one, or use {output / LAST}."
        )
    if best.exists():
        shutil.rmtree(best)
    shutil.copytree(source, best, copy_function=_link_or_copy)
    return source
