"""The service's Prometheus metrics, in a registry of their own (one per app, so two
services in one process, as in tests, keep separate counts)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics

# The *_created series double every counter's output and say nothing a scrape needs.
disable_created_metrics()

PREFIX = "spacy_cls"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DOC_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PIECE_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests answered, by endpoint and status code.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram(f"{PREFIX}_request_latency_seconds", "Time from a request's arrival to its answer.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_docs = Histogram(f"{PREFIX}_batch_docs", "Texts per batch run by the model.",
                                    buckets=DOC_BUCKETS, registry=r)
        self.batch_pieces = Histogram(f"{PREFIX}_batch_word_pieces", "Word pieces per batch run by the model.",
                                      buckets=PIECE_BUCKETS, registry=r)
        self.batch_seconds = Histogram(f"{PREFIX}_batch_seconds", "Time the model took per batch.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Texts waiting for a batch.", registry=r)
        self.rejections = Counter(f"{PREFIX}_rejections", "Requests refused, by reason.", ["reason"], registry=r)
        self.texts = Counter(f"{PREFIX}_texts", "Texts answered, by outcome (ok or error).", ["outcome"], registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the pipeline is loaded and warmed.", registry=r)

    def observe_batch(self, n_docs: int, n_pieces: int, seconds: float) -> None:
        self.batch_docs.observe(n_docs)
        self.batch_pieces.observe(n_pieces)
        self.batch_seconds.observe(seconds)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
