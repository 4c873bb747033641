"""Live recognition: the most recent clip of an endless feed (a camera, a network stream, a pipe, a file played at
its own rate) classified every few seconds, with bounded lag.

    decoding thread (``Feed``)                                   the caller's thread (``LiveStream``)
    source -> frames on the stream's clock (seconds from the     newest window -> views (the model's crops)
    first frame) -> ring buffer of one window's frames ->        -> ``Engine.forward_views`` -> smoothed top-k
    every ``every`` s: the recipe's clip of the newest window    -> ``LiveUpdate`` (lag, windows skipped)
    -> the slot (one window; a newer one replaces it: skipped)

Sampling. A window is the last ``window`` seconds of feed, ending at the frame that made it due. On the grid of
the feed's nominal rate r (declared by the stream, else measured from its timestamps) it holds N = round(window x
r) frame slots; the clip takes slots ``clip_indices(N, ...)`` -- the recipe's test sampling of a video of N frames
(sparse segments, or T frames ``stride`` apart) -- and each slot is the buffered frame whose timestamp is nearest
to the slot's time. On a constant-rate feed these are exactly the frames ``predict --window`` samples from the
same N frames; on a variable-rate feed the clip keeps its spacing in seconds, not in frame counts.

Lag. Decoding never waits for the model: the slot holds one window, and when the model is still busy with the
previous one a newer window replaces the waiting one (the newest wins; the next update says how many were
skipped). ``lag`` is the time from the arrival of the window's last frame to its result. Memory is the ring (one
window of frames at the model's short side), the slot and the clip being classified, whatever the stream's length.

Faults. A source that does not open is a ``UserError`` at once. A network source that drops (end of stream, read
timeout, error) is opened again with back-off (``reconnect``, default on for network sources); the feed's clock
runs on through the gap, the ring starts again and the next update reports the ``gap``.

A file is read at its own frame rate with ``realtime=True`` (a stand-in for a live feed); without it every window
of the file is classified, the reading waiting for the model.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from .pipeline import usable_cores
from .views import ViewMaker, clip_indices, parse_views

SPARSE_SPACING_S = 0.25      # sparse recipes: the default window is T frames a quarter of a second apart
OPEN_TIMEOUT_S = 10.0        # a network source that does not answer in this time does not open
READ_TIMEOUT_S = 5.0         # a connection without data for this long is lost
BACKOFF_S = (0.5, 8.0)       # reconnect: first wait, doubled after each failure up to the second value
MAX_RING = 4096              # frames in the ring at most (a guard against broken timestamps)
NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "tcp", "udp", "rtp",
                             "srt", "hls", "mmsh", "mmst", "tls", "rist", "zmq"})
LAGS_KEPT = 10000            # updates whose lag the summary's percentile covers (the mean covers all)


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class LiveSource:
    """Where frames come from: ``kind`` is "device" (a camera: ``/dev/videoN``), "network" (a URL), "file"
    (read at its own rate with ``realtime``) or "stdin" (``-``); ``format`` / ``options``: the demuxer's."""
    name: str
    kind: str
    format: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def network(self) -> bool:
        return self.kind == "network"


def parse_source(source, format: str | None = None, options: dict | None = None) -> LiveSource:
    """A SOURCE argument as a ``LiveSource``; a camera device or file that does not exist is a ``UserError``."""
    name = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    opts = {str(k): str(v) for k, v in (options or {}).items()}
    if name == "-":
        return LiveSource(name, "stdin", format, opts)
    if "://" in name:
        scheme = name.split("://", 1)[0].lower()
        if scheme == "file":
            return parse_source(name[len("file://"):], format, opts)
        if scheme not in NETWORK_SCHEMES and not scheme.startswith(("rtmp", "rtsp", "http")):
            raise UserError(f"{name}: unknown stream scheme {scheme!r} (rtsp, rtmp, http(s), tcp, udp, srt, ...)")
        return LiveSource(name, "network", format, opts)
    if name.startswith("/dev/"):
        if not os.path.exists(name):
            raise UserError(f"{name}: no such camera device")
        return LiveSource(name, "device", format or ("v4l2" if sys.platform.startswith("linux") else None), opts)
    if not os.path.exists(name):
        raise UserError(f"{name}: no such file (a live source is a camera device, a URL, a file or -)")
    if os.path.isdir(name):
        raise UserError(f"{name}: is a folder, not a video")
    return LiveSource(name, "file", format, opts)


