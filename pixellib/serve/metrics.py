"""Request counts, latencies and queue length in Prometheus' text exposition format.

Only the event loop thread updates the request metrics; the inference histogram is updated
from worker threads under a lock.
"""
from __future__ import annotations

import threading
from collections import defaultdict

#: Histogram bucket upper bounds, in seconds.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        i = next((i for i, b in enumerate(BUCKETS) if value <= b), len(BUCKETS))
        self.counts[i] += 1
        self.total += value

    def lines(self, name: str, labels: str) -> list[str]:
        out, cumulative = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*BUCKETS, "+Inf"), self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.total:.6f}")
        out.append(f"{name}_count{braces} {cumulative}")
        return out


class Metrics:
    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self.inference = _Histogram()
        self.rejected = 0  # 503 for a full queue
        self.timeouts = 0  # 504
        self.disconnects = 0  # clients gone before their answer
        self.stopped = 0  # inferences stopped part-way: their request had given up
        # Answers the connection handling gave before a request reached the app, by status:
        # 400 not HTTP, 408 head too late, 503 over the connection limit.
        self.connection_answers: dict[int, int] = {400: 0, 408: 0, 431: 0, 503: 0}
        self._lock = threading.Lock()

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(method, endpoint, status)] += 1
        self.latency[endpoint].observe(seconds)

    def observe_inference(self, seconds: float) -> None:
        with self._lock:
            self.inference.observe(seconds)

    def observe_stopped(self, seconds: float) -> None:
        with self._lock:
            self.stopped += 1

    def render(self, *, queued: int, running: int, replicas: int, ready: bool) -> str:
        lines = [
            "# HELP pixellib_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE pixellib_requests_total counter",
        ]
        for (method, endpoint, status), n in sorted(self.requests.items()):
            lines.append(f'pixellib_requests_total{{method="{method}",endpoint="{endpoint}",'
                         f'status="{status}"}} {n}')
        lines += ["# HELP pixellib_request_duration_seconds Time to answer a request.",
                  "# TYPE pixellib_request_duration_seconds histogram"]
        for endpoint, hist in sorted(self.latency.items()):
            lines += hist.lines("pixellib_request_duration_seconds", f'endpoint="{endpoint}"')
        lines += ["# HELP pixellib_connection_answers_total Answers given before a request "
                  "reached the app (not in pixellib_requests_total): 400 not valid HTTP, 408 "
                  "request head too late, 431 request head too large while it arrived (a "
                  "whole one is the app's, in pixellib_requests_total), 503 over the "
                  "connection limit.",
                  "# TYPE pixellib_connection_answers_total counter"]
        for status, n in sorted(self.connection_answers.items()):
            lines.append(f'pixellib_connection_answers_total{{status="{status}"}} {n}')
        lines += ["# HELP pixellib_inference_seconds Time a replica spent on one request.",
                  "# TYPE pixellib_inference_seconds histogram"]
        with self._lock:
            lines += self.inference.lines("pixellib_inference_seconds", "")
        for name, kind, value, text in (
            ("queue_length", "gauge", queued, "Requests waiting for a replica."),
            ("inferences_running", "gauge", running, "Requests on a replica now."),
            ("replicas", "gauge", replicas, "Model replicas loaded."),
            ("ready", "gauge", int(ready), "1 once the model is loaded."),
            ("rejected_total", "counter", self.rejected, "Requests refused: queue full (503)."),
            ("timeouts_total", "counter", self.timeouts, "Requests over --timeout (504)."),
            ("disconnects_total", "counter", self.disconnects,
             "Requests whose client left before the answer."),
            ("inferences_stopped_total", "counter", self.stopped,
             "Inferences stopped part-way (at a stage boundary of the model) because their "
             "request had given up: over --timeout or client gone."),
        ):
            lines += [f"# HELP pixellib_{name} {text}", f"# TYPE pixellib_{name} {kind}",
                      f"pixellib_{name} {value}"]
        return "\n".join(lines) + "\n"
