"""`--engine ray`: the same API on Ray Serve. One deployment per pipeline, named after
it; each replica loads the pipeline once and runs the same `Service` (bounded queue,
micro-batching, metrics) behind the same FastAPI app. Ray Serve's proxy listens on
--host/--port (127.0.0.1 by default) and spreads requests over the replicas.

A replica that dies is replaced by Ray Serve's controller. The requests it held are
not retried by the service (a batch may have been half run): Ray Serve's proxy
answers them with 500 (the replica died) or, at the latest --timeout + 5 s after
they arrived, 408; clients retry on those as on a 503. /metrics answers for the
replica that took the request."""
from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import Callable, Optional, Union

from ray import serve

from ..cpus import usable_cpus
from .app import Service, create_app
from .served import ServedPipeline
from .settings import ServeSettings, bind_socket

APP_NAME = "spacy_cls"
PROXY_GRACE_S = 5.0
# The replica's service: one replica per Ray worker process.
_SERVICE: dict = {}


def current_service() -> Optional[Service]:
    # Module-level functions (this one and the setter): Ray pickles them by name, so
    # the app and the replica class, which it pickles by value, share this process's
    # `_SERVICE` instead of copies of it.
    return _SERVICE.get("service")


def set_current_service(service: Service) -> None:
    _SERVICE["service"] = service


_app = create_app(current_service, manage_lifespan=False)


@serve.deployment
@serve.ingress(_app)
class ClassifierReplica:
    def __init__(self, pipeline_path: str, settings: ServeSettings, cpus: float) -> None:
        threads = settings.threads or max(1, min(usable_cpus(), int(round(cpus)) or 1))
        service = Service(settings, lambda: ServedPipeline.load(pipeline_path, check=settings.check, threads=threads))
        # Ray Serve sends a replica no traffic before its constructor returns.
        service.load_now()
        self.service = service
        set_current_service(service)

    async def check_health(self) -> None:
        if self.service.state != "ready":
            raise RuntimeError(f"the replica is {self.service.state}")


def deployment_name(pipeline: Union[str, Path]) -> str:
    base = Path(str(pipeline).rstrip("/")).name or "pipeline"
    return "classifier_" + re.sub(r"[^A-Za-z0-9_]", "_", base)


def build_deployment(pipeline: Union[str, Path], settings: ServeSettings):
    """The Ray Serve application (the bound deployment) for `pipeline`."""
    cpus = settings.cpus_per_replica or 1.0
    path = str(Path(pipeline).resolve()) if Path(str(pipeline)).exists() else str(pipeline)
    return ClassifierReplica.options(
        name=deployment_name(pipeline),
        num_replicas=settings.replicas,
        ray_actor_options={"num_cpus": cpus},
        # The replica's own queue pushes back (429); Ray's limit sits above it.
        max_ongoing_requests=settings.max_concurrent_requests + 64,
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=settings.timeout + 5,
    ).bind(path, settings, cpus)


def start_ray(settings: ServeSettings, **init_args) -> bool:
    """Connect to --address, or start a local cluster bound to 127.0.0.1; True if
    this call connected (and the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    if settings.address:
        ray.init(address=settings.address, **init_args)
        return True
    from ..scale.ray_engine import start_local_ray

    start_local_ray(**init_args)
    return True


def deploy(pipeline: Union[str, Path], settings: ServeSettings) -> str:
    """Start Serve's proxy on --host/--port and the pipeline's deployment; returns the URL."""
    probe = bind_socket(settings.host, settings.port)  # a port in use is refused before Serve starts
    port = probe.getsockname()[1]
    probe.close()
    # The proxy's own bound: a request held by a replica that died is answered too.
    serve.start(http_options={"host": settings.host, "port": port, "request_timeout_s": settings.timeout + PROXY_GRACE_S})
    serve.run(build_deployment(pipeline, settings), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{settings.host}:{port}"


def run_on_ray(pipeline: Union[str, Path], settings: ServeSettings,
               on_listening: Optional[Callable[[str], None]] = None) -> None:
    bind_socket(settings.host, settings.port).close()
    started = start_ray(settings)
    try:
        url = deploy(pipeline, settings)
        if on_listening is not None:
            on_listening(url)
        wait_for_stop_signal()
    finally:
        try:
            serve.shutdown()
        finally:
            if started:
                import ray

                ray.shutdown()


def wait_for_stop_signal() -> None:
    """Block until SIGTERM or SIGINT (main thread only)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
