"""One way to load a pipeline from elsewhere: check the whole folder, then `spacy.load`.

    from spacy_cls.models.safe_load import load_checked

    nlp = load_checked("path/to/pipeline")   # TamperedPipelineError if it is not just data

Every command of the package that loads a pipeline goes through `load_checked`. The
check (`saved_checks.check_saved_pipeline`) covers what `spacy.load` alone does not:
spaCy's own files (a `vocab/strings.json` that links outside the folder is read by
spaCy before any component), other packages' components, and sizes, before any file
is read. Setting the environment variable ``SPACY_CLS_CHECK_PIPELINES=0`` (the
commands' ``--no-check``) turns the folder check off, here and in the components'
own loading; the checks of the components' contents stay on.
"""
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

from .saved_checks import TamperedPipelineError, check_pipeline_folder, check_saved_pipeline

CHECK_ENV = "SPACY_CLS_CHECK_PIPELINES"
OFF_VALUES = ("0", "false", "no", "off")


def checks_enabled(check: Optional[bool] = None) -> bool:
    """`check` if given, else whether ``SPACY_CLS_CHECK_PIPELINES`` leaves checks on
    (the default)."""
    if check is not None:
        return bool(check)
    return os.environ.get(CHECK_ENV, "1").strip().lower() not in OFF_VALUES


def disable_checks_for_this_process() -> None:
    """What a command's ``--no-check`` does: turn the folder checks off in this process
    and the workers it starts (Ray actors on this machine inherit the environment)."""
    os.environ[CHECK_ENV] = "0"


def pipeline_folder(name_or_path: Union[str, Path]) -> Optional[Path]:
    """The folder `spacy.load(name_or_path)` would read: the path itself, or the data
    folder of an installed pipeline package; None when it is neither."""
    import spacy.util

    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if not spacy.util.is_package(name):
        return None
    package = spacy.util.get_package_path(name)
    try:
        meta = json.loads((package / "meta.json").read_text(encoding="utf8"))
        return package / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_pipeline(name_or_path: Union[str, Path]) -> Optional[Path]:
    """Run the full check on the pipeline `spacy.load(name_or_path)` would read, and
    return its folder (None for a name spaCy does not resolve to a folder; spacy.load
    then reports it)."""
    folder = pipeline_folder(name_or_path)
    if folder is None:
        return None
    if not folder.is_dir():
        raise OSError(f"{folder} is not a folder: give a saved pipeline folder (what nlp.to_disk wrote).")
    check_saved_pipeline(folder)
    return folder


def load_checked(name_or_path: Union[str, Path], *, check: Optional[bool] = None, **load_options: Any):
    """`check_pipeline`, then ``spacy.load(name_or_path, **load_options)``. `check`:
    None follows ``SPACY_CLS_CHECK_PIPELINES`` (on unless set to 0); False loads
    without the folder check (only for pipelines you trust)."""
    import spacy

    import spacy_cls  # noqa: F401  (factories and extensions)

    if checks_enabled(check):
        check_pipeline(name_or_path)
    return spacy.load(name_or_path, **load_options)


def check_component_folder(path: Union[str, Path]) -> None:
    """What a component checks before its `from_disk` reads anything: its folder, or,
    when it sits in a saved pipeline (its parent holds config.cfg, as in spacy.load),
    the whole pipeline folder, for links leaving it, special files and sizes. It reads
    no content. Off with ``SPACY_CLS_CHECK_PIPELINES=0``."""
    if not checks_enabled():
        return
    folder = Path(path)
    in_pipeline = (folder.parent / "config.cfg").is_file()
    if folder.is_symlink() and not in_pipeline:
        raise TamperedPipelineError(
            f"Refusing to load the component folder {folder}: it is a link. Copy the folder "
            f"itself there instead."
        )
    if not folder.is_dir():
        return  # spaCy or thinc names the missing folder
    check_pipeline_folder(folder.parent if in_pipeline else folder)


__all__ = ["TamperedPipelineError", "check_pipeline", "checks_enabled", "load_checked", "CHECK_ENV"]