def open_source(src: LiveSource, timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S):
    """The opened container and its video stream (set up for low delay); any failure is one ``UserError`` line."""
    import av

    target = sys.stdin.buffer if src.kind == "stdin" else src.name
    kwargs = {"format": src.format, "options": dict(src.options)}
    if src.network:
        kwargs["timeout"] = (timeout, read_timeout)
    try:
        container = av.open(target, **kwargs)
    except (OSError, av.FFmpegError, ValueError) as e:
        raise UserError(f"{src.name}: cannot open the source ({_reason(e)})") from e
    video = [s for s in container.streams.video]
    if not video:
        container.close()
        raise UserError(f"{src.name}: no video stream")
    stream = video[0]
    stream.thread_type = "SLICE"   # frame threads hold back one frame per thread: latency
    return container, stream


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


def declared_rate(stream) -> float | None:
    rate = stream.average_rate
    try:
        rate = float(rate) if rate else None
    except (TypeError, ZeroDivisionError):
        rate = None
    return rate if rate and 0 < rate <= 1000 else None


# ----------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class LivePlan:
    """What a window is and which of its frames a clip takes: ``length`` frames per clip (the model's T),
    ``clips`` x ``crops`` views, the recipe's ``sampling`` / ``stride``, ``window`` and ``every`` in seconds."""
    length: int
    clips: int
    crops: int
    sampling: str
    stride: int | None
    window: float | None
    every: float | None

    def window_s(self, rate: float) -> float:
        """The window in seconds: given, or the dense recipe's clip span at ``rate``, or T x ``SPARSE_SPACING_S``."""
        if self.window is not None:
            return self.window
        if self.sampling == "dense":
            return ((self.length - 1) * self.stride + 1) / rate
        return self.length * SPARSE_SPACING_S

    def every_s(self, rate: float) -> float:
        return self.every if self.every is not None else self.window_s(rate) / 2

    def slots(self, rate: float) -> int:
        """N: the frame slots of a window at the nominal ``rate``."""
        return max(1, round(self.window_s(rate) * rate))

    def indices(self, rate: float) -> np.ndarray:
        """(clips, T) slot indices in [0, N): the recipe's test sampling of N frames."""
        return clip_indices(self.slots(rate), self.length, self.clips, 0, self.sampling, self.stride)

    def targets(self, t_end: float, rate: float) -> np.ndarray:
        """(clips, T) stream times of the slots a clip takes from the window ending at ``t_end``."""
        n = self.slots(rate)
        return t_end - (n - 1 - self.indices(rate)) / rate


@dataclass
class Window:
    """A due window as the decoder hands it over: its end (``t_end``, stream seconds), the sampled frames
    (clips x T arrays at the model's short side) and their stream ``times`` (clips, T), the monotonic ``arrival``
    of its last frame, that frame (``last_frame``), the ring's length then (``buffered``), and the feed lost to
    reconnecting since the previous window (``gap``, seconds, or None)."""
    t_end: float
    start: float
    times: np.ndarray
    frames: list
    arrival: float
    last_frame: np.ndarray
    buffered: int
    rate: float
    gap: float | None = None


