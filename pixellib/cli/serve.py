"""``pixellib serve``: the HTTP API and web page (needs ``pip install 'pixellib[serve]'``)."""
from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import math
import os
import sys

from ..errors import InvalidArgumentError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _finite_positive_float(text: str) -> float:
    """A size: positive, and finite (``inf`` overflowed in a traceback)."""
    value = _positive_float(text)
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _count(minimum: int, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def add_serve_parser(sub) -> None:
    """Add the ``serve`` subcommand to ``build_parser``'s subparsers."""
    from ..serve.settings import API_KEY_ENV
    from .args import probability

    p = sub.add_parser(
        "serve", help="serve the model over HTTP (API + web page)",
        description="Serve segmentation over HTTP: POST /v1/segment and /v1/render, GET "
                    "/healthz /readyz /v1/info /metrics, OpenAPI at /docs and a web page at /.")
    p.add_argument("--model", default="resnet50", metavar="PATH_OR_NAME",
                   help="checkpoint file, or resnet50 / resnet101 (default: resnet50)")
    p.add_argument("--speed", choices=("fast", "rapid"),
                   help="PixelLib detection_speed (default: short side 800 px, long side "
                        "<= 1333)")
    p.add_argument("--confidence", type=probability, metavar="F",
                   help="score threshold; requests may raise it, never lower it")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_count(0, 65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=_count(1), default=1, metavar="N",
                   help="model replicas run in parallel; torch threads are divided between "
                        "them (default 1)")
    p.add_argument("--threads", type=_count(1), default=None, metavar="N",
                   help="torch threads per replica (default: the cores divided between the "
                        "replicas)")
    p.add_argument("--max-queue", type=_count(0), default=8, metavar="N",
                   help="requests waiting for a replica before 503 (default 8)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S",
                   help="seconds for waiting plus inference before 504 (default 60)")
    p.add_argument("--upload-timeout", type=_positive_float, default=60.0, metavar="S",
                   help="seconds a client may take to send its upload before 408 (default 60)")
    p.add_argument("--head-timeout", type=_positive_float, default=10.0, metavar="S",
                   help="seconds a client may take to send its request line and headers, "
                        "after connecting or after the previous answer; then the connection "
                        "is closed, with a 408 when part of a head came (default 10)")
    p.add_argument("--max-upload-mb", type=_finite_positive_float, default=20.0, metavar="MIB",
                   help="largest request body in MiB (default 20)")
    p.add_argument("--max-megapixels", type=_finite_positive_float, default=40.0, metavar="MP",
                   help="largest image (width x height, from its header) (default 40)")
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback --host without an API key")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default: none)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serve.settings import API_KEY_ENV, ServeSettings

    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.protocol import uvicorn_config
    except ImportError as e:
        raise InvalidArgumentError(
            f"pixellib serve needs its extra: pip install 'pixellib[serve]' ({e})") from None
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    settings = ServeSettings(
        model="", speed=args.speed, confidence=args.confidence, device=args.device,
        host=args.host, port=args.port, replicas=args.workers, max_queue=args.max_queue,
        timeout=args.timeout, upload_timeout=args.upload_timeout,
        head_timeout=args.head_timeout,
        # rounded up: any positive size allows something (1e-7 MP was refused as "not positive")
        max_upload_bytes=math.ceil(args.max_upload_mb * 1024 * 1024),
        max_pixels=math.ceil(args.max_megapixels * 1_000_000), api_key=api_key,
        insecure_no_auth=args.insecure_no_auth, cors_origins=tuple(args.cors_origin),
        torch_threads=args.threads,
    )  # checks the options (host vs. key) before any download
    from dataclasses import replace

    import torch

    from ..checkpoint.hub import resolve_model
    from .main import check_device_option

    check_device_option(args.device)  # before any download
    settings = replace(settings, model=str(resolve_model(args.model)))
    # This process is the server's own: split the cores between the replicas.
    torch.set_num_threads(settings.threads_per_replica)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings, host=args.host, port=args.port,
                                           log_level=args.log_level))
    state = app.state.pixellib
    # A model that cannot load will not load later: stop rather than serve 503 for ever.
    state.on_load_error = lambda: setattr(server, "should_exit", True)
    print(f"pixellib: serving on http://{_url_host(args.host)}:{args.port}/ "
          f"({settings.replicas} replica(s), auth {'on' if api_key else 'off'})", file=sys.stderr)
    # However the server ends, the interpreter must not tear down while a replica (or the
    # loader) is inside torch: it aborts then ("terminate called without an active
    # exception"). At exit, let a running inference finish (atexit runs before that).
    atexit.register(_finish_model_threads, state)
    logging.getLogger("uvicorn.error").addFilter(_forced_exit_noise)
    try:
        server.run()
    except BaseException as exc:
        # A second Ctrl-C ("force quit") ends the server without waiting for a running
        # inference (its tasks cancelled: KeyboardInterrupt or CancelledError comes out):
        # leave at once, as the user asked, rather than wait at exit.
        interrupted = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
        if not state.stop_model_threads(wait=0.5):
            print("pixellib: interrupted" if interrupted else f"pixellib: error: {exc!r}",
                  file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130 if interrupted else 1)
        if isinstance(exc, asyncio.CancelledError):
            raise KeyboardInterrupt from None  # "pixellib: interrupted", status 130
        raise
    if state.error is not None:
        if state.error_traced:  # after the traceback, the reason again as the last line
            print(f"pixellib: error: the model failed to load: {state.error}", file=sys.stderr)
        return 1
    return 0


def _forced_exit_noise(record: logging.LogRecord) -> bool:
    """Drop uvicorn's report of the lifespan task it cancelled itself on a forced exit (a
    second Ctrl-C): a traceback ending in ``CancelledError``, for a stop the user asked
    for."""
    text = record.getMessage()
    return not (text.startswith("Traceback") and "lifespan" in text
                and text.rstrip().endswith("CancelledError"))


def _finish_model_threads(state) -> None:
    if not state.stop_model_threads(wait=state.shutdown_grace):
        print(f"pixellib: an inference was still running {state.shutdown_grace:.0f} s after "
              "the end", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
