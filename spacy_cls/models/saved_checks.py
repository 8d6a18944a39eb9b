"""Check a saved encoder before any of it is written to disk or loaded.

A pipeline folder or byte string is data, and loading it must not run code or write
files. spacy-transformers' ``HFShim.from_bytes`` trusts what it reads: the saved
tokenizer settings go to ``AutoTokenizer.from_pretrained`` (where
``trust_remote_code`` plus an ``auto_map`` imports a saved ``.py`` file), the saved
tokenizer file names are joined to a temporary folder as given (``../x`` or ``/x``
lands outside it), and the weights are unpickled by a ``torch.load`` call that an
environment variable can switch to full pickle. `read_saved_encoder` checks all of
it first and returns only what passed; `load_saved_weights` reads the weights as
tensors only.
"""
import json
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import srsly
import torch

from .folder_checks import check_folder
from .onnx import check_graph, check_tokenizer_files
from .tokenizer_checks import (  # noqa: F401  (also this module's public names)
    CODE_KEYS,
    CONFIG_FILE,
    PLAIN_FILE_NAME,
    SOURCE_HINT,
    TOKENIZER_CLASS,
    TOKENIZER_FILE_SUFFIXES,
    TamperedPipelineError,
    check_file_name,
    check_tokenizer_json,
    refuse,
)
from .size_checks import (
    build_on_meta,
    check_declared_numbers,
    check_implied_size,
    check_tokenizer_file_size,
    max_parameters,
    vocab_size_of,
)

# What spacy-transformers saves beside the tokenizer files (HFShim.to_bytes).
TOKENIZER_SETTINGS = {"use_fast": bool}
TOKENIZER_SETTINGS_KEY = "kwargs"
SAVED_KEYS = {"config", "state", "tokenizer", "_init_tokenizer_config", "_init_transformer_config"}


@dataclass
class SavedEncoder:
    """What a saved encoder holds, checked. `config` is empty for an encoder saved
    before `initialize`, which has only its loader settings."""

    config: Dict[str, Any]
    tokenizer_files: Dict[str, bytes]
    tokenizer_settings: Dict[str, Any]
    state: bytes
    init_tokenizer_config: Dict[str, Any]
    init_transformer_config: Dict[str, Any]


def read_saved_encoder(bytes_data: bytes) -> SavedEncoder:
    try:
        msg = srsly.msgpack_loads(bytes_data)
    except Exception as err:  # msgpack raises several unrelated types for bad bytes
        raise refuse(f"its bytes are not a saved encoder ({type(err).__name__}: {err})") from None
    if not isinstance(msg, dict) or not SAVED_KEYS <= set(msg):
        raise refuse(f"its bytes are not a saved encoder (expected the keys {sorted(SAVED_KEYS)})")
    config = _expect(msg["config"], dict, "the model config")
    tokenizer = dict(_expect(msg["tokenizer"], dict, "the tokenizer entry"))
    state = _expect(msg["state"], (bytes, dict), "the weights")
    settings = _expect(tokenizer.pop(TOKENIZER_SETTINGS_KEY, {}), dict, "the tokenizer settings")
    check_tokenizer_settings(settings)
    init_tok = _expect(msg["_init_tokenizer_config"], dict, "the tokenizer loader settings")
    init_trf = _expect(msg["_init_transformer_config"], dict, "the model loader settings")
    check_loader_settings(init_tok, "tokenizer_config", refuse)
    check_loader_settings(init_trf, "transformer_config", refuse)
    if config:
        check_model_config(config)
        if not isinstance(state, bytes) or not state:
            raise refuse("it has a model config but no weights")
    elif tokenizer or state:
        raise refuse("it has weights or tokenizer files but no model config")
    files: Dict[str, bytes] = {}
    for name, data in tokenizer.items():
        check_file_name(name)
        files[name] = _expect(data, bytes, f"the tokenizer file '{name}'")
        check_tokenizer_file_size(name, len(data), vocab_size_of(config), refuse)
        if name.endswith(".json"):
            check_tokenizer_json(name, data)
    return SavedEncoder(config, files, settings, state or b"", init_tok, init_trf)


