"""The service's settings and the checks that refuse, at start-up, settings that cannot
work: those that need nothing (`check_settings`), the port (`bind_socket`), and those
that need the loaded pipeline (`check_against_pipeline`)."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import List, Optional

# Word pieces a batch holds when --max-batch-tokens is not given: at least this, and
# never less than the model's maximum length (one longest text must fit).
DEFAULT_BATCH_TOKENS = 4096
DEFAULT_MAX_WAIT_MS = 2.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SettingsError(ValueError):
    """Settings the service cannot run with; the message says which and why."""


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Word pieces per batch; None: max(DEFAULT_BATCH_TOKENS, the model's max length).
    max_batch_tokens: Optional[int] = None
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    # Texts waiting for a batch, from all requests together; past it: 429.
    max_queue_texts: int = 2048
    # Classify requests being handled at once (read, queued or waiting); past it: 429
    # before the body is read.
    max_concurrent_requests: int = 512
    # Estimated wait ahead of a request past which it gets 429; None: batcher.DEFAULT_QUEUE_MS.
    max_queue_ms: Optional[float] = None
    # Per request: texts, characters per text, body bytes; past them: 413.
    max_texts_per_request: int = 256
    max_text_chars: int = 100_000
    max_body_bytes: int = 4 * 1024 * 1024
    # Seconds a request may wait for its answers; past it: 503.
    timeout: float = 30.0
    # Torch threads; None: the CPUs this process may run on.
    threads: Optional[int] = None
    # Texts run once before /health says 200.
    warmup_texts: int = 8
    check: bool = True
    engine: str = "local"
    replicas: int = 1
    address: Optional[str] = None
    cpus_per_replica: Optional[float] = None
    allow_remote: bool = False


def check_settings(s: ServeSettings) -> None:
    """Refuse settings that cannot work, whatever the pipeline; every problem is named."""
    problems: List[str] = []

    def positive(name: str, value, kind=int) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            problems.append(f"--{name.replace('_', '-')} {value}: must be a {'whole ' if kind is int else ''}number above 0.")

    for name in ("max_queue_texts", "max_concurrent_requests", "max_texts_per_request", "max_text_chars", "max_body_bytes", "replicas"):
        positive(name, getattr(s, name))
    positive("timeout", s.timeout, float)
    if s.max_batch_tokens is not None:
        positive("max_batch_tokens", s.max_batch_tokens)
    if not isinstance(s.max_wait_ms, (int, float)) or s.max_wait_ms < 0:
        problems.append(f"--max-wait-ms {s.max_wait_ms}: must be 0 (no waiting) or more.")
    elif s.max_wait_ms / 1000.0 >= s.timeout > 0:
        problems.append(f"--max-wait-ms {s.max_wait_ms} is not below --timeout {s.timeout}s: every request would time out.")
    if s.max_queue_ms is not None and not (isinstance(s.max_queue_ms, (int, float)) and s.max_queue_ms > 0):
        problems.append(f"--max-queue-ms {s.max_queue_ms}: give a number of milliseconds above 0, or leave it out "
                        f"for the default (250).")
    if s.threads is not None and s.threads < 1:
        problems.append(f"--threads {s.threads}: give 1 or more, or leave it out to use the CPUs this process may run on.")
    if s.warmup_texts < 0:
        problems.append(f"--warmup-texts {s.warmup_texts}: give 0 or more.")
    if (isinstance(s.max_texts_per_request, int) and isinstance(s.max_queue_texts, int)
            and s.max_texts_per_request > s.max_queue_texts > 0):
        problems.append(
            f"--max-texts-per-request {s.max_texts_per_request} is above --max-queue-texts {s.max_queue_texts}: "
            f"such a request could never be queued. Lower the first or raise the second.")
    if not 0 <= s.port <= 65535:
        problems.append(f"--port {s.port}: give a port from 1 to 65535 (0: any free port).")
    if s.engine not in ("local", "ray"):
        problems.append(f"--engine {s.engine}: choose local (this process) or ray (Ray Serve).")
    if s.engine == "local" and (s.replicas != 1 or s.address):
        problems.append("--replicas and --address are for --engine ray; the local engine runs one model in this process.")
    if s.host not in LOCAL_HOSTS and not s.allow_remote:
        problems.append(
            f"--host {s.host}: the service has no authentication, so it binds this machine only (127.0.0.1). "
            f"Put it behind a proxy that authenticates, or pass --allow-remote to bind {s.host} anyway.")
    if problems:
        raise SettingsError(" ".join(problems))


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads, so that a port in use is
    refused at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SettingsError(f"Cannot listen on {host}:{port}: {e.strerror or e}. "
                            f"Choose another --port (0 picks a free one) or stop what uses it.") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def resolved_batch_tokens(s: ServeSettings, max_length: int) -> int:
    return s.max_batch_tokens if s.max_batch_tokens is not None else max(DEFAULT_BATCH_TOKENS, max_length)


def check_against_pipeline(s: ServeSettings, max_length: int, long_text: str, max_windows: Optional[int]) -> int:
    """The word-piece budget per batch; refuses one that a single text could exceed."""
    budget = resolved_batch_tokens(s, max_length)
    if budget < max_length:
        raise SettingsError(
            f"--max-batch-tokens {budget} is below the model's maximum length ({max_length} word pieces): "
            f"a text of that length could never be batched. Give at least {max_length}.")
    if long_text == "windows" and max_windows and budget < max_length * max_windows:
        raise SettingsError(
            f"--max-batch-tokens {budget}: under long_text='windows' one text may read {max_windows} windows of "
            f"{max_length} word pieces ({max_length * max_windows}); give at least that.")
    return budget
