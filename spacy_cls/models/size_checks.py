"""Refuse an encoder whose config would allocate more than its weights on disk justify,
before any module is built for real.

A `config.json` is a few numbers, and transformers allocates what they say: 70,000
positions, a vocabulary of a billion entries, a causal mask of positions squared. The
checks here build the model on the meta device (names and shapes, no memory) with
weight initialisation off (some model types compute sinusoidal tables in Python
there), and compare what it would hold with the tensors on disk, whose shapes are
read without loading them (safetensors headers, a memory-mapped torch zip). The
limits (`SPACY_CLS_MAX_PARAMETERS`, `SPACY_CLS_MAX_TOKENIZER_BYTES`) can be raised
for a model that is known and large.
"""
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import torch

MAX_PARAMETERS_ENV = "SPACY_CLS_MAX_PARAMETERS"
MAX_TOKENIZER_BYTES_ENV = "SPACY_CLS_MAX_TOKENIZER_BYTES"
# 2 billion numbers (8 GB in float32): every BERT-family encoder up to the xl sizes
# of RoBERTa and DeBERTa fits.
DEFAULT_MAX_PARAMETERS = 2_000_000_000
# The largest tokenizer file of a common encoder is XLM-R's tokenizer.json, 17 MB.
DEFAULT_MAX_TOKENIZER_BYTES = 128 * 2**20
# A vocabulary entry takes some tens of bytes in vocab.txt, tokenizer.json or a
# merges file; 512 leaves room for long merges and added-token records.
TOKENIZER_BYTES_PER_ENTRY = 512
TOKENIZER_BYTES_FLOOR = 4 * 2**20
# config.json, tokenizer_config.json and the like hold settings, not data.
MAX_SETTINGS_FILE_BYTES = 16 * 2**20
POOLER_PREFIX = "pooler."
RAISE_HINT = (
    "If you trust this model and it really is this large, raise the limit with the "
    "environment variable {env} (see 'Loading pipelines from untrusted sources' in docs/limits.md)."
)

ErrorMaker = Callable[[str], Exception]


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env, "").strip().replace("_", "")
    if not value:
        return default
    try:
        limit = int(float(value))
    except ValueError:
        raise ValueError(f"{env}={value!r} is not a number: give a count such as {default}.") from None
    if limit < 1:
        raise ValueError(f"{env}={value!r}: give a positive count such as {default}.")
    return limit


def max_parameters() -> int:
    """The most numbers (parameters and buffers) a model may hold."""
    return _limit(MAX_PARAMETERS_ENV, DEFAULT_MAX_PARAMETERS)


def max_tokenizer_bytes() -> int:
    return _limit(MAX_TOKENIZER_BYTES_ENV, DEFAULT_MAX_TOKENIZER_BYTES)


def tokenizer_file_limit(vocab_size: Optional[int]) -> int:
    """The largest tokenizer file a model with `vocab_size` entries needs, at most the
    absolute limit."""
    cap = max_tokenizer_bytes()
    if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and vocab_size > 0:
        return min(cap, max(TOKENIZER_BYTES_FLOOR, vocab_size * TOKENIZER_BYTES_PER_ENTRY))
    return cap


def check_tokenizer_file_size(name: str, size: int, vocab_size: Optional[int], make_error: ErrorMaker) -> None:
    limit = tokenizer_file_limit(vocab_size)
    if size > limit:
        vocab = f"a vocabulary of {vocab_size:,} entries needs at most {limit:,}" if limit < max_tokenizer_bytes() \
            else f"the limit is {limit:,}"
        raise make_error(
            f"its tokenizer file '{name}' is {size:,} bytes, and {vocab} "
            f"({TOKENIZER_BYTES_PER_ENTRY} bytes an entry). "
            + RAISE_HINT.format(env=MAX_TOKENIZER_BYTES_ENV)
        )


def check_settings_file_size(name: str, size: int, make_error: ErrorMaker) -> None:
    if size > MAX_SETTINGS_FILE_BYTES:
        raise make_error(f"its settings file '{name}' is {size:,} bytes; such files hold a few kilobytes of settings")


def vocab_size_of(config: Mapping[str, Any]) -> Optional[int]:
    value = config.get("vocab_size")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------ the config


