"""The inference engine: every multi-view forward pass of the package runs here.

    inputs -> input stage (``pipeline.input_stage``: decode, sample, crop; 0..N worker processes)
           -> ``Batcher``: views of several videos in forward passes of a fixed number of views
           -> ``Engine.forward_views`` (the one function that runs the model on views)
           -> per video (or per window) outputs: ``VideoOutput`` (features, logits, probabilities per view)

Consumers turn ``VideoOutput``\\ s into what they need: ``VideoClassifier`` into ``Prediction`` / ``Features``
(``predict``, ``extract_features``, their ``_many`` forms, timelines), ``inference.run.run_dataset`` into
recorded per-video files, ``engine.evaluate.evaluate_videos`` into metrics against labels. A new consumer
(a server, a live stream, an explanation) calls ``Engine.run`` with its inputs and a ``ViewSpec``.

Defaults chosen from the work, never from the caller's position:
  views per forward pass   ``Engine.views_per_pass``: a whole number of videos' (or windows') views, from the
                           model's cost per view and the device, capped by memory; it does not depend on how
                           many videos a call holds, so a video gets the same bits from ``predict`` alone, from
                           ``predict_many`` among others and from ``eval`` (at the same thread count).
  input workers            ``Engine.choose_workers``: the count (0..cores) whose estimated time is least, from
                           the number of videos, the model's cost per video on this device and the cost of
                           decoding its sampled frames; while workers run, the model's process takes the cores
                           they leave (``pipeline.model_threads``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from ..errors import UserError
from .pipeline import (PREFETCH, Batcher, RunStats, Timer, ViewSpec, VideoInput, VideoSource, as_input,
                       decoder_threads, input_stage, model_threads, usable_cores)
from .views import normalize_views, parse_views

DEFAULT_CPU_MEMORY = 2 << 30          # bytes of activations per forward pass on CPU
MAX_BATCH = {"cuda": 64, "cpu": 8}    # at most this many views per forward pass (memory allowing)
# FLOPs one forward pass should hold at least: on a CPU a pass of one B/16 view already keeps every core busy
# (batching more gains nothing and pads a lone video), while a tiny model needs several views per pass to
# amortise per-operation overhead; a GPU needs far more work per pass to be used well.
PASS_FLOPS = {"cpu": 2e9, "cuda": 2e13}
# Estimates for choosing input workers (``choose_workers``); measured on the 2-core build machine
# (docs/benchmarks.md, "Inference: the default input workers"): the model's fp32 rate per core, the rate of
# a GPU, the decode cost of one sampled frame of a Kinetics-like video (340x256 H.264), the speed-up of
# FFmpeg's own frame threads when decoding in the model's process, and the start of a worker process.
CPU_FLOPS_PER_CORE = 3e10
GPU_FLOPS = 1e14
DECODE_S_PER_FRAME = 0.01
FFMPEG_THREAD_GAIN = 1.2
WORKER_START_S = 0.5


# ----------------------------------------------------------------------------------------------- outputs
@dataclass
class VideoOutput:
    """One input through the model. ``features`` (n, C), ``logits`` / ``probs`` (n, K) float32, one row per
    view: clip-major within a window, windows in time order (n = views for a whole video, W x views with
    windows). ``frames``: the sampled frame indices, (clips, T) or (W, clips, T); ``windows``: the ``Window``\\ s
    or None; ``num_frames`` / ``fps``: of the video."""
    index: int
    path: str | None
    num_frames: int
    fps: float | None
    frames: np.ndarray
    windows: list | None
    features: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    ok: bool = True


@dataclass
class Failure:
    """An input that could not be read, with the one-line reason (``exception``: the error itself when it was
    raised in this process; not part of ``to_dict``)."""
    path: str | None
    error: str
    ok: bool = False
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": False, "error": self.error}


def video_scores(out: VideoOutput, aggregate: str = "softmax") -> np.ndarray:
    """A video's class scores from its views: the mean of their softmaxes (``predict``'s probabilities, the
    official summed softmax divided by the number of views), or the mean of their logits."""
    if aggregate == "softmax":
        return out.probs.mean(0)
    if aggregate == "logits":
        return out.logits.mean(0)
    raise UserError(f"view aggregation must be 'softmax' or 'logits', got {aggregate!r}")


def view_flops(cfg) -> float:
    """Forward FLOPs of one view (multiply-adds x 2) of a model of ``ModelConfig`` ``cfg``: the backbone's
    projections, MLPs and per-frame attention; the global blocks and the local MHRA are small beside them."""
    t, tokens, c = cfg.time_steps, cfg.tokens_per_frame, cfg.embed_dim
    per_layer = t * (tokens * (4 + 2 * cfg.mlp_ratio) * c * c + 2 * tokens * tokens * c)
    return 2.0 * cfg.depth * per_layer


# ----------------------------------------------------------------------------------------------- engine
class Engine:
    """A model on a device in a compute dtype, running views of videos (see the module doc)."""

    def __init__(self, model, device: torch.device, dtype: torch.dtype, data, memory_cap: int | None = None):
        self.model, self.device, self.dtype, self.data = model, device, dtype, data
        self.memory_cap = memory_cap

    # ---------------------------------------------------------------- the forward pass
    @torch.inference_mode()
    def forward_views(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 views (B, 3, T, S, S) on the CPU -> float32 numpy (features (B, C), logits (B, K), softmax
        probabilities (B, K)): moved to the device as uint8, normalised there, one forward pass."""
        x = normalize_views(batch.to(self.device, non_blocking=True), self.data.mean, self.data.std)
        f = self.model.forward_features(x.to(self.dtype))
        logits = self.model.head(f).float()
        return f.float().cpu().numpy(), logits.cpu().numpy(), torch.softmax(logits, dim=-1).cpu().numpy()

    # ---------------------------------------------------------------- what a run makes of each video
    def spec(self, views=None, window: float | None = None, stride: float | None = None,
             batch_size: int | None = None, *, backend: str = "pyav", timeout: float | None = None) -> ViewSpec:
        """The ``ViewSpec`` of a run: test views ``views`` ("CxK", default the model's), windows of ``window``
        seconds every ``stride``, ``batch_size`` views per forward pass (default ``views_per_pass``)."""
        clips, crops = parse_views(views, self.data.views)
        if stride is not None and window is None:
            raise UserError("stride needs a window")
        if window is not None and (window <= 0 or (stride is not None and stride <= 0)):
            raise UserError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
        if batch_size is not None and int(batch_size) < 1:
            raise UserError(f"batch size must be >= 1 view, got {batch_size}")
        size = int(batch_size) if batch_size else self.views_per_pass(clips * crops)
        return ViewSpec(self.data, clips, crops, int(self.model.num_frames), window, stride, size,
                        backend=backend, timeout=timeout)

    def views_per_pass(self, views: int) -> int:
        """Views per forward pass: a multiple of ``views`` (one video's, or one window's) holding at least
        ``PASS_FLOPS`` of work when ``MAX_BATCH`` allows, capped by what the memory allows (then possibly less
        than one video: its views take several passes)."""
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        want = min(MAX_BATCH[kind], max(1, math.ceil(PASS_FLOPS[kind] / view_flops(self.model.cfg))))
        size = views * max(1, want // views)
        cap = self.memory_views()
        return size if size <= cap else max(1, (cap // views) * views or cap)

    def memory_views(self) -> int:
        """How many views one forward pass may hold, from a rough estimate of the activations of one view."""
        cfg = self.model.cfg
        t, tokens = cfg.time_steps, cfg.tokens_per_frame
        elem = torch.finfo(self.dtype).bits // 8
        per_view = t * tokens * cfg.embed_dim * (cfg.mlp_ratio + 6) * elem
        per_view += t * cfg.num_heads * tokens * tokens * elem  # attention scores when SDPA materialises them
        per_view += 3 * cfg.num_frames * cfg.img_size**2 * 4  # the input
        cap = self.memory_cap
        if cap is None:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                cap = free // 2
            else:
                cap = DEFAULT_CPU_MEMORY
        return int(max(1, min(256, cap // per_view)))

    def choose_workers(self, spec: ViewSpec, num_videos: int, cores: int | None = None) -> int:
        """Input worker processes for ``num_videos`` inputs: the count in 0..cores (0..cores-1 beside a GPU,
        whose feeding needs a core) with the least estimated time. Per video (or window): the model takes
        ``view_flops x views`` at ``CPU_FLOPS_PER_CORE`` per thread (``GPU_FLOPS`` on a GPU); decoding takes
        ``DECODE_S_PER_FRAME`` per sampled frame, spread over the workers, or done in the model's process
        before its forward pass with 0 workers (FFmpeg's threads: ``FFMPEG_THREAD_GAIN``); starting workers
        costs ``WORKER_START_S``. One video: 0 (nothing to overlap)."""
        if num_videos <= 1 and spec.window is None:
            return 0
        cores = usable_cores() if cores is None else cores
        flops = view_flops(self.model.cfg) * spec.views_per_window
        frames = spec.clips * spec.length
        decode = DECODE_S_PER_FRAME * frames
        gpu = self.device.type == "cuda"
        threads = torch.get_num_threads()

        def model_s(workers: int) -> float:
            if gpu:
                return flops / GPU_FLOPS
            return flops / (CPU_FLOPS_PER_CORE * max(1, min(threads, cores - workers)))

        def total(workers: int) -> float:
            if workers == 0:
                return num_videos * (decode / FFMPEG_THREAD_GAIN + model_s(0))
            return num_videos * max(decode / workers, model_s(workers)) + WORKER_START_S

        top = min(num_videos, max(0, cores - 1) if gpu else cores)   # a worker reads one video at a time
        return min(range(top + 1), key=lambda w: (total(w), w))

    # ---------------------------------------------------------------- a run
    def run(self, inputs: list, todo, spec: ViewSpec, *, workers: int | None = None, prefetch: int = PREFETCH,
            stats: RunStats | None = None) -> Iterator[tuple[int, VideoOutput | Failure]]:
        """Yield ``(index, VideoOutput | Failure)`` for each index of ``todo`` (into ``inputs``: paths, frame
        arrays or ``VideoInput``\\ s) as soon as it is complete (not in input order). ``workers``: input worker
        processes (None: ``choose_workers``; inputs that are arrays are always read in this process).
        ``stats`` (a ``RunStats``) is filled in as it goes."""
        todo = list(todo)
        if workers is None:
            workers = self.choose_workers(spec, len(todo))
        workers = int(workers)
        if workers < 0:
            raise UserError(f"workers must be >= 0, got {workers}")
        if any(as_input(inputs[i]).name is None for i in todo):
            workers = 0   # frame arrays are already in this process
        stats = stats if stats is not None else RunStats()
        stats.workers = max(0, min(workers, len(todo)))
        if spec.decoder_threads is None:
            spec = dataclasses.replace(spec, decoder_threads=decoder_threads(stats.workers))
        batcher = Batcher(self.forward_views, spec.group_views, pin=self.device.type == "cuda")
        parts: dict[int, list] = {}
        timer = Timer(stats)
        it = iter(input_stage(inputs, todo, spec, stats.workers, prefetch))
        with model_threads(stats.workers):   # the model's threads leave the workers their cores
            try:
                while True:
                    try:
                        chunk = timer.wait(it)
                    except StopIteration:
                        break
                    if chunk.error is not None:
                        parts.pop(chunk.index, None)
                        stats.failed += 1
                        yield chunk.index, Failure(chunk.path, chunk.error, exception=chunk.exception)
                        continue
                    parts.setdefault(chunk.index, [])
                    yield from self._collect(batcher.add(chunk), parts, stats)
                yield from self._collect(batcher.flush(), parts, stats)
            finally:
                stats.clips = batcher.views_run
                timer.stop()
                del it

    @staticmethod
    def _collect(done: list, parts: dict, stats: RunStats):
        """Chunks through the model -> the ``VideoOutput`` of each video whose last chunk is in."""
        for chunk, outputs in done:
            got = parts.get(chunk.index)
            if got is None:       # the video failed after some of its chunks were sent
                continue
            got.append((chunk, outputs))
            if not chunk.last:
                continue
            del parts[chunk.index]
            chunks = [c for c, _ in got]
            feats, logits, probs = (np.concatenate(o) for o in zip(*(out for _, out in got)))
            if chunks[0].windows is None:
                frames, windows = chunks[0].frames, None
            else:
                frames = np.concatenate([c.frames for c in chunks])
                windows = [w for c in chunks for w in c.windows]
            stats.videos += 1
            yield chunk.index, VideoOutput(chunk.index, chunk.path, chunk.num_frames, chunk.fps, frames, windows,
                                           feats, logits, probs)


def check_inputs(videos) -> list[VideoInput]:
    """The inputs of a call as ``VideoInput``\\ s, frame arrays checked here (a bad array is the caller's error,
    not a failed video)."""
    out = []
    for v in videos:
        item = as_input(v)
        if item.name is None:
            VideoSource(item.video, item.fps)   # raises UserError for a malformed array
        out.append(item)
    return out
