"""The server's options and limits. No request can raise any of them."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from ..errors import ServeOptionError

#: Environment variable read for the API key when ``--api-key`` is not given.
API_KEY_ENV = "PIXELLIB_API_KEY"




@dataclass(frozen=True)
class ServeSettings:
    """Everything :func:`pixellib.serve.app.create_app` needs to know.

    ``model`` is a checkpoint path (already resolved: names are downloaded by the CLI).
    ``timeout`` bounds the wait for an inference slot plus the inference, in seconds;
    ``upload_timeout`` bounds the time a client may take to send its request body, and
    ``head_timeout`` its request line and headers (:mod:`pixellib.serve.protocol`).
    ``max_upload_bytes`` bounds the whole request body. ``max_pixels`` bounds an image's
    width x height, read from its header before decoding.
    """

    model: str = ""
    speed: str | None = None
    confidence: float | None = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_queue: int = 8
    timeout: float = 60.0
    upload_timeout: float = 60.0
    head_timeout: float = 10.0
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    api_key: str | None = None
    insecure_no_auth: bool = False
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    torch_threads: int | None = None  # per replica; None: the cores divided between replicas

    def __post_init__(self):
        if self.replicas < 1:
            raise ServeOptionError(f"--workers must be at least 1, got {self.replicas}")
        if self.max_queue < 0:
            raise ServeOptionError(f"--max-queue must be 0 or more, got {self.max_queue}")
        for name in ("timeout", "upload_timeout", "head_timeout"):
            if not getattr(self, name) > 0:
                raise ServeOptionError(f"{name} must be a positive number of seconds")
        if self.max_upload_bytes < 1:
            raise ServeOptionError("--max-upload-mb must be positive")
        if self.max_pixels < 1:
            raise ServeOptionError("max_pixels must be positive")
        if self.api_key is not None and not self.api_key.strip():
            raise ServeOptionError("the API key is empty")
        if self.api_key is not None and not all(33 <= ord(c) <= 126 for c in self.api_key):
            # HTTP header values are bytes read as latin-1: other characters (curl sends
            # UTF-8) or spaces could never match what a client sends.
            raise ServeOptionError("the API key must be printable ASCII without spaces")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ServeOptionError(f"--threads must be at least 1, got {self.torch_threads}")
        if not is_loopback(self.host) and self.api_key is None and not self.insecure_no_auth:
            raise ServeOptionError(
                f"--host {self.host} accepts connections from other machines: give --api-key "
                f"(or ${API_KEY_ENV}), or --insecure-no-auth to serve without authentication"
            )

    @property
    def threads_per_replica(self) -> int:
        if self.torch_threads:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // self.replicas)

    def limits(self) -> dict:
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            # null for no limit (inf is not JSON: /v1/info answered 500)
            "timeout_s": _finite_or_none(self.timeout),
            "upload_timeout_s": _finite_or_none(self.upload_timeout),
            "head_timeout_s": _finite_or_none(self.head_timeout),
            "replicas": self.replicas,
            "max_queue": self.max_queue,
            "torch_threads_per_replica": self.threads_per_replica,
        }


def _finite_or_none(seconds: float) -> float | None:
    return None if seconds == float("inf") else seconds


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
