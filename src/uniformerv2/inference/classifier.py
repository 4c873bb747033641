"""``VideoClassifier``: a loaded model plus the official test pipeline, for any video file or frame array.

    clf = VideoClassifier.from_pretrained("model_dir")                 # or ("k400.pyth", preset="k400_b16_8x224")
    pred = clf.predict("video.mp4", top_k=5, views="4x3")             # Prediction
    long = clf.predict("match.mp4", window=4, stride=2)               # + pred.timeline
    preds = clf.predict(["a.mp4", "b.mp4"])                           # views of all videos share batches

Tensor layouts are those of :mod:`uniformerv2.inference.views`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError, VideoError
from .views import ViewMaker, clip_indices, parse_views, plan_windows

DEFAULT_CPU_MEMORY = 2 << 30          # bytes of activations per forward chunk on CPU
MAX_FRAMES_PER_READ = 512             # frames decoded at once for long videos


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


# ----------------------------------------------------------------------------------------------- sources
class _Source:
    """Frames of a file or of an in-memory uint8 (T, H, W, 3) RGB array, by index. Frames of a file are
    resized to ``short_side`` as they are decoded (bounded memory whatever the source resolution)."""

    def __init__(self, video, fps: float | None = None, short_side: int | None = None):
        self.path, self.short_side = None, short_side
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

    def count(self) -> int:
        """Exact number of frames (for files: counted from the packets, without decoding)."""
        if self._count is None:
            from ..data.decode import probe

            info = probe(self.path, exact=True)
            self._count, self.fps = info.num_frames, self.fps or info.fps
        return self._count

    def read(self, indices: np.ndarray) -> np.ndarray:
        if self.array is not None:
            return self.array[indices]
        from ..data.decode import read_frames

        return read_frames(self.path, indices, short_side=self.short_side)

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

        frames, _, info = read_clip(self.path, pick, short_side=self.short_side)
        self._count, self.fps = info.num_frames, self.fps or info.fps
        return frames, flat["idx"]


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

    # ---------------------------------------------------------------- internals
    @property
    def _frames_per_clip(self) -> int:
        return int(self.model.num_frames)

    def _source(self, video, fps) -> _Source:
        """Files are decoded straight to the test transform's resize (short side, bilinear, uint8)."""
        return _Source(video, fps, short_side=self.data.test_short_side)

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
            preds.append(self._make_prediction(src, vp, self._view_detail(vp, idx, crops), top_k))
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
        pred = self._make_prediction(src, np.concatenate(all_probs), detail, top_k)
        pred.timeline = timeline
        return pred

    def _window_batches(self, src: _Source, window, stride, clips, crops, with_indices=False):
        """Yield (windows, views (W*clips*crops, 3, T, S, S)[, indices (W, clips, T)]) in groups that keep the
        decoded frames under ``MAX_FRAMES_PER_READ``."""
        n = src.count()
        wins = plan_windows(n, src.fps, window, stride)
        t = self._frames_per_clip
        per_window = max(1, MAX_FRAMES_PER_READ // (clips * t))
        for g in range(0, len(wins), per_window):
            group = wins[g:g + per_window]
            idx = np.stack([clip_indices(w.stop - w.first, t, clips, w.first) for w in group])  # (W, clips, T)
            frames = src.read(idx.reshape(-1))
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

    def _make_prediction(self, src, view_probs, detail, top_k) -> Prediction:
        probs = view_probs.mean(0)
        return Prediction(src.name, self._top(probs, top_k), probs, view_probs, detail,
                          num_frames=src.count(), fps=src.fps)

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
