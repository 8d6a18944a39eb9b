"""Turn a trained pipeline's `cls_classifier` encoders into ONNX Runtime graphs (CPU
inference), keeping the trained head, the labels and the component API.

    nlp = spacy.load("training/model-best")
    optimize_pipeline(nlp, int8=True)
    nlp.to_disk("training/model-onnx")      # spacy.load() it anywhere, offline

The component's model config becomes ``spacy_cls.ClsClassifierOnEncoder.v1`` over
``spacy_cls.OnnxClsEncoder.v1``; the torch weights are not saved with it (the graph
holds the encoder), so the optimized pipeline cannot be trained: train the original.
"""
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy

from spacy.language import Language
from thinc.api import Model

from ..layers.encoder import _use_cls_only, get_hf
from ..layers.head import NORMALIZE_FEATURES
from ..layers.onnx_encoder import META_KEY, SOURCE_KEY, is_onnx_encoder
from ..layers.onnx_export import build_graph
from ..models.int8_calibration import CalibrationReport, calibrate_fp32_layers
from ..models.onnx import Int8Recipe, output_names, sha256
from .architectures import build_classifier_on_encoder
from .onnx_architectures import build_onnx_cls_encoder
from .spans import is_cls_component

ONNX_REQUIREMENT = "onnxruntime>=1.17"


@dataclass
class Int8Calibration:
    """Sample texts on which `optimize --int8` measures which layers to keep in float32
    (models/int8_calibration.py): until the labels agree with float32 on `target` percent
    of them, or `max_fp32_layers` are kept (-1: no limit). Use texts like the ones the
    pipeline will label, not its evaluation set."""

    texts: Sequence[str]
    target: float = 99.5
    max_fp32_layers: int = -1


@dataclass
class OptimizedComponent:
    name: str
    pooling: str
    cls_only: bool
    int8: bool
    graph_bytes: int
    sha256: str
    recipe: Optional[Int8Recipe] = None
    calibration: Optional[CalibrationReport] = None


def optimize_pipeline(
    nlp: Language, *, int8: bool = False, component: Optional[str] = None, threads: int = 0,
    int8_recipe: Optional[Int8Recipe] = None, calibration: Optional[Int8Calibration] = None,
) -> List[OptimizedComponent]:
    """Swap the encoder of `component` (default: every spacy_cls component with its own
    encoder) for an ONNX Runtime graph, in place. `int8`: ONNX Runtime's dynamic int8
    quantisation, leaving in float32 what `int8_recipe` says (default: `Int8Recipe()`),
    or, with `calibration`, the layers measured to move the labels most.
    `threads`: ONNX Runtime's intra-op threads (0: as many as torch uses)."""
    if calibration is not None and not int8:
        raise ValueError("int8 calibration chooses what int8 quantisation keeps in float32: set int8=True.")
    names = _components_to_optimize(nlp, component)
    recipe = (int8_recipe or Int8Recipe()) if int8 else None
    done = []
    for name in names:
        done.append(_optimize_component(nlp, name, recipe=recipe, threads=threads, calibration=calibration))
    if recipe is not None:
        # Not in the component's config: the graph is the quantised one, and this says how.
        nlp.meta.setdefault(META_KEY, {})["int8"] = {item.name: item.recipe.describe() for item in done}
    requirements = nlp.meta.setdefault("requirements", [])
    if not any(str(req).startswith("onnxruntime") for req in requirements):
        requirements.append(ONNX_REQUIREMENT)
    return done


def optimize_to_disk(
    source: Union[str, Path], output: Union[str, Path], *, int8: bool = False,
    component: Optional[str] = None, threads: int = 0, check: Optional[bool] = None,
    int8_recipe: Optional[Int8Recipe] = None, calibration: Optional[Int8Calibration] = None,
) -> List[OptimizedComponent]:
    """Load the pipeline at `source` (checked first: `load_checked`; `check=False`
    skips the folder check), optimize it and save the copy to `output`."""
    from ..models.safe_load import load_checked

    source_path, output_path = Path(source), Path(output)
    if source_path.exists() and output_path.exists() and source_path.resolve() == output_path.resolve():
        raise ValueError(
            f"The output folder {output_path} is the pipeline itself: optimize writes a copy "
            f"(and the copy cannot be trained), so give another output folder."
        )
    nlp = load_checked(source, check=check)
    done = optimize_pipeline(nlp, int8=int8, component=component, threads=threads, int8_recipe=int8_recipe,
                             calibration=calibration)
    nlp.meta.setdefault(META_KEY, {})[SOURCE_KEY] = str(source)
    output_path.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_path)
    return done


def _components_to_optimize(nlp: Language, component: Optional[str]) -> List[str]:
    candidates = [name for name, proc in nlp.components if is_cls_component(proc)]
    if component is not None:
        if component not in nlp.component_names:
            raise ValueError(
                f"No component '{component}' in this pipeline; its components are "
                f"{', '.join(nlp.component_names) or 'none'}."
            )
        if component not in candidates:
            raise ValueError(
                f"'{component}' is not a cls_classifier / cls_classifier_multilabel component; "
                f"those are {', '.join(candidates) or 'none'}."
            )
        return [component]
    # ONNX ones stay in, to be refused with the reason.
    own = [name for name in candidates if _encoder(nlp.get_pipe(name)).name == "hf_cls_encoder"
           or is_onnx_encoder(_encoder(nlp.get_pipe(name)))]
    if not own:
        raise ValueError(
            "No cls_classifier component with its own torch encoder in this pipeline "
            f"({', '.join(nlp.component_names) or 'empty'}): nothing to optimize."
        )
    return own


def _encoder(proc) -> Model:
    return proc.model.get_ref("encoder")


