"""Annotated video output: the input video, re-encoded as H.264, with the current top-k drawn on every frame.

"Current" is the timeline window around the frame (the one whose centre is nearest, when windows overlap), or
the video-level prediction when there is no timeline. Frames are RGB uint8 (H, W, 3) from ``iter_frames``.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UserError

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def write_annotated_video(video, out, prediction, top_k: int | None = None, crf: int = 20, paint=None) -> Path:
    """Write ``video`` (a path) to ``out`` with the labels of ``prediction`` (from ``VideoClassifier.predict``)
    drawn on it. Same frame count, size and rate as the input; written atomically. ``paint(index, frame)``, if
    given, returns the frame to draw the labels on (e.g. with a heat map over it)."""
    from ..data.decode import iter_frames, probe
    from ..fileio import atomic_write

    out = Path(out)
    fmt = CONTAINERS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"{out}: annotated video must be one of {', '.join(CONTAINERS)} (H.264)")
    info = probe(video)
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
    captions = _captions(prediction, top_k)

    def write(tmp):
        import av

        with av.open(tmp, "w", format=fmt) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = info.width, info.height
            even = info.width % 2 == 0 and info.height % 2 == 0
            stream.pix_fmt = "yuv420p" if even else "yuv444p"  # 4:2:0 needs even sizes
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            painter = None
            for i, frame in enumerate(iter_frames(video)):
                if painter is None:
                    painter = _Painter(frame.shape[0])
                lines = captions(float(i / rate))
                if paint is not None:
                    frame = paint(i, frame)
                vf = av.VideoFrame.from_ndarray(painter.draw(frame, lines), format="rgb24")
                vf.pts = i
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(out, write)
    return out


def _captions(prediction, top_k):
    """time (s) -> caption lines."""
    def lines(scores):
        return [f"{s.label}  {s.prob:.2f}" for s in scores[:top_k or len(scores)]]

    timeline = prediction.timeline
    if not timeline:
        fixed = lines(prediction.top_k)
        return lambda t: fixed
    texts = [lines(w.top_k) for w in timeline]
    starts = np.array([w.start for w in timeline])
    ends = np.array([w.end for w in timeline])
    centres = (starts + ends) / 2

    def at(t):
        inside = (starts <= t) & (t < ends)
        cand = np.flatnonzero(inside) if inside.any() else np.arange(len(timeline))
        return texts[int(cand[np.argmin(np.abs(centres[cand] - t))])]
    return at


class _Painter:
    """Draws caption lines in the top-left corner on a translucent dark box, scaled to the frame height."""

    def __init__(self, height: int):
        from PIL import ImageFont

        self.size = max(10, height // 22)
        try:
            self.font = ImageFont.load_default(size=self.size)
        except TypeError:  # Pillow < 10.1: fixed-size bitmap font
            self.font = ImageFont.load_default()

    def draw(self, frame: np.ndarray, lines: list[str]) -> np.ndarray:
        from PIL import Image, ImageDraw

        img = Image.fromarray(frame).convert("RGBA")
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        d = ImageDraw.Draw(overlay)
        pad, step = self.size // 3 + 2, self.size + self.size // 4
        width = max((d.textlength(s, font=self.font) for s in lines), default=0)
        d.rectangle([0, 0, width + 2 * pad, len(lines) * step + 2 * pad], fill=(0, 0, 0, 150))
        for k, s in enumerate(lines):
            d.text((pad, pad + k * step), s, font=self.font, fill=(255, 255, 255, 255) if k else (255, 220, 0, 255))
        return np.asarray(Image.alpha_composite(img, overlay).convert("RGB"))
