"""Frame-index sampling: pure functions of (frames in the video, parameters, torch.Generator).

All return 0-based frame indices as int64 numpy arrays in temporal order, plus ``start_index`` (use 1 for
raw file numbers of 1-based frame folders; the readers in this package take 0-based indices).

Sparse (TSN-style) sampling follows the official code. With V frames and T samples, seg = (V - 1) / T:
- train:  frame_i = randint(round(seg*i), round(seg*(i+1))), both ends included, clamped to V - 1;
- test, clip k of K: frame_i = round(seg*i) + int(seg / (K+1) * (k+1));
- val: the test formula with K = 1, k = 0, i.e. round(seg*i) + int(seg/2) -- the segment midpoints. The official
  validation loader runs the test branch with a single clip, so this is what its numbers were measured with.
``round`` is round-half-to-even (numpy's ``np.round`` in the official code, Python's ``round`` here; both
give the same integer for every float, e.g. round(2.5) = 2, round(3.5) = 4). Videos shorter than T give
repeated indices (seg < 1); a one-frame video gives all zeros.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError

SPLITS = ("train", "val", "test")


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _check(num_frames: int, num_samples: int) -> None:
    if num_frames < 1:
        raise UserError(f"cannot sample from a video with {num_frames} frames")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def sparse_indices(num_frames: int, num_samples: int, *, split: str = "test", clip: int = 0, num_clips: int = 1,
                   generator: torch.Generator | None = None, start_index: int = 0) -> np.ndarray:
    """Official segment-based sampling (see module docstring). ``clip``/``num_clips`` are k/K for test."""
    _check(num_frames, num_samples)
    seg = (num_frames - 1) / num_samples
    if split == "train":
        idx = [min(_randint(round(seg * i), round(seg * (i + 1)), generator), num_frames - 1)
               for i in range(num_samples)]
    elif split in ("val", "test"):
        if split == "val":
            clip, num_clips = 0, 1
        if not 0 <= clip < num_clips:
            raise ValueError(f"clip {clip} out of range for {num_clips} clips")
        offset = int(seg / (num_clips + 1) * (clip + 1))
        idx = [min(round(seg * i) + offset, num_frames - 1) for i in range(num_samples)]
    else:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.asarray(idx, dtype=np.int64) + start_index


def dense_indices(num_frames: int, num_samples: int, stride: int, *, split: str = "test", clip: int = 0,
                  num_clips: int = 1, generator: torch.Generator | None = None, start_index: int = 0) -> np.ndarray:
    """``num_samples`` frames ``stride`` apart. Train: random start; val/test: clip k of K starts evenly spaced
    over the video (K = 1: centred). Frames past the end are clamped to the last frame."""
    _check(num_frames, num_samples)
    span = (num_samples - 1) * stride + 1
    room = max(num_frames - span, 0)
    if split == "train":
        start = _randint(0, room, generator)
    elif split in ("val", "test"):
        if split == "val":
            clip, num_clips = 0, 1
        start = room // 2 if num_clips == 1 else round(room * clip / (num_clips - 1))
    else:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    idx = np.minimum(start + stride * np.arange(num_samples), num_frames - 1)
    return idx.astype(np.int64) + start_index


def uniform_indices(num_frames: int, num_samples: int, *, start_index: int = 0) -> np.ndarray:
    """``num_samples`` frames evenly spread over the whole video: the centre of each of T equal parts,
    floor((i + 0.5) * V / T)."""
    _check(num_frames, num_samples)
    idx = ((np.arange(num_samples) + 0.5) * num_frames / num_samples).astype(np.int64)
    return np.minimum(idx, num_frames - 1) + start_index


def sliding_windows(num_frames: int, fps: float, window: float, stride: float, *, unit: str = "s"
                    ) -> list[tuple[int, int, float, float]]:
    """Windows over a long video as ``(start_frame, end_frame, start_s, end_s)``, end exclusive.

    ``window`` and ``stride`` are in seconds (``unit="s"``) or frames (``unit="frames"``). Windows start at
    0, stride, 2*stride, ...; the last one is moved back to end at the last frame so the whole video is covered.
    A video shorter than one window gives one window over all of it.
    """
    _check(num_frames, 1)
    if unit not in ("s", "frames"):
        raise ValueError(f"unit must be 's' or 'frames', got {unit!r}")
    if unit == "s" and fps <= 0:
        raise ValueError("fps must be positive for windows in seconds")
    scale = fps if unit == "s" else 1
    length, step = max(1, round(window * scale)), max(1, round(stride * scale))
    if length >= num_frames:
        starts = [0]
    else:
        starts = list(range(0, num_frames - length + 1, step))
        if starts[-1] + length < num_frames:
            starts.append(num_frames - length)
    ends = [min(s + length, num_frames) for s in starts]
    to_s = (lambda f: f / fps) if fps > 0 else (lambda f: 0.0)
    return [(s, e, to_s(s), to_s(e)) for s, e in zip(starts, ends)]


def window_indices(start_frame: int, end_frame: int, num_samples: int, **sparse) -> np.ndarray:
    """Sparse test-style indices inside ``[start_frame, end_frame)`` (for sliding windows and untrimmed clips)."""
    return start_frame + sparse_indices(end_frame - start_frame, num_samples, **sparse)
