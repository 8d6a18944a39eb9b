"""SIGTERM on a real `python -m spacy_cls serve` process: the requests it holds are
answered, new connections are refused, and it exits 0."""
import os
import re
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from conftest import ROOT


def _read_url(proc, timeout_s=90):
    deadline, seen = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            seen += line
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            if m:
                return m.group(1)
        if proc.poll() is not None:
            break
    raise AssertionError(f"no address printed: {seen!r} {proc.stderr.read() if proc.poll() is not None else ''}")


def _wait_healthy(url, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("never healthy")


def test_sigterm_drains_requests_in_flight_then_exits(en_pipeline):
    # A long wait keeps the requests queued when SIGTERM arrives.
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_cls", "serve", str(en_pipeline), "--port", "0", "--max-wait-ms", "1500",
         "--max-batch-tokens", "100000", "--warmup-texts", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        url = _read_url(proc)
        _wait_healthy(url)
        n = 12
        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=n)) as client, \
                ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(client.post, "/v1/classify", json={"texts": [f"good movie {i}", "bad"]})
                       for i in range(n)]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "queue_depth 24.0" not in httpx.get(url + "/metrics").text:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            responses = [f.result(timeout=30) for f in futures]
        assert [r.status_code for r in responses] == [200] * n
        assert all(len(r.json()["results"]) == 2 for r in responses)
        assert proc.wait(timeout=30) == 0
        try:
            httpx.get(url + "/health", timeout=2)
            raise AssertionError("still listening after SIGTERM")
        except httpx.TransportError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
