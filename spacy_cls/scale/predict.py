"""The one step both engines run: a batch of normalised rows in, plain columns out.

`Predictor` loads a saved pipeline once, from its path, and is what the local
engine calls and what each Ray actor holds. It returns Arrow columns, never Docs.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import numpy
import pyarrow as pa

from . import inputs

SCORE_PREFIX = "score_"
VECTOR = "cls_vector"


class Predictor:
    """Classify normalised rows (see `inputs.normalise`) with a saved pipeline.

    `num_threads`: torch threads (None: leave torch's setting). `use_gpu`: run on the
    first visible GPU (None: when torch sees one).
    """

    def __init__(self, pipeline_path: Union[str, Path], *, vectors: bool = False, batch_size: int = 64,
                 component: Optional[str] = None, num_threads: Optional[int] = None,
                 use_gpu: Optional[bool] = None) -> None:
        import spacy
        import torch

        import spacy_cls  # noqa: F401  (factories and the cls_vector extension)
        from ..models.safe_load import load_checked
        from ..pipeline.attrs import CLS_VECTOR

        if num_threads is not None:
            torch.set_num_threads(max(1, int(num_threads)))
        if use_gpu is None:
            use_gpu = torch.cuda.is_available()
        if use_gpu:
            spacy.require_gpu(0)
        self.nlp = load_checked(pipeline_path)  # the folder check, unless SPACY_CLS_CHECK_PIPELINES=0
        self.component_name = find_component(self.nlp, component)
        pipe = self.nlp.get_pipe(self.component_name)
        self.labels: List[str] = list(pipe.labels)
        self.multilabel = bool(pipe.model.attrs.get("multi_label"))
        self.threshold = float(pipe.cfg.get("threshold", 0.5))
        self.vectors = vectors
        self.batch_size = batch_size
        # Known before any batch, so that a batch of rejected rows has the same schema.
        self.width = len(self.nlp("")._.get(CLS_VECTOR)) if vectors else 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.predict(batch)

    def predict(self, batch: pa.Table) -> pa.Table:
        from ..pipeline.attrs import CLS_VECTOR

        problems = batch.column(inputs.PROBLEM).to_pylist()
        texts = batch.column(inputs.TEXT).to_pylist()
        keep = [i for i, problem in enumerate(problems) if problem is None]
        scores = numpy.full((batch.num_rows, len(self.labels)), numpy.nan, dtype=numpy.float32)
        vectors: List[Optional[numpy.ndarray]] = [None] * batch.num_rows
        docs = self.nlp.pipe((texts[i] for i in keep), batch_size=self.batch_size)
        for i, doc in zip(keep, docs):
            scores[i] = [doc.cats[label] for label in self.labels]
            if self.vectors:
                vectors[i] = doc._.get(CLS_VECTOR)
        return self._columns(batch, keep, scores, vectors)

    def _columns(self, batch: pa.Table, keep: List[int], scores: numpy.ndarray,
                 vectors: List[Optional[numpy.ndarray]]) -> pa.Table:
        n = batch.num_rows
        ok = numpy.zeros(n, dtype=bool)
        ok[keep] = True
        mask = ~ok
        columns = {
            inputs.SOURCE: batch.column(inputs.SOURCE),
            inputs.ROW: batch.column(inputs.ROW),
            "id": batch.column(inputs.ID),
        }
        if self.multilabel:
            chosen = [
                [label for label, s in zip(self.labels, row) if s >= self.threshold] if ok[i] else None
                for i, row in enumerate(scores)
            ]
            columns["labels"] = pa.array(chosen, pa.list_(pa.string()))
        else:
            best = scores.argmax(axis=1) if self.labels else numpy.zeros(n, dtype=int)
            columns["label"] = pa.array(
                [self.labels[j] if ok[i] and self.labels else None for i, j in enumerate(best)], pa.string()
            )
        for j, label in enumerate(self.labels):
            columns[SCORE_PREFIX + label] = pa.array(scores[:, j], pa.float32(), mask=mask)
        if self.vectors:
            columns[VECTOR] = vector_column(vectors, self.width)
        columns[inputs.PROBLEM] = batch.column(inputs.PROBLEM)
        return pa.table(columns)


def vector_column(vectors: List[Optional[numpy.ndarray]], width: int) -> pa.Array:
    """A fixed-size list of `width` float32 per row (null for rejected rows)."""
    flat = numpy.zeros((len(vectors), width), dtype=numpy.float32)
    for i, v in enumerate(vectors):
        if v is not None:
            flat[i] = numpy.asarray(v, dtype=numpy.float32)
    mask = pa.array([v is None for v in vectors])
    values = pa.array(flat.reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, width, mask=mask)


def find_component(nlp, name: Optional[str]) -> str:
    """The classifier to read: `name`, or the pipeline's only cls component."""
    found = [pipe_name for pipe_name, pipe in nlp.pipeline if getattr(pipe, "gives_cls_vectors", False)]
    if name is not None:
        if name not in found:
            raise ValueError(f"The pipeline has no cls classifier named '{name}'; it has: {', '.join(found) or 'none'}.")
        return name
    if len(found) != 1:
        raise ValueError(
            f"The pipeline has {len(found)} cls classifiers ({', '.join(found) or 'none'}): "
            f"{'name the one to use with --component' if found else 'give a pipeline with a cls_classifier or cls_classifier_multilabel'}."
        )
    return found[0]
