"""Reading a request's image and options within the server's limits.

The body is read in chunks and refused with 413 as soon as it passes ``max_upload_bytes``
(or at once from ``Content-Length``); it is kept in memory only, never on disk. A body that
does not arrive within ``upload_timeout`` gets 408. Multipart bodies are parsed from memory
with python-multipart's push parser; any other body is the image itself.
"""
from __future__ import annotations

import asyncio
import time

from ..classes import COCO_CLASSES, class_id
from ..config import FALSE_WORDS, TRUE_WORDS

#: Most multipart parts a request may have, and the largest plain (non-file) field.
MAX_PARTS = 16
MAX_FIELD_BYTES = 4096
#: Parts holding pictures, with or without a file name (``curl -F "image=<photo.jpg"``).
FILE_FIELDS = ("image", "background")


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def _mib(size: int) -> str:
    return f"{size / 2**20:.3g} MiB"


async def read_body(request, limit: int, upload_timeout: float) -> bytes:
    """The whole request body, refusing it with 413 past ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "bad request", f"invalid Content-Length {length!r}") from None
        if declared > limit:
            raise ApiError(413, "payload too large",
                           f"the request body is {_mib(declared)} ({declared} bytes), over "
                           f"this server's limit of {_mib(limit)} (pixellib serve "
                           "--max-upload-mb)", {"Connection": "close"})
    body = bytearray()
    deadline = time.monotonic() + upload_timeout
    from starlette.requests import ClientDisconnect

    stream = request.stream().__aiter__()
    while True:
        remaining = deadline - time.monotonic()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(remaining, 0.001))
        except StopAsyncIteration:
            break
        except ClientDisconnect:
            raise ApiError(499, "client disconnected", "the client left during the upload") \
                from None
        except asyncio.TimeoutError:
            raise ApiError(408, "request timeout",
                           f"the request body did not arrive within {upload_timeout:g} s",
                           {"Connection": "close"}) from None
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "payload too large",
                           f"the request body is over this server's limit of {_mib(limit)} "
                           f"({limit} bytes; pixellib serve --max-upload-mb)",
                           {"Connection": "close"})
    return bytes(body)


def split_body(content_type: str, body: bytes) -> tuple[dict[str, tuple[str, bytes]], dict]:
    """``(files, fields)`` from a request body.

    ``files`` maps a multipart file field to ``(filename, bytes)``; a non-multipart body
    becomes ``{"image": ("body", body)}``. ``fields`` maps plain form fields to strings.
    """
    from python_multipart.multipart import (
        FormParserError,
        MultipartParser,
        parse_options_header,
    )

    ctype, params = parse_options_header(content_type or "")
    # Any other type (image/*, application/octet-stream, or curl's default for --data-binary)
    # is the image itself; the decoder decides whether it is one.
    if ctype != b"multipart/form-data":
        return ({"image": ("body", body)} if body else {}), {}
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed multipart", "multipart/form-data without a boundary")

    parts: list[dict] = []
    header: dict = {"field": b"", "value": b""}

    def on_part_begin():
        if len(parts) >= MAX_PARTS:
            raise ApiError(400, "malformed multipart", f"more than {MAX_PARTS} parts")
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"] += data[start:end]

    try:  # (the parser refuses a boundary over 256 bytes as it is made)
        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        })
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise ApiError(400, "malformed multipart",
                       f"cannot parse the multipart body: {e}") from None
    if parser.state.name != "END":
        raise ApiError(400, "malformed multipart", "the multipart body ends before its last "
                       "boundary")
    files: dict[str, tuple[str, bytes]] = {}
    fields: dict[str, str] = {}
    for part in parts:
        _, disp = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise ApiError(400, "malformed multipart", "a part has no field name")
        if b"filename" in disp or name in FILE_FIELDS:
            if name in files:
                raise ApiError(422, "invalid option", f"field {name!r} given twice")
            files[name] = (disp.get(b"filename", b"").decode("utf-8", "replace") or name,
                           bytes(part["data"]))
        else:
            if len(part["data"]) > MAX_FIELD_BYTES:
                raise ApiError(413, "payload too large", f"form field {name!r} is over "
                               f"{MAX_FIELD_BYTES} bytes: options are short text; an image "
                               "goes in a file field named 'image' (curl -F image=@photo.jpg)")
            if name in fields:
                raise _bad(name, "given twice")
            fields[name] = part["data"].decode("utf-8", "replace")
    return files, fields


# ----------------------------------------------------------------------------- options


def _bad(name: str, detail: str) -> ApiError:
    return ApiError(422, "invalid option", f"{name}: {detail}")


def parse_options(raw: dict[str, str], allowed: dict[str, str], server_confidence: float,
                  max_detections: int, server_timeout: float) -> dict:
    """Validate the per-request options (query string and form fields merged).

    ``allowed`` maps each option this endpoint takes to a one-line help; anything else is a
    422. Confidence may only raise the server's threshold; ``max_detections`` and ``timeout``
    may only lower the server's.
    """
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise _bad(unknown[0], f"unknown option; this endpoint takes {', '.join(allowed)}")
    out: dict = {"confidence": None, "classes": None, "polygons": False,
                 "max_detections": None, "boxes": False, "effect": None, "format": None,
                 "timeout": None, "feather": 0.0, "detections": False}
    for name, text in raw.items():
        text = text.strip()
        if name == "confidence":
            value = _number(name, text, float)
            if not 0.0 <= value <= 1.0:
                raise _bad(name, f"must be between 0 and 1, got {text}")
            if value < server_confidence:
                raise _bad(name, f"{value:g} is below the server's threshold "
                           f"{server_confidence:g}; a request can only raise it")
            out[name] = value
        elif name == "classes":
            out[name] = _classes(text)
        elif name in ("polygons", "boxes", "detections"):
            out[name] = _boolean(name, text)
        elif name == "max_detections":
            value = _number(name, text, int)
            if not 0 <= value <= max_detections:
                raise _bad(name, f"must be between 0 and {max_detections}, got {value}")
            out[name] = value
        elif name == "timeout":
            value = _number(name, text, float)
            if not 0 < value <= server_timeout:
                raise _bad(name, f"must be in (0, {server_timeout:g}] seconds (the server's "
                           f"--timeout), got {text}")
            out[name] = value
        elif name == "feather":
            value = _number(name, text, float)
            if not 0 <= value <= 100:
                raise _bad(name, f"must be between 0 and 100 pixels, got {text}")
            out[name] = value
        elif name == "format":
            if text.lower() not in ("jpeg", "jpg", "png", "webp"):
                raise _bad(name, f"expected jpeg, png or webp, got {text!r}")
            out[name] = "jpeg" if text.lower() == "jpg" else text.lower()
        elif name == "effect":
            out[name] = text or None
    return out


def _number(name: str, text: str, kind: type) -> float | int:
    """``text`` as ``kind`` (float or int), or a 422 naming the option."""
    try:
        return kind(text)
    except ValueError:
        raise _bad(name, f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None


def _boolean(name: str, text: str) -> bool:
    low = text.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    if not low:  # "?polygons" alone: say so rather than read it as either
        raise _bad(name, f"expected true or false, got no value (write {name}=true)")
    raise _bad(name, f"expected true or false, got {text!r}")


def _classes(text: str) -> list[int]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise _bad("classes", "expected class names or ids, e.g. person,car")
    ids = []
    for item in items:
        if item.isascii() and item.isdigit():  # not '²' or '①', which int() refuses
            if int(item) >= len(COCO_CLASSES):
                raise _bad("classes", f"class id {item} is not below {len(COCO_CLASSES)}")
            ids.append(int(item))
        else:
            try:
                ids.append(class_id(item))
            except ValueError as e:
                raise _bad("classes", str(e)) from None
    return ids
