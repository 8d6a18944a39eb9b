"""The ONNX Runtime backend of a trained encoder: fuse and optionally quantise an
exported graph with ONNX Runtime's own tools, and load it back safely (the export
from torch is ``layers/onnx_export.py``).

The graph takes ``input_ids`` and ``attention_mask`` (int64, dynamic batch and length)
and returns ``cls`` (the last-layer [CLS] rows) and, when the pooling reads more than
them, ``features`` (the pooled rows). When the pooling needs [CLS] only, the exported
graph computes the last layer at [CLS] only, as the torch path does (``cls_forward``).

Loading reads bytes and hands them to ``onnxruntime.InferenceSession``: no Python code
from the pipeline runs. The graph's sha256, stored in the pipeline's config, is checked
first, so a truncated or edited file is refused before ONNX Runtime parses it. A digest
proves nothing against someone who rewrites the config too, so the graph is then
checked for what would make ONNX Runtime read other files: tensors stored as external
data (the export never writes any), in initializers, sparse initializers, Constant and
other attribute tensors, subgraphs and functions. The tokenizer files get the checks
of the torch path (`saved_checks`).
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy

GRAPH_FILE = "encoder.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")
OPSET = 17
INSTALL_HINT = "pip install 'spacy-cls[onnx]' (or pip install onnxruntime onnx)"


class OnnxGraphError(ValueError):
    """A saved ONNX graph that cannot be used: missing, altered, or not the encoder."""


def _graph_refusal(where: str):
    from .tokenizer_checks import SOURCE_HINT, TamperedPipelineError

    def make(problem: str) -> Exception:
        return TamperedPipelineError(f"Refusing to load the ONNX graph {where}: {problem}. {SOURCE_HINT}")

    return make


def check_graph(graph: bytes, where: str) -> None:
    """Refuse a graph that names external data anywhere in it, before ONNX Runtime
    sees it. Parsing with ``onnx`` reads only the bytes given (no external data is
    loaded)."""
    try:
        from onnx import ModelProto
        from google.protobuf.message import DecodeError
    except ImportError as e:  # pragma: no cover - the onnx extra installs both
        raise ImportError(f"Checking an ONNX graph needs the onnx package: {INSTALL_HINT}.") from e
    make_error = _graph_refusal(where)
    model = ModelProto()
    try:
        model.ParseFromString(graph)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise OnnxGraphError(
            f"ONNX Runtime cannot load the graph {where}: it is not an ONNX model ({type(err).__name__}). Run `python -m "
            f"spacy_cls optimize` on the original (torch) pipeline again."
        ) from None
    for place, tensor in _graph_tensors(model):
        if tensor.data_location == tensor.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), None)
            raise make_error(
                f"its tensor '{tensor.name}' ({place}) is stored as external data"
                + (f" in {location!r}" if location is not None else "")
                + "; spacy_cls graphs hold all their tensors, and a graph that reads other "
                "files could read any file ONNX Runtime can open"
            )


def _graph_tensors(model):
    """Every TensorProto a model holds, with where it is."""
    for graph_place, graph in _graphs(model):
        for tensor in graph.initializer:
            yield f"initializer of {graph_place}", tensor
        for sparse in graph.sparse_initializer:
            yield f"sparse initializer of {graph_place}", sparse.values
            yield f"sparse initializer of {graph_place}", sparse.indices
        for node in graph.node:
            yield from _node_tensors(node, graph_place)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node, f"function {function.name}")


def _node_tensors(node, place):
    where = f"attribute of node '{node.name or node.op_type}' in {place}"
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield where, attribute.t
        for tensor in attribute.tensors:
            yield where, tensor
        sparse = list(attribute.sparse_tensors) + ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else [])
        for item in sparse:
            yield where, item.values
            yield where, item.indices


def _graphs(model):
    """The main graph and every subgraph (If / Loop / Scan bodies), depth first."""
    stack = [("the main graph", model.graph)]
    functions = [node for function in model.functions for node in function.node]
    seen_function_nodes = False
    while stack:
        place, graph = stack.pop()
        yield place, graph
        nodes = list(graph.node)
        if not seen_function_nodes:
            nodes += functions
            seen_function_nodes = True
        for node in nodes:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    stack.append((f"a subgraph of node '{node.name or node.op_type}'", attribute.g))
                for sub in attribute.graphs:
                    stack.append((f"a subgraph of node '{node.name or node.op_type}'", sub))


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - the test extra installs it
        raise ImportError(f"The ONNX backend needs onnxruntime: {INSTALL_HINT}.") from e
    return onnxruntime


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def output_names(pooling: str) -> Tuple[str, ...]:
    return ("cls",) if pooling == "cls" else ("cls", "features")


# ---------------------------------------------------------------------------- graph tools


def fuse_graph(source: Path, target: Path, transformer) -> bool:
    """ONNX Runtime's transformer optimizer: fused attention, layer norm and GELU
    kernels. Returns False (and copies the graph) for encoders it does not know."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = transformer.config
    model_type = getattr(config, "model_type", "bert")
    if model_type not in ("bert", "roberta", "xlm-roberta", "electra", "camembert", "mpnet"):
        target.write_bytes(source.read_bytes())
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
            use_gpu=False,
        )
    optimized.save_model_to_file(str(target))
    return True


