"""OpenCV backend (``pip install 'uniformerv2[opencv]'``): frames grabbed in order, frame ``i`` = the ``i``-th
frame OpenCV returns; the count is OpenCV's (an index past the real end raises). RGB uint8."""
from __future__ import annotations

from ..errors import VideoError
from .video import (ReadRequest, VideoInfo, check_size, check_video_path, finish_frame, optional_backend,
                    pick_indices, stack_frames)


def _open(path, request: ReadRequest):
    cv2 = optional_backend("cv2", "opencv")
    check_video_path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open the video")
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        check_size(path, w, h, request.max_pixels)
    except VideoError:
        cap.release()
        raise
    return cap, VideoInfo(n, fps, w, h, n / fps if fps else 0.0)


def probe(path, request: ReadRequest, deadline, exact: bool = True) -> VideoInfo:
    cap, info = _open(path, request)
    cap.release()
    return info


def read_clip(path, sample, request: ReadRequest, deadline):
    cv2 = optional_backend("cv2", "opencv")
    cap, info = _open(path, request)
    try:
        idx = pick_indices(path, sample, info.num_frames)
        need, frames = set(idx.tolist()), {}
        for i in range(max(need) + 1):
            deadline.check()
            if not cap.grab():
                raise VideoError(f"{path}: only {i} frames decodable, frame {max(need)} requested")
            if i in need:
                ok, bgr = cap.retrieve()
                if not ok:
                    raise VideoError(f"{path}: cannot decode frame {i}")
                frames[i] = finish_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), request)
    finally:
        cap.release()
    return stack_frames(path, frames, idx), idx, info
