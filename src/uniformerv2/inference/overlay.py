"""Drawing an ``Explanation``: heat maps over frames, the PNG sheet (frames x layers) and the MP4 overlay.

Maps are scaled by the largest value of their row (sheet) or window (video), so that the frames of one row or
window compare: a frame the model hardly looks at stays dark.
"""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# A dark-to-bright palette (black, purple, red, orange, yellow, white): position, RGB.
_PALETTE = np.array([[0.0, 0, 0, 0], [0.25, 80, 18, 123], [0.5, 200, 50, 70], [0.75, 250, 140, 20],
                     [0.9, 252, 230, 60], [1.0, 255, 255, 230]], np.float32)
ALPHA = 0.55


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (..., 3) along the palette."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0, 1)
    rgb = [np.interp(v, _PALETTE[:, 0], _PALETTE[:, c]) for c in (1, 2, 3)]
    return np.stack(rgb, -1).round().astype(np.uint8)


def blend(frame: np.ndarray, heat: np.ndarray, scale: float, alpha: float = ALPHA) -> np.ndarray:
    """``frame`` uint8 (H, W, 3) with ``heat`` (H, W) / ``scale`` drawn over it; the overlay is weighted by the
    value itself, so cold areas keep the frame visible."""
    v = heat / scale if scale > 0 else np.zeros_like(heat)
    v = np.clip(v, 0, 1)[..., None]
    out = frame.astype(np.float32) * (1 - alpha * v) + colorize(v[..., 0]).astype(np.float32) * (alpha * v)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if tuple(m.shape) == tuple(size):
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def sheet_png(expl, window: int = 0) -> bytes:
    """The sheet of window ``window`` as PNG bytes (see ``Explanation.overlay_png``)."""
    from PIL import Image, ImageDraw

    from .annotate import _Painter

    w = expl.windows[window]
    thumbs = expl.thumbs[window]
    frames = [int(f) for f in w.frames[0]]
    th, tw = thumbs.shape[1:3]
    rows: list[tuple[str, str, int | None]] = [("frame", "", None)]
    rows += [(f"layer {layer}", "attention", j) for j, layer in enumerate(expl.global_layers)]
    rows += [("all layers", "attention", None), (f"class: {expl.labels[w.target]}"[:28], "class", None)]
    font = _Painter(th).font
    left, gap, top = 150, 2, 28
    sheet = Image.new("RGB", (left + len(frames) * (tw + gap), top + len(rows) * (th + gap)), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    head = f"{expl.path or 'frames'}: {expl.labels[w.target]} {w.probs[w.target]:.2f}"
    if w.start is not None:
        head += f"  [{w.start:.1f}-{w.end:.1f} s]"
    draw.text((4, 6), head, fill=(255, 220, 0), font=font)
    for r, (name, kind, layer) in enumerate(rows):
        y = top + r * (th + gap)
        draw.text((4, y + th // 2 - 8), name, fill=(230, 230, 230), font=font)
        maps = None
        if kind:
            maps = [w.pixel_map(f, kind, layer) for f in frames]
            maps = [_resize_map(m, (th, tw)) if m is not None else np.zeros((th, tw), np.float32) for m in maps]
            scale = max(float(m.max()) for m in maps)
        for c, f in enumerate(frames):
            x = left + c * (tw + gap)
            cell = thumbs[c] if maps is None else blend(thumbs[c], maps[c], scale)
            sheet.paste(Image.fromarray(cell), (x, y))
            if r == 0:
                draw.text((x + 3, y + 2), f"#{f}", fill=(255, 255, 255), font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_overlay_video(expl, video, out, kind: str = "class", top_k: int = 3, crf: int = 20) -> Path:
    """``video`` (the path that was explained) re-encoded to ``out`` with the map of the current window over
    every frame (the nearest sampled frame's map) and the window's top classes written on it."""
    from .annotate import write_annotated_video

    fps = expl.fps or 25.0
    spans = [((w.start or 0.0), (w.end if w.end is not None else float("inf"))) for w in expl.windows]
    centres = np.array([(a + min(b, 1e9)) / 2 for a, b in spans])
    scales = [float(w.patch_maps(kind).max()) for w in expl.windows]
    sampled = [np.unique(w.frames) for w in expl.windows]
    cache: dict[tuple[int, int], np.ndarray] = {}

    def window_at(t: float) -> int:
        inside = [j for j, (a, b) in enumerate(spans) if a <= t < b]
        cand = inside or list(range(len(spans)))
        return int(min(cand, key=lambda j: abs(centres[j] - t)))

    def paint(i: int, frame: np.ndarray) -> np.ndarray:
        j = window_at(i / fps)
        f = int(sampled[j][np.argmin(np.abs(sampled[j] - i))])
        if (j, f) not in cache:
            m = expl.windows[j].pixel_map(f, kind)
            if len(cache) > 64:
                cache.clear()
            cache[(j, f)] = _resize_map(m, frame.shape[:2]) if m is not None else np.zeros(frame.shape[:2], np.float32)
        return blend(frame, cache[(j, f)], scales[j])

    def scores(probs):
        return [SimpleNamespace(label=s["label"], prob=s["prob"]) for s in expl.top_k(top_k, probs)]

    timeline = None
    if expl.windows[0].start is not None:
        timeline = [SimpleNamespace(start=w.start, end=w.end, top_k=scores(w.probs)) for w in expl.windows]
    prediction = SimpleNamespace(top_k=scores(expl.probs), timeline=timeline)
    return write_annotated_video(video, out, prediction, top_k=top_k, crf=crf, paint=paint)