def _expect(value: Any, kind, what: str) -> Any:
    if not isinstance(value, kind):
        raise refuse(f"{what} is a {type(value).__name__}, where spacy-transformers saves a "
                     f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
    return value


def check_tokenizer_settings(settings: Mapping[str, Any]) -> None:
    for key, value in settings.items():
        kind = TOKENIZER_SETTINGS.get(key)
        if kind is None:
            raise refuse(
                f"its tokenizer settings include {key}={value!r}; only "
                f"{', '.join(TOKENIZER_SETTINGS)} may be saved with a tokenizer"
            )
        if not isinstance(value, kind):
            raise refuse(f"its tokenizer setting {key} is {value!r}, not a {kind.__name__}")


def check_loader_settings(settings: Mapping[str, Any], where: str, make_error=ValueError) -> None:
    """Refuse settings that make transformers run code shipped with a checkpoint; also
    used for the settings a training config gives the loader."""
    for key in CODE_KEYS:
        if key in settings and not (key == "trust_remote_code" and settings[key] is False):
            raise make_error(
                f"{where} sets {key}, and spacy_cls never runs code shipped with a checkpoint "
                f"or a pipeline. Use a checkpoint whose architecture transformers ships (BERT, "
                f"RoBERTa, ELECTRA, DeBERTa, MiniLM, ...), and remove {key}"
            )


def check_model_config(config: Mapping[str, Any]) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    for key in CODE_KEYS:
        if key in config:
            raise refuse(f"its model config sets {key}, which makes transformers import Python code")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise refuse(
            f"its model config names the model type {model_type!r}, which is not an "
            f"architecture this transformers version ships"
        )


def write_tokenizer_folder(folder: Path, saved: SavedEncoder) -> None:
    """Write the checked model config and tokenizer files into `folder`, and nothing
    outside it."""
    root = folder.resolve()
    (root / CONFIG_FILE).write_text(json.dumps(saved.config), encoding="utf8")
    for name, data in saved.tokenizer_files.items():
        path = (root / name).resolve()
        if path.parent != root:  # check_file_name already refused such names
            raise refuse(f"its tokenizer file {name!r} would be written outside the temporary folder")
        path.write_bytes(data)


def load_saved_weights(
    state: bytes, device: Optional[torch.device] = None, *, check_size: bool = True
) -> Dict[str, torch.Tensor]:
    """The saved state dict, read as tensors only. ``weights_only=True`` is passed
    explicitly: torch lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turn full unpickling on
    only for calls that leave it out. Bytes beyond the largest allowed model are
    refused before they are read."""
    if check_size and len(state) > max_parameters() * 8 + 2**20:
        raise refuse(
            f"its weights are {len(state):,} bytes, more than a model of the allowed size "
            f"({max_parameters():,} numbers) takes; if you trust it, raise SPACY_CLS_MAX_PARAMETERS"
        )
    try:
        loaded = torch.load(BytesIO(state), map_location=device or "cpu", weights_only=True)
    except Exception as err:  # damaged bytes raise many types (UnpicklingError, struct.error, ...)
        raise refuse(f"its weights are not plain tensors ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise refuse("its weights are not a mapping of parameter names to tensors")
    return loaded


def check_saved_pipeline(source: Union[str, Path, bytes]) -> List[str]:
    """Check a whole saved pipeline, folder or `nlp.to_bytes()` data, before loading
    it, other packages' components included (a spacy-transformers `transformer`
    component or any thinc PyTorchShim, which load without these checks).

    A folder is walked first without reading anything (`folder_checks`): a link
    leaving it, a FIFO or device, a mount, or a file larger than an allowed model
    needs is refused. Then every saved model is checked: Hugging Face encoders (code,
    file names, tokenizer settings and sizes, weights as tensors only, and the size
    the config implies against the weights), other torch states (tensors only), and
    ONNX encoders (tokenizer files, and graphs that read external data).
    Raises TamperedPipelineError naming the component; returns the names of the
    components it checked."""
    checked = []
    for component, model_bytes, graph_file in _saved_models(source):
        try:
            found = _check_model_bytes(model_bytes, graph_file, component)
        except TamperedPipelineError as err:
            raise TamperedPipelineError(f"Component '{component}': {err}") from None
        if found:
            checked.append(component)
    return checked


def _check_model_bytes(model_bytes: bytes, graph_file: Optional[Path], component: str) -> bool:
    try:
        model_msg = srsly.msgpack_loads(model_bytes)
    except Exception:  # not a thinc model: nothing that reaches torch or transformers
        return False
    shims = model_msg.get("shims") if isinstance(model_msg, dict) else None
    found = False
    for shim_bytes in _flat(shims or []):
        try:
            shim_msg = srsly.msgpack_loads(shim_bytes)
        except Exception:
            continue
        if not isinstance(shim_msg, dict):
            continue
        if "graph" in shim_msg and "tokenizer" in shim_msg and "state" not in shim_msg:
            found = True
            _check_onnx_shim(shim_msg, graph_file, component)
            continue
        if "state" not in shim_msg:
            continue
        found = True
        if SAVED_KEYS <= set(shim_msg):
            saved = read_saved_encoder(shim_bytes)
            if saved.state:
                check_encoder_fits(saved.config, load_saved_weights(saved.state, check_size=True))
        elif isinstance(shim_msg["state"], bytes) and shim_msg["state"]:
            load_saved_weights(shim_msg["state"], check_size=True)
    return found


def _check_onnx_shim(msg: Dict[str, Any], graph_file: Optional[Path], component: str) -> None:
    check_tokenizer_files(msg.get("tokenizer") or {})
    graph = msg.get("graph")
    if isinstance(graph, bytes):
        check_graph(graph, f"saved in the model of component '{component}'")
    elif graph is not None:
        raise refuse(f"its ONNX graph is a {type(graph).__name__}, where optimize saves bytes")
    elif graph_file is not None:
        check_graph(graph_file.read_bytes(), str(graph_file))


def check_encoder_fits(config_dict: Mapping[str, Any], state: Mapping[str, torch.Tensor], model_cls=None,
                       check_missing=None):
    """Refuse a saved model config that would build more than its saved weights: its
    numbers, its layer count, and the model built on the meta device (parameters,
    buffers built at construction, the size limit) against `state`. Returns the
    config object and the meta skeleton."""
    from transformers import AutoModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    check_model_config(config_dict)
    check_declared_numbers(config_dict, refuse)
    check_layer_count(config_dict, state)
    try:
        config = CONFIG_MAPPING[config_dict["model_type"]].from_dict(dict(config_dict))
        skeleton = build_on_meta(model_cls or AutoModel, config)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError, AssertionError) as err:
        raise refuse(f"its model config does not build a model ({type(err).__name__}: {_first_line(err)})") from None
    if check_missing is not None:
        check_missing(skeleton, state)
    check_implied_size(skeleton, {name: tuple(t.shape) for name, t in state.items()}, refuse)
    return config, skeleton


def _first_line(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text[:200]


def _saved_models(source: Union[str, Path, bytes]) -> Iterator[Tuple[str, bytes, Optional[Path]]]:
    if isinstance(source, bytes):
        try:
            msg = srsly.msgpack_loads(source)
        except Exception:
            raise refuse("its bytes are not a saved spaCy pipeline (nlp.to_bytes())") from None
        for name, value in msg.items() if isinstance(msg, dict) else ():
            if not isinstance(value, bytes):
                continue
            try:
                component = srsly.msgpack_loads(value)
            except Exception:
                continue
            if isinstance(component, dict) and isinstance(component.get("model"), bytes):
                yield name, component["model"], None
        return
    folder = Path(source)
    if not (folder / "config.cfg").is_file():
        raise FileNotFoundError(f"{folder} is not a saved spaCy pipeline (it has no config.cfg).")
    files = check_pipeline_folder(folder)
    for relative in sorted(files):
        parts = relative.split("/")
        if len(parts) == 2 and parts[1] == "model":
            graph = folder / parts[0] / "encoder.onnx"
            yield parts[0], files[relative].path.read_bytes(), graph if f"{parts[0]}/encoder.onnx" in files else None


def check_pipeline_folder(folder: Union[str, Path]):
    """The walk of `folder_checks` over a saved pipeline, refusing with
    TamperedPipelineError; returns its files."""
    return check_folder(folder, _pipeline_refusal, what="pipeline folder")


def _pipeline_refusal(problem: str) -> TamperedPipelineError:
    return TamperedPipelineError(f"Refusing to load the pipeline: {problem}. {SOURCE_HINT}")


def _flat(items) -> Iterator[bytes]:
    for item in items:
        if isinstance(item, bytes):
            yield item
        elif isinstance(item, (list, tuple)):
            yield from _flat(item)


LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
NUMBERED = re.compile(r"(?:^|\.)(\d+)\.")


def check_layer_count(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a config that declares more layers than the saved weights hold, before a
    model is built from it (a crafted layer count would otherwise build a huge model)."""
    numbers = [int(match.group(1)) for key in state for match in [NUMBERED.search(key)] if match]
    held = max(numbers) + 1 if numbers else 0
    for key in LAYER_COUNT_KEYS:
        declared = config.get(key)
        if isinstance(declared, bool) or not isinstance(declared, int):
            continue
        if declared > held:
            raise refuse(f"its model config declares {key}={declared}, and its weights hold {held} layers")


def check_state_fits(skeleton: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse saved tensors whose shapes differ from the model's (`skeleton` may be
    built on the meta device: only names and shapes are read)."""
    own = skeleton.state_dict()
    wrong = [
        f"{name}: saved {tuple(tensor.shape)}, model {tuple(own[name].shape)}"
        for name, tensor in state.items()
        if name in own and tuple(tensor.shape) != tuple(own[name].shape)
    ]
    if wrong:
        raise refuse(f"its weights do not fit its model config ({len(wrong)} tensors, first {wrong[0]})")