def _ints(config: Mapping[str, Any], prefix: str = "") -> Iterable[Tuple[str, int]]:
    for key, value in config.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            yield prefix + str(key), value
        elif isinstance(value, dict) and not str(key).startswith(("id2label", "label2id")):
            yield from _ints(value, f"{prefix}{key}.")


def check_declared_numbers(config: Mapping[str, Any], make_error: ErrorMaker) -> None:
    """No number in the config may exceed the whole model's limit: that is no model
    to build even on the meta device (a Python loop over a billion layers is one)."""
    limit = max_parameters()
    for key, value in _ints(config):
        if value > limit:
            raise make_error(
                f"its model config declares {key}={value:,}, more than the {limit:,} numbers a model "
                f"may hold. " + RAISE_HINT.format(env=MAX_PARAMETERS_ENV)
            )


def build_on_meta(model_cls, config):
    """`model_cls` built from `config` on the meta device, weight initialisation off."""
    from transformers.modeling_utils import no_init_weights

    with torch.device("meta"), no_init_weights():
        if hasattr(model_cls, "from_config"):  # the Auto classes
            return model_cls.from_config(config, trust_remote_code=False)
        return model_cls._from_config(config)


def check_implied_size(
    skeleton: torch.nn.Module,
    disk_shapes: Optional[Mapping[str, Tuple[int, ...]]],
    make_error: ErrorMaker,
    *,
    prefix: str = "",
) -> Dict[str, int]:
    """Compare what `skeleton` (built on meta) would allocate with the tensors on disk.

    `disk_shapes`: name -> shape of every saved tensor (None when only their total is
    unknown). Refuses: a parameter whose saved tensor has another shape; more
    parameters than the disk holds in all (a dimension grown past its weights);
    buffers built at construction (causal masks, say) larger than the parameters;
    and a model over `max_parameters()`. Returns the figures."""
    params = dict(skeleton.named_parameters())
    n_params = sum(p.numel() for p in params.values())
    saved = {_normal_name(name, prefix): tuple(shape) for name, shape in (disk_shapes or {}).items()}
    n_buffers = sum(b.numel() for name, b in skeleton.named_buffers() if name not in saved)
    figures = {"parameters": n_params, "unsaved_buffers": n_buffers}
    if disk_shapes is not None:
        wrong = [
            f"{name}: saved {saved[name]}, config implies {tuple(p.shape)}"
            for name, p in params.items() if name in saved and saved[name] != tuple(p.shape)
        ]
        if wrong:
            raise make_error(
                f"its weights do not fit its model config (size mismatch in {len(wrong)} tensors, first {wrong[0]})"
            )
        on_disk = sum(_numel(shape) for shape in saved.values())
        # Parameters without a saved tensor: a pooler, tensors saved under an older
        # name (left to the callers' own check), or a dimension grown past its weights.
        missing = sum(p.numel() for name, p in params.items() if name not in saved and not name.startswith(POOLER_PREFIX))
        figures["on_disk"] = on_disk
        if missing > on_disk:
            raise make_error(
                f"its model config implies {n_params:,} parameters, {missing:,} of them without "
                f"saved weights, and its weights hold {on_disk:,} numbers in all: a dimension in "
                f"the config is larger than its weights"
            )
    if n_buffers > max(n_params, 1):
        raise make_error(
            f"its model config makes the model build {n_buffers:,} numbers of buffers at construction "
            f"(a mask or table over the positions, say), more than its {n_params:,} parameters: "
            f"lower max_position_embeddings (or the like) to what the model was trained with"
        )
    limit = max_parameters()
    if n_params + n_buffers > limit:
        raise make_error(
            f"its model config implies {n_params:,} parameters and {n_buffers:,} buffer numbers, more "
            f"than the {limit:,} allowed. " + RAISE_HINT.format(env=MAX_PARAMETERS_ENV)
        )
    return figures


def _numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for extent in shape:
        n *= int(extent)
    return n


def _normal_name(name: str, prefix: str) -> str:
    """A saved name as the bare encoder names it: without the task model's prefix
    ('bert.'), and with the old LayerNorm names transformers renames on load."""
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))