@dataclass(frozen=True)
class Int8Recipe:
    """What ONNX Runtime's dynamic int8 quantisation leaves in float32.

    `embeddings`: quantise the embedding tables (Gather, EmbedLayerNormalization) too.
    `fp32_layers`: encoder layers (0 is the first; -1 the last) that stay float32.
    Which layers move the labels most depends on the model: `optimize --int8
    --calibrate TEXTS` measures it (models/int8_calibration.py)."""

    embeddings: bool = True
    fp32_layers: Tuple[int, ...] = ()

    def layers(self, n_layers: int) -> Tuple[int, ...]:
        """`fp32_layers` as indices from 0, sorted; refuses ones the encoder lacks."""
        bad = [k for k in self.fp32_layers if not -n_layers <= k < n_layers]
        if bad:
            raise ValueError(
                f"fp32_layers {list(self.fp32_layers)}: the encoder has {n_layers} layers "
                f"(0 to {n_layers - 1}, or -1 for the last); {bad} is not one of them."
            )
        return tuple(sorted({k % n_layers for k in self.fp32_layers}))

    def describe(self) -> str:
        kept = []
        if not self.embeddings:
            kept.append("embeddings")
        if self.fp32_layers:
            names = ", ".join(str(k) for k in self.fp32_layers)
            kept.append(f"layer{'s' if len(self.fp32_layers) > 1 else ''} {names}")
        return "int8" + (f" ({' and '.join(kept)} in float32)" if kept else " (everything)")


QUANTIZED_LAYER_OPS = ("MatMul", "Attention")
EMBEDDING_OPS = ("Gather", "EmbedLayerNormalization")


def quantize_graph(source: Path, target: Path, recipe: Int8Recipe = Int8Recipe(), n_layers: int = 0) -> None:
    """ONNX Runtime's dynamic int8 quantisation: int8 weights (one scale per output
    channel), activations quantised per batch at run time (no calibration data needed).
    Per channel rather than per tensor: on SST-2 dev with all-MiniLM-L6-v2 it kept the
    torch label on 97.8% of texts instead of 95.2% (benchmarks/results/onnx.md).
    `recipe` says what stays float32; `n_layers` is the encoder's depth (needed for
    `fp32_layers`)."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = list(QUANTIZED_LAYER_OPS) + (list(EMBEDDING_OPS) if recipe.embeddings else [])
    exclude: List[str] = []
    if recipe.fp32_layers:
        kept = set(recipe.layers(n_layers))
        layers = node_layers(onnx.load(str(source), load_external_data=False), n_layers)
        exclude = [name for name, layer in layers.items() if layer in kept]
    # The fused operators (com.microsoft domain) defeat ONNX shape inference: their
    # outputs are float32, which the quantiser is told instead of guessing. For the
    # same reason ONNX Runtime's quantisation pre-processing (shape inference, then its
    # own optimisation, done here already by fuse_graph) does not apply, and its advice
    # to run it, logged on the root logger, is kept from the user.
    with _without_root_log_messages(PRE_PROCESSING_ADVICE):
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=op_types, nodes_to_exclude=exclude,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )


_LAYER_NAME = re.compile(r"(?:^|/)layer\.(\d+)/")


def node_layers(model, n_layers: int) -> Dict[str, int]:
    """The encoder layer of each MatMul and Attention node in an exported graph. The exporter names nodes after the module that ran them
    (`/layer.3/intermediate/dense/MatMul`); fused nodes (`Attention_2`) and the
    [CLS]-only last layer's nodes carry no layer number, so a node belongs to the first
    layer whose last named node does not come before it in the graph's (topological)
    order, and nodes after layer n_layers - 2's last one to the last layer."""
    nodes = list(model.graph.node)
    last_index: Dict[int, int] = {}
    for index, node in enumerate(nodes):
        match = _LAYER_NAME.search(node.name)
        if match:
            last_index[int(match.group(1))] = index
    if n_layers < 1 or any(layer not in last_index for layer in range(n_layers - 1)):
        raise ValueError(
            f"The graph's node names do not show its {n_layers} encoder layers "
            f"(named layers: {sorted(last_index)}), so no layer can be kept in float32; "
            f"quantise every layer (no fp32_layers)."
        )
    bounds = [last_index[layer] for layer in range(n_layers - 1)]
    layers: Dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.op_type in QUANTIZED_LAYER_OPS:
            layers[node.name] = next((k for k, bound in enumerate(bounds) if index <= bound), n_layers - 1)
    return layers


