"""``VideoClassifier``: a loaded model plus the official test pipeline, for any video file or frame array.

    clf = VideoClassifier.from_pretrained("model_dir")                 # or ("k400.pyth", preset="k400_b16_8x224")
    pred = clf.predict("video.mp4", top_k=5, views="4x3")             # Prediction
    long = clf.predict("match.mp4", window=4, stride=2)               # + pred.timeline
    preds = clf.predict(["a.mp4", "b.mp4"])                           # views of all videos share batches
    for pred in clf.predict_many(paths, workers=8):                    # datasets: parallel decoding, in order
        ...

Tensor layouts are those of :mod:`uniformerv2.inference.views`; the many-video machinery is
:mod:`uniformerv2.inference.pipeline`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError, VideoError
from .pipeline import (MAX_FRAMES_PER_READ, PREFETCH, Batcher, RunStats, Timer, VideoSource, ViewSpec,
                       decoder_threads, default_workers, input_stage, model_threads, read_windows, window_groups)
from .views import ViewMaker, clip_indices, normalize_views, parse_views

DEFAULT_CPU_MEMORY = 2 << 30          # bytes of activations per forward chunk on CPU
MAX_BATCH = {"cuda": 64, "cpu": 8}    # default views per forward pass of predict_many (memory allowing)


# ----------------------------------------------------------------------------------------------- results
@dataclass
class ClassScore:
    label: str
    index: int
    prob: float

    def to_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "prob": self.prob}


@dataclass
class TimelineEntry:
    """One window of a long video: seconds [start, end), its top-k and class probabilities."""
    start: float
    end: float
    top_k: list[ClassScore]
    probs: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "top_k": [s.to_dict() for s in self.top_k]}


@dataclass
class Prediction:
    """What ``predict`` returns for one video.

    probs: (num_classes,) mean of the per-view softmaxes (the official summed softmax, normalised).
    view_probs: (V, num_classes), one row per view, in the order of ``views``.
    views: per-view detail dicts: clip, crop, window (index or None), frames (indices), label, prob (its top-1).
    timeline: one entry per window when ``window=`` was given, else None.
    """
    path: str | None
    top_k: list[ClassScore]
    probs: np.ndarray = field(repr=False)
    view_probs: np.ndarray = field(repr=False)
    views: list[dict] = field(repr=False)
    num_frames: int = 0
    fps: float | None = None
    timeline: list[TimelineEntry] | None = None
    ok: bool = True

    def to_dict(self) -> dict:
        d = {"path": self.path, "ok": True, "top_k": [s.to_dict() for s in self.top_k]}
        if self.timeline is not None:
            d["timeline"] = [w.to_dict() for w in self.timeline]
        return d


@dataclass
class Failure:
    """An input that could not be read (``predict(..., on_error="return")``)."""
    path: str | None
    error: str
    ok: bool = False

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": False, "error": self.error}


@dataclass
class Features:
    """Pre-head features of one video: ``features`` (C,) or, with windows, (W, C), the mean over views;
    ``view_features`` (V, C) or (W, V, C); ``windows`` (W, 2) start/end seconds, or None."""
    path: str | None
    features: np.ndarray
    view_features: np.ndarray
    windows: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------- classifier
class VideoClassifier:
    """A UniFormerV2 model with its test-time pipeline (sampling, crops, normalisation, view aggregation)."""

    def __init__(self, model, device=None, dtype=None, memory_cap: int | None = None, optimize: bool = True):
        """``model`` is moved to ``device`` (default: CUDA if available) in ``dtype`` (default: bf16 on a GPU
        that supports it, else fp32) and, with ``optimize``, gets its inference speed variants
        (``uniformerv2.accel.optimize``; the reference model computes the same numbers, slower)."""
        from ..accel import optimize as apply_speed_variants

        self.device = torch.device(device) if device is not None else _default_device()
        self.dtype = _resolve_dtype(dtype, self.device)
        self.model = model.eval().to(self.device, self.dtype)
        if optimize:
            apply_speed_variants(self.model, for_inference=True)
        self.labels = list(model.labels) if model.labels else [f"class {i}" for i in range(model.num_classes)]
        self.data = model.data_config
        self.memory_cap = memory_cap
        self._view_makers: dict[int, ViewMaker] = {}

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path, preset: str | None = None, device=None, dtype=None, **kwargs):
        """``path``: a model directory (config + weights) or a training run directory, or a checkpoint file
        (official ``.pyth``, our state dict) together with the ``preset`` it belongs to (which carries the
        recipe: normalisation, views, label order).  See ``uniformerv2.factory.load_model``."""
        from ..factory import load_model

        return cls(load_model(path, preset, need_recipe=True), device=device, dtype=dtype, **kwargs)

    @property
    def default_views(self) -> tuple[int, int]:
        return self.data.views

    # ---------------------------------------------------------------- prediction
    def predict(self, video, top_k: int = 5, views=None, window: float | None = None,
                stride: float | None = None, fps: float | None = None, on_error: str = "raise"):
        """Classify a video (path or uint8 (T, H, W, 3) RGB array) or a list of them.

        views: "CLIPSxCROPS" (default: the model's test views, e.g. 4x3 for Kinetics presets).
        window/stride: seconds; gives a per-window ``timeline`` plus the video-level aggregate over all windows.
        fps: frame rate of an array input (needed with ``window``).
        on_error: "raise", or "return" to get a ``Failure`` for a video that cannot be read.
        Returns a ``Prediction`` (a list of them, for a list input).
        """
        if on_error not in ("raise", "return"):
            raise UserError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if stride is not None and window is None:
            raise UserError("stride needs a window")
        clips, crops = parse_views(views, self.default_views)
        top_k = max(1, min(int(top_k), len(self.labels)))
        many = isinstance(video, (list, tuple))
        videos = list(video) if many else [video]
        if window is not None:
            results = [self._guard(lambda v=v: self._predict_windows(v, top_k, clips, crops, window, stride, fps),
                                   v, on_error) for v in videos]
        else:
            results = self._predict_batch(videos, top_k, clips, crops, fps, on_error)
        return results if many else results[0]

    def extract_features(self, video, views=None, window: float | None = None, stride: float | None = None,
                         fps: float | None = None) -> Features:
        """Pre-head features (what the classifier's LN + linear head sees) of one video; see ``Features``."""
        clips, crops = parse_views(views, self.default_views)
        src = self._source(video, fps)
        if window is None:
            frames, idx = src.read_sampled(lambda n: clip_indices(n, self._frames_per_clip, clips))
            feats, _ = self._run(self._views_of(frames, idx.shape, crops))
            return Features(src.name, feats.mean(0), feats)
        per_window, spans = [], []
        for wins, x in self._window_batches(src, window, stride, clips, crops):
            feats, _ = self._run(x)
            per_window.append(feats.reshape(len(wins), clips * crops, -1))
            spans += [(w.start, w.end) for w in wins]
        vf = np.concatenate(per_window)
        return Features(src.name, vf.mean(1), vf, np.asarray(spans, np.float32))

    # ---------------------------------------------------------------- many videos
    def predict_many(self, videos, top_k: int = 5, views=None, window: float | None = None,
                     stride: float | None = None, *, workers: int | None = None, batch_size: int | None = None,
                     prefetch: int = PREFETCH) -> "ResultStream":
        """``predict`` over a list of video files, for datasets: decoding, sampling and cropping run in
        ``workers`` processes (default: the usable cores minus one; 0: in this process) with at most
        ``prefetch`` chunks per worker in flight, while this process runs the model on forward passes of
        ``batch_size`` views shared by several videos (default: what the memory cap allows, at most 64 on a
        GPU and 8 on a CPU). Long videos (``window``) are decoded and sent group of windows by group of
        windows, so memory does not grow with their duration.

        Returns an iterator of ``Prediction`` / ``Failure`` (a file that cannot be read: reported, skipped,
        nothing else moves) in input order, with ``.stats`` (a ``RunStats``) once it is exhausted. A video's
        numbers do not depend on the other videos or on ``workers`` (see ``pipeline``); they equal
        ``predict``'s up to float rounding (other batch sizes)."""
        return self._many(videos, "predict", top_k, views, window, stride, workers, batch_size, prefetch)

    def extract_features_many(self, videos, views=None, window: float | None = None, stride: float | None = None,
                              *, workers: int | None = None, batch_size: int | None = None,
                              prefetch: int = PREFETCH) -> "ResultStream":
        """``extract_features`` over a list of video files, as ``predict_many``: ``Features`` / ``Failure``
        in input order."""
        return self._many(videos, "features", 1, views, window, stride, workers, batch_size, prefetch)

    def _many(self, videos, task, top_k, views, window, stride, workers, batch_size, prefetch):
        paths = [str(v) for v in videos]
        if not all(isinstance(v, (str, os.PathLike)) for v in videos):
            raise UserError("predict_many / extract_features_many take video paths (use predict for frame arrays)")
        spec = self.view_spec(views, window, stride, batch_size, len(paths))
        stats = RunStats()
        gen = self.stream(paths, range(len(paths)), spec, task=task, top_k=top_k, workers=workers,
                          prefetch=prefetch, stats=stats)
        return ResultStream(gen, list(range(len(paths))), stats)

    def view_spec(self, views=None, window: float | None = None, stride: float | None = None,
                  batch_size: int | None = None, num_videos: int | None = None) -> ViewSpec:
        """What the input stage makes of each video, and the batch size in ``group_views``: ``batch_size``,
        else what the memory cap allows (at most ``MAX_BATCH``), and for whole videos never more than the
        views of all ``num_videos`` (the size depends only on the whole list, never on a share of it)."""
        clips, crops = parse_views(views, self.default_views)
        if stride is not None and window is None:
            raise UserError("stride needs a window")
        if window is not None and (window <= 0 or (stride is not None and stride <= 0)):
            raise UserError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
        if batch_size is not None and int(batch_size) < 1:
            raise UserError(f"batch size must be >= 1 view, got {batch_size}")
        size = int(batch_size) if batch_size else min(self._chunk_size(), MAX_BATCH.get(self.device.type, 64))
        if window is None and num_videos and not batch_size:
            size = min(size, clips * crops * num_videos)
        return ViewSpec(self.data, clips, crops, self._frames_per_clip, window, stride, max(1, size))

    def stream(self, paths: list[str], todo, spec: ViewSpec, *, task: str = "predict", top_k: int = 5,
               workers: int | None = None, prefetch: int = PREFETCH, stats: RunStats | None = None):
        """The engine of ``predict_many``: yields ``(index, Prediction | Features | Failure)`` for each index in
        ``todo`` as soon as it is complete (not in input order); forward passes hold ``spec.group_views`` views.
        ``stats`` (a ``RunStats``) is filled in as it goes. While input workers run, this process's torch threads
        are capped at the cores the workers leave (``pipeline.model_threads``)."""
        if task not in ("predict", "features"):
            raise UserError(f"task must be 'predict' or 'features', got {task!r}")
        todo = list(todo)
        workers = default_workers() if workers is None else int(workers)
        if workers < 0:
            raise UserError(f"workers must be >= 0, got {workers}")
        top_k = max(1, min(int(top_k), len(self.labels)))
        stats = stats if stats is not None else RunStats()
        stats.workers = max(0, min(workers, len(todo)))
        if spec.decoder_threads is None:
            spec = dataclasses.replace(spec, decoder_threads=decoder_threads(stats.workers))
        batcher = Batcher(self._forward_views, spec.group_views, pin=self.device.type == "cuda")
        states: dict[int, list] = {}
        dead: set[int] = set()
        timer = Timer(stats)
        it = iter(input_stage(paths, todo, spec, workers, prefetch))
        with model_threads(stats.workers):   # the model's threads leave the workers their cores
            try:
                while True:
                    try:
                        chunk = timer.wait(it)
                    except StopIteration:
                        break
                    if chunk.error is not None:
                        states.pop(chunk.index, None)
                        dead.add(chunk.index)
                        stats.failed += 1
                        yield chunk.index, Failure(chunk.path, chunk.error)
                        continue
                    for done in batcher.add(chunk):
                        out = self._collect(done, states, dead, spec, task, top_k)
                        if out is not None:
                            stats.videos += 1
                            yield out
                for done in batcher.flush():
                    out = self._collect(done, states, dead, spec, task, top_k)
                    if out is not None:
                        stats.videos += 1
                        yield out
            finally:
                stats.clips = batcher.views_run
                timer.stop()
                del it

    def _collect(self, done, states, dead, spec: ViewSpec, task, top_k):
        """A chunk through the model: the video's result once its last chunk is in, else None."""
        chunk, feats, probs = done
        if chunk.index in dead:
            return None
        if chunk.windows is None:
            return chunk.index, self._result(task, chunk, [chunk], [feats], [probs], spec, top_k)
        parts = states.setdefault(chunk.index, [[], [], []])
        parts[0].append(chunk)
        parts[1].append(feats)
        parts[2].append(probs)
        if not chunk.last:
            return None
        del states[chunk.index]
        return chunk.index, self._result(task, chunk, *parts, spec, top_k)

    def _result(self, task, last, chunks, feats, probs, spec: ViewSpec, top_k):
        v = spec.views_per_window
        video = (last.path, last.num_frames, last.fps)
        if chunks[0].windows is None:
            f, p = feats[0], probs[0]
            if task == "features":
                return Features(last.path, f.mean(0), f)
            return self._make_prediction(video, p, self._view_detail(p, chunks[0].frames, spec.crops), top_k)
        wins = [w for c in chunks for w in c.windows]
        if task == "features":
            vf = np.concatenate(feats).reshape(len(wins), v, -1)
            return Features(last.path, vf.mean(1), vf, np.asarray([(w.start, w.end) for w in wins], np.float32))
        per = np.concatenate(probs).reshape(len(wins), v, -1)
        frames = np.concatenate([c.frames for c in chunks])
        timeline, detail = [], []
        for j, w in enumerate(wins):
            pj = per[j].mean(0)
            timeline.append(TimelineEntry(w.start, w.end, self._top(pj, top_k), pj))
            detail += [dict(d, window=j) for d in self._view_detail(per[j], frames[j], spec.crops)]
        pred = self._make_prediction(video, per.reshape(len(wins) * v, -1), detail, top_k)
        pred.timeline = timeline
        return pred

    @torch.inference_mode()
    def _forward_views(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """uint8 views (B, 3, T, S, S) on the CPU -> (features (B, C), probs (B, K)) float32 numpy: moved to the
        device as uint8, normalised there, one forward pass."""
        x = normalize_views(batch.to(self.device, non_blocking=True), self.data.mean, self.data.std)
        f = self.model.forward_features(x.to(self.dtype))
        logits = self.model.head(f)
        return f.float().cpu().numpy(), torch.softmax(logits.float(), dim=-1).cpu().numpy()

    # ---------------------------------------------------------------- internals
    @property
    def _frames_per_clip(self) -> int:
        return int(self.model.num_frames)

    def _source(self, video, fps) -> VideoSource:
        """Files are decoded straight to the test transform's resize (short side, bilinear, uint8)."""
        return VideoSource(video, fps, short_side=self.data.test_short_side)

    def _guard(self, fn, video, on_error):
        try:
            return fn()
        except (VideoError, OSError) as e:
            if on_error == "raise":
                raise
            return Failure(_name(video), " ".join(str(e).split()) or type(e).__name__)

    def _views_of(self, frames: np.ndarray, shape: tuple, crops: int) -> torch.Tensor:
        """frames of shape[0] clips x shape[1] frames, flattened -> views (clips*crops, 3, T, S, S)."""
        clips, t = shape
        make = self._view_makers.get(crops) or self._view_makers.setdefault(crops, ViewMaker(self.data, crops))
        return torch.cat([make(frames[k * t:(k + 1) * t]) for k in range(clips)])

    def _predict_batch(self, videos, top_k, clips, crops, fps, on_error):
        """Whole-video predictions; the views of all readable videos go through the model together."""
        prepared, results = [], []
        for v in videos:
            def prep(v=v):
                src = self._source(v, fps)
                frames, idx = src.read_sampled(lambda n: clip_indices(n, self._frames_per_clip, clips))
                return src, idx, self._views_of(frames, idx.shape, crops)
            out = self._guard(prep, v, on_error)
            results.append(out if isinstance(out, Failure) else None)
            if not isinstance(out, Failure):
                prepared.append(out)
        if prepared:
            _, probs = self._run(torch.cat([x for _, _, x in prepared]))
        preds, pos = [], 0
        for src, idx, x in prepared:
            vp = probs[pos:pos + len(x)]
            pos += len(x)
            preds.append(self._make_prediction(_video(src), vp, self._view_detail(vp, idx, crops), top_k))
        it = iter(preds)
        return [r if r is not None else next(it) for r in results]

    def _predict_windows(self, video, top_k, clips, crops, window, stride, fps):
        src = self._source(video, fps)
        timeline, all_probs, detail = [], [], []
        for wins, x, idx in self._window_batches(src, window, stride, clips, crops, with_indices=True):
            _, probs = self._run(x)
            per = probs.reshape(len(wins), clips * crops, -1)
            for j, w in enumerate(wins):
                p = per[j].mean(0)
                timeline.append(TimelineEntry(w.start, w.end, self._top(p, top_k), p))
                for d in self._view_detail(per[j], idx[j], crops):
                    detail.append(dict(d, window=len(timeline) - 1))
            all_probs.append(probs)
        pred = self._make_prediction(_video(src), np.concatenate(all_probs), detail, top_k)
        pred.timeline = timeline
        return pred

    def _window_batches(self, src: VideoSource, window, stride, clips, crops, with_indices=False):
        """Yield (windows, views (W*clips*crops, 3, T, S, S)[, indices (W, clips, T)]) in groups that keep the
        decoded frames under ``MAX_FRAMES_PER_READ``."""
        t = self._frames_per_clip
        for group in window_groups(src, window, stride, max(1, MAX_FRAMES_PER_READ // (clips * t))):
            idx, frames = read_windows(src, group, clips, t)
            x = torch.cat([self._views_of(frames[i * clips * t:(i + 1) * clips * t], (clips, t), crops)
                           for i in range(len(group))])
            yield (group, x, idx) if with_indices else (group, x)

    def _view_detail(self, view_probs: np.ndarray, idx: np.ndarray, crops: int) -> list[dict]:
        out = []
        for v, p in enumerate(view_probs):
            k, j = divmod(v, crops)
            best = int(p.argmax())
            out.append({"clip": k, "crop": j, "window": None, "frames": idx[k].tolist(),
                        "label": self.labels[best], "prob": float(p[best])})
        return out

    def _make_prediction(self, video: tuple, view_probs, detail, top_k) -> Prediction:
        """video: (path or None, frame count, fps)."""
        probs = view_probs.mean(0)
        path, num_frames, fps = video
        return Prediction(path, self._top(probs, top_k), probs, view_probs, detail, num_frames=num_frames, fps=fps)

    def _top(self, probs: np.ndarray, k: int) -> list[ClassScore]:
        order = np.argsort(-probs, kind="stable")[:k]
        return [ClassScore(self.labels[i], int(i), float(probs[i])) for i in order]

    @torch.inference_mode()
    def _run(self, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """views (V, 3, T, S, S) -> (features (V, C), softmax probs (V, num_classes)), float32 numpy,
        in chunks whose activations fit the memory cap."""
        from ..data.datasets import chunk_views

        feats, probs = [], []
        for x in chunk_views(views, max_views=self._chunk_size()):
            x = x.to(self.device, self.dtype, non_blocking=True)
            f = self.model.forward_features(x)
            logits = self.model.head(f)
            feats.append(f.float().cpu())
            probs.append(torch.softmax(logits.float(), dim=-1).cpu())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()

    def _chunk_size(self) -> int:
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


class ResultStream:
    """Results of ``predict_many`` / ``extract_features_many`` in input order, each as soon as it and every
    result before it are ready. ``stats``: a ``RunStats`` (complete once the stream is exhausted)."""

    def __init__(self, gen, order: list[int], stats: RunStats):
        self._gen, self._order, self._pos, self._ready, self.stats = gen, order, 0, {}, stats

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos >= len(self._order):
            self.close()
            raise StopIteration
        want = self._order[self._pos]
        while want not in self._ready:
            i, result = next(self._gen)
            self._ready[i] = result
        self._pos += 1
        return self._ready.pop(want)

    def close(self) -> None:
        """Stop early: the worker processes are shut down."""
        self._gen.close()


def _video(src: VideoSource) -> tuple:
    return src.name, src.count(), src.fps


def _name(video) -> str | None:
    return str(video) if isinstance(video, (str, os.PathLike)) else None


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16}


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """Default: bf16 on a GPU that supports it, else fp32."""
    if dtype is None:
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose from fp32, bf16, fp16")
    return _DTYPES[str(dtype).lower()]
