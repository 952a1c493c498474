"""The FastAPI application: routes, authentication, errors as JSON, metrics, the web page."""
from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import math
import platform
import threading
import time
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import PixellibError
from .metrics import Metrics
from .pool import InferencePool, QueueFull
from .protocol import HEAD_LIMIT, HEAD_TOO_LARGE
from .results import render_job, segment_job
from .settings import ServeSettings
from .uploads import ApiError, parse_options, read_body, split_body

logger = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
             "style-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'")
# Metrics label requests by method only for these (any other counts as "other": a client
# cannot grow the series without bound).
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_ENDPOINTS = {"/", "/healthz", "/readyz", "/metrics", "/v1/info", "/v1/segment", "/v1/render",
              "/docs", "/openapi.json", "/static/app.js", "/static/app.css"}
_COMMON_OPTIONS = {
    "confidence": "score threshold in [0, 1]; may only raise the server's",
    "classes": "keep only these classes: names or ids, comma separated (person,car)",
    "max_detections": "keep at most this many objects (highest scores first)",
    "timeout": "seconds to wait for the result (504 after); may only lower the server's",
}
_SEGMENT_OPTIONS = {**_COMMON_OPTIONS, "polygons": "also return each mask's outlines"}
_RENDER_OPTIONS = {
    **_COMMON_OPTIONS,
    "effect": "an effect such as blur-bg or color-bg=#00ff00 (see /v1/info); without one, "
              "the picture is annotated",
    "boxes": "draw boxes and labels",
    "feather": "soften the effect's border over this many pixels (0 to 100; default 0)",
    "format": "jpeg, png or webp (default: jpeg; png for a transparent result or past "
              "JPEG's 65500 px)",
    "detections": "also return /v1/segment's JSON: the answer is then multipart/form-data "
                  "with the parts 'detections' and 'image' (one inference for both)",
    "polygons": "with detections=true: also return each mask's outlines",
}


class _State:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.pool: InferencePool | None = None
        self.error: str | None = None  # why the model failed to load (for good)
        self.error_traced = False  # logged with a traceback (not a plain user error)
        self.model_info: dict = {}
        # Called (on the loader thread) when the model fails to load: `pixellib serve` stops.
        self.on_load_error = None
        self.loader: threading.Thread | None = None  # loads the model at startup

    @property
    def shutdown_grace(self) -> float:
        """Seconds a shutdown waits for a running inference: the request timeout, within
        10..120 s."""
        return max(10.0, min(self.settings.timeout, 120.0))

    def stop_model_threads(self, wait: float) -> bool:
        """Stop the replicas (queued jobs cancelled), waiting up to ``wait`` s for a running
        inference and for a model still loading; whether all of them have stopped. The
        process must not exit with torch working on one of these threads: it aborts then
        ("terminate called without an active exception")."""
        deadline = time.monotonic() + wait
        stopped = self.pool is None or self.pool.close(wait=wait)
        if self.loader is not None:
            self.loader.join(max(0.0, deadline - time.monotonic()))
            stopped = stopped and not self.loader.is_alive()
        return stopped

    def not_ready(self) -> ApiError:
        """503 while the model loads (come back later), or for good when it failed to."""
        if self.error is not None:
            return ApiError(503, "not ready", f"the model failed to load: {self.error}")
        return ApiError(503, "not ready", "the model is loading", {"Retry-After": "5"})


def _predictor_kwargs(settings: ServeSettings) -> dict:
    # The server owns its process, so it turns malloc's heap reuse on (Predictor's option;
    # PIXELLIB_NO_HEAP_REUSE=1 turns it off).
    return {"speed": settings.speed, "confidence": settings.confidence,
            "device": settings.device, "heap_reuse": True}


