"""Video decoding: ``probe``, ``read_frames``, ``read_clip``, ``iter_frames``.

Frames come back as RGB uint8 numpy arrays of layout (T, H, W, 3) in stored orientation (rotation metadata is
not applied, as in the official decord pipeline). Frame ``i`` is the ``i``-th frame that decoding the video
stream from its first keyframe yields in presentation order, after the container's edit list: what a
decode-everything reader returns (see ``_pyav`` for how it is found without decoding everything).
A directory is read as a frame folder (see ``frame_folder``). Every call has a time limit (``timeout``
seconds, ``None`` for none); every failure is a ``VideoError`` whose one-line message names the file.

Options shared by the readers: ``stream`` (index among the file's video streams; default: the one with the
most frames that is not a cover picture), ``short_side`` (resize each frame, as it is decoded, so that its short
side has this length: bilinear, as the test transform, so that memory follows the output and not the source;
inference passes the model's input size) and ``max_pixels`` (refuse frames larger than this).
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import UserError
from ._deadline import Deadline, call_with_deadline
from .video import (DEFAULT_MAX_PIXELS, VIDEO_EXTENSIONS, Backend, ReadRequest, VideoInfo, check_indices,
                    pick_indices, stack_frames)

__all__ = ["probe", "read_frames", "read_clip", "iter_frames", "default_threads", "VideoInfo", "BACKENDS",
           "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_PIXELS", "VIDEO_EXTENSIONS", "check_indices", "pick_indices",
           "stack_frames"]

BACKENDS = ("pyav", "decord", "opencv")
_MODULES = {"pyav": "_pyav", "decord": "_decord", "opencv": "_opencv"}
DEFAULT_TIMEOUT_S = 30.0


def default_threads() -> int:
    """Decoder threads: 1 inside a DataLoader worker (workers already use every core), else FFmpeg's choice."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover
        return 0
    return 1 if get_worker_info() is not None else 0


def backend_for(path, name: str = "pyav") -> Backend:
    """The module that reads ``path``: ``frame_folder`` for a directory, else the named decoder backend."""
    if os.path.isdir(path):
        return importlib.import_module(f"{__package__}.frame_folder")
    if name not in _MODULES:
        raise UserError(f"unknown decoding backend {name!r}; choose from {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__package__}.{_MODULES[name]}")


def _request(path, threads, stream, short_side, max_pixels, folder) -> ReadRequest:
    if folder and not os.path.isdir(path):
        raise UserError(f"{path}: options {sorted(folder)} only apply to frame folders")
    return ReadRequest(threads=default_threads() if threads is None else threads, stream=stream,
                       short_side=short_side, max_pixels=max_pixels, folder=folder)


def probe(path, *, timeout: float | None = DEFAULT_TIMEOUT_S, exact: bool = True, stream: int | None = None,
          max_pixels: int = DEFAULT_MAX_PIXELS, **folder) -> VideoInfo:
    """Frame count (the same definition as ``read_clip``'s, from a packet scan), rate, size and duration.

    ``exact=False`` returns the count the container declares when it declares one (no packet scan; it can differ
    from the real count for edited, cut or damaged files).
    """
    request = _request(path, None, stream, None, max_pixels, folder)
    reader = backend_for(path)
    return call_with_deadline(lambda d: reader.probe(path, request, d, exact=exact), timeout, path)


def read_frames(path, indices: Sequence[int], backend: str = "pyav", *,
                timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None, stream: int | None = None,
                short_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, **folder) -> np.ndarray:
    """RGB uint8 (T, H, W, 3) holding exactly frames ``indices`` (any order, repeats allowed)."""
    idx = [int(i) for i in indices]
    return read_clip(path, lambda n: idx, backend, timeout=timeout, threads=threads, stream=stream,
                     short_side=short_side, max_pixels=max_pixels, **folder)[0]


def read_clip(path, sample: Callable[[int], Sequence[int]], backend: str = "pyav", *,
              timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None, stream: int | None = None,
              short_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, **folder):
    """Open once, choose indices with ``sample(num_frames)``, decode them.

    Returns ``(frames (T, H, W, 3) uint8 RGB, indices (T,) int64, VideoInfo)``; with ``short_side`` the frames
    are (T, h, w, 3) with min(h, w) == short_side, while ``VideoInfo`` keeps the stored size.
    ``folder`` options (``template``, ``start_index``, ``bgr``, ``num_frames``, ``fps``) apply to frame folders.
    """
    request = _request(path, threads, stream, short_side, max_pixels, folder)
    reader = backend_for(path, backend)
    return call_with_deadline(lambda d: reader.read_clip(path, sample, request, d), timeout, path)


def iter_frames(path, *, timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None,
                stream: int | None = None, short_side: int | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames 0, 1, 2, ... in order; ``timeout`` bounds the wait for each frame."""
    from . import _pyav

    request = _request(path, threads, stream, short_side, max_pixels, {})
    return _pyav.iter_frames(path, request, Deadline(timeout, path))