PRE_PROCESSING_ADVICE = "pre-processing before quantization"


@contextmanager
def _without_root_log_messages(fragment: str):
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return fragment not in record.getMessage()

    drop = _Drop()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


# ---------------------------------------------------------------------------- runtime


@dataclass
class OnnxEncoderSession:
    """An ONNX Runtime session over the encoder graph, checked on creation."""

    session: object
    outputs: Tuple[str, ...]

    def run(self, input_ids: numpy.ndarray, attention_mask: numpy.ndarray) -> List[numpy.ndarray]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run(list(self.outputs), feed)


def default_threads() -> int:
    """As many threads as torch uses (OMP_NUM_THREADS or the physical cores), so that
    one setting governs both backends, and no more than the CPUs this process may use
    (affinity and cgroup quota)."""
    import torch

    from ..cpus import cap_torch_threads

    cap_torch_threads()
    return max(1, torch.get_num_threads())


def open_session(
    graph: bytes, *, expected_sha256: Optional[str], pooling: str, threads: int, where: str
) -> OnnxEncoderSession:
    """Check `graph` against its recorded sha256 and the outputs the pooling needs,
    then load it on the CPU. `where` names the graph's origin in error messages."""
    fix = "Run `python -m spacy_cls optimize` on the original (torch) pipeline again."
    if not graph:
        raise OnnxGraphError(f"The ONNX graph {where} is missing or empty. {fix}")
    if expected_sha256 and sha256(graph) != expected_sha256:
        raise OnnxGraphError(
            f"The ONNX graph {where} does not match the sha256 recorded in the pipeline's "
            f"config (the file was changed, truncated or replaced after optimize wrote it). {fix}"
        )
    check_graph(graph, where)
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads > 0 else default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind error types
        raise OnnxGraphError(f"ONNX Runtime cannot load the graph {where}: {e}. {fix}") from e
    wanted = output_names(pooling)
    inputs = sorted(node.name for node in session.get_inputs())
    outputs = {node.name for node in session.get_outputs()}
    if inputs != sorted(INPUT_NAMES) or not set(wanted) <= outputs:
        raise OnnxGraphError(
            f"The ONNX graph {where} is not a spacy_cls encoder graph for pooling='{pooling}' "
            f"(inputs {inputs}, outputs {sorted(outputs)}; expected inputs {sorted(INPUT_NAMES)} "
            f"and outputs {list(wanted)}). {fix}"
        )
    return OnnxEncoderSession(session, wanted)


def save_tokenizer(tokenizer) -> Dict[str, bytes]:
    """The tokenizer's files, as Hugging Face's save_pretrained writes them."""
    with tempfile.TemporaryDirectory(prefix="spacy_cls_tok_") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def check_tokenizer_files(files: Dict[str, bytes]) -> None:
    """The checks of the torch path's saved tokenizer (`saved_checks`): plain file
    names of tokenizer files, no code, no settings that point at other files, and
    no file larger than a tokenizer needs."""
    from .tokenizer_checks import check_file_name, check_tokenizer_json, refuse
    from .size_checks import check_tokenizer_file_size

    if not isinstance(files, dict):
        raise refuse(f"its tokenizer entry is a {type(files).__name__}, where optimize saves a mapping of files")
    for name, data in files.items():
        check_file_name(name)
        if not isinstance(data, bytes):
            raise refuse(f"the tokenizer file '{name}' is a {type(data).__name__}, where optimize saves bytes")
        check_tokenizer_file_size(name, len(data), None, refuse)
        if name.endswith(".json"):
            check_tokenizer_json(name, data)


def load_tokenizer(files: Dict[str, bytes]):
    """A tokenizer from saved files, checked first (data only: no remote code is
    allowed to run, and nothing is read from outside the temporary folder)."""
    from transformers import AutoTokenizer

    if not files:
        raise OnnxGraphError("The ONNX encoder has no saved tokenizer. Run `python -m spacy_cls optimize` again.")
    check_tokenizer_files(files)
    with tempfile.TemporaryDirectory(prefix="spacy_cls_tok_") as tmp:
        root = Path(tmp).resolve()
        for name, data in files.items():
            path = (root / name).resolve()
            if path.parent != root:  # check_file_name already refused such names
                raise OnnxGraphError(f"Refusing a tokenizer file name {name!r} that leaves its folder.")
            path.write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp, trust_remote_code=False, local_files_only=True)