def _load(state: _State, predictors: list | None) -> None:
    s = state.settings
    try:
        if predictors is None:
            from ..predictor import Predictor

            kwargs = _predictor_kwargs(s)
            predictors = [Predictor(s.model, **kwargs) for _ in range(s.replicas)]
        first = predictors[0]
        state.model_info = {
            "model": Path(s.model).name if s.model else None,
            "architecture": first.arch,
            "device": str(first.device),
            "speed": s.speed or "default",
            "confidence": float(first.inference.score_thresh),
            "max_detections": int(first.inference.detections_per_image),
        }
        state.pool = InferencePool(predictors, s.max_queue, torch_threads=s.threads_per_replica,
                                   on_inference=state.metrics.observe_inference,
                                   on_stopped=state.metrics.observe_stopped)
        logger.info("ready: %d replica(s) of %s", len(predictors), first.arch)
    except Exception as e:  # noqa: BLE001 - reported by /readyz and the log
        state.error = f"{type(e).__name__}: {e}"
        if isinstance(e, PixellibError):  # the file's fault, named: one line, no traceback
            logger.error("the model failed to load: %s", state.error)
        else:
            logger.exception("the model failed to load")
            state.error_traced = True
        if state.on_load_error is not None:
            state.on_load_error()


def _authorize(state: _State, request: Request) -> None:
    key = state.settings.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("utf-8", "replace"), key.encode("utf-8"))
    if not ok:
        raise ApiError(401, "unauthorized",
                       "missing or wrong API key: send 'Authorization: Bearer <key>'",
                       {"WWW-Authenticate": "Bearer", "Connection": "close"})


def _error(status: int, error: str, detail, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _json_cors():
    from fastapi.middleware.cors import CORSMiddleware

    class JsonCors(CORSMiddleware):
        """Starlette's CORS middleware, with a refused preflight answered in JSON like every
        other error (it answers plain text)."""

        def preflight_response(self, request_headers):
            response = super().preflight_response(request_headers)
            if response.status_code != 400:
                return response
            headers = {k: v for k, v in response.headers.items()
                       if k.lower() not in ("content-length", "content-type")}
            return _error(400, "bad request",
                          f"CORS preflight refused: {response.body.decode(errors='replace')}",
                          headers)

    return JsonCors


class _Observe:
    """ASGI middleware: request metrics and security headers."""

    def __init__(self, app, state: _State):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        status, started_response = [500], [False]

        async def send_observed(message):
            if message["type"] == "http.response.start":
                started_response[0] = True
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if path == "/" or path.startswith("/static/"):
                    headers["Content-Security-Policy"] = _PAGE_CSP
            await send(message)

        try:
            if _head_size(scope) > HEAD_LIMIT:
                # the same answer as when the head arrives in pieces (the protocol's), not
                # one that depends on how TCP cut the request
                await _error(431, *HEAD_TOO_LARGE)(scope, receive, send_observed)
                return
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            # Answered here rather than by Starlette's last-resort handler, which re-raises
            # into uvicorn: that drops the connection, and a client's next request on it
            # (keep-alive) would fail too.
            if started_response[0]:  # too late for an answer of our own
                raise
            logger.error("error answering %s %s", scope["method"], path, exc_info=exc)
            await _error(500, "internal error", type(exc).__name__)(scope, receive, send_observed)
        finally:
            endpoint = path if path in _ENDPOINTS else "other"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.state.metrics.observe_request(method, endpoint, status[0],
                                               time.perf_counter() - started)


def _head_size(scope) -> int:
    """About the size of the request line and headers, in bytes."""
    return (len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ())))


#: The options' JSON schema types (every option is also accepted as text: a form field or a
#: query value; uploads.parse_options reads them).
_OPTION_TYPES = {
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "max_detections": {"type": "integer", "minimum": 0},
    "timeout": {"type": "number", "exclusiveMinimum": 0},
    "feather": {"type": "number", "minimum": 0, "maximum": 100},
    "polygons": {"type": "boolean"},
    "boxes": {"type": "boolean"},
    "detections": {"type": "boolean"},
    "format": {"type": "string", "enum": ["jpeg", "jpg", "png", "webp"]},
    "classes": {"type": "string", "minLength": 1},
}


def _openapi(options: dict, *, background: bool = False) -> dict:
    props = {"image": {"type": "string", "format": "binary"}}
    if background:
        props["background"] = {"type": "string", "format": "binary",
                               "description": "background photo for replace-bg"}
    props.update({k: {**_OPTION_TYPES.get(k, {"type": "string"}), "description": v}
                  for k, v in options.items()})
    return {
        "parameters": [{"name": k, "in": "query", "required": False, "description": v,
                        "schema": _OPTION_TYPES.get(k, {"type": "string"})}
                       for k, v in options.items()],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                               "properties": props,
                                               "additionalProperties": False}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        }},
    }


