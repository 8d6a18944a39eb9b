"""A thinc layer that runs an optimized encoder graph on ONNX Runtime (CPU) and returns
the same ``EncoderOutput`` as ``HFClsEncoder``: per doc, the last-layer [CLS] row and
the pooled features, so the component and its head work unchanged.

It tokenises, splits long texts into windows and groups rows by length exactly as the
torch layer does (``windows``), and runs each group through the graph. It predicts
only: an update raises, since the graph holds no trainable weights.

The graph is the layer's data (``OnnxShim``): inside the model's bytes for
``to_bytes``, and a file of its own beside the component's ``model`` file on disk
(``graph_beside_model``), checked against the sha256 in the config when loaded.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy
import srsly
from spacy.tokens import Doc
from thinc.api import Model
from thinc.shims import Shim

from ..models.folder_checks import max_file_bytes
from ..models.onnx import (
    GRAPH_FILE,
    OnnxEncoderSession,
    OnnxGraphError,
    check_tokenizer_files,
    default_threads,
    load_tokenizer,
    open_session,
    save_tokenizer,
)
from ..models.safe_load import check_component_folder
from .encoder import CPU_PASS_COST_PER_THREAD, EncoderOutput, _note_cut_docs
from .pooling import check_pooling, pooled_width
from .windows import check_policy, encode_texts, length_sorted_parts

LAYER_NAME = "onnx_cls_encoder"


class OnnxTrainingError(ValueError):
    pass


TRAINING_REFUSED = (
    "This pipeline's encoder runs an ONNX Runtime graph written by `python -m spacy_cls "
    "optimize`, which can only predict. Train (or fine-tune) the original torch pipeline "
    "instead, then run `python -m spacy_cls optimize` on the result again."
)


class OnnxShim(Shim):
    """The graph, the tokenizer and the live ONNX Runtime session of one layer.
    Its ``cfg`` holds the settings from the pipeline's config, never saved with the
    weights, so that config overrides at load time apply."""

    def __init__(self, settings: Dict):
        super().__init__(None, config=dict(settings))
        self.graph: bytes = b""
        self.tokenizer_files: Dict[str, bytes] = {}
        self.tokenizer = None
        self.session: Optional[OnnxEncoderSession] = None
        # Set by graph_beside_model: where the graph lives on disk, and whether
        # to_bytes leaves it out (it is written to that file instead).
        self.graph_file: Optional[Path] = None
        self.graph_outside = False

    @property
    def ready(self) -> bool:
        """Whether a graph is loaded (the shim wraps no torch model: `_model` is None)."""
        return self.session is not None

    def load(self, graph: bytes, tokenizer_files: Dict[str, bytes], where: str) -> None:
        session = self._open(graph, where)
        tokenizer = load_tokenizer(tokenizer_files)
        self.graph, self.tokenizer_files, self.tokenizer, self.session = graph, dict(tokenizer_files), tokenizer, session

    def set_tokenizer(self, tokenizer) -> None:
        self.tokenizer_files = save_tokenizer(tokenizer)
        self.tokenizer = tokenizer

    def to_bytes(self) -> bytes:
        graph = None if self.graph_outside else self.graph
        return srsly.msgpack_dumps({"graph": graph, "tokenizer": self.tokenizer_files})

    def from_bytes(self, bytes_data: bytes) -> "OnnxShim":
        try:
            msg = srsly.msgpack_loads(bytes_data)
        except Exception:  # msgpack raises several unrelated types for bad bytes
            msg = None
        if not isinstance(msg, dict) or "tokenizer" not in msg:
            raise OnnxGraphError(
                "The ONNX encoder's saved bytes are not what optimize writes. Run `python -m "
                "spacy_cls optimize` on the original (torch) pipeline again."
            )
        # Checked before the graph is even read: the same checks as the torch path's.
        check_tokenizer_files(msg["tokenizer"] or {})
        graph = msg.get("graph")
        where = "saved in the model's bytes"
        if graph is not None and not isinstance(graph, bytes):
            raise OnnxGraphError(f"The ONNX graph {where} is a {type(graph).__name__}, not bytes. Run `python -m spacy_cls optimize` again.")
        if graph is None:
            if self.graph_file is None:
                raise OnnxGraphError(
                    f"The model was saved with its ONNX graph in a separate {GRAPH_FILE} file: "
                    f"load it from its folder (spacy.load or from_disk), not from bytes."
                )
            where = str(self.graph_file)
            try:
                check_graph_file(self.graph_file)
                graph = self.graph_file.read_bytes()
            except OSError as e:
                raise OnnxGraphError(
                    f"Cannot read the ONNX graph {where} ({e.strerror or e}). Run `python -m "
                    f"spacy_cls optimize` on the original (torch) pipeline again."
                ) from e
        self.load(graph, msg.get("tokenizer") or {}, where)
        return self

    def __getstate__(self) -> Dict:
        # An ONNX Runtime session cannot be pickled or deep-copied (spaCy copies
        # sourced components): copies open their own from the graph.
        state = dict(self.__dict__)
        state["session"] = None
        return state

    def __setstate__(self, state: Dict) -> None:
        self.__dict__.update(state)
        if self.graph:
            self.session = self._open(self.graph, "copied in memory")

    def _open(self, graph: bytes, where: str) -> OnnxEncoderSession:
        return open_session(
            graph,
            expected_sha256=self.cfg.get("sha256"),
            pooling=self.cfg["pooling"],
            threads=int(self.cfg.get("threads") or 0),
            where=where,
        )

    def to_device(self, device_type: str, device_id: int) -> None:
        # ONNX Runtime runs here on the CPU provider; on a GPU the head moves and the
        # encoder's outputs are copied to it (the torch pipeline is the GPU path).
        return None

    def __call__(self, inputs, is_train: bool):
        raise OnnxTrainingError(TRAINING_REFUSED)


def OnnxClsEncoder(
    pooling: str,
    max_length: int,
    hidden_width: int,
    sha256: str,
    long_text: str = "truncate",
    stride: int = 128,
    max_windows: Optional[int] = 16,
    sub_batch_size: int = 0,
    threads: int = 0,
    int8: bool = False,
) -> Model[List[Doc], EncoderOutput]:
    check_pooling(pooling)
    check_policy(long_text, max_length, stride, max_windows)
    if sub_batch_size < 0:
        raise ValueError(f"sub_batch_size={sub_batch_size}: use 0 for no cap, or the most rows a pass may hold.")
    if threads < 0:
        raise ValueError(f"threads={threads}: use 0 for as many as torch uses, or a number of threads.")
    settings = dict(
        pooling=pooling, max_length=max_length, long_text=long_text, stride=stride, max_windows=max_windows,
        sub_batch_size=sub_batch_size, threads=threads, int8=int8, sha256=sha256,
    )
    return Model(
        LAYER_NAME,
        forward,
        init=init,
        shims=[OnnxShim(settings)],
        dims={"nO": pooled_width(hidden_width, pooling), "nI": hidden_width},
        # What _note_cut_docs reads; refreshed from the shim's settings on each call.
        attrs={"pooling": pooling, "max_length": max_length, "long_text": long_text, "max_windows": max_windows},
    )


def init(model: Model, X=None, Y=None) -> None:
    # Initialising is the start of training (and would reset the trained head).
    raise OnnxTrainingError(
        "An ONNX encoder cannot be initialised: it only loads the graph that `python -m "
        "spacy_cls optimize` writes into a trained pipeline. " + TRAINING_REFUSED
    )


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[EncoderOutput, Callable]:
    if is_train:
        raise OnnxTrainingError(TRAINING_REFUSED)
    shim: OnnxShim = model.shims[0]
    if shim.session is None:
        raise OnnxGraphError("The ONNX encoder has no graph loaded: load an optimized pipeline with spacy.load.")
    settings = shim.cfg
    model.attrs.update({key: settings[key] for key in ("long_text", "max_windows")})
    cls, features = _run(model, shim, [doc.text for doc in docs])
    ops = model.ops
    return EncoderOutput(cls=ops.asarray2f(cls), features=ops.asarray2f(features)), lambda d: docs


def _run(model: Model, shim: OnnxShim, texts: List[str]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    settings = shim.cfg
    width, pooled = model.get_dim("nI"), model.get_dim("nO")
    if not texts:
        return numpy.zeros((0, width), "float32"), numpy.zeros((0, pooled), "float32")
    batch = encode_texts(
        shim.tokenizer, texts, settings["max_length"], settings["long_text"], settings["stride"], settings["max_windows"]
    )
    _note_cut_docs(model, batch)
    threads = int(settings["threads"] or 0) or default_threads()
    parts = length_sorted_parts(batch, settings["sub_batch_size"], CPU_PASS_COST_PER_THREAD * threads)
    n_rows = len(batch.doc_index)
    cls_rows = numpy.empty((n_rows, width), "float32")
    pooled_rows = None if settings["pooling"] == "cls" else numpy.empty((n_rows, pooled), "float32")
    for rows in parts:
        mask = batch.attention_mask[rows]
        length = int(mask.sum(axis=1).max())
        outputs = shim.session.run(
            numpy.ascontiguousarray(batch.input_ids[rows, :length]), numpy.ascontiguousarray(mask[:, :length])
        )
        cls_rows[rows] = outputs[0]
        if pooled_rows is not None:
            pooled_rows[rows] = outputs[1]
    cls = _average_windows(cls_rows, batch.doc_index, batch.n_docs)
    features = cls.copy() if pooled_rows is None else _average_windows(pooled_rows, batch.doc_index, batch.n_docs)
    return cls, features


def _average_windows(rows: numpy.ndarray, doc_index: numpy.ndarray, n_docs: int) -> numpy.ndarray:
    if rows.shape[0] == n_docs:
        return rows
    sums = numpy.zeros((n_docs, rows.shape[1]), dtype=rows.dtype)
    numpy.add.at(sums, doc_index, rows)
    counts = numpy.maximum(numpy.bincount(doc_index, minlength=n_docs), 1).astype(rows.dtype)
    return sums / counts[:, None]


def check_graph_file(graph_file: Path) -> None:
    """A graph file is read whole: refuse one that is not a regular file, or larger
    than a model of the allowed size, by its apparent size."""
    import stat

    info = graph_file.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise OnnxGraphError(
            f"The ONNX graph {graph_file} is not a regular file (a link, FIFO or device). Run "
            f"`python -m spacy_cls optimize` on the original (torch) pipeline again."
        )
    if info.st_size > max_file_bytes():
        raise OnnxGraphError(
            f"The ONNX graph {graph_file} is {info.st_size:,} bytes, more than a model of the allowed "
            f"size needs (raise SPACY_CLS_MAX_PARAMETERS if you trust it)."
        )


def is_onnx_encoder(model: Optional[Model]) -> bool:
    return model is not None and model.name == LAYER_NAME


class OnnxAttentionError(ValueError):
    pass


# Where optimize records the pipeline it was given, in the copy's meta.json.
META_KEY = "spacy_cls"
SOURCE_KEY = "optimized_from"


def refuse_attention(component_name: str, meta: Optional[Dict] = None) -> OnnxAttentionError:
    """What explaining an optimized component says: its graph has no attention outputs."""
    source = ((meta or {}).get(META_KEY) or {}).get(SOURCE_KEY)
    original = f"the original pipeline it was made from ({source})" if source else \
        "the original (torch) pipeline that optimize was given"
    return OnnxAttentionError(
        f"The component '{component_name}' runs an ONNX Runtime graph written by `python -m spacy_cls "
        f"optimize`, which returns the [CLS] rows only, not the attention weights explain shows. "
        f"Run explain on {original}: it gives the same cats."
    )


@contextmanager
def graph_beside_model(encoder: Optional[Model], path, *, saving: bool) -> Iterator[None]:
    """Around a component's to_disk / from_disk: the graph goes to (or comes from)
    ``GRAPH_FILE`` in the component's folder instead of the ``model`` file, so that it
    can be inspected with ONNX tools, and a bad file is named in the error."""
    if not saving:
        check_component_folder(path)
    if not is_onnx_encoder(encoder):
        yield
        return
    shim: OnnxShim = encoder.shims[0]
    graph_file = Path(path) / GRAPH_FILE
    shim.graph_file, shim.graph_outside = graph_file, saving
    try:
        yield
        if saving:
            graph_file.write_bytes(shim.graph)
    finally:
        shim.graph_file, shim.graph_outside = None, False