# ----------------------------------------------------------------------------------------------- the feed
class Feed:
    """The decoding thread: reads the source, keeps the ring, hands over due windows (see the module doc).

    ``realtime``: pace the reading by the frames' timestamps (a file as a live feed); ``lossless``: wait for the
    model instead of replacing a waiting window (a file read without ``realtime``). ``duration``: stop after
    this many seconds of feed. ``record``: a ``Recorder`` that gets every frame. ``log``: called with one line
    per event (connection lost, reconnected)."""

    def __init__(self, src: LiveSource, plan: LivePlan, short_side: int, *, realtime: bool = False,
                 lossless: bool = False, reconnect: bool = False, duration: float | None = None, record=None,
                 log=None, backoff: tuple[float, float] = BACKOFF_S, timeout: float = OPEN_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S):
        self.src, self.plan, self.short_side = src, plan, int(short_side)
        self.realtime, self.lossless, self.reconnect = realtime, lossless, reconnect
        self.duration, self.record, self.log = duration, record, log or (lambda line: None)
        self.backoff, self.timeout, self.read_timeout = backoff, timeout, read_timeout
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.pending: Window | None = None
        self.skipped = 0                 # windows replaced in the slot since the last take
        self.skipped_total = 0
        self.windows = 0                 # windows made due
        self.frames = 0                  # frames decoded
        self.busy = 0.0                  # seconds the thread spent decoding, converting and buffering them
        self.reconnects = 0
        self.gap_total = 0.0
        self.finished = False
        self.error: BaseException | None = None
        self._gap: float | None = None
        self._container, self._stream = open_source(src, timeout, read_timeout)   # fails here, in the caller
        self._thread = threading.Thread(target=self._run, name="uniformerv2-live-feed", daemon=True)

    def start(self) -> "Feed":
        self._thread.start()
        return self

    # ---------------------------------------------------------------- the caller's side
    def take(self) -> tuple[Window | None, int]:
        """The waiting window (None once the feed has ended and nothing waits) and the windows skipped since the
        previous take."""
        with self.cond:
            while self.pending is None and not self.finished:
                self.cond.wait(0.5)
            win, self.pending = self.pending, None
            skipped, self.skipped = self.skipped, 0
            self.cond.notify_all()
        if win is None and self.error is not None:
            raise self.error
        return win, skipped

    def stop(self, wait: float = 2.0) -> None:
        self.stopping.set()
        with self.cond:
            self.finished = True
            self.cond.notify_all()
        if self._thread.ident is None:
            self._close()              # never started: the source opened by __init__
        elif self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(wait)

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        try:
            self._read_all()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e
        finally:
            self._close()
            with self.cond:
                self.finished = True
                self.cond.notify_all()

    def _close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a broken connection may not close cleanly
                pass
            self._container = None

    def _read_all(self) -> None:
        self._clock = 0.0             # stream time of the next connection's first frame
        self._t_last = None           # stream time of the last frame
        while not self.stopping.is_set():
            ended, why = self._read_connection()
            if self.stopping.is_set() or ended == "done":
                return
            if not (self.src.network and self.reconnect):
                if why and ended == "lost":
                    self.log(f"{self.src.name}: stream ended ({why})")
                return
            lost_at = time.monotonic()
            self.log(f"{self.src.name}: connection lost ({why or 'end of stream'}); reconnecting")
            if not self._reopen(lost_at):
                return
            gap = time.monotonic() - lost_at
            self.reconnects += 1
            self.gap_total += gap
            self._gap = (self._gap or 0.0) + gap
            self._clock = (self._t_last if self._t_last is not None else 0.0) + gap
            self.log(f"{self.src.name}: reconnected after {gap:.1f} s")

    def _reopen(self, lost_at: float) -> bool:
        wait = self.backoff[0]
        while not self.stopping.is_set():
            if self.duration is not None and self._t_last is not None and \
                    self._t_last + (time.monotonic() - lost_at) >= self.duration:
                return False
            if self.stopping.wait(wait):
                return False
            try:
                self._container, self._stream = open_source(self.src, self.timeout, self.read_timeout)
                return True
            except UserError as e:
                wait = min(self.backoff[1], wait * 2)
                self.log(f"{e}; next try in {wait:.1f} s")
        return False

    def _read_connection(self) -> tuple[str, str | None]:
        """Decode one connection: ("done", None) at ``duration`` or on stop, ("lost", why) otherwise."""
        import av

        container, stream = self._container, self._stream
        rate = declared_rate(stream)
        ring: collections.deque = collections.deque()
        offset = None                 # stream time = frame time + offset
        wall0 = None
        due = None
        why = None
        try:
            for packet in container.demux(stream):
                t0 = time.perf_counter()
                try:
                    decoded = packet.decode()
                except av.InvalidDataError:
                    continue           # a damaged packet (joining a stream mid-picture): the next one
                finally:
                    self.busy += time.perf_counter() - t0
                for frame in decoded:
                    if self.stopping.is_set():
                        return "done", None
                    t_src = frame.time
                    if t_src is None:
                        t_src = (ring[-1][0] - offset + 1 / (rate or 25)) if ring else 0.0
                    if offset is None:
                        offset = self._clock - t_src
                    t = t_src + offset
                    if self._t_last is not None and t <= self._t_last:
                        if ring and t < self._t_last - max(1.0, self.plan.window_s(rate or 25)):
                            offset += self._t_last - t + 1 / (rate or 25)   # the source's clock restarted
                            t = t_src + offset
                            ring.clear()
                            due = None
                        else:
                            continue       # a repeated or reordered timestamp
                    if self.duration is not None and t >= self.duration:
                        return "done", None
                    if self.realtime:
                        if wall0 is None:
                            wall0 = time.monotonic() - t
                        delay = wall0 + t - time.monotonic()
                        if delay > 0 and self.stopping.wait(delay):
                            return "done", None
                    arrival = time.monotonic()
                    t0 = time.perf_counter()
                    rgb = frame.to_ndarray(format="rgb24")
                    if self.record is not None:
                        self.record.put(t, rgb)
                    small = _short_side(rgb, self.short_side)
                    del rgb
                    self._t_last = t
                    self.frames += 1
                    ring.append((t, small, arrival))
                    self.busy += time.perf_counter() - t0
                    if rate is None:
                        rate = _measured_rate(ring)
                        if rate is None:
                            continue
                    span = (self.plan.slots(rate) - 1) / rate
                    while len(ring) > MAX_RING or ring[0][0] < t - span - 2.0 / rate:
                        ring.popleft()
                    eps = 0.25 / rate
                    if due is None:
                        if t - ring[0][0] < span - eps:
                            continue
                        due = t
                    if t < due - eps:
                        continue
                    every = self.plan.every_s(rate)
                    while due <= t + eps:
                        due += every
                    self._offer(self._window(ring, t, rate, arrival))
        except (OSError, av.FFmpegError, EOFError) as e:
            why = _reason(e)
        finally:
            self._close()
        return "lost", why

    def _window(self, ring, t_end: float, rate: float, arrival: float) -> Window:
        times = np.fromiter((f[0] for f in ring), float, len(ring))
        targets = self.plan.targets(t_end, rate)
        pos = np.searchsorted(times, targets.reshape(-1))
        lo, hi = np.clip(pos - 1, 0, len(times) - 1), np.clip(pos, 0, len(times) - 1)
        pick = np.where(np.abs(times[hi] - targets.reshape(-1)) < np.abs(times[lo] - targets.reshape(-1)), hi, lo)
        frames = [ring[int(i)][1] for i in pick]
        gap, self._gap = self._gap, None
        start = t_end - (self.plan.slots(rate) - 1) / rate
        return Window(t_end, start, times[pick].reshape(targets.shape), frames, arrival, ring[-1][1], len(ring),
                      rate, gap)

    def _offer(self, win: Window) -> None:
        with self.cond:
            self.windows += 1
            if self.lossless:
                while self.pending is not None and not self.stopping.is_set():
                    self.cond.wait(0.5)
            if self.pending is not None:
                self.skipped += 1
                self.skipped_total += 1
                if self.pending.gap:          # a skipped window's gap goes to the next update
                    win.gap = (win.gap or 0.0) + self.pending.gap
            self.pending = win
            self.cond.notify_all()