_RLE = {"type": "object", "required": ["size", "counts"], "properties": {
    "size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
             "description": "[height, width]"},
    "counts": {"type": "string", "description": "COCO compressed RLE (pycocotools' "
                                               "mask.decode reads it)"}}}
#: The answer of /v1/segment (pixellib.serve.results.detections_json).
_DETECTIONS = {
    "type": "object", "required": ["image", "count", "objects"], "properties": {
        "image": {"type": "object", "required": ["width", "height"], "properties": {
            "width": {"type": "integer"}, "height": {"type": "integer"}}},
        "count": {"type": "integer", "description": "the number of objects"},
        "objects": {"type": "array", "description": "highest score first", "items": {
            "type": "object",
            "required": ["class_id", "class_name", "score", "box", "area", "mask"],
            "properties": {
                "class_id": {"type": "integer", "description": "COCO class index, 0..79"},
                "class_name": {"type": "string"},
                "score": {"type": "number", "description": "probability, 0..1"},
                "box": {"type": "array", "items": {"type": "number"}, "minItems": 4,
                        "maxItems": 4, "description": "[x0, y0, x1, y1] in pixels"},
                "area": {"type": "integer", "description": "mask pixels"},
                "mask": _RLE,
                "polygons": {"type": "array", "description": "with polygons=true: the "
                             "mask's outlines, each [[x, y], ...]",
                             "items": {"type": "array",
                                       "items": {"type": "array", "items": {"type": "number"}}}},
            }}}}}

#: The answer of /v1/info (_info).
_INFO = {
    "type": "object",
    "required": ["ready", "auth", "effects", "formats", "limits", "versions"],
    "properties": {
        "model": {"type": ["string", "null"], "description": "the checkpoint's file name"},
        "architecture": {"type": "string"},
        "device": {"type": "string"},
        "speed": {"type": "string", "enum": ["default", "fast", "rapid"]},
        "confidence": {"type": "number", "description": "the server's threshold: a request's "
                       "confidence may only raise it"},
        "max_detections": {"type": "integer", "description": "the most objects an answer "
                           "holds: a request's max_detections may only lower it"},
        "ready": {"type": "boolean", "description": "false while the model loads (the model "
                  "fields above come once it has loaded)"},
        "auth": {"type": "boolean", "description": "whether requests need the API key"},
        "effects": {"type": "array", "items": {"type": "string"}},
        "formats": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": "object", "description": "upload, pixel, time (seconds, null for "
                   "none) and queue limits"},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
    }}


def _status_answer(status: str) -> dict:
    return {"description": f'{{"status": "{status}"}}', "content": {"application/json": {
        "schema": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": [status]}}}}}}


_UNAUTHORIZED = "missing or wrong API key (when the server has one)"
_INFERENCE_ERRORS = {
    400: "no image, or malformed multipart",
    401: _UNAUTHORIZED,
    408: "the upload was too slow",
    413: "the body or the image is too large",
    415: "not an image",
    422: "a truncated or corrupt image, or a wrong option (or one given twice)",
    503: "the queue is full or the model is still loading (Retry-After), or the server was "
         "forced to stop before the answer was ready",
    504: "over the timeout",
}
_RENDER_ANSWER = {
    "description": "The image (jpeg, png or webp); with detections=true, multipart/form-data "
                   "with a part 'detections' (/v1/segment's JSON) and a part 'image'",
    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/webp": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object"}}},
}


def _errors(descriptions: dict[int, str]) -> dict:
    """OpenAPI answers for error statuses: every error is JSON ``{"error", "detail"}``."""
    schema = {"type": "object", "required": ["error", "detail"], "properties": {
        "error": {"type": "string", "description": "what went wrong, in a few words"},
        "detail": {"description": "the particulars: which option, file or limit"}}}
    return {status: {"description": text, "content": {"application/json": {"schema": schema}}}
            for status, text in descriptions.items()}


