"""decord backend (``pip install 'uniformerv2[decord]'``): the reader of the official Kinetics pipelines.

Frame counts and indices are decord's own; frames are RGB uint8, resized as decoded when asked.
"""
from __future__ import annotations

from ..errors import VideoError
from .video import (ReadRequest, VideoInfo, check_size, check_video_path, finish_frame, optional_backend,
                    pick_indices, stack_frames)


def _open(path, request: ReadRequest):
    decord = optional_backend("decord", "decord")
    check_video_path(path)
    try:
        vr = decord.VideoReader(str(path), num_threads=request.threads or 0)
    except Exception as e:  # decord raises its own DECORDError / RuntimeError
        raise VideoError(f"{path}: decord cannot decode ({' '.join(str(e).split())[:200]})") from e
    h, w = vr[0].shape[:2] if len(vr) else (0, 0)
    check_size(path, w, h, request.max_pixels)
    fps = float(vr.get_avg_fps())
    return vr, VideoInfo(len(vr), fps, w, h, len(vr) / fps if fps else 0.0)


def probe(path, request: ReadRequest, deadline, exact: bool = True) -> VideoInfo:
    return _open(path, request)[1]


def read_clip(path, sample, request: ReadRequest, deadline):
    vr, info = _open(path, request)
    idx = pick_indices(path, sample, info.num_frames)
    frames = {}
    try:
        for i in sorted(set(idx.tolist())):
            deadline.check()
            frames[i] = finish_frame(vr[i].asnumpy(), request)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{path}: decord cannot decode ({' '.join(str(e).split())[:200]})") from e
    return stack_frames(path, frames, idx), idx, info