def _short_side(rgb: np.ndarray, short: int) -> np.ndarray:
    from ..data.video import resize_short_side

    return resize_short_side(rgb, short)


def _measured_rate(ring) -> float | None:
    """The nominal rate of a stream that declares none: the median interval of its first frames."""
    if len(ring) < 5:
        return None
    dt = np.diff([f[0] for f in ring])
    dt = dt[dt > 0]
    return float(1 / np.median(dt)) if len(dt) else None


# ----------------------------------------------------------------------------------------------- updates
@dataclass
class LiveUpdate:
    """One result: the window of feed ``[start, stream_time]`` (stream seconds from the first frame), ``top_k``
    (``ClassScore``\\ s of the smoothed probabilities, those under the threshold left out), ``probs`` (smoothed),
    ``lag`` (seconds from the arrival of the window's last frame to this result), ``skipped`` (newer windows
    replaced waiting ones since the previous update), ``wall_time`` (epoch seconds), ``frame_times`` (clips, T:
    stream seconds of the frames the clip took), ``gap`` (seconds of feed lost to reconnecting since the
    previous update, or None)."""
    index: int
    stream_time: float
    start: float
    wall_time: float
    top_k: list
    probs: np.ndarray = field(repr=False)
    lag: float = 0.0
    skipped: int = 0
    frame_times: np.ndarray = field(default=None, repr=False)
    gap: float | None = None

    def to_dict(self, frames: bool = False) -> dict:
        d = {"stream_time": round(self.stream_time, 4), "wall_time": round(self.wall_time, 4),
             "top_k": [s.to_dict() for s in self.top_k], "lag": round(self.lag, 4), "skipped": self.skipped}
        if self.gap is not None:
            d["gap"] = round(self.gap, 3)
        if frames:
            d["frame_times"] = np.round(self.frame_times, 4).tolist()
        return d

    def line(self) -> str:
        labels = ", ".join(f"{s.label} {s.prob:.2f}" for s in self.top_k) or "-"
        extra = f", {self.skipped} skipped" if self.skipped else ""
        gap = f", after a {self.gap:.1f} s gap" if self.gap else ""
        return f"{self.stream_time:9.2f}s  {labels}  (lag {self.lag:.2f} s{extra}{gap})"


