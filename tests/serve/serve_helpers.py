"""Helpers the service tests share: a server in a thread of the test process, a
served pipeline that a test can hold back (to fill the queue or time a request out),
what nlp.pipe answers, and bounded concurrent clients."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import httpx
import numpy
import spacy

from spacy_cls.pipeline.attrs import CLS_LABELS, CLS_UNCERTAINTY, CLS_VECTOR
from spacy_cls.serve import ServeSettings
from spacy_cls.serve.runner import BackgroundServer
from spacy_cls.serve.served import ServedPipeline

TEXTS = [
    "i love this movie, it was great",
    "the food was awful and the staff rude",
    "",
    "ok",
    "the hotel was nice and clean but the room was dirty and the price too high " * 6,  # over max_length: truncated
    "这家酒店的服务非常好",
    "really good service, very friendly",
    "  spaces   and\ttabs\n",
]


class GatedPipeline(ServedPipeline):
    """A served pipeline whose batches wait for `gate` (set: run at once) and that
    records the texts of every batch it ran."""

    def __init__(self, nlp, source="") -> None:
        super().__init__(nlp, source)
        self.gate = threading.Event()
        self.gate.set()
        self.batches: List[List[str]] = []
        self.delay = 0.0

    def classify(self, texts, vectors):
        if not self.gate.wait(30):
            raise RuntimeError("the test never opened the gate")
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(list(texts))
        return super().classify(texts, vectors)


def start(pipeline=None, served: Optional[ServedPipeline] = None, **settings) -> BackgroundServer:
    settings.setdefault("port", 0)
    settings.setdefault("warmup_texts", 1)
    return BackgroundServer(pipeline, ServeSettings(**settings), served=served).wait_ready(120)


def expected(nlp, texts, vectors: bool = True) -> List[Dict[str, dict]]:
    """What the service must answer for `texts`, from nlp.pipe, per cls component."""
    names = [name for name, pipe in nlp.pipeline if getattr(pipe, "gives_cls_vectors", False)]
    out: List[Dict[str, dict]] = [{} for _ in texts]
    for name in names:
        with nlp.select_pipes(enable=[name]):
            labels = list(nlp.get_pipe(name).labels)
            for row, doc in zip(out, nlp.pipe(texts)):
                row[name] = {"cats": {label: doc.cats[label] for label in labels},
                             "labels": list(doc._.get(CLS_LABELS)),
                             "uncertainty": doc._.get(CLS_UNCERTAINTY),
                             "vector": list(map(float, doc._.get(CLS_VECTOR))) if vectors else None}
    return out


def assert_same(got: Dict[str, dict], want: Dict[str, dict], atol: float = 1e-5) -> None:
    assert set(got) == set(want)
    for name in want:
        g, w = got[name], want[name]
        assert list(g["cats"]) == list(w["cats"])
        numpy.testing.assert_allclose(list(g["cats"].values()), list(w["cats"].values()), atol=atol)
        assert g["labels"] == w["labels"]
        assert abs(g["uncertainty"] - w["uncertainty"]) <= atol
        if w["vector"] is not None:
            numpy.testing.assert_allclose(g["vector"], w["vector"], atol=1e-4)
        else:
            assert g.get("vector") is None


def post_many(url: str, bodies: List[dict], concurrency: int = 16, timeout: float = 60.0) -> List[httpx.Response]:
    """POST each body to /v1/classify from `concurrency` threads; returns the responses in order."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=timeout, limits=limits) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda body: client.post("/v1/classify", json=body), bodies))


def load(path) -> "spacy.language.Language":
    return spacy.load(path)
