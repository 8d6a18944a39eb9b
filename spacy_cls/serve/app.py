"""The HTTP API (FastAPI): POST /v1/classify, GET /health, GET /v1/info, GET /metrics.

`Service` holds the state behind it (the served pipeline, the batcher, the metrics)
and is the same in one process and in a Ray Serve replica; `create_app` builds the
app around one. The request body is read and checked here, before anything is
queued, so that each kind of bad input gets its own status and message:
413 (too large), 422 (not the schema), 429 (too many requests at once, or the queue
full), 503 (loading, draining, or past --timeout)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Callable, Dict, List, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from .batcher import DEFAULT_QUEUE_MS, MicroBatcher, QueueFull, Stopped
from .metrics import ServiceMetrics
from .served import ServedPipeline
from .settings import ServeSettings, check_against_pipeline

log = logging.getLogger("spacy_cls.serve")
ENDPOINTS = ("/v1/classify", "/v1/info", "/health", "/metrics")
WARMUP_TEXT = "a short text to warm the model up"
# Counting word pieces off the event loop pays when a request brings this much text.
OFF_LOOP_CHARS = 20_000


class ClassifyRequest(BaseModel):
    """`texts`: one text or a list of them; `vectors`: also return each component's [CLS] vector."""
    model_config = ConfigDict(extra="forbid")
    texts: Union[StrictStr, List[StrictStr]]
    vectors: StrictBool = False


class ComponentAnswer(BaseModel):
    cats: Dict[str, float]
    labels: List[str]
    uncertainty: Optional[float] = None
    vector: Optional[List[float]] = None


class TextAnswer(BaseModel):
    index: int
    components: Optional[Dict[str, ComponentAnswer]] = None
    error: Optional[str] = None


class ClassifyResponse(BaseModel):
    results: List[TextAnswer]
    errors: int


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.reason = status, message, headers or {}, reason


