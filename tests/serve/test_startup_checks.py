"""Settings that cannot work are refused at start-up, with the reason: before the
model loads when the settings alone tell, else as soon as it has loaded."""
import socket
import subprocess
import sys

import pytest

from spacy_cls.serve import ServeSettings, SettingsError
from spacy_cls.serve.runner import BackgroundServer
from spacy_cls.serve.settings import bind_socket, check_against_pipeline, check_settings

from conftest import ROOT


@pytest.mark.parametrize("changes, says", [
    ({"max_queue_texts": 0}, "--max-queue-texts 0"),
    ({"max_queue_texts": -5}, "--max-queue-texts -5"),
    ({"max_texts_per_request": 0}, "--max-texts-per-request 0"),
    ({"max_batch_tokens": 0}, "--max-batch-tokens 0"),
    ({"max_wait_ms": -1}, "--max-wait-ms -1"),
    ({"timeout": 0}, "--timeout 0"),
    ({"max_wait_ms": 2000, "timeout": 1.0}, "every request would time out"),
    ({"max_texts_per_request": 100, "max_queue_texts": 10}, "could never be queued"),
    ({"max_body_bytes": 0}, "--max-body-bytes 0"),
    ({"threads": 0}, "--threads 0"),
    ({"port": 70000}, "--port 70000"),
    ({"host": "0.0.0.0"}, "--allow-remote"),
    ({"engine": "threads"}, "--engine threads"),
    ({"replicas": 2}, "--engine ray"),
    ({"replicas": 0, "engine": "ray"}, "--replicas 0"),
])
def test_settings_that_cannot_work_are_refused(changes, says):
    with pytest.raises(SettingsError, match=None) as e:
        check_settings(ServeSettings(**changes))
    assert says in str(e.value)


def test_several_problems_are_named_together():
    with pytest.raises(SettingsError) as e:
        check_settings(ServeSettings(max_queue_texts=0, timeout=-1))
    assert "--max-queue-texts" in str(e.value) and "--timeout" in str(e.value)


@pytest.mark.parametrize("budget, max_length, long_text, windows, ok", [
    (63, 64, "truncate", None, False),
    (64, 64, "truncate", None, True),
    (None, 8192, "truncate", None, True),  # the default grows to the model's length
    (256, 64, "windows", 8, False),
    (512, 64, "windows", 8, True),
])
def test_budget_against_the_model(budget, max_length, long_text, windows, ok):
    settings = ServeSettings(max_batch_tokens=budget)
    if ok:
        assert check_against_pipeline(settings, max_length, long_text, windows) >= max_length
    else:
        with pytest.raises(SettingsError, match="max-batch-tokens"):
            check_against_pipeline(settings, max_length, long_text, windows)


def test_a_port_in_use_is_refused():
    taken = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(SettingsError, match="Cannot listen on 127.0.0.1"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_a_budget_below_the_max_length_stops_the_server(en_pipeline):
    server = BackgroundServer(en_pipeline, ServeSettings(port=0, max_batch_tokens=16))
    with pytest.raises(SettingsError, match=r"below the model's maximum length \(64"):
        server.wait_ready(60)
    server.stop()
    assert not server._thread.is_alive()


def _serve(*args, timeout=90):
    return subprocess.run([sys.executable, "-m", "spacy_cls", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_the_command_refuses_bad_settings_with_exit_2(en_pipeline):
    quick = _serve(str(en_pipeline), "--max-queue-texts", "0", "--port", "0")
    assert quick.returncode == 2 and "--max-queue-texts 0" in quick.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = _serve(str(en_pipeline), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "Cannot listen" in busy.stderr
    after_load = _serve(str(en_pipeline), "--port", "0", "--max-batch-tokens", "10")
    assert after_load.returncode == 2 and "maximum length" in after_load.stderr
