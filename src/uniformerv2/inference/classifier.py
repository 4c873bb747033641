"""``VideoClassifier``: a loaded model plus the official test pipeline, for any video file or frame array.

    clf = VideoClassifier.from_pretrained("model_dir")                 # or ("k400.pyth", preset="k400_b16_8x224")
    pred = clf.predict("video.mp4", top_k=5, views="4x3")             # Prediction
    long = clf.predict("match.mp4", window=4, stride=2)               # + pred.timeline
    preds = clf.predict(["a.mp4", "b.mp4"])                           # views of all videos share batches
    for pred in clf.predict_many(paths, workers=8):                    # datasets: parallel decoding, in order
        ...

Every call runs through the one inference engine (:mod:`uniformerv2.inference.engine`); this module turns
its per-video outputs into ``Prediction`` / ``Features``. Tensor layouts are those of
:mod:`uniformerv2.inference.views`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError, VideoError
from .engine import Engine, Failure, VideoOutput, check_inputs
from .pipeline import PREFETCH, RunStats, VideoInput, ViewSpec


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

    def __init__(self, model, device=None, dtype=None, memory_cap: int | None = None, optimize: bool = True, *,
                 backend: str = "torch", quantize: str = "none", cache=None):
        """``model`` is moved to ``device`` (default: CUDA if available) in ``dtype`` (default: bf16 on a GPU
        that supports it, else fp32) and, with ``optimize``, gets its inference speed variants
        (``uniformerv2.accel.optimize``; the reference model computes the same numbers, slower).

        ``backend``: what runs the forward passes: ``"torch"`` (the model itself) or ``"onnxruntime"`` (CPU
        only, fp32: the model exported to ONNX once, cached in ``cache`` (default ``<cache folder>/onnx``) and
        run by ONNX Runtime; ``quantize="int8"``: with int8 weights). See ``uniformerv2.inference.runtime``."""
        from ..accel import optimize as apply_speed_variants
        from .runtime import check_choice, check_placement, make_engine

        check_choice(backend, quantize)
        self.backend, self.quantize = backend, quantize
        if backend != "torch":   # the runtime's own graph: the reference model on the CPU, in fp32
            device = device if device not in (None, "auto") else "cpu"
            optimize = False
        self.device = torch.device(device) if device is not None else _default_device()
        self.dtype = _resolve_dtype(dtype, self.device)
        check_placement(backend, self.device, self.dtype)
        self.model = model.eval().to(self.device, self.dtype)
        if optimize:
            apply_speed_variants(self.model, for_inference=True)
        self.labels = list(model.labels) if model.labels else [f"class {i}" for i in range(model.num_classes)]
        self.engine = make_engine(self.model, self.device, self.dtype, model.data_config, memory_cap,
                                  backend=backend, quantize=quantize, cache=cache)

    @property
    def data(self):
        """The ``DataConfig`` of the test pipeline (the engine's)."""
        return self.engine.data

    @data.setter
    def data(self, value) -> None:
        self.engine.data = value

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
                stride: float | None = None, fps: float | None = None, on_error: str = "raise", *,
                workers: int | None = None):
        """Classify a video (path or uint8 (T, H, W, 3) RGB array) or a list of them.

        views: "CLIPSxCROPS" (default: the model's test views, e.g. 4x3 for Kinetics presets).
        window/stride: seconds; gives a per-window ``timeline`` plus the video-level aggregate over all windows.
        fps: frame rate of an array input (needed with ``window``).
        on_error: "raise", or "return" to get a ``Failure`` for a video that cannot be read.
        workers: input worker processes for a list of files (default: chosen from the work; see ``engine``).
        Returns a ``Prediction`` (a list of them, for a list input).
        """
        if on_error not in ("raise", "return"):
            raise UserError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        many = isinstance(video, (list, tuple))
        results = self._call(list(video) if many else [video], "predict", top_k, views, window, stride, fps,
                             on_error, workers)
        return results if many else results[0]

    def extract_features(self, video, views=None, window: float | None = None, stride: float | None = None,
                         fps: float | None = None) -> Features:
        """Pre-head features (what the classifier's LN + linear head sees) of one video; see ``Features``."""
        return self._call([video], "features", 1, views, window, stride, fps, "raise", None)[0]

    def explain(self, video, target=None, views=None, window: float | None = None, stride: float | None = None,
                fps: float | None = None, *, batch_size: int | None = None, progress=None):
        """Where and when the model looks (``uniformerv2.inference.explain``): the global blocks' query attention
        over one video (path or uint8 (T, H, W, 3) RGB array) and the map of class ``target`` (index or label;
        default: the top-1), per window with ``window``/``stride``; ``progress(done, total)`` after each window.
        Returns an ``Explanation`` (``to_json()``, ``overlay_png()``, ``save_arrays(path)``)."""
        from .explain import explain_video

        return explain_video(self, video, target, views=views, window=window, stride=stride, fps=fps,
                             batch_size=batch_size, progress=progress)

    def _call(self, videos, task, top_k, views, window, stride, fps, on_error, workers):
        inputs = check_inputs([VideoInput(v, fps) for v in videos])
        spec = self.view_spec(views, window, stride)
        results: list = [None] * len(inputs)
        gen = self.stream(inputs, range(len(inputs)), spec, task=task, top_k=top_k, workers=workers)
        try:
            for i, res in gen:
                if isinstance(res, Failure) and on_error == "raise":
                    raise res.exception if res.exception is not None else VideoError(res.error)
                results[i] = res
        finally:
            gen.close()   # stops the input workers when an error ends the call early
        return results

    # ---------------------------------------------------------------- many videos
    def predict_many(self, videos, top_k: int = 5, views=None, window: float | None = None,
                     stride: float | None = None, *, workers: int | None = None, batch_size: int | None = None,
                     prefetch: int = PREFETCH) -> "ResultStream":
        """``predict`` over a list of video files, for datasets: decoding, sampling and cropping run in
        ``workers`` processes (default: chosen from the work, ``Engine.choose_workers``; 0: in this process)
        with at most ``prefetch`` chunks per worker in flight, while this process runs the model on forward
        passes of ``batch_size`` views shared by several videos (default: ``Engine.views_per_pass``). Long
        videos (``window``) are decoded and sent group of windows by group of windows, so memory does not grow
        with their duration.

        Returns an iterator of ``Prediction`` / ``Failure`` (a file that cannot be read: reported, skipped,
        nothing else moves) in input order, with ``.stats`` (a ``RunStats``) once it is exhausted. A video's
        numbers do not depend on the other videos or on ``workers`` (see ``pipeline``): they are ``predict``'s,
        bit for bit at the same thread count."""
        return self._many(videos, "predict", top_k, views, window, stride, workers, batch_size, prefetch)

    def extract_features_many(self, videos, views=None, window: float | None = None, stride: float | None = None,
                              *, workers: int | None = None, batch_size: int | None = None,
                              prefetch: int = PREFETCH) -> "ResultStream":
        """``extract_features`` over a list of video files, as ``predict_many``: ``Features`` / ``Failure``
        in input order."""
        return self._many(videos, "features", 1, views, window, stride, workers, batch_size, prefetch)

    def live(self, source, *, every: float | None = None, window: float | None = None, views=None, top_k: int = 5,
             smooth: int = 1, threshold: float | None = None, **options):
        """Classify a live source (a camera ``/dev/videoN``, a URL, ``-`` for stdin, a file with
        ``realtime=True``) as it plays: every ``every`` seconds of feed (default ``window / 2``) the most recent
        ``window`` seconds, sampled as the recipe samples, through the engine; yields ``LiveUpdate``\\ s (top-k
        smoothed over ``smooth`` updates, lag, windows skipped). ``views``: default one centre view. Other
        options (format, options, realtime, reconnect, duration, output_video, threads, on_clip, log): see
        ``uniformerv2.inference.live.LiveStream``."""
        from .live import LiveStream

        return LiveStream(self, source, every=every, window=window, views=views, top_k=top_k, smooth=smooth,
                          threshold=threshold, **options)

    def _many(self, videos, task, top_k, views, window, stride, workers, batch_size, prefetch):
        if not all(isinstance(v, (str, os.PathLike)) for v in videos):
            raise UserError("predict_many / extract_features_many take video paths (use predict for frame arrays)")
        paths = [str(v) for v in videos]
        spec = self.view_spec(views, window, stride, batch_size)
        stats = RunStats()
        gen = self.stream(paths, range(len(paths)), spec, task=task, top_k=top_k, workers=workers,
                          prefetch=prefetch, stats=stats)
        return ResultStream(gen, list(range(len(paths))), stats)

    def view_spec(self, views=None, window: float | None = None, stride: float | None = None,
                  batch_size: int | None = None) -> ViewSpec:
        """What the input stage makes of each video, and the views per forward pass (``Engine.spec``)."""
        return self.engine.spec(views, window, stride, batch_size)

    def stream(self, inputs: list, todo, spec: ViewSpec, *, task: str = "predict", top_k: int = 5,
               workers: int | None = None, prefetch: int = PREFETCH, stats: RunStats | None = None):
        """``Engine.run`` as results: yields ``(index, Prediction | Features | Failure)`` for each index in
        ``todo`` as soon as it is complete (not in input order)."""
        if task not in ("predict", "features"):
            raise UserError(f"task must be 'predict' or 'features', got {task!r}")
        top_k = max(1, min(int(top_k), len(self.labels)))
        for i, out in self.engine.run(inputs, todo, spec, workers=workers, prefetch=prefetch, stats=stats):
            if isinstance(out, Failure):
                yield i, out
            elif task == "features":
                yield i, self.features_of(out, spec)
            else:
                yield i, self.prediction_of(out, spec, top_k)

    # ---------------------------------------------------------------- results
    def prediction_of(self, out: VideoOutput, spec: ViewSpec, top_k: int) -> Prediction:
        """A ``Prediction`` from the engine's output for one video: the mean of the views' softmaxes (over
        all windows), with a timeline when there are windows."""
        v = spec.views_per_window
        if out.windows is None:
            detail = self._view_detail(out.probs, out.frames, spec.crops)
            return self._make_prediction(out, out.probs, detail, top_k)
        per = out.probs.reshape(len(out.windows), v, -1)
        timeline, detail = [], []
        for j, w in enumerate(out.windows):
            pj = per[j].mean(0)
            timeline.append(TimelineEntry(w.start, w.end, self._top(pj, top_k), pj))
            detail += [dict(d, window=j) for d in self._view_detail(per[j], out.frames[j], spec.crops)]
        pred = self._make_prediction(out, out.probs, detail, top_k)
        pred.timeline = timeline
        return pred

    @staticmethod
    def features_of(out: VideoOutput, spec: ViewSpec) -> Features:
        if out.windows is None:
            return Features(out.path, out.features.mean(0), out.features)
        vf = out.features.reshape(len(out.windows), spec.views_per_window, -1)
        return Features(out.path, vf.mean(1), vf, np.asarray([(w.start, w.end) for w in out.windows], np.float32))

    def _view_detail(self, view_probs: np.ndarray, idx: np.ndarray, crops: int) -> list[dict]:
        out = []
        for v, p in enumerate(view_probs):
            k, j = divmod(v, crops)
            best = int(p.argmax())
            out.append({"clip": k, "crop": j, "window": None, "frames": idx[k].tolist(),
                        "label": self.labels[best], "prob": float(p[best])})
        return out

    def _make_prediction(self, out: VideoOutput, view_probs, detail, top_k) -> Prediction:
        probs = view_probs.mean(0)
        return Prediction(out.path, self._top(probs, top_k), probs, view_probs, detail, num_frames=out.num_frames,
                          fps=out.fps)

    def _top(self, probs: np.ndarray, k: int) -> list[ClassScore]:
        order = np.argsort(-probs, kind="stable")[:k]
        return [ClassScore(self.labels[i], int(i), float(probs[i])) for i in order]


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
