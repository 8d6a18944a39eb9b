"""The one step both engines run: a batch of normalised rows in, plain columns out.

`Predictor` loads a saved pipeline once, from its path, and is what the local
engine calls and what each Ray actor holds. It returns Arrow columns, never Docs.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy
import pyarrow as pa
from spacy.tokens import Doc

from ..data.fingerprint import encoder_fingerprint
from . import inputs

SCORE_PREFIX = "score_"
VECTOR = "cls_vector"
CUT = inputs.CUT
CUT_WARNING = r"\[spacy_cls\] .* (were cut|was cut)"
# The output's own columns, which a carried input column may not be named.
RESERVED = ("id", "label", "labels", VECTOR, "reason")
# Components whose cost stays linear in a doc's length: a text over nlp.max_length
# is still classified when the pipeline has no others (the classifier reads word
# pieces under its long-text policy, not spaCy's parse).
LONG_TEXT_SAFE = ("cls_classifier", "cls_classifier_multilabel", "transformer", "sentencizer")


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
        # Which encoder made the vectors, for the part files' metadata (VectorCorpus checks it).
        self.encoder = json.dumps(encoder_fingerprint(self.nlp, self.component_name)) if vectors else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.predict(batch)

    def predict(self, batch: pa.Table) -> pa.Table:
        from ..pipeline.attrs import CLS_VECTOR

        problems = batch.column(inputs.PROBLEM).to_pylist()
        texts = batch.column(inputs.TEXT).to_pylist()
        todo = [i for i, problem in enumerate(problems) if problem is None]
        scores = numpy.full((batch.num_rows, len(self.labels)), numpy.nan, dtype=numpy.float32)
        vectors: List[Optional[numpy.ndarray]] = [None] * batch.num_rows
        cut_before = self._n_cut()
        with warnings.catch_warnings():
            # Counted instead (CUT), and said once by the command at the end.
            warnings.filterwarnings("ignore", message=CUT_WARNING)
            results = classify_texts(self.nlp, [texts[i] for i in todo], self.batch_size)
        cut = self._n_cut() - cut_before
        keep = []
        for i, result in zip(todo, results):
            if isinstance(result, str):
                problems[i] = result
                continue
            keep.append(i)
            scores[i] = [result.cats[label] for label in self.labels]
            if self.vectors:
                vectors[i] = result._.get(CLS_VECTOR)
        batch = batch.set_column(batch.schema.get_field_index(inputs.PROBLEM), inputs.PROBLEM,
                                 pa.array(problems, pa.string()))
        out = self._columns(batch, keep, scores, vectors)
        # The docs this batch cut under the long-text policy, counted on its first row
        # so that any split of the batch into parts still adds up.
        counts = numpy.zeros(batch.num_rows, dtype=numpy.int64)
        if batch.num_rows:
            counts[0] = cut
        return out.append_column(CUT, pa.array(counts, pa.int64()))

    def _n_cut(self) -> int:
        return int(getattr(self.nlp.get_pipe(self.component_name), "n_cut_docs", 0) or 0)

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
        # The component's own decisions (decisions.apply.decide: what doc._.cls_labels holds)
        from ..decisions.apply import decide_labels, settings_of

        decided = decide_labels(scores, settings_of(self.nlp.get_pipe(self.component_name)))
        if self.multilabel:
            columns["labels"] = pa.array([d if ok[i] else None for i, d in enumerate(decided)], pa.list_(pa.string()))
        else:
            columns["label"] = pa.array([d[0] if ok[i] and d else None for i, d in enumerate(decided)], pa.string())
        for j, label in enumerate(self.labels):
            columns[SCORE_PREFIX + label] = pa.array(scores[:, j], pa.float32(), mask=mask)
        if self.vectors:
            columns[VECTOR] = vector_column(vectors, self.width)
            columns[inputs.ENCODER] = pa.array([self.encoder] * n, pa.string())
        for name in batch.column_names:
            if name.startswith(inputs.KEEP):
                columns[name[len(inputs.KEEP):]] = batch.column(name)
        columns[inputs.PROBLEM] = batch.column(inputs.PROBLEM)
        return pa.table(columns)


def classify_texts(nlp, texts: Sequence[str], batch_size: int) -> List[Union[Doc, str]]:
    """A Doc, or why there is none, for each text: one text never stops the others.

    A text over `nlp.max_length` (spaCy's E088) is classified when every component
    of the pipeline reads it in linear time (LONG_TEXT_SAFE), else rejected. A batch
    that fails is run again one doc at a time, so that only the docs that fail are
    rejected, each with the error it raised."""
    results: List[Union[Doc, str, None]] = [None] * len(texts)
    long_ok = all(_factory(nlp, name) in LONG_TEXT_SAFE for name in nlp.pipe_names)
    todo = []
    for i, text in enumerate(texts):
        if len(text) > nlp.max_length and not long_ok:
            others = [name for name in nlp.pipe_names if _factory(nlp, name) not in LONG_TEXT_SAFE]
            results[i] = (f"text of {len(text):,} characters is over the pipeline's max_length of "
                          f"{nlp.max_length:,} (spaCy E088), and its components {', '.join(others)} need "
                          f"that limit: split the text, or raise nlp.max_length in the pipeline")
        else:
            todo.append(i)
    for start in range(0, len(todo), max(batch_size, 1)):
        chunk = todo[start:start + batch_size]
        for i, result in zip(chunk, _pipe_chunk(nlp, [texts[i] for i in chunk], batch_size)):
            results[i] = result
    return results  # type: ignore[return-value]


def _pipe_chunk(nlp, texts: List[str], batch_size: int) -> List[Union[Doc, str]]:
    longest = max((len(t) for t in texts), default=0)
    limit = nlp.max_length
    nlp.max_length = max(limit, longest + 1)
    try:
        try:
            return list(nlp.pipe(texts, batch_size=batch_size))
        except Exception as e:  # noqa: BLE001  (one doc at a time finds which failed)
            if len(texts) == 1:
                return [_reason(e)]
            return [_one(nlp, text) for text in texts]
    finally:
        nlp.max_length = limit


def _one(nlp, text: str) -> Union[Doc, str]:
    try:
        return nlp(text)
    except Exception as e:  # noqa: BLE001
        return _reason(e)


def _reason(error: Exception) -> str:
    return f"the pipeline failed on this text: {type(error).__name__}: {_short(error)}"


def _short(error: Exception, limit: int = 300) -> str:
    message = inputs.writable(str(error)).replace("\n", " ")
    return message if len(message) <= limit else message[:limit] + "..."


def _factory(nlp, name: str) -> str:
    try:
        return nlp.get_pipe_meta(name).factory
    except (KeyError, ValueError):
        return name


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
