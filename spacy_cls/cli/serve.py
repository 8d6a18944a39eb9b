"""`serve`: an HTTP service over a pipeline (docs/serve.md)."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import CheckOpt, ModelArg, fail


def serve_command(
    pipeline: ModelArg,
    host: Annotated[str, typer.Option(help="Address to bind; this machine only unless --allow-remote.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one; the address is printed).")] = 8000,
    max_batch_tokens: Annotated[Optional[int], typer.Option(help="Word pieces per batch, summed over its texts (default: max(4096, the model's max length)).", show_default=False)] = None,
    max_wait_ms: Annotated[float, typer.Option(help="Longest a text that finds the model idle waits for more texts to batch with.")] = 2.0,
    max_queue_texts: Annotated[int, typer.Option(help="Texts waiting, all requests together; past it: 429 with Retry-After.")] = 2048,
    max_concurrent_requests: Annotated[int, typer.Option(help="Classify requests handled at once; past it: 429 before the body is read.")] = 512,
    max_queue_ms: Annotated[Optional[float], typer.Option(help="A request that would wait longer than this (estimated from the recent rate) gets 429 (default: 250).", show_default=False)] = None,
    max_texts_per_request: Annotated[int, typer.Option(help="Texts in one request; past it: 413.")] = 256,
    max_text_chars: Annotated[int, typer.Option(help="Characters in one text; past it: 413.")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option(help="Bytes in one request body; past it: 413.")] = 4 * 1024 * 1024,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for its answers; past it: 503.")] = 30.0,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads (default: the CPUs this process may run on).", show_default=False)] = None,
    warmup_texts: Annotated[int, typer.Option(help="Texts run before GET /health answers 200.")] = 8,
    engine: Annotated[str, typer.Option(help="local: one process; ray: Ray Serve replicas.")] = "local",
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas, each with its own copy of the pipeline.")] = 1,
    cpus_per_replica: Annotated[Optional[float], typer.Option(help="CPUs Ray reserves per replica (default: 1).", show_default=False)] = None,
    address: Annotated[Optional[str], typer.Option(help="An existing Ray cluster (e.g. auto); default: start one bound to 127.0.0.1.")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other than this machine (the service has no authentication).")] = False,
    check: CheckOpt = True,
) -> None:
    """Serve PIPELINE over HTTP: POST /v1/classify, GET /health, /v1/info, /metrics, /docs."""
    from ..serve import ServeSettings, SettingsError, serve

    settings = ServeSettings(
        host=host, port=port, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
        max_queue_texts=max_queue_texts, max_concurrent_requests=max_concurrent_requests, max_queue_ms=max_queue_ms, max_texts_per_request=max_texts_per_request,
        max_text_chars=max_text_chars, max_body_bytes=max_body_bytes, timeout=timeout, threads=threads,
        warmup_texts=warmup_texts, check=check, engine=engine, replicas=replicas, address=address,
        cpus_per_replica=cpus_per_replica, allow_remote=allow_remote)
    if engine == "ray":
        try:
            import ray.serve  # noqa: F401
        except ImportError:
            fail("--engine ray needs Ray Serve: pip install 'spacy-cls[serve]'.")
    try:
        serve(pipeline, settings, on_listening=lambda url: typer.echo(f"Serving {pipeline} on {url} (API page: {url}/docs)"))
    except ImportError as e:
        fail(f"The service needs FastAPI, uvicorn and prometheus_client: pip install 'spacy-cls[serve]' ({e}).")
    except (SettingsError, OSError, ValueError) as e:
        fail(str(e))
