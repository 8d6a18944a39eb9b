"""Which encoder layers int8 quantisation should leave in float32, measured on sample
texts: the labels of the int8 graph are compared with the float32 graph's, first with
one layer quantised at a time (each layer's sensitivity), then with every layer
quantised but the most sensitive ones, adding layers to the float32 set, most
sensitive first, until the labels agree on `target` percent of the texts.

One layer's rounding moves labels far more than another's, and which one depends on
the model (with all-MiniLM-L6-v2 fine-tuned on SST-2 the first two layers account for
most of the flips, the last almost none: benchmarks/results/roofline.md), so the
choice is measured rather than fixed."""
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy

from .onnx import Int8Recipe, quantize_graph, require_onnxruntime

# (input_ids, attention_mask) of one batch
Feed = Tuple[numpy.ndarray, numpy.ndarray]


@dataclass
class CalibrationReport:
    """What the calibration measured, in percent of the sample's texts."""

    n_texts: int
    target: float
    # layer -> labels agreeing with float32 when that layer alone is int8
    sensitivity: Dict[int, float] = field(default_factory=dict)
    # (float32 layers, agreement with every other layer int8), in the order tried
    tried: List[Tuple[Tuple[int, ...], float]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return bool(self.tried) and self.tried[-1][1] >= self.target

    def summary(self) -> str:
        kept, agreement = self.tried[-1]
        kept_text = ", ".join(str(k) for k in kept) if kept else "none"
        return (f"int8 calibration on {self.n_texts} texts: layers kept in float32: {kept_text}; "
                f"same labels as float32 on {agreement:.2f}% (target {self.target}%"
                f"{'' if self.reached else ', not reached'})")


def calibrate_fp32_layers(
    float_graph: Path,
    n_layers: int,
    feeds: Sequence[Feed],
    labels_of: Callable[[List[numpy.ndarray]], numpy.ndarray],
    *,
    base: Int8Recipe = Int8Recipe(),
    target: float = 99.5,
    max_fp32_layers: int = -1,
    threads: int = 0,
) -> Tuple[Int8Recipe, CalibrationReport]:
    """The recipe (`base` with its fp32_layers chosen) and what was measured.
    `labels_of` maps a batch's graph outputs to one row of labels per text (a 1-d array
    for one label a text, 2-d for label sets). `max_fp32_layers` < 0: no limit."""
    if not feeds:
        raise ValueError("int8 calibration needs at least one text.")
    if not 0 < target <= 100:
        raise ValueError(f"The agreement target is a percentage: {target} is not in (0, 100].")
    limit = n_layers if max_fp32_layers < 0 else min(max_fp32_layers, n_layers)
    reference = _labels(float_graph.read_bytes(), feeds, labels_of, threads)
    report = CalibrationReport(n_texts=len(reference), target=target)
    with tempfile.TemporaryDirectory(prefix="spacy_cls_int8_") as tmp:
        def agreement(kept: Tuple[int, ...]) -> float:
            path = Path(tmp) / "int8.onnx"
            quantize_graph(float_graph, path, replace(base, fp32_layers=kept), n_layers=n_layers)
            labels = _labels(path.read_bytes(), feeds, labels_of, threads)
            same = (labels == reference) if labels.ndim == 1 else (labels == reference).all(axis=1)
            return 100.0 * float(same.mean())

        all_but = lambda layer: tuple(k for k in range(n_layers) if k != layer)  # noqa: E731
        kept: Tuple[int, ...] = ()
        report.tried.append((kept, agreement(kept)))
        if report.tried[-1][1] < target and limit > 0:
            report.sensitivity = {layer: agreement(all_but(layer)) for layer in range(n_layers)}
            order = sorted(report.sensitivity, key=lambda layer: (report.sensitivity[layer], layer))
            for layer in order[:limit]:
                kept = tuple(sorted(kept + (layer,)))
                report.tried.append((kept, agreement(kept)))
                if report.tried[-1][1] >= target:
                    break
    return replace(base, fp32_layers=kept), report


def _labels(graph: bytes, feeds: Sequence[Feed], labels_of, threads: int) -> numpy.ndarray:
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
    outputs = [output.name for output in session.get_outputs()]
    rows = [labels_of(session.run(outputs, {"input_ids": ids, "attention_mask": mask})) for ids, mask in feeds]
    return numpy.concatenate(rows)
