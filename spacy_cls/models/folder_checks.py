"""Check that a folder holds only its own files, before anything in it is read.

A saved pipeline or a checkpoint folder is data: loading it must read nothing outside
it. A symlink (anywhere, to a file or a folder), a junction or a bind mount can make a
name inside the folder read a file outside it, and a FIFO or a device can make a read
block or never end. `check_folder` walks the folder without following anything,
refuses every entry whose real path leaves the folder or that is not a plain file or
folder, and refuses files larger than a model can need, by their apparent size (a
sparse file of a gigabyte takes a megabyte of disk). It reads no file's content, so
a refusal can never quote one.

Hard links are accepted: a hard link is a second name of the same file, and once
inside the folder nothing tells it from a file copied there (spaCy's own training
writes them, see `best_copy`). Unpack archives from others with a tool that refuses
links leaving the target (Python's `tarfile` with `filter="data"`).
"""
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .size_checks import max_parameters

ErrorMaker = Callable[[str], Exception]
# Bytes a number of the largest allowed model takes on disk (float32), plus room for
# the tokenizer and settings saved beside it.
BYTES_PER_NUMBER = 4
FILE_SLACK_BYTES = 512 * 2**20


@dataclass
class FolderFile:
    path: Path
    relative: str
    size: int


def max_file_bytes() -> int:
    return max_parameters() * BYTES_PER_NUMBER + FILE_SLACK_BYTES


def check_folder(
    folder, make_error: ErrorMaker, *, allowed_roots: Sequence[Path] = (), what: str = "folder"
) -> Dict[str, FolderFile]:
    """Refuse an entry of `folder` that leaves it (its real path outside the folder's
    real path, or outside one of `allowed_roots`), is not a regular file or folder, is
    on another file system, or is larger than `max_file_bytes()`. Returns the files by
    their path relative to the folder ('/'-separated)."""
    root = Path(folder)
    real_root = Path(os.path.realpath(root))
    roots = [real_root, *(Path(os.path.realpath(r)) for r in allowed_roots)]
    try:
        root_stat = os.stat(real_root)
    except OSError as err:
        raise make_error(f"its {what} cannot be read ({err.strerror})") from None
    limit = max_file_bytes()
    files: Dict[str, FolderFile] = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            raise make_error(f"its {what} has a folder that cannot be listed ({_rel(directory, root)}: {err.strerror})") from None
        for entry in entries:
            path = Path(entry.path)
            relative = _rel(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or _is_junction(path):
                target = Path(os.path.realpath(path))
                if not any(_inside(target, r) for r in roots):
                    raise make_error(
                        f"its {what} holds '{relative}', a link to a path outside it; loading "
                        f"it would read a file that is not part of it. Replace the link with "
                        f"the file itself"
                    )
                info = _stat_or_none(path)
                if info is None:
                    raise make_error(f"its {what} holds '{relative}', a link to nothing")
            if info.st_dev != root_stat.st_dev:
                raise make_error(
                    f"its {what} holds '{relative}', which is on another file system (a mount "
                    f"inside the folder)"
                )
            if stat.S_ISDIR(info.st_mode):
                if not entry.is_symlink():
                    pending.append(path)
                continue
            if not stat.S_ISREG(info.st_mode):
                raise make_error(
                    f"its {what} holds '{relative}', which is not a regular file (a FIFO, socket "
                    f"or device); a saved model holds only files and folders"
                )
            if info.st_size > limit:
                raise make_error(
                    f"its {what} holds '{relative}' of {info.st_size:,} bytes, more than a model of "
                    f"the allowed size ({max_parameters():,} numbers) needs. If you trust it, raise "
                    f"SPACY_CLS_MAX_PARAMETERS"
                )
            files[relative] = FolderFile(path, relative, info.st_size)
    return files


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _is_junction(path: Path) -> bool:
    is_junction = getattr(os.path, "isjunction", None)
    return bool(is_junction and is_junction(path))


def _stat_or_none(path: Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except OSError:
        return None


def hub_cache_blobs(folder: Path) -> Sequence[Path]:
    """For a snapshot folder of the Hugging Face cache (models--org--name/snapshots/REV),
    the blobs folder its files link into: that layout is made of links by design."""
    real = Path(os.path.realpath(folder))
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return [real.parent.parent / "blobs"]
    return []
