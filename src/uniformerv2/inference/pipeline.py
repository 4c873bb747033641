"""Predicting over many videos: a parallel input stage and a batched model stage.

    input stage (``VideoStream``, in DataLoader worker processes)      model stage (the calling process)
    video i -> decode, sample, crop: uint8 views (V, 3, T, S, S)  ->  ``Batcher``: views of several videos in
               (a long video: one chunk per group of windows)           forward passes of exactly ``size`` views

The input stage is ``video_chunks(index, path, spec)``: a picklable function of the path and a ``ViewSpec``
(the model's ``DataConfig``, the views, the windows) that yields ``Chunk``\\ s. Workers take the next video
from a shared counter when they are free, so a slow video holds up only its own worker; chunks come back in
the order they are ready (at most ``prefetch`` per worker in flight) and the caller puts results back in input
order. A long video's windows are decoded and sent group by group, so memory does not grow with its duration.

Every forward pass holds exactly ``size`` views, the last one padded with zeros: at a fixed batch shape each
view's numbers do not depend on the other views of its batch, so a video gets the same bits whichever videos
share its passes -- with any number of workers, processes, or after a resume (for the same number of threads
per process: CPU kernels may split sums differently for another thread count; while input workers run, the
model's process uses at most the cores they leave, ``model_threads``).
"""
from __future__ import annotations

import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..errors import UserError
from .views import Window, ViewMaker, clip_indices, plan_windows

MAX_FRAMES_PER_READ = 512             # frames decoded at once for long videos
PREFETCH = 2                          # chunks in flight per worker


