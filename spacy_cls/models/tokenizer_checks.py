"""The checks of a tokenizer's saved files that every load route shares: saved
pipelines (torch and ONNX) and checkpoint folders. A file name must be a plain name of
a tokenizer file, and a settings file may not import code or point the tokenizer at
other files. These are data checks only: nothing is read from disk here."""
import json
import re
from typing import Any

# Settings that make transformers import Python code shipped with a checkpoint.
CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")
# Suffixes of the files tokenizers save (vocabularies, merges, sentencepiece models,
# tokenizer.json, settings, chat templates); code (.py, .pth, .so) is never one.
TOKENIZER_FILE_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".spm", ".vocab", ".tiktoken", ".codes", ".bpe")
PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
# The folder the tokenizer is loaded from holds the model config under this name.
CONFIG_FILE = "config.json"
TOKENIZER_CLASS = re.compile(r"[A-Za-z0-9_]+Tokenizer(Fast)?")
SOURCE_HINT = (
    "A pipeline saved by spaCy never holds this: it was changed after saving, or does "
    "not come from spacy_cls. Load pipelines only from sources you trust, and if you "
    "trust this one, save it again from the copy it was made from (see "
    "'Loading pipelines from untrusted sources' in docs/limits.md)."
)


class TamperedPipelineError(ValueError):
    """A saved encoder holds something loading it could run or write; nothing of it was
    written or loaded."""


def refuse(problem: str) -> TamperedPipelineError:
    return TamperedPipelineError(f"Refusing to load the saved encoder: {problem}. {SOURCE_HINT}")


def check_file_name(name: Any) -> None:
    if not isinstance(name, str) or not PLAIN_FILE_NAME.fullmatch(name) or ".." in name:
        raise refuse(
            f"its tokenizer files include {name!r}, which is not a plain file name (a path "
            f"like '../x' or '/x' would be written outside the temporary folder)"
        )
    if name == CONFIG_FILE:
        raise refuse(f"its tokenizer files include '{name}', which would replace the saved model config")
    if not name.lower().endswith(TOKENIZER_FILE_SUFFIXES):
        raise refuse(
            f"its tokenizer files include '{name}', which is not a tokenizer file (those end in "
            f"{', '.join(TOKENIZER_FILE_SUFFIXES)}; code such as .py files is never saved)"
        )


def check_tokenizer_json(name: str, data: bytes, make_error=None) -> None:
    """Refuse a tokenizer settings file that imports code, points the tokenizer at
    files (transformers reads `vocab_file` and the like from wherever they say, even
    relative to the working directory) or names an odd tokenizer class. The same
    check serves saved pipelines (torch and ONNX) and checkpoint folders."""
    make_error = make_error or refuse
    if name == "tokenizer.json":
        return  # read by the Rust tokenizers library: vocabulary and rules, no code or paths
    try:
        content = json.loads(data.decode("utf8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise make_error(f"its tokenizer file '{name}' is not valid JSON ({type(err).__name__} at {_position(err)})") from None
    if not isinstance(content, dict):
        return
    for key in CODE_KEYS:
        if key in content:
            raise make_error(f"its tokenizer file '{name}' sets {key}, which makes transformers import Python code")
    for key, value in content.items():
        # save_pretrained drops these: they would make the tokenizer read a file
        # from wherever they point.
        if (key.endswith("_file") or key.endswith("_files")) and value is not None:
            raise make_error(
                f"its tokenizer file '{name}' sets {key}={_short(value)}, which would make the "
                f"tokenizer read that file instead of the folder's own (save_pretrained never "
                f"writes it: remove the key)"
            )
    tokenizer_class = content.get("tokenizer_class")
    if tokenizer_class is not None and not (
        isinstance(tokenizer_class, str) and TOKENIZER_CLASS.fullmatch(tokenizer_class)
    ):
        raise make_error(f"its tokenizer file '{name}' names the tokenizer class {_short(tokenizer_class)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _position(err: Exception) -> str:
    line, column = getattr(err, "lineno", None), getattr(err, "colno", None)
    return f"line {line}, column {column}" if line is not None else "an undecodable byte"


