"""Video decoding: ``probe``, ``read_frames``, ``read_clip``, ``iter_frames``.

Frames come back as RGB uint8 numpy arrays of layout (T, H, W, 3) in stored orientation (rotation metadata is
not applied, as in the official decord pipeline). Frame index = position in presentation order, 0-based.
A directory is read as a frame folder (see ``frame_folder``). Every call has a time limit (``timeout``
seconds, ``None`` for none); every failure is a ``VideoError`` whose one-line message names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import UserError, VideoError
from ._deadline import Deadline, call_with_deadline

BACKENDS = ("pyav", "decord", "opencv")
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float          # seconds


def default_threads() -> int:
    """Decoder threads: 1 inside a DataLoader worker (workers already use every core), else FFmpeg's choice."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover
        return 0
    return 1 if get_worker_info() is not None else 0


def probe(path, *, timeout: float | None = DEFAULT_TIMEOUT_S, exact: bool = False, **folder) -> VideoInfo:
    """Frame count, rate, size and duration. The count is the container's, else duration x rate, else a packet
    scan; ``exact=True`` always counts packets (what ``read_clip`` uses)."""
    if os.path.isdir(path):
        from .frame_folder import probe_folder
        return probe_folder(path, **folder)
    return call_with_deadline(lambda d: _probe_pyav(path, d, exact), timeout, path)


def read_frames(path, indices: Sequence[int], backend: str = "pyav", *,
                timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None, **folder) -> np.ndarray:
    """RGB uint8 (T, H, W, 3) holding exactly frames ``indices`` (any order, repeats allowed)."""
    idx = [int(i) for i in indices]
    return read_clip(path, lambda n: idx, backend, timeout=timeout, threads=threads, **folder)[0]


def read_clip(path, sample: Callable[[int], Sequence[int]], backend: str = "pyav", *,
              timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None, **folder):
    """Open once, choose indices with ``sample(num_frames)``, decode them.

    Returns ``(frames (T, H, W, 3) uint8 RGB, indices (T,) int64, VideoInfo)``.
    ``folder`` options (``template``, ``start_index``, ``bgr``, ``num_frames``) apply to frame folders.
    """
    if os.path.isdir(path):
        from .frame_folder import read_folder_clip
        return call_with_deadline(lambda d: read_folder_clip(path, sample, d, **folder), timeout, path)
    if folder:
        raise UserError(f"{path}: options {sorted(folder)} only apply to frame folders")
    if backend == "pyav":
        fn = _read_clip_pyav
    elif backend in ("decord", "opencv"):
        from . import _other_backends
        fn = getattr(_other_backends, f"read_clip_{backend}")
    else:
        raise UserError(f"unknown decoding backend {backend!r}; choose from {', '.join(BACKENDS)}")
    threads = default_threads() if threads is None else threads
    return call_with_deadline(lambda d: fn(path, sample, d, threads), timeout, path)


def iter_frames(path, *, timeout: float | None = DEFAULT_TIMEOUT_S, threads: int | None = None
                ) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames in presentation order; ``timeout`` bounds the wait for each frame."""
    import av

    from . import _pyav

    container = _pyav.open_container(path, Deadline(timeout, path))
    try:
        stream = _pyav.video_stream(container, path, default_threads() if threads is None else threads)
        deadline = Deadline(timeout, path)
        for frame in container.decode(stream):
            deadline.check()
            yield frame.to_ndarray(format="rgb24")
            deadline = Deadline(timeout, path)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: decoding failed ({_pyav._reason(e)})") from e
    finally:
        container.close()


def pick_indices(path, sample, num_frames: int) -> np.ndarray:
    """``sample(num_frames)`` checked against the video: a ``VideoError`` for empty videos or bad indices."""
    if num_frames <= 0:
        raise VideoError(f"{path}: no decodable video frames")
    return check_indices(path, sample(num_frames), num_frames)


def check_indices(path, indices, num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if num_frames <= 0:
        raise VideoError(f"{path}: no decodable video frames")
    if idx.size == 0:
        raise UserError(f"{path}: no frame indices requested")
    bad = idx[(idx < 0) | (idx >= num_frames)]
    if bad.size:
        raise VideoError(f"{path}: frame {int(bad[0])} requested but the video has {num_frames} frames")
    return idx


def stack_frames(path, frames: dict, idx: np.ndarray) -> np.ndarray:
    try:
        return np.stack([frames[int(i)] for i in idx])
    except ValueError as e:
        raise VideoError(f"{path}: frame size changes inside the video") from e


def _info(container, stream, num_frames: int) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6
    else:
        duration = num_frames / fps if fps else 0.0
    ctx = stream.codec_context
    return VideoInfo(num_frames, fps, int(ctx.width), int(ctx.height), duration)


def _probe_pyav(path, deadline: Deadline, exact: bool) -> VideoInfo:
    from . import _pyav

    with _pyav.open_container(path, deadline) as container:
        stream = _pyav.video_stream(container, path, None)
        n = 0 if exact else _pyav.declared_frames(stream, container)
        if n <= 0:
            n = len(_pyav.scan(container, stream, path, deadline).pts)
        if n <= 0:
            raise VideoError(f"{path}: no decodable video frames")
        return _info(container, stream, n)


def _read_clip_pyav(path, sample, deadline: Deadline, threads: int):
    from . import _pyav

    with _pyav.open_container(path, deadline) as container:
        stream = _pyav.video_stream(container, path, threads)
        table = _pyav.scan(container, stream, path, deadline)
        info = _info(container, stream, len(table.pts))
        idx = pick_indices(path, sample, info.num_frames)
        wanted = sorted(set(idx.tolist()))
        frames = _pyav.decode_frames(container, stream, table, wanted, path, deadline)
        return stack_frames(path, frames, idx), idx, info
