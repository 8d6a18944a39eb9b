"""The service on a real server on 127.0.0.1: answers equal nlp.pipe's, per component;
interleaved requests get their own rows; the queue pushes back with 429s and loses
nothing; timeouts, readiness, info and metrics."""
import random
import re
import threading
import time

import httpx
import pytest
import spacy

from spacy_cls.serve.app import WARMUP_TEXT

from serve_helpers import TEXTS, GatedPipeline, assert_same, expected, post_many, start


@pytest.fixture(scope="module")
def en_server(en_pipeline):
    server = start(en_pipeline, max_wait_ms=20)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def en_nlp(en_pipeline):
    return spacy.load(en_pipeline)


@pytest.fixture(scope="module")
def two_component_pipeline(en_pipeline, multilabel_pipeline, tmp_path_factory):
    sentiment, aspects = spacy.load(en_pipeline), spacy.load(multilabel_pipeline)
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", source=sentiment, name="sentiment")
    nlp.add_pipe("cls_classifier_multilabel", source=aspects, name="aspects")
    path = tmp_path_factory.mktemp("two") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.mark.parametrize("vectors", [True, False])
def test_answers_equal_nlp_pipe(en_server, en_nlp, vectors):
    r = httpx.post(en_server.url + "/v1/classify", json={"texts": TEXTS, "vectors": vectors}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] == 0 and [row["index"] for row in body["results"]] == list(range(len(TEXTS)))
    for row, want in zip(body["results"], expected(en_nlp, TEXTS, vectors)):
        assert_same(row["components"], want)


def test_a_single_text_as_a_string(en_server, en_nlp):
    r = httpx.post(en_server.url + "/v1/classify", json={"texts": TEXTS[0]}, timeout=30)
    assert r.status_code == 200
    assert_same(r.json()["results"][0]["components"], expected(en_nlp, TEXTS[:1], vectors=False)[0])


@pytest.mark.parametrize("which", ["multilabel", "two_components", "optimized"])
def test_other_pipelines_answer_as_nlp_pipe(which, multilabel_pipeline, two_component_pipeline, en_pipeline, tmp_path):
    if which == "multilabel":
        path = multilabel_pipeline
    elif which == "two_components":
        path = two_component_pipeline
    else:
        pytest.importorskip("onnxruntime")
        from spacy_cls.pipeline.optimize import optimize_to_disk

        path = tmp_path / "optimized"
        optimize_to_disk(en_pipeline, path)
    nlp = spacy.load(path)
    server = start(path)
    try:
        r = httpx.post(server.url + "/v1/classify", json={"texts": TEXTS, "vectors": True}, timeout=30)
        assert r.status_code == 200, r.text
        for row, want in zip(r.json()["results"], expected(nlp, TEXTS)):
            assert_same(row["components"], want, atol=1e-4)
        info = httpx.get(server.url + "/v1/info").json()
        assert [c["name"] for c in info["components"]] == [n for n, p in nlp.pipeline if hasattr(p, "gives_cls_vectors")]
        assert all(c["labels"] == list(nlp.get_pipe(c["name"]).labels) for c in info["components"])
    finally:
        server.stop()


def test_interleaved_requests_get_their_own_rows(en_pipeline, en_nlp):
    rng = random.Random(7)
    words = "good bad movie food service great terrible slow fast clean dirty nice".split()
    # Distinct texts, so a row that went to the wrong request would show.
    pool = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) + f" {i}" for i in range(120)]
    want = dict(zip(pool, expected(en_nlp, pool, vectors=False)))
    bodies, start_at = [], 0
    while start_at < len(pool):
        n = rng.randint(1, 7)
        bodies.append({"texts": pool[start_at:start_at + n]})
        start_at += n
    server = start(en_pipeline, max_wait_ms=30, max_batch_tokens=512, max_queue_ms=60_000)
    try:
        responses = post_many(server.url, bodies, concurrency=12)
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    for body, r in zip(bodies, responses):
        assert r.status_code == 200, r.text
        rows = r.json()["results"]
        assert len(rows) == len(body["texts"])
        for text, row in zip(body["texts"], rows):
            assert_same(row["components"], want[text])
    # Batches took texts of several requests, and none went over the budget.
    counts = _histogram(metrics, "spacy_cls_batch_docs")
    assert counts["sum"] == len(pool) and counts["count"] < len(bodies)
    pieces = _histogram(metrics, "spacy_cls_batch_word_pieces")
    assert pieces["le"]["512.0"] == pieces["count"]


