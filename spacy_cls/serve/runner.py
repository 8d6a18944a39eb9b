"""Starting the service: settings checked, the port bound, then uvicorn (one process)
or Ray Serve (`--engine ray`), until SIGTERM or Ctrl-C.

On SIGTERM the local server stops accepting connections, answers the requests it
holds (the batcher finishes every queued text), and exits; requests still unanswered
after --timeout plus a grace period are cut off."""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Callable, Optional, Union

from .app import Service, create_app
from .served import ServedPipeline
from .settings import ServeSettings, SettingsError, bind_socket, check_settings

GRACE_S = 5.0


def serve(pipeline: Union[str, Path], settings: Optional[ServeSettings] = None,
          on_listening: Optional[Callable[[str], None]] = None) -> None:
    """Serve `pipeline` until stopped. Raises SettingsError for settings that cannot
    work (before the model loads when it can tell, else right after)."""
    settings = settings or ServeSettings()
    check_settings(settings)
    if settings.engine == "ray":
        from .ray_deployment import run_on_ray

        run_on_ray(pipeline, settings, on_listening=on_listening)
        return
    run_local(pipeline, settings, on_listening=on_listening)


def _build_server(pipeline, settings: ServeSettings, served: Optional[ServedPipeline] = None):
    """(server, service, socket, url, fatal errors) for the local engine."""
    import uvicorn

    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    fatal: list = []
    server_box: list = []

    def stop_on_failure(error: BaseException) -> None:
        fatal.append(error)
        if server_box:
            server_box[0].should_exit = True

    loader = (lambda: served) if served is not None else (
        lambda: ServedPipeline.load(pipeline, check=settings.check, threads=settings.threads))
    service = Service(settings, loader, on_fatal=stop_on_failure)
    config = uvicorn.Config(create_app(lambda: service), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.timeout + GRACE_S), timeout_keep_alive=5)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if service.state == "ready":
                service.state = "draining"
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once it has shut down, which would end the
            # process with -SIGTERM after a clean drain; a drained service exits 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list) and sig == signal.SIGTERM:
                captured.clear()

    server = _Server(config)
    server_box.append(server)
    return server, service, sock, f"http://{host}:{port}", fatal


def _raise_fatal(fatal: list) -> None:
    if fatal:
        error = fatal[0]
        raise error if isinstance(error, (SettingsError, OSError, ValueError)) else RuntimeError(str(error))


def run_local(pipeline: Union[str, Path], settings: ServeSettings,
              on_listening: Optional[Callable[[str], None]] = None) -> None:
    server, _, sock, url, fatal = _build_server(pipeline, settings)
    if on_listening is not None:
        on_listening(url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    _raise_fatal(fatal)


class BackgroundServer:
    """The local service in a thread of this process (for embedding, tests and
    benchmarks): `url`, `service`, `wait_ready()`, `stop()` (drains first)."""

    def __init__(self, pipeline: Union[str, Path, None], settings: Optional[ServeSettings] = None,
                 served: Optional[ServedPipeline] = None) -> None:
        settings = settings or ServeSettings(port=0)
        check_settings(settings)
        self.server, self.service, self._sock, self.url, self._fatal = _build_server(pipeline, settings, served)
        self._thread = threading.Thread(target=self._run, name="spacy-cls-serve", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def wait_ready(self, timeout_s: float = 120.0) -> "BackgroundServer":
        import time

        deadline = time.monotonic() + timeout_s
        while self.service.state in ("loading",) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        _raise_fatal(self._fatal)
        if self.service.state != "ready":
            raise RuntimeError(f"the service is {self.service.state} after {timeout_s}s")
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> "BackgroundServer":
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()
