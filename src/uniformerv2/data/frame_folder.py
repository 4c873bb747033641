"""Videos stored as folders of JPEG frames (Something-Something style ``img_{:05d}.jpg``).

Indices passed in are 0-based; file names use ``start_index + i`` (1 for the official SSv1/v2 folders).
``bgr=True`` returns channels in BGR order, because the official SSv2 checkpoints were trained on frames
loaded with OpenCV and never converted.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import VideoError
from ._deadline import Deadline

DEFAULT_TEMPLATE = "img_{:05d}.jpg"


def count_frames(directory, template: str = DEFAULT_TEMPLATE) -> int:
    """Number of files in ``directory`` whose names match ``template``."""
    parts = re.split(r"\{[^}]*\}", template)
    pattern = re.compile(r"\d+".join(map(re.escape, parts)) + "$")
    try:
        return sum(1 for name in os.listdir(directory) if pattern.match(name))
    except OSError as e:
        raise VideoError(f"{directory}: cannot list frames ({e.strerror})") from e


def probe_folder(directory, *, template: str = DEFAULT_TEMPLATE, num_frames: int | None = None,
                 fps: float = 12.0, **_):
    from .decode import VideoInfo

    n = num_frames if num_frames is not None else count_frames(directory, template)
    if n <= 0:
        raise VideoError(f"{directory}: no frames matching {template!r}")
    w, h = _load(directory, template.format(_first_index(directory, template)), False).shape[1::-1]
    return VideoInfo(n, fps, w, h, n / fps)


def read_folder_clip(directory, sample, deadline: Deadline, *, template: str = DEFAULT_TEMPLATE,
                     start_index: int = 1, bgr: bool = False, num_frames: int | None = None, fps: float = 12.0):
    from .decode import VideoInfo, pick_indices, stack_frames

    n = num_frames if num_frames is not None else count_frames(directory, template)
    idx = pick_indices(directory, sample, n)
    frames = {}
    for i in sorted(set(idx.tolist())):
        deadline.check()
        frames[i] = _load(directory, template.format(start_index + i), bgr)
    h, w = frames[int(idx[0])].shape[:2]
    return stack_frames(directory, frames, idx), idx, VideoInfo(n, fps, w, h, n / fps)


def _first_index(directory, template) -> int:
    for i in (1, 0):
        if os.path.exists(os.path.join(directory, template.format(i))):
            return i
    raise VideoError(f"{directory}: no frame {template.format(1)!r} or {template.format(0)!r}")


def _load(directory, name, bgr: bool) -> np.ndarray:
    from PIL import Image

    path = os.path.join(directory, name)
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot read frame ({e})") from e
    return np.ascontiguousarray(rgb[..., ::-1]) if bgr else rgb