def create_app(settings: ServeSettings, *, predictors: list | None = None) -> FastAPI:
    """The app for ``settings``. The model loads in a background thread at startup (``/readyz``
    answers 503 until then); ``predictors`` (one per replica) skips the loading."""
    state = _State(settings)

    async def lifespan(app):
        state.loader = threading.Thread(target=_load, args=(state, predictors), daemon=True,
                                        name="pixellib-loader")
        state.loader.start()
        yield
        # Shutting down (SIGTERM, Ctrl-C): let a running inference (one whose request may
        # already have had its 504) and a model still loading finish.
        if not state.stop_model_threads(wait=state.shutdown_grace):
            logger.warning("an inference was still running %.0f s after shutdown began",
                           state.shutdown_grace)

    app = FastAPI(title="pixellib", version=__version__, lifespan=lifespan,
                  description="PointRend instance segmentation over HTTP.")
    app.state.pixellib = state
    app.add_middleware(_Observe, state=state)
    if settings.cors_origins:
        app.add_middleware(_json_cors(), allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Retry-After"])  # scripts back off on a 503

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        if exc.status == 499:  # the client left during its upload
            state.metrics.disconnects += 1
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        from http import HTTPStatus

        return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower(), exc.detail,
                      getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return _error(422, "invalid option", exc.errors())

    @app.exception_handler(Exception)
    async def _internal_error(request, exc):
        logger.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error", type(exc).__name__)

    # ------------------------------------------------------------------ page and probes

    # GET and HEAD (uptime monitors probe with HEAD) on the page and the probes.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page():
        return HTMLResponse(_static_text("index.html"))

    @app.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def static(name: str):
        if name not in _STATIC:  # a fixed list: no client-chosen path reaches the disk
            raise ApiError(404, "not found", f"no static file {name!r}")
        return Response(_static_text(name), media_type=_STATIC[name])

    def probe(path: str, summary: str, responses: dict | None = None):
        """One route answers GET and HEAD (so that a 405 allows both); a second one, which
        no request reaches, describes the GET alone: described, the first route would give
        the API description two operations of the same id."""
        def register(fn):
            app.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)(fn)
            app.get(path, summary=summary, responses=responses)(fn)
            return fn
        return register

    @probe("/healthz", "Liveness: the process answers", {200: _status_answer("ok")})
    async def healthz():
        return {"status": "ok"}

    @probe("/readyz", "Readiness: 503 until the model is loaded",
           {200: _status_answer("ready"),
            **_errors({503: "the model is still loading (Retry-After) or failed to load"})})
    async def readyz():
        if state.pool is None:
            raise state.not_ready()
        return {"status": "ready"}

    @app.get("/v1/info", summary="Model, device, speed mode, versions and limits",
             responses={200: {"description": "What this server runs and accepts",
                              "content": {"application/json": {"schema": _INFO}}},
                        **_errors({401: _UNAUTHORIZED})})
    async def info(request: Request):
        _authorize(state, request)
        return _info(state)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
             responses=_errors({401: _UNAUTHORIZED}))
    async def metrics(request: Request):
        _authorize(state, request)
        pool = state.pool
        text = state.metrics.render(
            queued=pool.queued if pool else 0, running=pool.running if pool else 0,
            replicas=settings.replicas if pool else 0, ready=pool is not None)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ inference

    @app.post("/v1/segment", summary="Detect objects: JSON with boxes, scores, COCO RLE masks",
              openapi_extra=_openapi(_SEGMENT_OPTIONS),
              responses={200: {"description": "The objects found",
                               "content": {"application/json": {"schema": _DETECTIONS}}},
                         **_errors(_INFERENCE_ERRORS)})
    async def segment(request: Request):
        files, opts = await _request_input(state, request, _SEGMENT_OPTIONS, ("image",))
        result = await _run(state, request, segment_job(files, opts, settings.max_pixels),
                            opts["timeout"])
        if isinstance(result, Response):
            return result
        return Response(result, media_type="application/json")

    @app.post("/v1/render", summary="The annotated or edited image",
              openapi_extra=_openapi(_RENDER_OPTIONS, background=True),
              response_class=Response, responses={200: _RENDER_ANSWER,
                                                  **_errors(_INFERENCE_ERRORS)})
    async def render(request: Request):
        files, opts = await _request_input(state, request, _RENDER_OPTIONS,
                                           ("image", "background"))
        effect = _parse_effect(opts["effect"], files)
        if effect is None and opts["feather"]:
            raise ApiError(422, "invalid option", "feather: softens an effect's border; give "
                           "an effect too")
        if opts["polygons"] and not opts["detections"]:
            raise ApiError(422, "invalid option", "polygons: outlines come with the "
                           "detections; add detections=true")
        if effect is not None and effect.name == "remove-bg" and opts["format"] == "jpeg":
            raise ApiError(422, "invalid option", "format: remove-bg makes a transparent image; "
                           "ask for png or webp")
        result = await _run(state, request,
                            render_job(files, opts, settings.max_pixels, effect), opts["timeout"])
        if isinstance(result, Response):
            return result
        data, media_type, detections = result
        if detections is None:
            return Response(data, media_type=media_type)
        return _multipart({"detections": (detections, "application/json", None),
                           "image": (data, media_type, "result." + media_type.split("/")[1])})

    _describe_server(app, state)
    return app


