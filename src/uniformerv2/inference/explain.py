"""Where and when the model looks: the global blocks' query attention over a video, and a class-specific map.

UniFormerV2's video token is a learnable query that cross-attends, in each global UniBlock, to all
``T'·(1 + h·w)`` tokens of one backbone layer (every frame's class token and patch tokens). Its attention
weights say which frames and which regions fed the video token.

    attention        A_l (heads, T', 1 + h·w) of global block l: the query's softmax weights, kept per head;
                     drawn over the frames after rollout (Abnar & Zuidema 2020) through the backbone's per-frame
                     attention up to layer l, averaged over heads, and over the global layers for the combined
                     map (the same whatever class is asked)
    class-specific   Chefer et al. (ICCV 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal
                     and Encoder-Decoder Transformers"): every attention map weighted by the gradient of the
                     target's logit, E_heads[(dy_c/dA ⊙ A)^+], relevance propagated through the backbone's
                     self-attention, the query's stages summed
    profile          the share of each input frame in either map (summing to 1)

Mapping back: with temporal downsampling a token step t' covers the clip's frames s·t' .. s·t' + s - 1
(s = T / T', 2); the h×w patch grid covers the crop, which is placed back where it was cut from the resized
frame, and the resized frame is scaled back to the original size (``ExplainedWindow.pixel_map``).

Recording does not touch the reference blocks: while ``explain`` runs, the model's blocks are the reference ones,
each ``GlobalUniBlock`` becomes a ``RecordingGlobalUniBlock`` and each backbone ``Attention`` a
``RecordingAttention`` (class swaps in place, as ``accel`` swaps its variants: same modules, same parameters),
which hand their weights to a recorder of the calling thread only; the classes (and ``requires_grad`` flags) are
put back afterwards. No parameter requires a gradient while it runs, the recorded weights do: one forward pass
and one backward pass (from the target's logit to the weights) per view. Explanations run one at a time in a
process (a lock); another thread predicting meanwhile gets the same numbers (through the reference blocks,
without recording).
"""
from __future__ import annotations

import json
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..accel.swap import revert, swap
from ..errors import UserError, VideoError
from ..model.layers import Attention, GlobalUniBlock, drop_path, merge_heads, split_heads

METHOD = ("attention: the global blocks' query attention weights (mean over heads; combined: mean over layers); "
          "class-specific: gradient-weighted attention, Chefer et al. 2021 (mean over heads of the positive part "
          "of gradient x attention, summed over the global layers)")
KINDS = ("class", "attention")