class Service:
    """The pipeline (once loaded), its batcher and metrics, and the readiness state."""

    def __init__(self, settings: ServeSettings, loader: Callable[[], ServedPipeline],
                 on_fatal: Optional[Callable[[BaseException], None]] = None) -> None:
        self.settings = settings
        self.loader = loader
        self.on_fatal = on_fatal
        self.metrics = ServiceMetrics()
        self.served: Optional[ServedPipeline] = None
        self.batcher: Optional[MicroBatcher] = None
        self.max_batch_tokens: Optional[int] = None
        self.state = "loading"  # loading -> ready -> draining; or failed
        self.failure: Optional[str] = None
        self._starting: Optional[asyncio.Task] = None
        # Loading, warming up and every batch run on this one thread. Torch's OpenMP
        # keeps a team of worker threads per thread that enters a parallel region; a
        # second such thread (a load on one thread, batches on another) left a model
        # pass 1.5-3x slower on 2 cores than the same pass on a single thread.
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacy-cls-model")

    def start(self) -> None:
        """Load and warm up in the background (GET /health answers 503 meanwhile)."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._load_and_warm())

    async def wait_ready(self) -> None:
        self.start()
        await asyncio.shield(self._starting)

    def load_now(self) -> None:
        """Load, check the settings against the pipeline, warm up: the blocking part of
        starting (a Ray Serve replica runs it in its constructor). The work runs on the
        model thread, whichever thread calls this."""
        self.model_thread.submit(self._load_on_model_thread).result()

    def _load_on_model_thread(self) -> None:
        served = self.loader()
        self.max_batch_tokens = check_against_pipeline(
            self.settings, served.max_length, served.long_text, served.max_windows)
        if self.settings.warmup_texts:
            texts = [WARMUP_TEXT * (1 + i % 4) for i in range(self.settings.warmup_texts)]
            served.classify(texts, [i == 0 for i in range(len(texts))])
        self.served = served
        self.batcher = MicroBatcher(
            served.classify, served.word_pieces, max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=self.settings.max_wait_ms, max_queue_texts=self.settings.max_queue_texts,
            max_queue_ms=self.settings.max_queue_ms, metrics=self.metrics, executor=self.model_thread)
        self.state = "ready"
        self.metrics.ready.set(1)
        log.info("spacy_cls serve: ready (budget %d word pieces a batch)", self.max_batch_tokens)

    async def _load_and_warm(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.model_thread, self._load_on_model_thread)
        except BaseException as e:  # noqa: BLE001  (reported, then the server stops)
            self.state, self.failure = "failed", str(e) or type(e).__name__
            log.error("spacy_cls serve: cannot start: %s", e)
            if self.on_fatal is not None:
                self.on_fatal(e)

    async def drain(self) -> None:
        if self.state == "ready":
            self.state = "draining"
        self.metrics.ready.set(0)
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self.batcher is not None:
            await self.batcher.drain()
        self.model_thread.shutdown(wait=False)

    def info(self) -> Dict[str, Any]:
        s = self.settings
        out: Dict[str, Any] = {"state": self.state}
        if self.served is not None:
            out.update(self.served.info())
        out["serving"] = {
            "engine": s.engine, "max_batch_tokens": self.max_batch_tokens, "max_wait_ms": s.max_wait_ms,
            "max_queue_texts": s.max_queue_texts, "max_concurrent_requests": s.max_concurrent_requests,
            "max_queue_ms": s.max_queue_ms if s.max_queue_ms is not None else DEFAULT_QUEUE_MS, "max_texts_per_request": s.max_texts_per_request,
            "max_text_chars": s.max_text_chars, "max_body_bytes": s.max_body_bytes, "timeout_s": s.timeout,
        }
        return out

    async def classify_body(self, request: Request) -> Dict[str, Any]:
        started = time.monotonic()
        s = self.settings
        if self.state != "ready" or self.batcher is None:
            raise HttpError(503, f"the service is {self.state}" + (f": {self.failure}" if self.failure else ""),
                            {"Retry-After": "1"}, reason=self.state)
        body = await _read_body(request, s.max_body_bytes)
        parsed = _parse(body)
        texts = [parsed.texts] if isinstance(parsed.texts, str) else list(parsed.texts)
        if not texts:
            raise HttpError(422, "texts is empty: give one text or a list of at least one.", reason="invalid")
        if len(texts) > s.max_texts_per_request:
            raise HttpError(413, f"{len(texts)} texts in one request; at most {s.max_texts_per_request} "
                                 f"(--max-texts-per-request): split the request.", reason="too_many_texts")
        for i, text in enumerate(texts):
            if len(text) > s.max_text_chars:
                raise HttpError(413, f"texts[{i}] has {len(text)} characters; at most {s.max_text_chars} "
                                     f"(--max-text-chars): shorten or split it.", reason="text_too_long")
        batcher = self.batcher
        try:
            batcher.admit(len(texts))
            costs = await self._costs(texts)
            left = s.timeout - (time.monotonic() - started)
            outcomes = await asyncio.wait_for(batcher.classify(texts, parsed.vectors, costs), timeout=max(left, 0.0))
        except QueueFull as e:
            raise HttpError(429, f"too many texts waiting: {e}", {"Retry-After": str(e.retry_after)},
                            reason="queue_full") from None
        except Stopped:
            raise HttpError(503, "the service is shutting down", {"Retry-After": "1"}, reason="draining") from None
        except asyncio.TimeoutError:
            raise HttpError(503, f"no answer within --timeout {s.timeout}s: the service is overloaded; retry later.",
                            {"Retry-After": str(batcher.retry_after())}, reason="timeout") from None
        results, errors = [], 0
        for i, outcome in enumerate(outcomes):
            if outcome.error is not None:
                errors += 1
                results.append({"index": i, "error": outcome.error})
            else:
                results.append({"index": i, "components": outcome.result})
        self.metrics.texts.labels(outcome="ok").inc(len(texts) - errors)
        if errors:
            self.metrics.texts.labels(outcome="error").inc(errors)
        return {"results": results, "errors": errors}

    async def _costs(self, texts: List[str]) -> List[int]:
        served = self.served

        def cost(text: str) -> int:
            try:
                return served.word_pieces(text)
            except Exception:  # noqa: BLE001  (the batch reports this text's error)
                return served.max_length

        def all_costs() -> List[int]:
            return [cost(text) for text in texts]

        if sum(len(t) for t in texts) > OFF_LOOP_CHARS:
            return await asyncio.to_thread(all_costs)
        return all_costs()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HttpError(400, f"Content-Length {declared!r} is not a number.", reason="invalid") from None
        if size > limit:
            raise HttpError(413, f"the body has {size} bytes; at most {limit} (--max-body-bytes): "
                                 f"send fewer or shorter texts a request.", reason="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the body is over {limit} bytes (--max-body-bytes): "
                                 f"send fewer or shorter texts a request.", reason="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> ClassifyRequest:
    try:
        data = json.loads(body)
    except UnicodeDecodeError as e:
        raise HttpError(422, f"the body is not UTF-8 JSON: {e}", reason="invalid") from None
    except RecursionError:
        raise HttpError(422, "the body's JSON is nested too deeply: send {\"texts\": [\"...\"], \"vectors\": false}.",
                        reason="invalid") from None
    except json.JSONDecodeError as e:
        what = "the body is empty" if not body.strip() else f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        raise HttpError(422, f"{what}. Send {{\"texts\": [\"...\"], \"vectors\": false}}.", reason="invalid") from None
    if not isinstance(data, dict):
        raise HttpError(422, f"the body is a JSON {type(data).__name__}, not an object: "
                             f"send {{\"texts\": [\"...\"], \"vectors\": false}}.", reason="invalid")
    unknown = sorted(set(data) - {"texts", "vectors"})
    problems = [f"{key}: unknown field (the fields are texts and vectors)" for key in unknown]
    texts = data.get("texts")
    if "texts" not in data:
        problems.append("texts: missing (give texts: a string or a list of strings)")
    elif isinstance(texts, list):
        problems += [f"texts[{i}]: a JSON {_json_type(t)}, not a string" for i, t in enumerate(texts) if not isinstance(t, str)][:10]
    elif not isinstance(texts, str):
        problems.append(f"texts: a JSON {_json_type(texts)}; give a string or a list of strings")
    if "vectors" in data and not isinstance(data["vectors"], bool):
        problems.append(f"vectors: a JSON {_json_type(data['vectors'])}; give true or false")
    if problems:
        raise HttpError(422, "; ".join(problems), reason="invalid")
    # Checked above field by field (with messages that name the field and the JSON type).
    return ClassifyRequest.model_construct(texts=texts, vectors=bool(data.get("vectors", False)))


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _error_response(e: HttpError, service: Optional[Service]) -> JSONResponse:
    if service is not None and e.reason:
        service.metrics.rejections.labels(reason=e.reason).inc()
    return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)


class _MetricsMiddleware:
    """Counts every answer (status and latency), whichever code path produced it."""

    def __init__(self, app, get_service: Callable[[], Optional[Service]]) -> None:
        self.app, self.get_service = app, get_service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            service = self.get_service()
            if service is not None:
                path = scope.get("path", "")
                service.metrics.observe_request(path if path in ENDPOINTS else "other", status[0],
                                                time.monotonic() - started)


class _ConcurrencyGate:
    """429 for a classify request past --max-concurrent-requests, before its body is
    read or parsed, so that a flood costs the event loop as little as possible.
    Written here rather than taken from uvicorn (`--limit-concurrency`): that limit
    answers 503, counts every endpoint (so /health and /metrics would fail under
    load) and is not part of a Ray Serve replica."""

    def __init__(self, app, get_service: Callable[[], Optional[Service]]) -> None:
        self.app, self.get_service = app, get_service
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != "/v1/classify":
            return await self.app(scope, receive, send)
        service = self.get_service()
        if service is not None and self.active >= service.settings.max_concurrent_requests:
            retry = service.batcher.retry_after() if service.batcher is not None else 1
            error = HttpError(429, f"{self.active} requests are being handled, at most "
                                   f"{service.settings.max_concurrent_requests} (--max-concurrent-requests); "
                                   f"retry in {retry}s", {"Retry-After": str(retry)}, reason="too_many_requests")
            return await _error_response(error, service)(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def create_app(get_service: Callable[[], Optional[Service]], *, manage_lifespan: bool = True) -> FastAPI:
    """The API around the service `get_service()` returns (one process: a fixed one;
    a Ray Serve replica: the replica's). `manage_lifespan`: start and drain it with
    the server."""

    @asynccontextmanager
    async def lifespan(app):
        service = get_service()
        if manage_lifespan and service is not None:
            service.start()
        yield
        if manage_lifespan and service is not None:
            await service.drain()

    app = FastAPI(title="spacy_cls classifier service", version="1",
                  description="Classify texts with a spacy_cls pipeline: doc.cats, the decided labels, "
                              "uncertainty and, if asked, the [CLS] vector, per classifier component.",
                  lifespan=lifespan)
    # The gate sits inside the metrics, which count its 429s too.
    app.add_middleware(_ConcurrencyGate, get_service=get_service)
    app.add_middleware(_MetricsMiddleware, get_service=get_service)

    async def service_or_503() -> Service:
        service = get_service()
        if service is None:
            raise HttpError(503, "the service is loading", {"Retry-After": "1"}, reason="loading")
        return service

    @app.exception_handler(HttpError)
    async def http_error(request: Request, e: HttpError):
        return _error_response(e, get_service())

    @app.post("/v1/classify", response_model=ClassifyResponse, responses={
        413: {"description": "Body, text count or a text over the limits"},
        422: {"description": "Malformed JSON or not the schema"},
        429: {"description": "Queue full; see Retry-After"},
        503: {"description": "Loading, shutting down, or no answer within --timeout"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": ClassifyRequest.model_json_schema()}}}})
    async def classify(request: Request):
        service = await service_or_503()
        return JSONResponse(await service.classify_body(request))

    @app.get("/health")
    async def health():
        service = get_service()
        state = service.state if service is not None else "loading"
        body = {"status": "ok" if state == "ready" else state}
        if service is not None and service.failure:
            body["error"] = service.failure
        return JSONResponse(body, status_code=200 if state == "ready" else 503)

    @app.get("/v1/info")
    async def info():
        service = await service_or_503()
        return JSONResponse(service.info())

    @app.get("/metrics")
    async def metrics():
        service = await service_or_503()
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app