#: The routes that need the API key when the server has one (see _authorize).
_KEYED = ("/v1/info", "/metrics", "/v1/segment", "/v1/render")


def _describe_server(app: FastAPI, state: _State) -> None:
    """Complete FastAPI's API description with what only this server knows: that the keyed
    routes need ``Authorization: Bearer <key>`` (so that /docs offers "Authorize"), the
    bounds its options take (its confidence threshold, detection cap and --timeout: a
    request may only tighten them), and the 431 any route answers to an over-long head."""
    plain = app.openapi
    described = {}

    def openapi() -> dict:
        if "schema" in described:
            return described["schema"]
        schema = copy.deepcopy(plain())  # FastAPI's own stays as it built it
        if state.settings.api_key is not None:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http", "scheme": "bearer",
                "description": "the server's --api-key, as 'Authorization: Bearer <key>'"}
            for path in _KEYED:
                for operation in schema["paths"].get(path, {}).values():
                    operation["security"] = [{"apiKey": []}]
        too_large = {"431": _errors({431: HEAD_TOO_LARGE[1]})[431]}  # the answer's words
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.setdefault("responses", {}).update(too_large)
        bounds = _option_bounds(state)
        for path in ("/v1/segment", "/v1/render"):
            operation = schema["paths"][path]["post"]
            form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
            for parameter in operation["parameters"]:
                parameter["schema"].update(bounds.get(parameter["name"], {}))
            for name, bound in bounds.items():
                form["properties"][name].update(bound)
        if state.model_info:  # the bounds are the model's: final once it has loaded
            described["schema"] = schema
        return schema

    app.openapi = openapi


def _option_bounds(state: _State) -> dict[str, dict]:
    """JSON schema bounds of the options this server narrows (uploads.parse_options)."""
    bounds = {}
    timeout = state.settings.timeout
    if math.isfinite(timeout):
        bounds["timeout"] = {"maximum": timeout}
    info = state.model_info
    if info:
        bounds["confidence"] = {"minimum": info["confidence"]}
        bounds["max_detections"] = {"maximum": info["max_detections"]}
    return bounds