@dataclass
class LiveClip:
    """What a debug hook sees of an update's clip: ``views`` uint8 (V, 3, T, S, S) as they went to the model,
    ``frames`` the sampled frames (clips x T, at the model's short side) and their stream ``times``, the
    window's ``last_frame`` and the ring's length (``buffered``)."""
    views: torch.Tensor
    frames: list
    times: np.ndarray
    last_frame: np.ndarray
    buffered: int
    rate: float


@dataclass
class LiveStats:
    """Figures of a live run: updates, windows made due and skipped, lag (mean over all updates, p95 over the
    last ``LAGS_KEPT``), model seconds per update, the decoding thread's seconds (``decode_s``, over ``frames``),
    reconnects and the feed lost to them."""
    updates: int = 0
    windows: int = 0
    skipped: int = 0
    frames: int = 0
    reconnects: int = 0
    gap: float = 0.0
    decode_s: float = 0.0
    lag_sum: float = 0.0
    model_sum: float = 0.0
    lags: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LAGS_KEPT), repr=False)

    @property
    def mean_lag(self) -> float:
        return self.lag_sum / self.updates if self.updates else 0.0

    @property
    def p95_lag(self) -> float:
        return float(np.percentile(np.asarray(self.lags), 95)) if self.lags else 0.0

    @property
    def mean_model_s(self) -> float:
        return self.model_sum / self.updates if self.updates else 0.0

    @property
    def decode_s_per_frame(self) -> float:
        """Seconds the decoding thread spent per frame (decode, RGB, resize, buffer), under the run's load."""
        return self.decode_s / self.frames if self.frames else 0.0

    @property
    def skipped_share(self) -> float:
        return self.skipped / (self.updates + self.skipped) if self.updates + self.skipped else 0.0

    def to_dict(self) -> dict:
        return {"updates": self.updates, "windows": self.windows, "skipped": self.skipped,
                "skipped_share": self.skipped_share, "frames": self.frames, "mean_lag": self.mean_lag,
                "p95_lag": self.p95_lag, "mean_model_s": self.mean_model_s, "reconnects": self.reconnects,
                "gap": self.gap, "decode_s_per_frame": self.decode_s_per_frame}

    def line(self) -> str:
        rec = f", {self.reconnects} reconnects ({self.gap:.1f} s of feed lost)" if self.reconnects else ""
        return (f"{self.updates} updates, {self.skipped} windows skipped ({100 * self.skipped_share:.0f}%), lag "
                f"mean {self.mean_lag:.2f} s, p95 {self.p95_lag:.2f} s, model {self.mean_model_s:.2f} s per "
                f"update{rec}")