def _histogram(text: str, name: str) -> dict:
    out = {"le": {}}
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket{{le="([^"]+)"}} (\S+)', line)
        if m:
            out["le"][m.group(1)] = float(m.group(2))
        elif line.startswith(f"{name}_sum "):
            out["sum"] = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            out["count"] = float(line.split()[1])
    return out


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _in_thread(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", fn()), daemon=True)
    thread.start()
    return thread, result


def test_queue_full_counts_texts_for_single_and_batched_requests(en_pipeline, en_nlp):
    served = GatedPipeline(spacy.load(en_pipeline), en_pipeline)
    server = start(served=served, max_queue_texts=8, max_texts_per_request=8, max_wait_ms=0, max_queue_ms=60_000)
    url = server.url + "/v1/classify"
    try:
        served.gate.clear()
        running, r_running = _in_thread(lambda: httpx.post(url, json={"texts": ["first"]}, timeout=30))
        _wait(lambda: server.service.batcher.in_flight == 1)
        queued, r_queued = _in_thread(lambda: httpx.post(url, json={"texts": TEXTS[:6]}, timeout=30))
        _wait(lambda: server.service.batcher.waiting == 6)
        too_many = httpx.post(url, json={"texts": TEXTS[:3]}, timeout=30)  # 6 + 3 > 8
        assert too_many.status_code == 429 and int(too_many.headers["Retry-After"]) >= 1
        singles = [_in_thread(lambda: httpx.post(url, json={"texts": "one"}, timeout=30)) for _ in range(2)]
        _wait(lambda: server.service.batcher.waiting == 8)
        for body in ({"texts": "one more"}, {"texts": ["one more"]}):
            r = httpx.post(url, json=body, timeout=30)
            assert r.status_code == 429 and "Retry-After" in r.headers and "queue" in r.json()["error"]
        served.gate.set()
        for thread, _ in [(running, None), (queued, None), *singles]:
            thread.join(30)
        assert r_running["r"].status_code == 200 and r_queued["r"].status_code == 200
        assert all(result["r"].status_code == 200 for _, result in singles)
        for text, row in zip(TEXTS[:6], r_queued["r"].json()["results"]):
            assert_same(row["components"], expected(en_nlp, [text], vectors=False)[0])
        metrics = httpx.get(server.url + "/metrics").text
        assert 'spacy_cls_rejections_total{reason="queue_full"} 3.0' in metrics
        assert 'spacy_cls_requests_total{endpoint="/v1/classify",status="429"} 3.0' in metrics
    finally:
        served.gate.set()
        server.stop()


def test_overload_gives_429s_and_loses_nothing(en_pipeline):
    served = GatedPipeline(spacy.load(en_pipeline), en_pipeline)
    served.delay = 0.05
    server = start(served=served, max_queue_texts=12, max_texts_per_request=4, max_wait_ms=5, max_queue_ms=60_000)
    rng = random.Random(3)
    bodies = []
    for i in range(60):
        n = rng.randint(1, 4)
        bodies.append({"texts": f"text {i}" if n == 1 and i % 2 else [f"text {i} {j}" for j in range(n)]})
    try:
        responses = post_many(server.url, bodies, concurrency=24)
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    ran = [text for batch in served.batches for text in batch if not text.startswith(WARMUP_TEXT)]
    accepted = [b for b, s in zip(bodies, statuses) if s == 200]
    want = [t for b in accepted for t in ([b["texts"]] if isinstance(b["texts"], str) else b["texts"])]
    # Every accepted text ran once, every refused one never did.
    assert sorted(ran) == sorted(want)
    for body, r in zip(bodies, responses):
        if r.status_code == 200:
            n = 1 if isinstance(body["texts"], str) else len(body["texts"])
            assert len(r.json()["results"]) == n and r.json()["errors"] == 0
        else:
            assert int(r.headers["Retry-After"]) >= 1
    assert f'spacy_cls_rejections_total{{reason="queue_full"}} {float(statuses.count(429))}' in metrics
    assert f'spacy_cls_requests_total{{endpoint="/v1/classify",status="200"}} {float(statuses.count(200))}' in metrics


def test_a_queue_that_would_take_too_long_to_run_gives_429(en_pipeline):
    served = GatedPipeline(spacy.load(en_pipeline), en_pipeline)
    served.delay = 0.2  # 0.2 s a batch, whatever its size
    server = start(served=served, max_queue_ms=300, max_wait_ms=0, max_batch_tokens=64)
    try:
        # One text a batch (the budget holds one long text): 5 s/text of work ahead at most.
        bodies = [{"texts": ["good " * 40 + str(i)]} for i in range(12)]
        for body in bodies[:3]:  # the bound applies once a few batches gave the rate
            assert httpx.post(server.url + "/v1/classify", json=body, timeout=30).status_code == 200
        responses = post_many(server.url, bodies, concurrency=12)
    finally:
        server.stop()
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert all("would take about" in r.json()["error"] or "queue holds" in r.json()["error"] for r in refused)
    # Accepted requests waited for at most a few batches, never for all twelve.
    assert statuses.count(200) < 12


def test_a_request_waiting_past_the_timeout_gets_503_and_its_texts_are_not_run(en_pipeline):
    served = GatedPipeline(spacy.load(en_pipeline), en_pipeline)
    server = start(served=served, timeout=0.5, max_wait_ms=0)
    url = server.url + "/v1/classify"
    try:
        served.gate.clear()
        held, r_held = _in_thread(lambda: httpx.post(url, json={"texts": ["held"]}, timeout=30))
        _wait(lambda: server.service.batcher.in_flight == 1)
        started = time.monotonic()
        late = httpx.post(url, json={"texts": ["late one", "late two"]}, timeout=30)
        assert late.status_code == 503 and time.monotonic() - started < 5
        assert "timeout" in late.json()["error"] and int(late.headers["Retry-After"]) >= 1
        served.gate.set()
        held.join(30)
        assert r_held["r"].status_code == 503  # its batch was still running at the timeout
        after = httpx.post(url, json={"texts": ["after"]}, timeout=30)
        assert after.status_code == 200
        assert not any("late one" in batch for batch in served.batches)
        assert 'spacy_cls_rejections_total{reason="timeout"} 2.0' in httpx.get(server.url + "/metrics").text
    finally:
        served.gate.set()
        server.stop()


def test_health_is_503_until_loaded_and_warmed(en_pipeline):
    from spacy_cls.serve import ServeSettings
    from spacy_cls.serve.runner import BackgroundServer
    from spacy_cls.serve.served import ServedPipeline

    release = threading.Event()

    class SlowToLoad(ServedPipeline):
        def classify(self, texts, vectors):  # the warm-up waits for the test
            release.wait(30)
            return super().classify(texts, vectors)

    server = BackgroundServer(None, ServeSettings(port=0, warmup_texts=2), served=SlowToLoad(spacy.load(en_pipeline)))
    try:
        _wait(lambda: _status(server.url + "/health") is not None)
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        r = httpx.post(server.url + "/v1/classify", json={"texts": ["x"]})
        assert r.status_code == 503 and "Retry-After" in r.headers
        release.set()
        server.wait_ready(30)
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.post(server.url + "/v1/classify", json={"texts": ["x"]}).status_code == 200
    finally:
        release.set()
        server.stop()


def _status(url):
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def test_torch_runs_on_the_cpus_this_process_may_use(en_server):
    import torch

    from spacy_cls.cpus import usable_cpus

    # Torch's thread count is per calling thread under OpenMP: read it where the model runs.
    assert en_server.service.model_thread.submit(torch.get_num_threads).result() == usable_cpus()


def test_loading_warming_and_every_batch_run_on_one_thread(en_pipeline, monkeypatch):
    from spacy_cls.serve.served import ServedPipeline

    threads = {"load": set(), "classify": set()}
    load, classify = ServedPipeline.load.__func__, ServedPipeline.classify

    def recording_load(cls, *args, **kwargs):
        threads["load"].add(threading.get_ident())
        return load(cls, *args, **kwargs)

    def recording_classify(self, texts, vectors):
        threads["classify"].add(threading.get_ident())
        return classify(self, texts, vectors)

    monkeypatch.setattr(ServedPipeline, "load", classmethod(recording_load))
    monkeypatch.setattr(ServedPipeline, "classify", recording_classify)
    server = start(en_pipeline, warmup_texts=3, max_wait_ms=0)
    try:
        post_many(server.url, [{"texts": [text]} for text in TEXTS] * 3, concurrency=6)
    finally:
        server.stop()
    assert len(threads["load"]) == 1 and threads["classify"] == threads["load"]
    assert threading.get_ident() not in threads["load"]


def test_requests_past_max_concurrent_get_429_before_their_body_is_read(en_pipeline):
    served = GatedPipeline(spacy.load(en_pipeline), en_pipeline)
    server = start(served=served, max_concurrent_requests=2, max_wait_ms=0, max_queue_ms=60_000)
    url = server.url + "/v1/classify"
    try:
        served.gate.clear()
        held = [_in_thread(lambda: httpx.post(url, json={"texts": ["held"]}, timeout=30)) for _ in range(2)]
        _wait(lambda: server.service.batcher.in_flight + server.service.batcher.waiting == 2)
        # Not JSON at all: a parsed body would get 422, a refused one is never read.
        for content in (b"{not json", b'{"texts": ["one"]}'):
            r = httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code == 429, r.text
            assert "--max-concurrent-requests" in r.json()["error"] and int(r.headers["Retry-After"]) >= 1
        assert httpx.get(server.url + "/health").status_code == 200  # other endpoints are not gated
        served.gate.set()
        for thread, result in held:
            thread.join(30)
            assert result["r"].status_code == 200
        assert httpx.post(url, json={"texts": "after"}, timeout=30).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'spacy_cls_rejections_total{reason="too_many_requests"} 2.0' in metrics
        assert 'spacy_cls_requests_total{endpoint="/v1/classify",status="429"} 2.0' in metrics
    finally:
        served.gate.set()
        server.stop()


def test_info_metrics_and_openapi(en_server, en_nlp):
    info = httpx.get(en_server.url + "/v1/info").json()
    assert info["components"][0]["labels"] == list(en_nlp.get_pipe("cls_classifier").labels)
    assert info["max_length"] == 64 and info["model"] and info["pipeline"]["version"] == en_nlp.meta["version"]
    assert info["serving"]["max_batch_tokens"] == 4096
    assert info["serving"]["max_queue_ms"] == 250 and info["serving"]["max_concurrent_requests"] == 512
    metrics = httpx.get(en_server.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("spacy_cls_requests_total", "spacy_cls_request_latency_seconds_bucket", "spacy_cls_batch_docs_bucket",
                 "spacy_cls_batch_word_pieces_bucket", "spacy_cls_queue_depth", "spacy_cls_ready 1.0"):
        assert name in metrics.text
    schema = httpx.get(en_server.url + "/openapi.json").json()
    assert "/v1/classify" in schema["paths"] and "texts" in str(schema["paths"]["/v1/classify"])