def _multipart(parts: dict[str, tuple[bytes, str, str | None]]) -> Response:
    """A multipart/form-data answer (browsers read it with ``Response.formData()``): each
    part is ``name -> (data, media type, file name or None)``."""
    import secrets

    boundary = "pixellib-" + secrets.token_hex(16)  # random: cannot occur in the data
    chunks = []
    for name, (data, media_type, filename) in parts.items():
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        chunks += [f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                   f"Content-Type: {media_type}\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(chunks), media_type=f"multipart/form-data; boundary={boundary}")


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text("utf-8")


def _info(state: _State) -> dict:
    import fastapi
    import torch
    import uvicorn

    s = state.settings
    from ..effects import EFFECTS

    return {
        **state.model_info,
        "ready": state.pool is not None,
        "auth": s.api_key is not None,
        "effects": list(EFFECTS),
        "formats": ["jpeg", "png", "webp"],
        "limits": s.limits(),
        "versions": {"pixellib": __version__, "torch": torch.__version__,
                     "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
                     "python": platform.python_version()},
    }


async def _request_input(state: _State, request: Request, allowed: dict,
                         file_fields: tuple[str, ...]):
    """Authorize, then read and check the upload and the options (all before inference)."""
    _authorize(state, request)
    if state.pool is None:
        raise state.not_ready()
    s = state.settings
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # it was called "not an image"
        raise ApiError(415, "unsupported media type",
                       f"Content-Encoding {encoding!r} is not supported: send the image bytes "
                       "as they are (JPEG, PNG and WebP are compressed already)")
    body = await read_body(request, s.max_upload_bytes, s.upload_timeout)
    files, fields = split_body(request.headers.get("content-type", ""), body)
    extra = sorted(set(files) - set(file_fields))
    if extra:
        raise ApiError(422, "invalid option", f"unexpected file field {extra[0]!r}; this "
                       f"endpoint takes {' and '.join(file_fields)}")
    if "image" not in files:
        raise ApiError(400, "no image", "send the image as multipart field 'image' or as the "
                       "raw request body")
    for field, (name, data) in files.items():
        if not data:
            raise ApiError(400, "no image", f"the multipart field {field!r} is empty (0 bytes"
                           f"{f', file {name!r}' if name != field else ''}): was the file chosen?")
    query = request.query_params
    twice = sorted({k for k in query if len(query.getlist(k)) > 1} | (set(query) & set(fields)))
    if twice:  # which one was meant? (the query string and the form are merged)
        raise ApiError(422, "invalid option", f"{twice[0]}: given twice")
    raw = {**dict(query), **fields}
    info = state.model_info
    opts = parse_options(raw, allowed, info["confidence"], info["max_detections"], s.timeout)
    return files, opts


def _parse_effect(text: str | None, files: dict):
    """The request's effect, or None to annotate. A ``replace-bg`` picture comes only as the
    uploaded file field ``background``: never as a path the server would open."""
    name, sep, _ = (text or "").strip().partition("=")
    replace = name.strip().lower() == "replace-bg"
    if "background" in files and not replace:
        raise ApiError(422, "invalid option", "a 'background' file needs effect=replace-bg")
    if not text:
        return None
    if replace:
        if sep:
            raise ApiError(422, "invalid option", "effect: send the replace-bg picture as the "
                           "file field 'background', not as a path")
        if "background" not in files:
            raise ApiError(422, "invalid option", "effect replace-bg needs a second file field "
                           "'background'")
        text = "replace-bg=uploaded-background"  # a label only: the decoded upload is used
    from ..effects import parse_effect

    try:
        return parse_effect(text)
    except ValueError as e:
        hint = ""
        if sep and not text.partition("=")[2].strip():  # color-bg=#00ff00 in a URL
            hint = ("; in a URL a '#' starts the fragment, which is never sent: write it %23 "
                    "(effect=color-bg%3D%2300ff00) or leave it out (color-bg=00ff00)")
        raise ApiError(422, "invalid option", f"effect: {e}{hint}") from None


#: Seconds an inference is taken to last in Retry-After before one has finished.
_FIRST_INFERENCE_GUESS = 3.0


async def _run(state: _State, request: Request, job_fn, timeout: float | None):
    """Run ``job_fn`` on the pool within --timeout; give its place back if the client leaves."""
    pool, s = state.pool, state.settings
    try:
        job = pool.submit(job_fn)
    except QueueFull as e:
        state.metrics.rejected += 1
        done = sum(state.metrics.inference.counts)
        # before the first inference has finished, a CPU's time for a photo (it said 1 s
        # while the first took 3, and the web page gave up after its retries)
        mean = state.metrics.inference.total / done if done else _FIRST_INFERENCE_GUESS
        retry = max(1, math.ceil(mean * pool.capacity / s.replicas))
        raise ApiError(503, "busy", f"the server is at capacity ({e}); retry later",
                       {"Retry-After": str(retry)}) from None
    timeout = timeout or s.timeout
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pool.cancel(job)
                state.metrics.timeouts += 1
                raise ApiError(504, "timeout", f"no result within {timeout:g} s")
            done, _ = await asyncio.wait({job.future}, timeout=min(0.2, remaining))
            if done:
                return job.future.result()
            if await request.is_disconnected():
                pool.cancel(job)
                state.metrics.disconnects += 1
                return Response(status_code=499)
    except asyncio.CancelledError:
        # uvicorn's forced exit (a second Ctrl-C) cancels the requests still running: answer
        # why in JSON, as every other error (re-raised, it became a plain-text 500 and a
        # logged traceback per request, which read as a bug of ours).
        pool.cancel(job)
        return _error(503, "shutting down", "the server was stopped before this request "
                      "finished; send it again", {"Connection": "close"})
