"""What every video reader shares: ``VideoInfo``, the read options, the backend interface, index checks, the
uint8 short-side resize applied as frames are decoded, the file-type check and the list of video suffixes.

This module is the leaf of the decoding code: the backends (``_pyav``, ``frame_folder``, ``_decord``,
``_opencv``) import it and nothing else of the package but ``errors`` and ``_deadline``; ``decode`` (the public
API) imports the backends. Nothing here imports torch.

Frame ``i`` of a video is the ``i``-th frame that decoding its stream from the first keyframe yields, in
presentation order, after the container's edit list is applied. A reader returns exactly those frames or raises
``VideoError``.
"""
from __future__ import annotations

import errno
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..errors import UserError, VideoError

# One list for every command (scan, predict, features, class-folder datasets).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".ogv"})
DEFAULT_MAX_PIXELS = 8192 * 8192     # any 8K format, square included; larger declared sizes are refused


@dataclass(frozen=True)
class VideoInfo:
    """``num_frames``: frames as defined above; ``width``/``height``: the stored size (before any resize)."""
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float          # seconds


@dataclass(frozen=True)
class ReadRequest:
    """How to read: decoder ``threads`` (None: FFmpeg's choice), the video ``stream`` (index among the file's
    video streams; None: the longest one that is not a cover picture), ``short_side`` (resize every returned frame
    so that its short side has this length, bilinear, as it is decoded; None: stored size), ``max_pixels``
    (refuse larger frames) and the frame-folder options (``folder``)."""
    threads: int | None = None
    stream: int | None = None
    short_side: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    folder: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.short_side is not None and int(self.short_side) < 1:
            raise UserError(f"short_side must be a positive number of pixels, got {self.short_side}")
        if int(self.max_pixels) < 1:
            raise UserError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.stream is not None and int(self.stream) < 0:
            raise UserError(f"stream must be a video stream index (0, 1, ...), got {self.stream}")


Sample = Callable[[int], Sequence[int]]


class Backend(Protocol):
    """What a decoder backend module provides (``deadline`` is a ``_deadline.Deadline``).

    ``probe`` returns the frame count and format (``exact=False``: the declared count, where there is one);
    ``read_clip`` opens the video once, calls ``sample(num_frames)`` for the indices and returns
    ``(frames uint8 (T, H, W, 3) RGB, indices (T,) int64, VideoInfo)``.
    """

    def probe(self, path, request: ReadRequest, deadline, exact: bool = True) -> VideoInfo: ...

    def read_clip(self, path, sample: Sample, request: ReadRequest, deadline) -> tuple: ...


# ----------------------------------------------------------------------------------------------- indices
def pick_indices(path, sample: Sample, num_frames: int) -> np.ndarray:
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


def check_size(path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise VideoError(f"{path}: frame size {width}x{height} is over the limit of {max_pixels} pixels "
                         f"(max_pixels=)")


# ----------------------------------------------------------------------------------------------- resizing
def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """(h, w) with the short side ``short`` and the long side floor(long / short_in * short): the rule of the
    test transform (``transforms.short_side_size``)."""
    if h <= w:
        return short, int(math.floor(w / h * short))
    return int(math.floor(h / w * short)), short


def _taps(n_in: int, n_out: int):
    """Source rows/columns and weights of bilinear resampling, align_corners=False, no antialias: the
    coordinates ``torch.nn.functional.interpolate`` computes on the CPU (a float32 scale, then
    ``scale * (i + 0.5) - 0.5`` rounded once to float32, as a fused multiply-add does)."""
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0).astype(np.float32)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.clip(src - i0, 0, 1).astype(np.float32)
    return i0, i1, np.float32(1) - w1, w1


def resize_short_side(frame: np.ndarray, short: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (h, w, C) with the short side ``short`` (bilinear, rounded half to even).

    Only the source rows that the output needs are read, so the float work is (h x W), not (H x W): a 4096²
    frame costs a few MB here. Equals the test transform's float resize up to the final rounding.
    """
    h_in, w_in = frame.shape[:2]
    h, w = short_side_size(h_in, w_in, int(short))
    if (h, w) == (h_in, w_in):
        return frame
    r0, r1, a0, a1 = _taps(h_in, h)
    rows = frame[r0].astype(np.float32) * a0[:, None, None] + frame[r1].astype(np.float32) * a1[:, None, None]
    c0, c1, b0, b1 = _taps(w_in, w)
    out = rows[:, c0] * b0[None, :, None] + rows[:, c1] * b1[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def finish_frame(rgb: np.ndarray, request: ReadRequest) -> np.ndarray:
    """A decoded RGB frame as the reader returns it (resized when ``request.short_side`` is set)."""
    return rgb if request.short_side is None else resize_short_side(rgb, request.short_side)


def optional_backend(module: str, extra: str):
    """Import the package an optional backend needs, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"backend {extra!r} needs the {module!r} package: pip install 'uniformerv2[{extra}]'") from e


# ----------------------------------------------------------------------------------------------- files
def check_video_path(path) -> os.stat_result:
    """``os.stat`` of a path that a reader may open: a regular file (or a directory, for frame folders).

    Never opens anything: FIFOs, devices and sockets are refused here, because opening them can block for good.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise VideoError(f"{path}: broken symbolic link (its target does not exist)") from e
        raise VideoError(f"{path}: {describe_os_error(e)}") from e
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return st
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
    raise VideoError(f"{path}: is {kind}, not a regular file (not opened)")


def find_videos(root, extensions=VIDEO_EXTENSIONS) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file under ``root`` whose suffix is a video suffix, at any depth, following symbolic links to
    folders, sorted; and the problems met on the way, as (path, message): a link back to a folder already
    visited (a symbolic link loop) or a folder that cannot be listed. Nothing is opened: FIFOs, devices and broken
    links with a video suffix are listed, for the reader to refuse with its own message."""
    files, problems, seen, stack = [], [], set(), [str(root)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as e:
            problems.append((folder, describe_os_error(e)))
            continue
        if (st.st_dev, st.st_ino) in seen:
            problems.append((folder, "symbolic link loop (leads back to a folder already scanned)"))
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problems.append((folder, f"cannot list folder ({describe_os_error(e)})"))
            continue
        for entry in entries:
            if os.path.splitext(entry.name)[1].lower() in extensions:
                files.append(entry.path)
            elif entry.is_dir():        # follows links; False for broken links and loops
                stack.append(entry.path)
    return sorted(files), sorted(problems)


def describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "file not found"
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or type(e).__name__


def pool_context():
    """The multiprocessing context of the pools that decode or encode video (``scan``, ``prepare``): a fork
    server where the platform has one. A plain fork copies a process whose FFmpeg threads may hold locks (a
    frame converter's slice threads, after any decoding or encoding in that process), and a worker forked at
    that moment waits on them forever."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
