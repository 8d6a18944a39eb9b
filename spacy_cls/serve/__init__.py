"""The live service (`python -m spacy_cls serve`, docs/serve.md): an HTTP API over a
pipeline, with micro-batching across requests, backpressure and Prometheus metrics,
in one process or on Ray Serve.

    from spacy_cls.serve import ServeSettings, serve
    serve("path/to/pipeline", ServeSettings(port=8000))

The FastAPI app is `create_app(lambda: service)` around a `Service`, for embedding."""
from .settings import ServeSettings, SettingsError

__all__ = ["ServeSettings", "SettingsError", "serve"]


def serve(pipeline, settings=None, on_listening=None) -> None:
    from .runner import serve as run

    run(pipeline, settings, on_listening=on_listening)