_RECORDER = threading.local()
_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------- recording
class RecordingGlobalUniBlock(GlobalUniBlock):
    """``GlobalUniBlock`` that computes its query's attention weights explicitly and hands them to the recorder
    of the calling thread (``recording``); the same numbers as the reference (up to float rounding). Weights
    that would not require gradients (the parameters do not) become leaves that do, so that the gradient of a
    logit with respect to them can be taken."""

    REFERENCE = GlobalUniBlock

    def forward(self, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        records = getattr(_RECORDER, "records", None)
        if records is None:
            return super().forward(q, tokens)
        a = self.attn
        b, m, c = tokens.shape
        heads = a.num_heads
        k, v = a.kv(self.norm_kv(tokens)).view(b, m, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        qh = split_heads(a.q(self.norm_q(q)), heads)
        weights = torch.softmax((qh @ k.transpose(-2, -1)) * (c // heads) ** -0.5, dim=-1)  # (B, heads, Nq, M)
        if torch.is_grad_enabled() and not weights.requires_grad:
            weights.requires_grad_(True)
        records.append(weights)
        shape = (1, 1, 1) if self.drop_path_mode == "official" else (q.shape[0], 1, 1)
        q = q + drop_path(a.proj(merge_heads(weights @ v)), self.drop_path, self.training, shape)
        return q + drop_path(self.mlp(self.norm2(q)), self.drop_path, self.training, shape)


class RecordingAttention(Attention):
    """The backbone's per-frame ``Attention`` computing its weights explicitly and handing them to the recorder
    of the calling thread (``recording``); the same numbers as the reference (up to float rounding)."""

    REFERENCE = Attention

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        records = getattr(_RECORDER, "backbone", None)
        if records is None:
            return super().mix(x)
        b, l, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).view(b, l, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5, dim=-1)  # (B·T', heads, L, L)
        if torch.is_grad_enabled() and not weights.requires_grad:
            weights.requires_grad_(True)
        records.append(weights)
        return merge_heads(weights @ v)


@contextmanager
def recording(model):
    """Inside: ``model`` runs its reference blocks with recording global blocks and backbone attention, no
    parameter requires a gradient, and the recorder yielded (``.records``: the global blocks, ``.backbone``: the
    backbone layers) collects the attention weights of every such module called in this thread, in call order.
    Afterwards the model's classes and flags are as they were."""
    with _LOCK:
        classes = [(m, type(m)) for m in model.modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            revert(model)
            for blk in model.global_blocks:
                swap(blk, RecordingGlobalUniBlock)
            for blk in model.blocks:
                swap(blk.attn, RecordingAttention)
            for p, _ in flags:
                p.requires_grad_(False)
            _RECORDER.records, _RECORDER.backbone = [], []
            yield _RECORDER
        finally:
            _RECORDER.records = _RECORDER.backbone = None
            for m, cls in classes:
                m.__class__ = cls
            for p, flag in flags:
                p.requires_grad_(flag)


# ----------------------------------------------------------------------------------------------- results
@dataclass
class ExplainedWindow:
    """The explanation of one window (or of the whole video).

    start / end: seconds (None without windows); frames: (clips, T) sampled frame indices of the video;
    crops: 1 or 3; target: the class explained (index); probs: (K,) mean softmax of the window's views;
    attention / gradient: (V, G, heads, T', 1 + h·w) float32, per view (clip-major), global layer and head:
    the query's weights over the layer's tokens and the gradient of the target's logit with respect to them;
    attention_maps / class_maps: (V, G, T', 1 + h·w), the query's attention rolled out through the backbone and
    its class relevance (``_propagate``), over each frame's input tokens (column 0: the class embedding);
    size: (H, W) of the original frames; resized: (h, w) after the short-side resize; crop: the crop size.
    """
    start: float | None
    end: float | None
    frames: np.ndarray
    crops: int
    target: int
    probs: np.ndarray = field(repr=False)
    attention: np.ndarray = field(repr=False)
    gradient: np.ndarray = field(repr=False)
    attention_maps: np.ndarray = field(repr=False)
    class_maps: np.ndarray = field(repr=False)
    size: tuple[int, int] = (0, 0)
    resized: tuple[int, int] = (0, 0)
    crop: int = 0

    # ------------------------------------------------------------ token maps (per view)
    @property
    def time_steps(self) -> int:
        return self.attention.shape[3]

    @property
    def stride(self) -> int:
        """Input frames per token step (2 with temporal downsampling)."""
        return self.frames.shape[1] // self.time_steps

    @property
    def grid(self) -> int:
        return math.isqrt(self.attention.shape[4] - 1)

    def token_map(self, kind: str = "class", layer: int | None = None) -> np.ndarray:
        """(V, T', 1 + h·w) per view over each frame's input tokens: ``kind`` "attention" (the rolled-out query
        attention; mean over the global layers unless ``layer`` is given: its index among them) or "class"
        (the class relevance, summed over the global layers)."""
        if kind not in KINDS:
            raise UserError(f"map kind must be one of {KINDS}, got {kind!r}")
        maps = self.attention_maps if kind == "attention" else self.class_maps
        if layer is not None:
            return maps[:, layer]
        return maps.mean(axis=1) if kind == "attention" else maps.sum(axis=1)

    def patch_maps(self, kind: str = "class", layer: int | None = None) -> np.ndarray:
        """(V, T', h, w): the patch tokens' part of ``token_map`` (what has a place in the frame)."""
        m = self.token_map(kind, layer)
        g = self.grid
        return m[:, :, 1:].reshape(m.shape[0], m.shape[1], g, g)

    # ------------------------------------------------------------ per input frame
    def frame_mass(self, kind: str = "class") -> dict[int, float]:
        """{frame index: share of the map}: each view's map over its T'·L tokens (for "attention": the query's
        own weights, averaged over heads and layers) normalised to sum 1, a token step's mass split evenly over
        the frames it covers, the views averaged (the values sum to 1)."""
        if kind == "attention":
            m = self.attention.mean(axis=(1, 2)).sum(axis=2)  # (V, T')
        else:
            m = self.token_map(kind).sum(axis=2)
        out: dict[int, float] = {}
        views, s = m.shape[0], self.stride
        for v in range(views):
            total = float(m[v].sum())
            if total <= 0:
                continue
            clip = self.frames[v // self.crops]
            for i, f in enumerate(clip):
                out[int(f)] = out.get(int(f), 0.0) + float(m[v, i // s]) / total / s / views
        return dict(sorted(out.items()))

    def pixel_map(self, frame: int, kind: str = "class", layer: int | None = None) -> np.ndarray | None:
        """(H, W) float32 map on the original frame ``frame`` (a sampled index; None if no view sampled it):
        every view that holds the frame puts its token step's patch grid back on its crop of the resized frame
        (bilinear), overlaps are averaged, and the resized frame is scaled back to the original size. Areas
        that no crop covers are 0."""
        import torch.nn.functional as F

        from ..data.transforms import crop_offsets

        grids = self.patch_maps(kind, layer)
        h, w = self.resized
        canvas, count = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        s, size = self.stride, self.crop
        for v in range(grids.shape[0]):
            clip = self.frames[v // self.crops]
            for i in np.flatnonzero(clip == frame):
                pos = 1 if self.crops == 1 else v % self.crops
                y, x = crop_offsets(h, w, size, pos)
                g = torch.from_numpy(np.ascontiguousarray(grids[v, i // s], np.float32))[None, None]
                up = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
                canvas[y:y + size, x:x + size] += up
                count[y:y + size, x:x + size] += 1
        if not count.any():
            return None
        canvas = np.where(count > 0, canvas / np.maximum(count, 1), 0).astype(np.float32)
        if (h, w) == tuple(self.size):
            return canvas
        t = torch.from_numpy(canvas)[None, None]
        return F.interpolate(t, size=tuple(self.size), mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass
class Explanation:
    """What ``VideoClassifier.explain`` returns: one ``ExplainedWindow`` per window (one for the whole video
    without windows), the video-level probabilities (mean over windows, as ``predict``), the class explained
    and, for rendering, the sampled frames of each window's first clip (``thumbs``: W x (T, h, w, 3) uint8,
    short side ``THUMB``)."""
    path: str | None
    labels: list[str] = field(repr=False)
    target: int
    probs: np.ndarray = field(repr=False)
    windows: list[ExplainedWindow] = field(repr=False)
    global_layers: list[int] = field(default_factory=list)
    num_frames: int = 0
    fps: float | None = None
    thumbs: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return self.labels[self.target]

    def top_k(self, k: int = 5, probs: np.ndarray | None = None) -> list[dict]:
        p = self.probs if probs is None else probs
        order = np.argsort(-p, kind="stable")[:k]
        return [{"label": self.labels[i], "index": int(i), "prob": float(p[i])} for i in order]

    def profile(self, window: int = 0) -> list[dict]:
        """Per sampled frame of window ``window``: index, time (s), share of the attention and of the
        class-specific map."""
        w = self.windows[window]
        att, cls = w.frame_mass("attention"), w.frame_mass("class")
        return [{"frame": f, "time": round(f / self.fps, 4) if self.fps else None,
                 "attention": round(att.get(f, 0.0), 6), "class_specific": round(cls.get(f, 0.0), 6)}
                for f in sorted(set(att) | set(cls))]

    def best_window(self) -> int:
        """The window whose probability of the explained class is highest."""
        return int(np.argmax([w.probs[self.target] for w in self.windows]))

    def to_json(self) -> dict:
        """JSON-able summary: the class explained, the probabilities, the per-frame profile of each window."""
        wins = []
        for j, w in enumerate(self.windows):
            wins.append({"start": w.start, "end": w.end, "target": {"index": w.target, "label": self.labels[w.target]},
                         "top_k": self.top_k(5, w.probs), "profile": self.profile(j)})
        return {"path": self.path, "class": {"index": self.target, "label": self.label,
                                             "prob": float(self.probs[self.target])},
                "top_k": self.top_k(5), "probabilities": {lab: float(p) for lab, p in zip(self.labels, self.probs)},
                "profile": self.profile(self.best_window()), "windows": wins, "global_layers": self.global_layers,
                "frame_stride": self.windows[0].stride, "num_frames": self.num_frames, "fps": self.fps,
                "method": METHOD}

    def arrays(self) -> dict[str, np.ndarray]:
        """The raw arrays, per window ``w``: ``w{j}.attention`` / ``w{j}.gradient`` (V, G, heads, T', 1 + h·w),
        ``w{j}.attention_rollout`` / ``w{j}.class_relevance`` (V, G, T', 1 + h·w), ``w{j}.frames`` (clips, T),
        ``w{j}.probs`` (K,), ``w{j}.attention_map`` / ``w{j}.class_map`` (V, T', h, w), the combined maps over the
        patch grid; and ``probs`` (K,)."""
        out = {"probs": self.probs.astype(np.float32)}
        for j, w in enumerate(self.windows):
            out[f"w{j}.attention"] = w.attention
            out[f"w{j}.gradient"] = w.gradient
            out[f"w{j}.frames"] = w.frames.astype(np.int64)
            out[f"w{j}.probs"] = w.probs.astype(np.float32)
            out[f"w{j}.attention_rollout"] = w.attention_maps
            out[f"w{j}.class_relevance"] = w.class_maps
            out[f"w{j}.attention_map"] = w.patch_maps("attention").astype(np.float32)
            out[f"w{j}.class_map"] = w.patch_maps("class").astype(np.float32)
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def save_arrays(self, path) -> None:
        """The raw arrays (``arrays``) as a .safetensors file, with the JSON summary's scalars as metadata."""
        from safetensors.numpy import save_file

        from ..fileio import atomic_write

        meta = {"target": self.label, "global_layers": json.dumps(self.global_layers), "method": METHOD,
                "windows": json.dumps([[w.start, w.end, w.crops] for w in self.windows])}
        atomic_write(path, lambda tmp: save_file(self.arrays(), tmp, metadata=meta))

    def overlay_png(self, window: int | None = None) -> bytes:
        """A PNG sheet: the sampled frames of one window's first clip (default: ``best_window``) in columns;
        in rows the frames, each global layer's attention, the combined attention and the class-specific
        map, over the frames."""
        from .overlay import sheet_png

        return sheet_png(self, self.best_window() if window is None else window)


# ----------------------------------------------------------------------------------------------- running
THUMB = 128


def resolve_target(target, labels: list[str]) -> int | None:
    """``target``: None, a class index or a label (exact, else case-insensitive) -> index."""
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < len(labels):
            raise UserError(f"target class index {target} out of range (0..{len(labels) - 1})")
        return int(target)
    text = str(target).strip()
    if text.isdigit():
        return resolve_target(int(text), labels)
    if text in labels:
        return labels.index(text)
    low = [lab.lower() for lab in labels]
    if text.lower() in low:
        return low.index(text.lower())
    raise UserError(f"unknown target class {target!r} (the model has {len(labels)} classes, e.g. "
                    f"{', '.join(repr(x) for x in labels[:3])})")


def explain_views(model, views: torch.Tensor, data, device, dtype, target: int | None, batch: int,
                  prepass=None) -> dict:
    """uint8 views (V, 3, T, S, S) of one window -> {"probs" (K,), "target", "attention", "gradient" (V, G,
    heads, T', L), "attention_maps", "class_maps" (V, G, T', L)} (float32 numpy): forward passes of ``batch``
    views with recording, and for each one backward pass of the target's logit (default target: the top-1 of
    the window's mean softmax; when the views take several passes it comes from ``prepass(views)``, the
    engine's inference pass, first)."""
    from .views import normalize_views

    cfg = model.cfg
    stage_of = {layer: j for j, layer in enumerate(cfg.global_layers)}
    if target is None and len(views) > batch and prepass is not None:
        target = int(np.argmax(prepass(views).mean(0)))
    out: dict[str, list] = {k: [] for k in ("logits", "attention", "gradient", "attention_maps", "class_maps")}
    with recording(model) as rec, torch.enable_grad():
        for i in range(0, len(views), batch):
            x = normalize_views(views[i:i + batch].to(device), data.mean, data.std).to(dtype)
            rec.records.clear()
            rec.backbone.clear()
            logits = model(x).float()
            if target is None:
                target = int(torch.softmax(logits.detach(), -1).mean(0).argmax())
            glob, back = list(rec.records), list(rec.backbone)
            if not glob:
                raise UserError("this model has no global blocks (global_layers is empty): no query attention")
            grads = torch.autograd.grad(logits[:, target].sum(), glob + back, allow_unused=True)
            gq, gb = grads[:len(glob)], grads[len(glob):]
            t, length = cfg.time_steps, cfg.tokens_per_frame
            att = torch.stack([_tokens(w, t, length) for w in glob], 1)               # (n, G, heads, T', L)
            grad = torch.stack([_tokens(_grad(w, g), t, length) for w, g in zip(glob, gq)], 1)
            rolled, relevance = _propagate(att, grad, back, gb, stage_of, t)
            out["logits"].append(logits.detach().cpu())
            out["attention"].append(att.numpy())
            out["gradient"].append(grad.numpy())
            out["attention_maps"].append(rolled.numpy())
            out["class_maps"].append(relevance.numpy())
            del glob, back, grads, gq, gb
    probs = torch.softmax(torch.cat(out.pop("logits")), -1).mean(0).numpy()
    res = {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
    return dict(res, probs=probs, target=int(target))


def _grad(w: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros_like(w) if g is None else g


def _tokens(w: torch.Tensor, t: int, length: int) -> torch.Tensor:
    """(B, heads, Nq, M) weights -> (B, heads, T', L) float32 on the CPU: the last T'·L keys (the layer's
    tokens; the hierarchical fusions put earlier stages' outputs first), averaged over the queries."""
    w = w.detach()[..., -t * length:].float().mean(2)
    return w.reshape(w.shape[0], w.shape[1], t, length).cpu()


def _normalised(rel: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s R̄ = I + rows of (R − I) scaled to sum 1 (rows without relevance stay 0)."""
    extra = rel - eye
    total = extra.sum(-1, keepdim=True)
    return eye + torch.where(total > 0, extra / total.clamp(min=1e-12), torch.zeros_like(extra))


def _propagate(att, grad, back, back_grads, stage_of: dict, t: int):
    """The query's maps over the input tokens of each frame, per global stage: (n, G, T', L) each.

    attention: rollout (Abnar & Zuidema 2020) through the backbone's per-frame attention up to the stage's
    layer, R <- (A + I)/2 · R with A averaged over heads, then the query's head-averaged weights times R
    (each row of R sums to 1, so a frame's mass is kept). class: Chefer et al. 2021, R <- R + Ā·R with
    Ā = mean_heads[(∇A ⊙ A)^+] for the backbone, then the query's Ā_q times R̄ (their normalisation of R: the
    part added to the identity scaled to rows of sum 1)."""
    n, g, _, _, length = att.shape
    eye = torch.eye(length).expand(n * t, length, length)
    roll, rel = eye.clone(), eye.clone()
    maps_a = torch.zeros(n, g, t, length)
    maps_c = torch.zeros(n, g, t, length)
    q_att = att.mean(2)                                       # (n, G, T', L)
    q_rel = (grad * att).clamp(min=0).mean(2)
    for layer, (w, gw) in enumerate(zip(back, back_grads)):
        a = w.detach().float().cpu()
        roll = torch.bmm(0.5 * a.mean(1) + 0.5 * eye, roll)
        cam = (_grad(w, gw).detach().float().cpu() * a).clamp(min=0).mean(1)
        rel = rel + torch.bmm(cam, rel)
        j = stage_of.get(layer)
        if j is not None:
            maps_a[:, j] = torch.bmm(q_att[:, j].reshape(n * t, 1, length), roll).view(n, t, length)
            maps_c[:, j] = torch.bmm(q_rel[:, j].reshape(n * t, 1, length), _normalised(rel, eye)).view(n, t, length)
    return maps_a, maps_c


def explain_video(clf, video, target=None, *, views=None, window: float | None = None, stride: float | None = None,
                  fps: float | None = None, batch_size: int | None = None, progress=None) -> Explanation:
    """``VideoClassifier.explain``: see there. ``progress(done, total)`` is called after each window."""
    from ..data.transforms import short_side_size
    from .pipeline import VideoInput, VideoSource, video_chunks, window_groups

    model = clf.model
    if not model.cfg.global_layers:
        raise UserError("this model has no global blocks (global_layers is empty): no query attention to show")
    labels = clf.labels
    wanted = resolve_target(target, labels)
    spec = clf.view_spec(views, window, stride, batch_size)
    item = VideoInput(video, fps)
    data = clf.data
    per_window = spec.views_per_window
    # a pass keeps the graph of the whole backbone (its attention needs gradients): a quarter of the views
    # the engine runs per inference pass
    batch = int(batch_size) if batch_size else max(1, min(per_window, clf.engine.views_per_pass(1) // 4))

    def prepass(v):
        return clf.engine.forward_views(v)[2]

    src = VideoSource(video, fps)
    if src.array is not None:
        size = tuple(src.array.shape[1:3])
    else:
        from ..data.decode import probe

        info = probe(src.path)
        size = (info.height, info.width)
    resized = short_side_size(*size, data.test_short_side)
    total = len(window_groups(src, window, stride, 1)) if window is not None else 1
    windows: list[ExplainedWindow] = []
    thumbs: list[np.ndarray] = []
    num_frames, rate = 0, fps
    for chunk in video_chunks(0, item, spec):
        if chunk.error is not None:
            raise chunk.exception if chunk.exception is not None else VideoError(chunk.error)
        num_frames, rate = chunk.num_frames, chunk.fps
        groups = chunk.windows if chunk.windows is not None else [None]
        frames = chunk.frames if chunk.windows is not None else chunk.frames[None]
        for j, win in enumerate(groups):
            v = chunk.views[j * per_window:(j + 1) * per_window]
            r = explain_views(model, v, data, clf.device, clf.dtype, wanted, batch, prepass)
            windows.append(ExplainedWindow(win.start if win else None, win.end if win else None, frames[j],
                                           spec.crops, r["target"], r["probs"], r["attention"], r["gradient"],
                                           r["attention_maps"], r["class_maps"], size, resized, data.crop_size))
            thumbs.append(_thumbs(src, frames[j][0]))
            if progress is not None:
                progress(len(windows), total)
    probs = np.mean([w.probs for w in windows], axis=0)
    chosen = wanted if wanted is not None else int(np.argmax(probs))
    return Explanation(item.name, labels, chosen, probs, windows, list(model.cfg.global_layers), num_frames, rate,
                       thumbs)


def _thumbs(src, indices: np.ndarray) -> np.ndarray:
    """The frames ``indices`` with ``THUMB`` px on the short side, uint8 (T, h, w, 3)."""
    import torch.nn.functional as F

    frames = src.read(np.asarray(indices))
    h, w = frames.shape[1:3]
    scale = THUMB / min(h, w)
    if scale == 1:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                      align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
