"""Videos stored as folders of JPEG frames (Something-Something style ``img_{:05d}.jpg``): a decoder backend.

Indices passed in are 0-based; file names use ``start_index + i`` (1 for the official SSv1/v2 folders).
``bgr=True`` returns channels in BGR order, because the official SSv2 checkpoints were trained on frames
loaded with OpenCV and never converted. Options come in ``ReadRequest.folder``: ``template``, ``start_index``,
``bgr``, ``num_frames`` (else the matching files are counted) and ``fps`` (default 12).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import UserError, VideoError
from ._deadline import Deadline
from .video import ReadRequest, VideoInfo, check_size, finish_frame, pick_indices, stack_frames

DEFAULT_TEMPLATE = "img_{:05d}.jpg"
_OPTIONS = {"template", "start_index", "bgr", "num_frames", "fps"}


def count_frames(directory, template: str = DEFAULT_TEMPLATE) -> int:
    """Number of files in ``directory`` whose names match ``template``."""
    parts = re.split(r"\{[^}]*\}", template)
    pattern = re.compile(r"\d+".join(map(re.escape, parts)) + "$")
    try:
        return sum(1 for name in os.listdir(directory) if pattern.match(name))
    except OSError as e:
        raise VideoError(f"{directory}: cannot list frames ({e.strerror})") from e


def _options(directory, request: ReadRequest):
    unknown = set(request.folder) - _OPTIONS
    if unknown:
        raise UserError(f"{directory}: unknown frame-folder options {sorted(unknown)}")
    o = request.folder
    template = o.get("template", DEFAULT_TEMPLATE)
    n = o.get("num_frames")
    n = int(n) if n is not None else count_frames(directory, template)
    return template, int(o.get("start_index", 1)), bool(o.get("bgr", False)), n, float(o.get("fps", 12.0))


def probe(directory, request: ReadRequest, deadline: Deadline, exact: bool = True) -> VideoInfo:
    template, _, _, n, fps = _options(directory, request)
    if n <= 0:
        raise VideoError(f"{directory}: no frames matching {template!r}")
    w, h = _load(directory, template.format(_first_index(directory, template)), False).shape[1::-1]
    return VideoInfo(n, fps, w, h, n / fps)


def read_clip(directory, sample, request: ReadRequest, deadline: Deadline):
    template, start_index, bgr, n, fps = _options(directory, request)
    idx = pick_indices(directory, sample, n)
    frames, size = {}, None
    for i in sorted(set(idx.tolist())):
        deadline.check()
        img = _load(directory, template.format(start_index + i), bgr)
        size = size or img.shape[1::-1]
        check_size(directory, img.shape[1], img.shape[0], request.max_pixels)
        frames[i] = finish_frame(img, request)
    return stack_frames(directory, frames, idx), idx, VideoInfo(n, fps, size[0], size[1], n / fps)


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
