"""The server's HTTP/1.1 connection handling: uvicorn's h11 protocol with a deadline for the
request head.

uvicorn times out an idle keep-alive connection once a response is done, but not a client
that connects and then sends nothing, or sends its request line and headers a byte at a
time: such a connection stays open for ever. uvicorn counts open connections against
``limit_concurrency``, so a few dozen of them make the server answer 503 to everyone. Here
the head of each request (the request line and headers) must arrive within ``head_timeout``
seconds of the connection opening, or of the previous response ending; otherwise the
connection is closed, after a ``408 Request Timeout`` answer when part of a head had come
(a connection that sent nothing is closed quietly, as uvicorn closes an idle keep-alive
one: a client about to reuse it must not read a 408 as the answer to its next request).
The body has its own deadline
(``--upload-timeout``, in :func:`pixellib.serve.uploads.read_body`).

Answers given here, before a request reaches the app (this 408, uvicorn's 400 for data that
is not HTTP and its 503 over the connection limit), are counted in the server's metrics
(``pixellib_connection_answers_total``): the app's own middleware never sees them.
"""
from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: The longest request head (request line and headers) h11 holds while waiting for its end.
HEAD_LIMIT = 16 * 1024
#: The 431 answer's error and detail, the same from the app (a head that came whole) and from
#: here (one still arriving).
HEAD_TOO_LARGE = ("request head too large", f"the request line and headers are over "
                  f"{HEAD_LIMIT // 1024} KiB; send long options in the form body, not the URL")


def _answer(status: int, reason: str, error: str, detail: str) -> bytes:
    """A whole answer in the server's JSON error form (pixellib.serve.app), written by hand:
    there is no request for the app to answer."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


_REQUEST_TIMEOUT = _answer(408, "Request Timeout", "request timeout",
                           "the request line and headers did not arrive in time")


# What uvicorn logs when it answers 503 itself, instead of calling the app.
_OVER_THE_LIMIT = "Exceeded concurrency limit."


class _CountOverLimit:
    """uvicorn's logger for one connection, counting the 503s it logs (their only trace);
    everything else is the logger's own."""

    def __init__(self, logger: logging.Logger, metrics):
        self._logger = logger
        self._metrics = metrics

    def __getattr__(self, name: str):
        return getattr(self._logger, name)

    def warning(self, msg, *args, **kwargs):
        if msg == _OVER_THE_LIMIT:
            self._metrics.connection_answers[503] += 1
        kwargs.setdefault("stacklevel", 2)  # logged where uvicorn calls it
        self._logger.warning(msg, *args, **kwargs)


class HeadTimeoutProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request head is late (see the
    module doc) and counts the answers it gives without the app in ``metrics`` (a
    :class:`~pixellib.serve.metrics.Metrics`, or None). Subclass with
    :func:`head_timeout_protocol` to set them."""

    head_timeout: float = 60.0
    metrics = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.metrics is not None:
            self.logger = _CountOverLimit(self.logger, self.metrics)
        # What h11 found wrong, for the answer (uvicorn's says "Invalid HTTP request
        # received." in plain text, whatever it was).
        self._protocol_error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def next_event_kept():
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error = exc
                raise

        self.conn.next_event = next_event_kept

    def send_400_response(self, msg: str) -> None:
        """Answer data that is not a valid HTTP request: 431 for a request line and headers
        over :data:`HEAD_LIMIT`, else 400, in the JSON error form, naming the problem."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            # the request already has its answer (given before its body ended): a second
            # one would be read as the answer to the client's next request
            self.transport.close()
            return
        exc = self._protocol_error
        status = getattr(exc, "error_status_hint", 400)
        if status == 431:
            answer = _answer(431, "Request Header Fields Too Large", *HEAD_TOO_LARGE)
        else:
            status = 400
            answer = _answer(400, "Bad Request", "not valid HTTP",
                             f"the request could not be read as HTTP/1.1"
                             f"{f': {exc}' if exc is not None and str(exc) else ''}")
        if self.metrics is not None:
            self.metrics.connection_answers[status] += 1
        self.transport.write(answer)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        # The cycle of the request before: a new cycle object means the next head arrived.
        self._waiting_after = self.cycle
        self._head_started = False
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_late)

    def _disarm_head_deadline(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._head_deadline = None

    def data_received(self, data: bytes) -> None:
        # Bytes of a next request's head, not the rest of a body answered early (a 404 sent
        # before the upload ended): those must not earn the next request a 408.
        if data and self._head_deadline is not None and self.conn.their_state is h11.IDLE:
            self._head_started = True
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_deadline is not None:
            if self.cycle is not self._waiting_after:
                self._disarm_head_deadline()  # the head is in: the app handles the rest
        elif self._awaiting_next_head():
            # answered before its body had ended, the request is now over: the next head
            # is awaited from here (uvicorn sets no keep-alive timer in this case either)
            self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting_next_head():
            self._arm_head_deadline()  # the next request's head, on this connection

    def _awaiting_next_head(self) -> bool:
        """Whether the last request and its answer are both over and nothing of the next
        request has been read as a request yet."""
        return (not self.transport.is_closing() and self.cycle is not None
                and self.cycle.response_complete and self.conn.their_state is h11.IDLE
                and self.conn.our_state is h11.IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.cycle is not self._waiting_after:
            return
        self._unset_keepalive_if_required()
        if self._head_started:
            self.transport.write(_REQUEST_TIMEOUT)
            if self.metrics is not None:
                self.metrics.connection_answers[408] += 1
        self.transport.close()


def head_timeout_protocol(seconds: float, metrics=None) -> type[HeadTimeoutProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, with that deadline, counting
    its own answers in ``metrics`` when given."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,),
                {"head_timeout": float(seconds), "metrics": metrics})


def uvicorn_config(app, settings, **options):
    """The ``uvicorn.Config`` the server runs ``app`` with: this module's protocol with
    ``settings.head_timeout``, no ``Server`` header, and a concurrency limit above what the
    replicas and the queue can hold (``options`` go to ``uvicorn.Config``)."""
    import uvicorn

    # Idle connections are closed after head_timeout, so the limit can be generous: it only
    # guards the process's file descriptors.
    options.setdefault("limit_concurrency", max(512, 4 * (settings.replicas + settings.max_queue)))
    state = getattr(getattr(app, "state", None), "pixellib", None)  # create_app's
    protocol = head_timeout_protocol(settings.head_timeout, getattr(state, "metrics", None))
    return uvicorn.Config(app, http=protocol,
                          server_header=False, **options)