def usable_cores() -> int:
    """Cores for this process: its CPU affinity, shared among the processes that torchrun starts on the node
    (``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def decoder_threads(workers: int) -> int | None:
    """Decoder threads per worker: the usable cores shared among the workers (at least one); None (FFmpeg's
    choice) when decoding in the calling process. Threads do not change the decoded frames."""
    return None if workers <= 0 else max(1, usable_cores() // workers)


@contextmanager
def model_threads(workers: int):
    """While ``workers`` input workers run: this process's torch threads capped at the cores the workers leave
    (at least one), restored afterwards. More threads than that oversubscribe the cores: each parallel region
    of the model then waits for a thread that a worker has pushed off its core, and the model's process burns
    the CPU time that the workers need (tiny model, 2 cores, 2 workers: 3.5x the model's CPU time per video)."""
    saved = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(max(1, min(saved, usable_cores() - workers)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class VideoInput:
    """One input of a run: a video file, a frame folder or a uint8 (T, H, W, 3) RGB array. ``fps``: the frame
    rate of an array (needed for windows); ``folder``: frame-folder options of ``data.decode`` (``num_frames``,
    ``template``, ``start_index``) for a folder listed with its frame count."""
    video: object
    fps: float | None = None
    folder: dict | None = None

    @property
    def name(self) -> str | None:
        return str(self.video) if isinstance(self.video, (str, os.PathLike)) else None


def as_input(video) -> VideoInput:
    return video if isinstance(video, VideoInput) else VideoInput(video)


class VideoSource:
    """Frames of a file, a frame folder or an in-memory uint8 (T, H, W, 3) RGB array, by index. Frames of a
    file are resized to ``short_side`` as they are decoded (bounded memory whatever the source resolution).
    ``backend`` / ``timeout``: ``data.decode``'s reader and time limit."""

    def __init__(self, video, fps: float | None = None, short_side: int | None = None, threads: int | None = None,
                 *, backend: str = "pyav", timeout: float | None = None, folder: dict | None = None):
        from ..data.decode import DEFAULT_TIMEOUT_S

        self.path, self.short_side, self.threads = None, short_side, threads
        self.backend, self.folder = backend, dict(folder or {})
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        if isinstance(video, (str, os.PathLike)):
            self.path, self.array, self.fps = str(video), None, fps
            self._count = None
        else:
            arr = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
            if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] < 1:
                raise UserError(f"a frame array must be uint8 (T, H, W, 3) RGB, got {arr.dtype} {arr.shape}")
            self.array, self.fps = arr, fps
            self._count = len(arr)

    @property
    def name(self) -> str | None:
        return self.path

    def _options(self) -> dict:
        return dict(backend=self.backend, timeout=self.timeout, threads=self.threads, short_side=self.short_side,
                    **self.folder)

    def count(self) -> int:
        """Exact number of frames (for files: counted from the packets, without decoding)."""
        if self._count is None:
            from ..data.decode import probe

            info = probe(self.path, exact=True, timeout=self.timeout, **self.folder)
            self._count, self.fps = info.num_frames, self.fps or info.fps
        return self._count

    def read(self, indices: np.ndarray) -> np.ndarray:
        if self.array is not None:
            return self.array[indices]
        from ..data.decode import read_frames

        return read_frames(self.path, indices, **self._options())

    def read_sampled(self, sample) -> tuple[np.ndarray, np.ndarray]:
        """Open once, pick indices with ``sample(num_frames)``: (frames, indices)."""
        if self.array is not None:
            idx = np.asarray(sample(len(self.array)))
            return self.array[idx.reshape(-1)], idx
        from ..data.decode import read_clip

        flat = {}

        def pick(n):
            flat["idx"] = np.asarray(sample(n))
            return flat["idx"].reshape(-1)

        frames, _, info = read_clip(self.path, pick, **self._options())
        self._count, self.fps = info.num_frames, self.fps or info.fps
        return frames, flat["idx"]


def window_groups(src: VideoSource, window: float, stride: float | None, windows_per_read: int) -> list:
    """The windows of a video (``views.plan_windows``) in groups of ``windows_per_read``."""
    wins = plan_windows(src.count(), src.fps, window, stride)
    return [wins[g:g + windows_per_read] for g in range(0, len(wins), windows_per_read)]


# ----------------------------------------------------------------------------------------------- input stage
@dataclass(frozen=True)
class ViewSpec:
    """What the input stage makes of a video (picklable: it goes to the worker processes).

    data: the model's ``DataConfig`` (short side, crop, BGR; normalisation happens in the model stage);
    clips x crops: the test views; length: frames per clip (the model's T); window/stride: seconds, for
    timelines; group_views: views per chunk of a long video (windows are grouped up to this many views and
    ``MAX_FRAMES_PER_READ`` decoded frames); decoder_threads: None for ``data.decode``'s choice (one in a
    worker process, FFmpeg's in the calling process); backend / timeout: ``data.decode``'s reader and time
    limit per video (None: its default)."""
    data: object
    clips: int
    crops: int
    length: int
    window: float | None = None
    stride: float | None = None
    group_views: int = 64
    decoder_threads: int | None = None
    backend: str = "pyav"
    timeout: float | None = None

    @property
    def views_per_window(self) -> int:
        return self.clips * self.crops

    def windows_per_read(self) -> int:
        by_frames = MAX_FRAMES_PER_READ // (self.clips * self.length)
        return max(1, min(by_frames, self.group_views // self.views_per_window))

    def clip_indices(self, num_frames: int, first: int = 0) -> np.ndarray:
        """(clips, T) frame indices of the test clips of frames [first, first + num_frames), sampled as the
        model's ``DataConfig`` says (sparse segments, or dense with its stride)."""
        return clip_indices(num_frames, self.length, self.clips, first, self.data.sampling, self.data.stride)

    def read_windows(self, src: VideoSource, group: list[Window]) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices (W, clips, T) of the test clips of each window of ``group``, and those frames
        (W*clips*T, H, W, 3) decoded in one read."""
        idx = np.stack([self.clip_indices(w.stop - w.first, w.first) for w in group])
        return idx, src.read(idx.reshape(-1))


@dataclass
class Chunk:
    """Views of one video (whole-video prediction) or of a group of its windows.

    views: uint8 (n, 3, T, S, S), clip-major within each window; frames: the frame indices, (clips, T) for a
    whole video, (W, clips, T) for a group of windows; part: 0, 1, ... within the video, ``last`` on its final
    chunk; num_frames / fps: of the video. A video that cannot be read gives one chunk with ``error`` (after any
    chunks already sent for it)."""
    index: int
    path: str | None
    part: int = 0
    last: bool = True
    views: torch.Tensor | None = None
    frames: np.ndarray | None = None
    windows: list | None = None
    num_frames: int = 0
    fps: float | None = None
    error: str | None = None
    exception: BaseException | None = None

    @property
    def size(self) -> int:
        return 0 if self.views is None else len(self.views)


def video_chunks(index: int, video, spec: ViewSpec) -> Iterator[Chunk]:
    """Decode, sample and crop one input (a path, an array or a ``VideoInput``): its chunks, or a chunk with
    the error that stopped it (``exception``: the error itself when raised in this process)."""
    part = 0
    item = as_input(video)
    name = item.name
    try:
        make = ViewMaker(spec.data, spec.crops, output="uint8")
        src = VideoSource(item.video, item.fps, short_side=spec.data.test_short_side, threads=spec.decoder_threads,
                          backend=spec.backend, timeout=spec.timeout, folder=item.folder)
        t = spec.length
        if spec.window is None:
            frames, idx = src.read_sampled(lambda n: spec.clip_indices(n))
            views = torch.cat([make(frames[k * t:(k + 1) * t]) for k in range(spec.clips)])
            yield Chunk(index, name, 0, True, views, idx, None, src.count(), src.fps)
            return
        groups = window_groups(src, spec.window, spec.stride, spec.windows_per_read())
        for part, group in enumerate(groups):
            idx, frames = spec.read_windows(src, group)
            views = torch.cat([make(frames[c * t:(c + 1) * t]) for c in range(len(group) * spec.clips)])
            del frames
            yield Chunk(index, name, part, part == len(groups) - 1, views, idx, group, src.count(), src.fps)
    except Exception as e:  # noqa: BLE001 - any failure of one input is that input's, reported with its path
        msg = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, (UserError, OSError)):
            msg = f"{type(e).__name__}: {msg}"
        if name is not None and name not in msg:
            msg = f"{name}: {msg}"
        in_worker = torch.utils.data.get_worker_info() is not None
        yield Chunk(index, name, part, True, error=msg, exception=None if in_worker else e)


class VideoStream(torch.utils.data.IterableDataset):
    """The chunks of the inputs ``inputs[i] for i in todo``. In worker processes each worker takes the next
    video from a counter shared by all of them (``counter``); in the calling process, videos in order."""

    def __init__(self, inputs, todo, spec: ViewSpec, counter=None):
        self.items = [(int(i), inputs[i]) for i in todo]
        self.spec, self.counter = spec, counter

    def __iter__(self):
        if self.counter is None or torch.utils.data.get_worker_info() is None:
            for i, video in self.items:
                yield from video_chunks(i, video, self.spec)
            return
        while True:
            with self.counter.get_lock():
                k = self.counter.value
                self.counter.value = k + 1
            if k >= len(self.items):
                return
            yield from video_chunks(*self.items[k], self.spec)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)   # workers decode; one thread each (decoder threads: data.decode.default_threads)


def input_stage(inputs, todo, spec: ViewSpec, workers: int, prefetch: int = PREFETCH):
    """An iterable of ``Chunk``\\ s for ``todo``: decoded in ``workers`` processes (0: in this process), at most
    ``prefetch`` chunks per worker in flight, in the order they are ready."""
    import multiprocessing

    workers = max(0, min(int(workers), len(todo)))
    if workers == 0:
        return VideoStream(inputs, todo, spec)
    ctx = multiprocessing.get_context()
    stream = VideoStream(inputs, todo, spec, counter=ctx.Value("q", 0))
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=prefetch,
                                       in_order=False, worker_init_fn=_worker_init, multiprocessing_context=ctx)


# ----------------------------------------------------------------------------------------------- model stage
class Batcher:
    """Views of many chunks -> forward passes of exactly ``size`` views (zero-padded at the end).

    ``add(chunk)`` and ``flush()`` return the chunks whose views have all been through the model, with their
    outputs: ``(chunk, outputs)``, ``outputs`` a tuple of arrays with one row per view of the chunk, in the
    order the chunks were added. ``forward`` maps a uint8 batch (size, 3, T, S, S) on the CPU to a tuple of
    numpy arrays with ``size`` rows; ``pin``: stage batches in pinned memory (for a CUDA model)."""

    def __init__(self, forward, size: int, pin: bool = False):
        self.forward, self.size, self.pin = forward, int(size), pin
        self.queue: deque = deque()     # [chunk, views taken, output pieces]
        self.pending = 0
        self.views_run = 0
        self._stage = None

    def add(self, chunk: Chunk) -> list:
        if chunk.size == 0:
            raise ValueError("a chunk without views")
        self.queue.append([chunk, 0, []])
        self.pending += chunk.size
        done = []
        while self.pending >= self.size:
            done += self._step()
        return done

    def flush(self) -> list:
        done = []
        while self.pending:
            done += self._step()
        return done

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        shape = (self.size, *like.shape[1:])
        if self._stage is None or self._stage.shape != shape:
            self._stage = torch.empty(shape, dtype=torch.uint8)
            if self.pin:
                self._stage = self._stage.pin_memory()
        return self._stage

    def _step(self) -> list:
        """One forward pass over the next ``size`` views waiting (fewer at the end, padded)."""
        take = min(self.size, self.pending)
        stage = self._buffer(self.queue[0][0].views)
        owners, filled = [], 0
        for entry in self.queue:       # entries before the first unused view were popped: each one has views left
            if filled == take:
                break
            chunk, used, _ = entry
            n = min(chunk.size - used, take - filled)
            stage[filled:filled + n].copy_(chunk.views[used:used + n])
            owners.append((entry, n))
            entry[1] += n
            filled += n
        stage[filled:].zero_()
        outputs = self.forward(stage)
        self.pending -= filled
        self.views_run += filled
        row = 0
        for entry, n in owners:
            entry[2].append(tuple(o[row:row + n] for o in outputs))
            row += n
        done = []
        while self.queue and self.queue[0][1] == self.queue[0][0].size:
            chunk, _, pieces = self.queue.popleft()
            chunk.views = None        # through the model: only its outputs are kept
            done.append((chunk, tuple(np.concatenate(parts) for parts in zip(*pieces))))
        return done


# ----------------------------------------------------------------------------------------------- figures
@dataclass
class RunStats:
    """Figures of a run: videos done and failed, clips (views) through the model, wall seconds of the loop and
    the seconds the model stage spent waiting for input (``waited / seconds``: the data-wait fraction)."""
    videos: int = 0
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0
    waited: float = 0.0
    workers: int = 0
    processes: int = 1

    @property
    def videos_per_s(self) -> float:
        return (self.videos + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    @property
    def wait_fraction(self) -> float:
        return self.waited / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"videos": self.videos, "failed": self.failed, "clips": self.clips, "seconds": self.seconds,
                "waited": self.waited, "workers": self.workers, "processes": self.processes}

    @classmethod
    def combine(cls, parts: list[dict]) -> "RunStats":
        """Several processes running side by side: counts add up, the wall time is the slowest one's, the
        wait fraction is over all their time."""
        if not parts:
            return cls()
        total = sum(p["seconds"] for p in parts)
        slowest = max(p["seconds"] for p in parts)
        waited = sum(p["waited"] for p in parts) / total * slowest if total > 0 else 0.0
        return cls(sum(p["videos"] for p in parts), sum(p["failed"] for p in parts),
                   sum(p["clips"] for p in parts), slowest, waited, parts[0].get("workers", 0), len(parts))

    def line(self) -> str:
        """The run's one summary line."""
        who = f"{self.workers} input workers" + (f" x {self.processes} processes" if self.processes > 1 else "")
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (f"{self.videos + self.failed} videos{failed} in {self.seconds:.1f} s: {self.videos_per_s:.2f} "
                f"videos/s, {self.clips_per_s:.1f} clips/s, model waited for data {100 * self.wait_fraction:.0f}% "
                f"of the time ({who})")


class Timer:
    """Wall time of a loop and the part of it spent waiting on an iterator (``RunStats.waited``)."""

    def __init__(self, stats: RunStats):
        self.stats, self.t0 = stats, time.perf_counter()

    def wait(self, it):
        t = time.perf_counter()
        try:
            return next(it)
        finally:
            self.stats.waited += time.perf_counter() - t

    def stop(self) -> None:
        self.stats.seconds = time.perf_counter() - self.t0
