"""Test views: which frames and which crops the model sees, and the windows of a long video.

A *view* is one temporal clip (official sparse test sampling, clip ``k`` of ``K``) seen through one spatial
crop (``crops`` crops spread along the long side after the short side is resized; 1 crop = the centre).

Layouts, used everywhere in ``uniformerv2.inference``:
    frames   uint8 (T, H, W, 3), RGB, as decoded
    views    float32 (V, 3, T, S, S), normalised (and channel-reversed for BGR models), V = clips x crops,
             ordered clip-major: view ``v`` is clip ``v // crops``, crop ``v % crops``
    probs    float32 (V, num_classes) per view; a video's prediction is their mean (the official summed
             softmax, divided by V so that it is again a distribution)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError


def parse_views(spec, default: tuple[int, int]) -> tuple[int, int]:
    """``"4x3"`` / ``(4, 3)`` / ``None`` (the default) -> (clips, crops)."""
    if spec is None:
        return int(default[0]), int(default[1])
    if isinstance(spec, str):
        parts = spec.lower().replace("×", "x").split("x")
        try:
            clips, crops = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            clips = crops = None
    else:
        clips, crops = tuple(spec) if len(tuple(spec)) == 2 else (None, None)
    if not isinstance(clips, int) or not isinstance(crops, int) or clips < 1 or crops < 1:
        raise UserError(f"views must look like CLIPSxCROPS, e.g. 4x3, got {spec!r}")
    return clips, crops


def sparse_test_indices(num_frames: int, length: int, clip: int = 0, clips: int = 1) -> np.ndarray:
    """Official TSN-style test sampling: ``length`` segments, frame at offset (clip+1)/(clips+1) in each.

    seg = (num_frames - 1) / length;  frame_i = round(seg * i) + int(seg / (clips + 1) * (clip + 1)).
    """
    if num_frames < 1:
        raise UserError("cannot sample from a video with no frames")
    seg = (num_frames - 1) / length
    offset = int(seg / (clips + 1) * (clip + 1))
    idx = np.round(seg * np.arange(length)).astype(np.int64) + offset
    return np.clip(idx, 0, num_frames - 1)


def clip_indices(num_frames: int, length: int, clips: int, first: int = 0) -> np.ndarray:
    """(clips, length) frame indices of every test clip of frames [first, first + num_frames)."""
    return np.stack([sparse_test_indices(num_frames, length, k, clips) for k in range(clips)]) + first


def crop_views(frames: np.ndarray, data: dict, crops: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (crops, 3, T, S, S): short side to ``short_side`` (bilinear), then
    ``crops`` crops of ``crop_size`` evenly spread along the long side (3 = left/centre/right or
    top/centre/bottom, 1 = centre), normalised with the model's mean/std."""
    size, short = int(data["crop_size"]), int(data.get("short_side") or data["crop_size"])
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)  # (T, 3, H, W)
    h, w = x.shape[-2:]
    nh, nw = (short, math.floor(w * short / h)) if h <= w else (math.floor(h * short / w), short)
    nh, nw = max(nh, size), max(nw, size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    mean = torch.tensor(data["mean"], dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(data["std"], dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean) / std
    if data.get("bgr"):
        x = x.flip(1)
    out = []
    for j in range(crops):
        y0 = _offset(nh - size, j, crops) if nh > nw else math.ceil((nh - size) / 2)
        x0 = _offset(nw - size, j, crops) if nh <= nw else math.ceil((nw - size) / 2)
        out.append(x[:, :, y0:y0 + size, x0:x0 + size])
    return torch.stack(out).permute(0, 2, 1, 3, 4).contiguous()  # (crops, 3, T, S, S)


def _offset(room: int, j: int, n: int) -> int:
    return math.ceil(room / 2) if n == 1 else math.ceil(room * j / (n - 1))


@dataclass(frozen=True)
class Window:
    """A stretch of a long video: seconds [start, end) and frames [first, stop)."""
    start: float
    end: float
    first: int
    stop: int


def plan_windows(num_frames: int, fps: float, window: float, stride: float | None = None) -> list[Window]:
    """Windows of ``window`` seconds every ``stride`` seconds (default: ``window``) that cover the video.

    All windows have the same length (a video shorter than ``window`` is one window). The first starts at 0, the
    last ends at the end of the video, and the starts in between are spread evenly, at most ``stride`` apart:
    n = ceil((duration - window) / stride) + 1 windows (exactly the stride grid when it fits the video).
    """
    stride = window if stride is None else stride
    if window is None or window <= 0 or stride <= 0:
        raise UserError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
    if not fps or fps <= 0:
        raise UserError("windows in seconds need the frame rate (pass fps= for frame arrays)")
    duration = num_frames / fps
    room = duration - window
    if room <= 1e-9:
        starts = [0.0]
    else:
        n = math.ceil(room / stride - 1e-9) + 1
        starts = [room * i / (n - 1) for i in range(n)]
    out = []
    for s in starts:
        e = min(s + window, duration)
        first = min(int(round(s * fps)), num_frames - 1)
        stop = max(min(int(round(e * fps)), num_frames), first + 1)
        out.append(Window(round(s, 6), round(e, 6), first, stop))
    return out
