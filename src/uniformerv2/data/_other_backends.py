"""Optional decoders behind extras: ``pip install uniformerv2[decord]`` / ``uniformerv2[opencv]``.

Each returns the same ``(frames, indices, info)`` as the PyAV reader, frames RGB uint8 (T, H, W, 3).
"""
from __future__ import annotations

from ..errors import UserError, VideoError


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"backend {extra!r} needs the {module!r} package: pip install 'uniformerv2[{extra}]'") from e


def read_clip_decord(path, sample, deadline, threads):
    decord = _need("decord", "decord")
    from .decode import VideoInfo, pick_indices

    try:
        vr = decord.VideoReader(str(path), num_threads=threads)
        n = len(vr)
        idx = pick_indices(path, sample, n)
        deadline.check()
        frames = vr.get_batch(idx.tolist()).asnumpy()
        fps = float(vr.get_avg_fps())
    except VideoError:
        raise
    except Exception as e:  # decord raises its own DECORDError / RuntimeError
        raise VideoError(f"{path}: decord cannot decode ({' '.join(str(e).split())[:200]})") from e
    h, w = frames.shape[1:3]
    return frames, idx, VideoInfo(n, fps, w, h, n / fps if fps else 0.0)


def read_clip_opencv(path, sample, deadline, threads):
    cv2 = _need("cv2", "opencv")
    from .decode import VideoInfo, pick_indices, stack_frames

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open the video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        idx = pick_indices(path, sample, n)
        need, frames = set(idx.tolist()), {}
        for i in range(max(need) + 1):
            deadline.check()
            if not cap.grab():
                raise VideoError(f"{path}: only {i} frames decodable, frame {max(need)} requested")
            if i in need:
                ok, bgr = cap.retrieve()
                if not ok:
                    raise VideoError(f"{path}: cannot decode frame {i}")
                frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    out = stack_frames(path, frames, idx)
    return out, idx, VideoInfo(n, fps, out.shape[2], out.shape[1], n / fps if fps else 0.0)
