"""``pixellib serve``: an HTTP API and a web page around a pool of :class:`~pixellib.Predictor`.

Needs the optional extra ``pixellib[serve]`` (FastAPI, uvicorn, python-multipart).

* :mod:`.settings`: the server's options and limits (:class:`ServeSettings`).
* :mod:`.pool`: the bounded inference pool (one thread per model replica, a bounded queue).
* :mod:`.uploads`: reading the request body within its limits, multipart, per-request options.
* :mod:`.results`: detections to JSON and rendered images (run inside the pool).
* :mod:`.metrics`: counters and histograms in Prometheus' text format.
* :mod:`.app`: the FastAPI application (:func:`create_app`).
"""
from __future__ import annotations

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(*args, **kwargs):
    """See :func:`pixellib.serve.app.create_app` (imported lazily: it needs FastAPI)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