# --------------------------------------------------------- tensors on disk, unloaded

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def disk_shapes(folder: Path, make_error: ErrorMaker) -> Tuple[Optional[Dict[str, Tuple[int, ...]]], int]:
    """(name -> shape of the tensors transformers would load from `folder`, bytes of
    legacy weights), read without loading a tensor. A legacy (pre-zip) torch pickle's
    shapes cannot be read safely: then the shapes are None and its bytes are given.
    Both are empty (None, 0) when the folder has no weight file transformers reads, or
    an unreadable one (transformers then says what is wrong)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            shards = _shard_files(folder, path, make_error)
        else:
            shards = [path]
        shapes: Dict[str, Tuple[int, ...]] = {}
        legacy_bytes = 0
        for shard in shards:
            if shard.suffix == ".safetensors":
                found = _safetensors_shapes(shard)
                if found is None:
                    return None, 0  # unreadable: transformers names the problem
            else:
                found = _torch_zip_shapes(shard)
                if found is None:
                    legacy_bytes += shard.stat().st_size
                    continue
            shapes.update(found)
        return (None, legacy_bytes) if legacy_bytes else (shapes, 0)
    return None, 0


def _shard_files(folder: Path, index: Path, make_error: ErrorMaker):
    from .tokenizer_checks import PLAIN_FILE_NAME

    check_settings_file_size(index.name, index.stat().st_size, make_error)
    try:
        weight_map = json.loads(index.read_text(encoding="utf8")).get("weight_map", {})
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise make_error(f"its weight index '{index.name}' is not a JSON object with a weight_map") from None
    names = sorted({value for value in weight_map.values()}) if isinstance(weight_map, dict) else []
    for name in names:
        if not isinstance(name, str) or not PLAIN_FILE_NAME.fullmatch(name) or ".." in name:
            raise make_error(f"its weight index '{index.name}' names the shard {name!r}, not a file of the folder")
    return [folder / name for name in names if (folder / name).is_file()]


def _safetensors_shapes(path: Path) -> Optional[Dict[str, Tuple[int, ...]]]:
    """From the header only (safetensors caps it at 100 MB)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}
    except (SafetensorError, OSError, ValueError):
        return None


def _torch_zip_shapes(path: Path) -> Optional[Dict[str, Tuple[int, ...]]]:
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    try:
        # Memory-mapped, tensors only: the pages of the weights are not read.
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # damaged files raise many types; transformers names the problem later
        return None
    if not isinstance(state, dict):
        return None
    shapes = {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}
    del state
    return shapes


def check_checkpoint_size(folder: Path, config, model_cls, make_error: ErrorMaker) -> Dict[str, int]:
    """For a checkpoint folder about to be loaded by transformers: the config's model,
    built on meta, against the tensors on disk."""
    check_declared_numbers(config.to_dict(), make_error)
    shapes, legacy_bytes = disk_shapes(folder, make_error)
    held = _layers_held(shapes or {})
    declared = getattr(config, "num_hidden_layers", None)
    # Far more layers than the weights hold: refused before the (meta) build, which
    # loops over them in Python. A few more are left to the missing-tensors message.
    if shapes and held and isinstance(declared, int) and declared > max(2 * held, held + 8):
        raise make_error(f"its config.json declares num_hidden_layers={declared:,}, and its weights hold {held} layers")
    try:
        skeleton = build_on_meta(model_cls, config)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError, AssertionError) as err:
        raise make_error(f"its config.json does not build a model ({type(err).__name__}: {err})") from None
    prefix = f"{getattr(skeleton, 'base_model_prefix', '')}."
    figures = check_implied_size(skeleton, shapes, make_error, prefix=prefix)
    if legacy_bytes and figures["parameters"] * 2 > legacy_bytes + 2**20:
        # A legacy pickle: its size bounds what it holds (at least 2 bytes a number).
        raise make_error(
            f"its model config implies {figures['parameters']:,} parameters, more than its "
            f"{legacy_bytes:,} bytes of weights can hold"
        )
    return figures


LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|blocks?)\.(\d+)\.")


def _layers_held(shapes: Mapping[str, Tuple[int, ...]]) -> int:
    numbers = [int(m.group(1)) for key in shapes for m in [LAYER_INDEX.search(key)] if m]
    return max(numbers) + 1 if numbers else 0
