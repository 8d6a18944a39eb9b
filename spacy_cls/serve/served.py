"""The pipeline behind the service: loaded once, it counts each text's word pieces
(what a batch's budget is made of) and classifies a batch of texts, answering per
text and per classifier component with what the components wrote on the docs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..cpus import default_threads
from ..pipeline.attrs import CLS_LABELS, CLS_UNCERTAINTY, CLS_VECTOR


@dataclass
class Outcome:
    """One text's answer: `result` (per component) or `error` (why it was not classified)."""
    result: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


class ServedPipeline:
    """`nlp` and what the service needs to know about it."""

    def __init__(self, nlp, name_or_path: Union[str, Path] = "") -> None:
        self.nlp = nlp
        self.source = str(name_or_path)
        self.components = [name for name, pipe in nlp.pipeline if getattr(pipe, "gives_cls_vectors", False)]
        if not self.components:
            raise ValueError(
                f"The pipeline {self.source or nlp.meta.get('name')} has no cls_classifier or "
                f"cls_classifier_multilabel component: serve a pipeline trained with spacy_cls.")
        self._pipes = [(name, pipe) for name, pipe in nlp.pipeline]
        first = nlp.get_pipe(self.components[0])
        encoder = first.encoder if first.model.has_ref("encoder") else None
        self._tokenizer, self._encoding = _tokenizer_of(encoder)
        self.max_length = int(self._encoding["max_length"]) if self._encoding else 512
        self.long_text = str(self._encoding.get("long_text", "truncate")) if self._encoding else "truncate"
        self.max_windows = self._encoding.get("max_windows") if self._encoding else None
        self._widths: Dict[str, int] = {}
        self.model_name = str(encoder.attrs.get("name")) if encoder is not None and "name" in encoder.attrs else None

    @classmethod
    def load(cls, name_or_path: Union[str, Path], *, check: bool = True, threads: Optional[int] = None) -> "ServedPipeline":
        import torch

        from ..models.safe_load import disable_checks_for_this_process, load_checked

        torch.set_num_threads(threads or default_threads())
        if not check:
            disable_checks_for_this_process()
        return cls(load_checked(name_or_path, check=check), name_or_path)

    def info(self) -> Dict[str, Any]:
        meta = self.nlp.meta
        return {
            "pipeline": {"name": f"{meta.get('lang', '')}_{meta.get('name', '')}", "version": meta.get("version"),
                         "lang": self.nlp.lang, "source": self.source},
            "components": [
                {"name": name, "factory": self.nlp.get_pipe_meta(name).factory,
                 "labels": list(self.nlp.get_pipe(name).labels),
                 "multilabel": bool(self.nlp.get_pipe(name).model.attrs.get("multi_label")),
                 "vector_width": self.vector_width(name)}
                for name in self.components
            ],
            "model": self.model_name,
            "max_length": self.max_length,
            "long_text": self.long_text,
            "max_windows": self.max_windows,
        }

    def vector_width(self, name: str) -> Optional[int]:
        """Width of the component's [CLS] vector (known once a text was classified)."""
        return self._widths.get(name)

    def word_pieces(self, text: str) -> int:
        """Word pieces the encoder will run for `text` (after truncation or windowing):
        the unit of a batch's budget."""
        if self._tokenizer is None:  # an encoder without its own tokenizer (a listener)
            return min(self.max_length, 2 + len(text) // 4)
        from ..layers.windows import encode_texts

        enc = self._encoding
        return encode_texts(self._tokenizer, [text], enc["max_length"], enc.get("long_text", "truncate"),
                            enc.get("stride", 128), enc.get("max_windows")).n_real_tokens

    def classify(self, texts: Sequence[str], vectors: Sequence[bool]) -> List[Outcome]:
        """Outcomes for `texts`, in order. A text spaCy cannot make a doc of gets its
        error; its neighbours are classified. A batch that fails as a whole is run
        again one text at a time, so that only the texts that fail get errors."""
        outcomes: List[Optional[Outcome]] = [None] * len(texts)
        docs, where = [], []
        for i, text in enumerate(texts):
            try:
                docs.append(self.nlp.make_doc(text))
                where.append(i)
            except Exception as e:  # noqa: BLE001  (reported for that text only)
                outcomes[i] = Outcome(error=_reason(e))
        try:
            results = self._run(docs, [vectors[i] for i in where])
        except Exception:  # noqa: BLE001
            results = []
            for doc, i in zip(docs, where):
                try:
                    results.extend(self._run([doc], [vectors[i]]))
                except Exception as e:  # noqa: BLE001
                    results.append(Outcome(error=_reason(e)))
        for i, outcome in zip(where, results):
            outcomes[i] = outcome if isinstance(outcome, Outcome) else Outcome(result=outcome)
        return outcomes  # type: ignore[return-value]

    def _run(self, docs: List, vectors: List[bool]) -> List[Dict[str, Any]]:
        """What `nlp.pipe` does to the docs (every component in order, one batch), with
        each classifier's decision read right after it ran (components share doc.cats
        and the decision attributes, so a later one would overwrite them)."""
        answers: List[Dict[str, Any]] = [{} for _ in docs]
        if not docs:
            return answers
        for name, proc in self._pipes:
            if hasattr(proc, "pipe"):
                docs = list(proc.pipe(docs, batch_size=len(docs)))
            else:
                docs = [proc(doc) for doc in docs]
            if name not in self.components:
                continue
            labels = list(self.nlp.get_pipe(name).labels)
            for answer, doc, want_vector in zip(answers, docs, vectors):
                one = {
                    "cats": {label: float(doc.cats[label]) for label in labels},
                    "labels": list(doc._.get(CLS_LABELS) or []),
                    "uncertainty": _number(doc._.get(CLS_UNCERTAINTY)),
                }
                if want_vector:
                    one["vector"] = [float(x) for x in doc._.get(CLS_VECTOR)]
                    self._widths[name] = len(one["vector"])
                answer[name] = one
        return answers


def _number(value) -> Optional[float]:
    return None if value is None else float(value)


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeError):
        return ("the text cannot be encoded as UTF-8 (it holds a lone surrogate code point such as \\ud800): "
                "send valid Unicode, or serve a pipeline whose tokenizer is spacy_cls.SurrogateSafeTokenizer.v1")
    return f"{type(error).__name__}: {error}"


def _tokenizer_of(encoder) -> tuple:
    """The encoder's Hugging Face tokenizer and its length settings, or (None, None)."""
    if encoder is None:
        return None, None
    if encoder.name == "onnx_cls_encoder":
        shim = encoder.shims[0]
        return shim.tokenizer, dict(shim.cfg)
    if encoder.name == "hf_cls_encoder":
        from ..layers.encoder import get_hf

        return get_hf(encoder).tokenizer, dict(encoder.attrs)
    return None, None
