"""--engine ray on a local Ray cluster bound to 127.0.0.1: the same API and answers as
nlp.pipe over two replicas, and a replica killed under load is replaced while the
others keep answering; the requests it held get a 5xx (counted), none hangs."""
import threading
import time
from collections import Counter

import httpx
import pytest
import spacy

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from spacy_cls.scale.ray_engine import ray_node_addresses  # noqa: E402
from spacy_cls.serve import ServeSettings  # noqa: E402
from spacy_cls.serve.ray_deployment import deploy, start_ray  # noqa: E402

from serve_helpers import TEXTS, assert_same, expected  # noqa: E402

pytestmark = pytest.mark.slow
REPLICA = "SERVE_REPLICA::"


def _replicas():
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(REPLICA))


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def ray_service(en_pipeline, tmp_path_factory):
    from ray import serve

    if ray.is_initialized():
        ray.shutdown()
    start_ray(ServeSettings(), num_cpus=2, object_store_memory=200 * 1024**2,
              _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    try:
        assert ray_node_addresses() == ["127.0.0.1"]
        url = deploy(en_pipeline, ServeSettings(port=0, engine="ray", replicas=2, cpus_per_replica=0.5,
                                                warmup_texts=1, max_wait_ms=5, timeout=8))
        assert url.startswith("http://127.0.0.1:")
        _wait(lambda: httpx.get(url + "/health", timeout=5).status_code == 200, 120, "a healthy service")
        yield url
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def test_same_api_and_answers_over_two_replicas(ray_service, en_pipeline):
    assert len(_replicas()) == 2
    nlp = spacy.load(en_pipeline)
    want = expected(nlp, TEXTS, vectors=False)
    for _ in range(4):  # requests land on either replica
        r = httpx.post(ray_service + "/v1/classify", json={"texts": TEXTS}, timeout=30)
        assert r.status_code == 200, r.text
        for row, w in zip(r.json()["results"], want):
            assert_same(row["components"], w)
    assert httpx.post(ray_service + "/v1/classify", content=b"{", timeout=30).status_code == 422
    assert httpx.post(ray_service + "/v1/classify", json={"texts": ["a"] * 300}, timeout=30).status_code == 413
    info = httpx.get(ray_service + "/v1/info", timeout=30).json()
    assert info["serving"]["engine"] == "ray" and info["components"][0]["name"] == "cls_classifier"


def test_a_killed_replica_is_replaced_and_its_requests_are_answered(ray_service):
    before = _replicas()
    statuses: Counter = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def client():
        with httpx.Client(timeout=30) as c:
            for i in range(400):  # bounded: stops by itself
                if stop.is_set():
                    return
                try:
                    status = c.post(ray_service + "/v1/classify", json={"texts": [f"good movie {i}", "bad"]}).status_code
                except httpx.TransportError as e:
                    status = type(e).__name__
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: statuses[200] >= 20, 60, "traffic")
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        _wait(lambda: len(_replicas()) == 2 and before[0] not in _replicas(), 120, "a new replica")
        ok_after = statuses[200]
        _wait(lambda: statuses[200] >= ok_after + 20, 60, "traffic after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failed = {k: v for k, v in statuses.items() if k != 200}
    print(f"\nkilled replica: {dict(statuses)}")
    # Everything sent got an answer; the requests the dead replica held got a 5xx.
    assert all(isinstance(k, int) and k in (408, 500, 503) for k in failed), statuses
    assert httpx.get(ray_service + "/health", timeout=10).status_code == 200
