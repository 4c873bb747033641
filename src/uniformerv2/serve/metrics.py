"""The service's figures in the Prometheus text format (``GET /metrics``), without a client library.

    uniformerv2_requests_total{endpoint,outcome}   answered requests by outcome (ok, bad_input, too_large,
                                                   unsupported_media, overloaded, timeout, cancelled, ...)
    uniformerv2_request_seconds                    latency histogram of answered /v1 requests
    uniformerv2_batch_views                        histogram of the views filled per forward pass (of max_batch)
    uniformerv2_forward_seconds_total, uniformerv2_forward_passes_total, uniformerv2_views_total,
    uniformerv2_padded_views_total                 the model's work
    uniformerv2_queue_depth                        requests admitted and not yet answered (bounded by --queue)
    uniformerv2_decoding, uniformerv2_decode_waiting   videos in / waiting for the decode workers
    uniformerv2_videos_total, uniformerv2_videos_per_second   videos through the model (rate over the last 60 s)
    uniformerv2_decode_workers_replaced_total      decode processes that died and were replaced
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RATE_WINDOW_S = 60.0


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for b, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{name}_bucket{{le="{b:g}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out += [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]
        return out


class Metrics:
    """Counters of one service; every method may be called from any thread."""

    def __init__(self, max_batch: int):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch = Histogram(sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b < max_batch} | {max_batch}))
        self.passes = 0
        self.views = 0
        self.padded = 0
        self.forward_s = 0.0
        self.videos = 0
        self.recent: deque[float] = deque()
        self.started = time.monotonic()

    def request(self, endpoint: str, outcome: str, seconds: float | None) -> None:
        with self.lock:
            key = (endpoint, outcome)
            self.requests[key] = self.requests.get(key, 0) + 1
            if seconds is not None:
                self.latency.observe(seconds)

    def forward_pass(self, filled: int, size: int, seconds: float) -> None:
        with self.lock:
            self.passes += 1
            self.views += filled
            self.padded += size - filled
            self.forward_s += seconds
            self.batch.observe(filled)

    def video_done(self) -> None:
        now = time.monotonic()
        with self.lock:
            self.videos += 1
            self.recent.append(now)
            while self.recent and self.recent[0] < now - RATE_WINDOW_S:
                self.recent.popleft()

    def videos_per_s(self) -> float:
        now = time.monotonic()
        with self.lock:
            while self.recent and self.recent[0] < now - RATE_WINDOW_S:
                self.recent.popleft()
            span = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
            return len(self.recent) / span

    def count(self, endpoint: str | None = None, outcome: str | None = None) -> int:
        with self.lock:
            return sum(n for (e, o), n in self.requests.items()
                       if (endpoint is None or e == endpoint) and (outcome is None or o == outcome))

    def text(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges``: name -> (help, value) read from the service at scrape time."""
        rate = self.videos_per_s()
        with self.lock:
            lines = ["# HELP uniformerv2_requests_total Answered requests by endpoint and outcome.",
                     "# TYPE uniformerv2_requests_total counter"]
            for (endpoint, outcome), n in sorted(self.requests.items()):
                lines.append(f'uniformerv2_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} {n}')
            lines += ["# HELP uniformerv2_request_seconds Latency of answered /v1 requests.",
                      "# TYPE uniformerv2_request_seconds histogram", *self.latency.lines("uniformerv2_request_seconds"),
                      "# HELP uniformerv2_batch_views Views filled per forward pass.",
                      "# TYPE uniformerv2_batch_views histogram", *self.batch.lines("uniformerv2_batch_views")]
            counters = {"forward_passes_total": ("Forward passes run.", self.passes),
                        "views_total": ("Views through the model (padding not counted).", self.views),
                        "padded_views_total": ("Zero views that filled partial passes.", self.padded),
                        "forward_seconds_total": ("Seconds spent in forward passes.", self.forward_s),
                        "videos_total": ("Videos through the model.", self.videos)}
            for name, (text, value) in counters.items():
                lines += [f"# HELP uniformerv2_{name} {text}", f"# TYPE uniformerv2_{name} counter",
                          f"uniformerv2_{name} {value:g}" if isinstance(value, float) else f"uniformerv2_{name} {value}"]
        gauges = {"videos_per_second": (f"Videos through the model per second over the last {RATE_WINDOW_S:g} s.",
                                        rate), **gauges}
        for name, (text, value) in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP uniformerv2_{name} {text}", f"# TYPE uniformerv2_{name} {kind}",
                      f"uniformerv2_{name} {value:g}"]
        return "\n".join(lines) + "\n"