class LiveStream:
    """Iterator of ``LiveUpdate``\\ s over a live source (``VideoClassifier.live``). ``stats``: a ``LiveStats``,
    filled in as it goes; ``close()`` stops the decoding thread (and finishes the recording)."""

    def __init__(self, clf, source, *, every: float | None = None, window: float | None = None, views=None,
                 top_k: int = 5, smooth: int = 1, threshold: float | None = None, format: str | None = None,
                 options: dict | None = None, realtime: bool = False, reconnect: bool | None = None,
                 duration: float | None = None, output_video=None, threads: int | None = None, on_clip=None,
                 log=None, backoff: tuple[float, float] = BACKOFF_S, timeout: float = OPEN_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S):
        data = clf.data
        clips, crops = parse_views(views, (1, 1))
        for name, value in (("every", every), ("window", window), ("duration", duration)):
            if value is not None and not value > 0:
                raise UserError(f"{name} must be positive seconds, got {value}")
        if int(smooth) < 1:
            raise UserError(f"smooth must be >= 1 update, got {smooth}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise UserError(f"threshold must be a probability in [0, 1], got {threshold}")
        self.clf, self.top_k = clf, max(1, min(int(top_k), len(clf.labels)))
        self.smooth, self.threshold, self.on_clip = int(smooth), threshold, on_clip
        if threads is not None and int(threads) < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        self.threads = None if threads is None else int(threads)
        self.plan = LivePlan(int(clf.model.num_frames), clips, crops, data.sampling, data.stride, window, every)
        self.make = ViewMaker(data, crops, output="uint8")
        self.stats = LiveStats()
        src = parse_source(source, format, options)
        if reconnect is None:
            reconnect = src.network
        self.recorder = None
        if output_video is not None:
            from .annotate import CONTAINERS

            if os.path.splitext(str(output_video))[1].lower() not in CONTAINERS:
                raise UserError(f"{output_video}: the recording must be one of {', '.join(CONTAINERS)} (H.264)")
        self.feed = Feed(src, self.plan, data.test_short_side, realtime=realtime,
                         lossless=src.kind == "file" and not realtime, reconnect=reconnect, duration=duration,
                         log=log, backoff=backoff, timeout=timeout, read_timeout=read_timeout)
        if output_video is not None:
            self.recorder = Recorder(output_video, declared_rate(self.feed._stream) or 25.0)
            self.feed.record = self.recorder
        self._history: collections.deque = collections.deque(maxlen=self.smooth)
        self._gen = None

    def __iter__(self):
        if self._gen is None:
            self._gen = self._updates()
        return self._gen

    def __next__(self):
        return next(iter(self))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
        self._finish()

    def _finish(self) -> None:
        self.feed.stop()
        s = self.stats
        s.windows, s.frames, s.reconnects, s.gap = (self.feed.windows, self.feed.frames, self.feed.reconnects,
                                                    self.feed.gap_total)
        s.skipped, s.decode_s = self.feed.skipped_total, self.feed.busy
        if self.recorder is not None:
            self.recorder.close()

    def _updates(self):
        engine = self.clf.engine
        per_pass = max(1, min(self.plan.clips * self.plan.crops, engine.memory_views()))
        t = self.plan.length
        saved = torch.get_num_threads()
        # the decoding thread takes a core: the model's threads leave it one, as for an input worker
        torch.set_num_threads(self.threads or max(1, min(saved, usable_cores() - 1)))
        self.feed.start()
        try:
            while True:
                win, skipped = self.feed.take()
                if win is None:
                    return
                t0 = time.monotonic()
                views = torch.cat([self.make(np.stack(win.frames[c * t:(c + 1) * t])) for c in range(self.plan.clips)])
                probs = np.concatenate([engine.forward_views(views[i:i + per_pass])[2]
                                        for i in range(0, len(views), per_pass)])
                self._history.append(probs.mean(0))
                p = np.mean(self._history, axis=0) if len(self._history) > 1 else self._history[0]
                top = self.clf._top(p, self.top_k)
                if self.threshold is not None:
                    top = [s for s in top if s.prob >= self.threshold]
                now = time.monotonic()
                upd = LiveUpdate(self.stats.updates, win.t_end, win.start, time.time(), top, p, now - win.arrival,
                                 skipped, win.times, win.gap)
                s = self.stats
                s.updates += 1
                s.lag_sum += upd.lag
                s.lags.append(upd.lag)
                s.model_sum += now - t0
                s.skipped, s.windows, s.frames = self.feed.skipped_total, self.feed.windows, self.feed.frames
                s.reconnects, s.gap, s.decode_s = self.feed.reconnects, self.feed.gap_total, self.feed.busy
                if self.recorder is not None:
                    self.recorder.caption = [f"{c.label}  {c.prob:.2f}" for c in top]
                if self.on_clip is not None:
                    self.on_clip(upd, LiveClip(views, win.frames, win.times, win.last_frame, win.buffered, win.rate))
                del win, views
                yield upd
        finally:
            torch.set_num_threads(saved)
            self._finish()


# ----------------------------------------------------------------------------------------------- recording
class Recorder:
    """The feed with the current labels drawn on it (``annotate``'s painter), H.264 at the feed's size, written
    in a thread of its own from a bounded queue (frames it cannot keep up with are dropped and counted); the file
    appears when the recording is closed."""

    QUEUE = 64

    def __init__(self, path, rate: float, crf: int = 23):
        import queue

        self.path, self.rate, self.crf = str(path), rate, crf
        self.caption: list[str] = []
        self.dropped = 0
        self.written = 0
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uniformerv2-live-record", daemon=True)
        self._thread.start()

    def put(self, t: float, rgb: np.ndarray) -> None:
        import queue

        try:
            self.queue.put_nowait((t, rgb, self.caption))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        if self._thread.is_alive():
            self.queue.put(None)
            self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        from ..fileio import atomic_write

        try:
            atomic_write(self.path, self._write)
        except BaseException as e:  # noqa: BLE001 - reported by close()
            self.error = e
            while self.queue.get() is not None:   # let the feed go on
                pass

    def _write(self, tmp) -> None:
        from fractions import Fraction

        import av

        from .annotate import CONTAINERS, _Painter

        fmt = CONTAINERS[os.path.splitext(self.path)[1].lower()]
        with av.open(tmp, "w", format=fmt) as container:
            stream, painter, last = None, None, -1
            while True:
                item = self.queue.get()
                if item is None:
                    break
                t, rgb, caption = item
                if stream is None:
                    h, w = rgb.shape[:2]
                    stream = container.add_stream("libx264", rate=Fraction(self.rate).limit_denominator(1001))
                    stream.width, stream.height = w, h
                    stream.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
                    stream.codec_context.time_base = Fraction(1, 1000)
                    stream.options = {"crf": str(self.crf), "preset": "veryfast"}
                    painter = _Painter(h)
                pts = max(last + 1, round(t * 1000))
                last = pts
                vf = av.VideoFrame.from_ndarray(painter.draw(rgb, caption) if caption else rgb, format="rgb24")
                vf.pts, vf.time_base = pts, Fraction(1, 1000)
                for packet in stream.encode(vf):
                    container.mux(packet)
                self.written += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