def _optimize_component(
    nlp: Language, name: str, *, recipe: Optional[Int8Recipe], threads: int, calibration: Optional[Int8Calibration]
) -> OptimizedComponent:
    proc = nlp.get_pipe(name)
    old_model: Model = proc.model
    encoder = _encoder(proc)
    if is_onnx_encoder(encoder):
        raise ValueError(
            f"The component '{name}' runs on ONNX Runtime already. Run optimize on the "
            f"original torch pipeline (to change --int8, say)."
        )
    if encoder.name != "hf_cls_encoder":
        raise ValueError(
            f"The component '{name}' reads the [CLS] rows of a shared transformer component "
            f"({encoder.name}); optimize exports a component's own encoder "
            f"(spacy_cls.ClsClassifier.v1 / spacy_cls.HFClsEncoder.v1) only."
        )
    hf = get_hf(encoder)
    if hf.transformer is None or hf.tokenizer is None:
        raise ValueError(f"The component '{name}' has no trained encoder: train the pipeline first.")
    transformer = hf.transformer
    if any(param.device.type != "cpu" for param in transformer.parameters()):
        transformer = copy.deepcopy(transformer).cpu()
    # The float weights are exported whatever quantize_int8 says: a torch int8 pipeline
    # gets ONNX Runtime's int8 with --int8, and float32 without it.
    pooling = encoder.attrs["pooling"]
    # The same decision as the torch path (and its probe check), so that both compute alike.
    cls_only = _use_cls_only(encoder)
    chosen: Dict[str, object] = {"recipe": recipe, "report": None}
    choose = None
    if calibration is not None and recipe is not None:
        def choose(float_graph: Path) -> Int8Recipe:
            chosen["recipe"], chosen["report"] = _calibrate(old_model, encoder, float_graph, recipe, calibration, threads)
            return chosen["recipe"]

    was_training = transformer.training
    transformer.eval()
    try:
        graph = build_graph(transformer, pooling, cls_only, recipe is not None, recipe, choose_recipe=choose)
    finally:
        transformer.train(was_training)
    recipe = chosen["recipe"]
    settings: Dict[str, object] = {
        "pooling": pooling,
        "max_length": int(encoder.attrs["max_length"]),
        "hidden_width": int(transformer.config.hidden_size),
        "sha256": sha256(graph),
        "long_text": encoder.attrs["long_text"],
        "stride": int(encoder.attrs["stride"]),
        "max_windows": encoder.attrs["max_windows"],
        "sub_batch_size": int(encoder.attrs["sub_batch_size"]),
        "threads": int(threads),
        "int8": recipe is not None,
    }
    new_encoder = build_onnx_cls_encoder(**settings)
    shim = new_encoder.shims[0]
    shim.set_tokenizer(hf.tokenizer)
    shim.load(graph, shim.tokenizer_files, where=f"of component '{name}' written by optimize")
    exclusive = not old_model.attrs.get("multi_label")
    old_config = nlp.get_pipe_config(name)
    dropout = float(_find(old_config.get("model", {}), "dropout", 0.1))
    n_labels = old_model.get_dim("nO")
    new_model = build_classifier_on_encoder(new_encoder, exclusive_classes=exclusive, dropout=dropout, nO=n_labels)
    new_model.get_ref("head").from_bytes(old_model.get_ref("head").to_bytes())
    new_model.attrs[NORMALIZE_FEATURES] = bool(old_model.attrs.get(NORMALIZE_FEATURES))
    proc.model = new_model
    old_config["model"] = {
        "@architectures": "spacy_cls.ClsClassifierOnEncoder.v1",
        "exclusive_classes": exclusive,
        "dropout": dropout,
        "nO": n_labels,
        "encoder": {"@architectures": "spacy_cls.OnnxClsEncoder.v1", **settings},
    }
    return OptimizedComponent(name, pooling, cls_only, recipe is not None, len(graph), settings["sha256"], recipe,
                              chosen["report"])


CALIBRATION_BATCH = 64


def _calibrate(model: Model, encoder: Model, float_graph: Path, base: Int8Recipe, calibration: Int8Calibration,
               threads: int):
    """Labels come from the component's own head on the graph's features: the argmax
    for an exclusive component, the set of positive logits for a multi-label one."""
    from ..decisions.apply import head_logits
    from ..layers.windows import encode_texts

    hf = get_hf(encoder)
    texts = [text for text in calibration.texts if isinstance(text, str) and text.strip()]
    batch = encode_texts(hf.tokenizer, texts, encoder.attrs["max_length"], "truncate", encoder.attrs["stride"], 1)
    feeds = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        mask = batch.attention_mask[start:start + CALIBRATION_BATCH]
        length = int(mask.sum(axis=1).max())
        feeds.append((numpy.ascontiguousarray(batch.input_ids[start:start + CALIBRATION_BATCH, :length]),
                      numpy.ascontiguousarray(mask[:, :length])))
    features_at = len(output_names(encoder.attrs["pooling"])) - 1
    exclusive = not model.attrs.get("multi_label")

    def labels_of(outputs):
        logits = head_logits(model, model.ops.asarray2f(outputs[features_at]))
        if logits is None:
            raise ValueError("int8 calibration reads the labels from a spacy_cls head; this component has another.")
        return logits.argmax(axis=1) if exclusive else logits > 0

    n_layers = int(hf.transformer.config.num_hidden_layers)
    return calibrate_fp32_layers(float_graph, n_layers, feeds, labels_of, base=base, target=calibration.target,
                                 max_fp32_layers=calibration.max_fp32_layers, threads=threads)


def _find(section: dict, key: str, default):
    if key in section:
        return section[key]
    for value in section.values():
        if isinstance(value, dict):
            found = _find(value, key, None)
            if found is not None:
                return found
    return default
