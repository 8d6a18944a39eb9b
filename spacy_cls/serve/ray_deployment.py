"""`--engine ray`: the same API on Ray Serve. One deployment per pipeline, named after
it; each replica loads the pipeline once and runs the same `Service` (bounded queue,
micro-batching, metrics) behind the same FastAPI app. Ray Serve's proxy listens on
--host/--port (127.0.0.1 by default) and spreads requests over the replicas.

A replica that dies is replaced by Ray Serve's controller. Requests it held when it
died are not retried by the service (they may have been half run); Ray Serve answers
them with a 5xx (500 or 503), and clients may retry. /metrics answers for the
replica that took the request."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from .settings import ServeSettings, SettingsError, bind_socket

APP_NAME = "spacy_cls"
_REPLICA_SERVICE: Dict[str, Any] = {}


def deployment_name(pipeline: Union[str, Path]) -> str:
    base = Path(str(pipeline).rstrip("/")).name or "pipeline"
    return "classifier_" + re.sub(r"[^A-Za-z0-9_]", "_", base)


def build_deployment(pipeline: Union[str, Path], settings: ServeSettings):
    """The Ray Serve application (bound deployment) for `pipeline`."""
    from ray import serve

    from .app import Service, create_app
    from .served import ServedPipeline, usable_cpus

    app = create_app(lambda: _REPLICA_SERVICE.get("service"), manage_lifespan=False)
    cpus = settings.cpus_per_replica or 1.0

    @serve.deployment(
        name=deployment_name(pipeline),
        num_replicas=settings.replicas,
        ray_actor_options={"num_cpus": cpus},
        # The replica's own queue pushes back (429); Ray's limits sit above it.
        max_ongoing_requests=max(settings.max_queue_texts, 1) + 64,
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=settings.timeout + 5,
    )
    @serve.ingress(app)
    class ClassifierReplica:
        def __init__(self, pipeline_path: str, replica_settings: ServeSettings) -> None:
            threads = replica_settings.threads or max(1, min(usable_cpus(), int(round(cpus))))
            self.service = Service(replica_settings, lambda: ServedPipeline.load(
                pipeline_path, check=replica_settings.check, threads=threads))
            # Ray Serve sends no traffic to a replica before its constructor returns.
            self.service.load_now()
            _REPLICA_SERVICE["service"] = self.service

        async def check_health(self) -> None:
            if self.service.state != "ready":
                raise RuntimeError(f"the replica is {self.service.state}")

    return ClassifierReplica.bind(str(Path(pipeline).resolve()) if Path(pipeline).exists() else str(pipeline), settings)


def start_ray(settings: ServeSettings) -> bool:
    """Connect to --address, or start a local cluster on 127.0.0.1; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    if settings.address:
        ray.init(address=settings.address)
        return True
    from ..scale.ray_engine import start_local_ray

    start_local_ray()
    return True


def run_on_ray(pipeline: Union[str, Path], settings: ServeSettings,
               on_listening: Optional[Callable[[str], None]] = None) -> None:
    from ray import serve

    from .runner import wait_for_stop_signal

    probe = bind_socket(settings.host, settings.port)  # a port in use is refused before Ray starts
    port = probe.getsockname()[1]
    probe.close()
    started = start_ray(settings)
    try:
        serve.start(http_options={"host": settings.host, "port": port}, detached=False)
        serve.run(build_deployment(pipeline, settings), name=APP_NAME, route_prefix="/", blocking=False)
        if on_listening is not None:
            on_listening(f"http://{settings.host}:{port}")
        wait_for_stop_signal()
    finally:
        try:
            serve.shutdown()
        finally:
            if started:
                import ray

                ray.shutdown()


def wait_until_healthy(url: str, timeout_s: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SettingsError(f"{url} did not become healthy within {timeout_s}s")
