"""Test views: which frames and which crops the model sees, and the windows of a long video.

A *view* is one temporal clip (official sparse test sampling, clip ``k`` of ``K``) seen through one spatial
crop (3 crops: left/centre/right, or top/centre/bottom, after the short side is resized; 1 crop: the centre).
The sampling and transforms themselves are ``uniformerv2.data``'s; this module picks them for inference.

Layouts, used everywhere in ``uniformerv2.inference``:
    frames   uint8 (T, H, W, 3), RGB, as decoded
    views    float32 (V, 3, T, S, S), normalised (and channel-reversed for BGR models), V = clips x crops,
             ordered clip-major: view ``v`` is clip ``v // crops``, crop ``v % crops``; the parallel input stage
             ships them as uint8 (V, 3, T, S, S), cropped but not normalised (``normalize_views`` finishes them
             on the model's device: 4x fewer bytes between processes, the same numbers)
    probs    float32 (V, num_classes) per view; a video's prediction is their mean (the official summed
             softmax, divided by V so that it is again a distribution)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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
    if not isinstance(clips, int) or not isinstance(crops, int) or clips < 1 or crops not in (1, 3):
        raise UserError(f"views must look like CLIPSxCROPS with 1 or 3 crops, e.g. 4x3, got {spec!r}")
    return clips, crops


def clip_indices(num_frames: int, length: int, clips: int, first: int = 0, sampling: str = "sparse",
                 stride: int | None = None) -> np.ndarray:
    """(clips, length) frame indices of the test clips 0..clips-1 of frames [first, first + num_frames): the
    official sparse segments, or ``length`` frames ``stride`` apart for ``sampling="dense"`` (the model's
    ``DataConfig``; see ``uniformerv2.data.sampling``, the same functions the datasets use)."""
    from ..data.sampling import dense_indices, sparse_indices

    if num_frames < 1:
        raise UserError("cannot sample from a video with no frames")
    if sampling == "dense":
        return np.stack([dense_indices(num_frames, length, stride, split="test", clip=k, num_clips=clips)
                         for k in range(clips)]) + first
    return np.stack([sparse_indices(num_frames, length, split="test", clip=k, num_clips=clips)
                     for k in range(clips)]) + first


class ViewMaker:
    """uint8 (T, H, W, 3) RGB -> float32 (crops, 3, T, S, S): the official test transform of the model's
    ``DataConfig`` (short side to ``test_short_side``, bilinear; centre or 3 crops; mean/std), with the
    channels reversed first for models trained on BGR frames (Something-Something).

    ``output="uint8"``: the crops without normalisation, for frames already at the short side (what the
    decoder returns with ``short_side=``): the resize is then the identity and ``normalize_views`` of the
    result equals the float output bit for bit."""

    def __init__(self, data, crops: int, output: str = "float"):
        from ..data.transforms import build_transform

        self.bgr = data.bgr
        self.transform = build_transform("test", crop_size=data.crop_size, short_side=data.test_short_side,
                                         mean=data.mean, std=data.std, num_crops=crops, output=output)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        if self.bgr:
            frames = frames[..., ::-1]
        x = self.transform(torch.from_numpy(np.ascontiguousarray(frames)))
        return x if x.ndim == 5 else x.unsqueeze(0)


def normalize_views(views: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 views (V, 3, T, S, S) -> float32 on the tensor's device, normalised with the operations of the
    test transform (``data.transforms.normalize``: the constants in float32 on the CPU, then one subtraction
    and one division per value), so the result equals ``ViewMaker``'s float output bit for bit."""
    m = (torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1) * 255).to(views.device)
    s = (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1) * 255).to(views.device)
    return (views.float() - m) / s


@dataclass(frozen=True)
class Window:
    """A stretch of a long video: seconds [start, end) and frames [first, stop)."""
    start: float
    end: float
    first: int
    stop: int


def plan_windows(num_frames: int, fps: float, window: float, stride: float | None = None) -> list[Window]:
    """Windows of ``window`` seconds every ``stride`` seconds (default: ``window``) that cover the video:
    they start at 0, stride, 2·stride, … and the last one is moved back to end at the last frame, so every
    window has the same length (a video shorter than ``window`` is one window). See
    ``uniformerv2.data.sampling.sliding_windows``."""
    from ..data.sampling import sliding_windows

    stride = window if stride is None else stride
    if window is None or window <= 0 or stride <= 0:
        raise UserError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
    if not fps or fps <= 0:
        raise UserError("windows in seconds need the frame rate (pass fps= for frame arrays)")
    spans = sliding_windows(num_frames, fps, window, stride)
    return [Window(round(a, 6), round(b, 6), f0, f1) for f0, f1, a, b in spans]
