"""PyAV backend: read chosen frames while decoding as little as possible.

Plan per file:
1. Demux every video packet once (no decoding, a few ms) to get the presentation timestamps and keyframes.
   Frame index ``i`` is the ``i``-th timestamp in sorted order, so variable frame rate needs no special case.
2. Decode forward, seeking to a target's keyframe when that skips more than ``SEEK_GAP`` frames
   (long GOPs decode straight through, short GOPs seek); packets that are not targets are decoded with
   ``skip_frame="NONREF"`` so frames nobody references are never reconstructed.
3. Convert to RGB only the target frames.
Containers whose timestamps cannot be trusted (AVI, or decoded timestamps out of order) fall back to counting
decoded frames in output order, without seeking or skipping.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..errors import VideoError
from ._deadline import Deadline

SEEK_GAP = 4             # seek only when that skips more than this many frames (cheap: a flush)
UNTRUSTED_FORMATS = {"avi"}


@dataclass
class FrameTable:
    pts: list          # sorted presentation timestamps, one per frame
    keyframes: list    # frame indices of keyframes, ascending
    trusted: bool      # timestamps usable for seeking and mapping frames


class _Untrusted(Exception):
    """Decoded timestamps disagree with the table: redo by counting."""


def open_container(path, deadline: Deadline):
    import av

    t = deadline.remaining()
    try:
        return av.open(str(path), timeout=None if t is None else (t, t))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        if isinstance(e, FileNotFoundError) or not _exists(path):
            raise VideoError(f"{path}: file not found") from e
        raise VideoError(f"{path}: cannot open video ({_reason(e)})") from e


def video_stream(container, path, threads: int | None):
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream")
    stream = container.streams.video[0]
    if threads is not None:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
    return stream


def declared_frames(stream, container) -> int:
    """Frame count the container states, else duration x rate, else 0."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base and rate:
        return int(round(float(stream.duration * stream.time_base * rate)))
    if container.duration and rate and len(container.streams) == 1:
        return int(round(container.duration / 1e6 * float(rate)))
    return 0


def scan(container, stream, path, deadline: Deadline) -> FrameTable:
    """Demux all video packets (no decoding) into a ``FrameTable``."""
    import av

    pts, keys, has_none = [], [], False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if len(pts) % 64 == 0:
                deadline.check()
            if packet.pts is None:
                has_none = True
            pts.append(packet.pts if packet.pts is not None else len(pts))
            keys.append(packet.is_keyframe)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: corrupt or truncated after {len(pts)} packets ({_reason(e)})") from e
    declared = declared_frames(stream, container) if stream.frames else 0
    if declared and len(pts) < declared - 2:
        raise VideoError(f"{path}: truncated: container declares {declared} frames, {len(pts)} readable")
    order = sorted(range(len(pts)), key=pts.__getitem__)
    sorted_pts = [pts[i] for i in order]
    trusted = (not has_none and container.format.name.split(",")[0] not in UNTRUSTED_FORMATS
               and len(set(sorted_pts)) == len(sorted_pts))
    keyframes = sorted(rank for rank, i in enumerate(order) if keys[i]) or [0]
    return FrameTable(sorted_pts, keyframes, trusted)


def decode_frames(container, stream, table: FrameTable, wanted, path, deadline: Deadline) -> dict:
    """``{index: RGB uint8 (H, W, 3)}`` for every index in ``wanted`` (a sorted list of unique indices)."""
    import av

    try:
        if table.trusted:
            try:
                return _decode_by_timestamp(container, stream, table, wanted, deadline)
            except _Untrusted:
                pass
        container.seek(0, backward=True)  # back to the start (the scan read to the end)
        stream.codec_context.skip_frame = "DEFAULT"
        return _decode_by_counting(container, stream, wanted, path, deadline)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: decoding failed ({_reason(e)})") from e


def _decode_by_timestamp(container, stream, table, wanted, deadline) -> dict:
    index_of = {p: i for i, p in enumerate(table.pts)}
    target_pts = {table.pts[i] for i in wanted}
    ctx = stream.codec_context
    need, out = set(wanted), {}
    pos = None                    # index of the next frame the decoder would produce (None: at the end, after scan)
    for t in wanted:
        if t in out:
            continue
        key = table.keyframes[bisect.bisect_right(table.keyframes, t) - 1]
        if pos is None or key > pos + SEEK_GAP or t < pos:
            container.seek(table.pts[key], stream=stream, backward=True)
        last = -1
        for packet in container.demux(stream):
            deadline.check()
            ctx.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in target_pts else "NONREF"
            for frame in packet.decode():
                i = index_of.get(frame.pts)
                if i is None or i < last:
                    raise _Untrusted
                last = i
                if i in need and i not in out:
                    out[i] = frame.to_ndarray(format="rgb24")
            if t in out:
                break
        if t not in out:
            raise _Untrusted
        pos = last + 1
    ctx.skip_frame = "DEFAULT"
    return out


def _decode_by_counting(container, stream, wanted, path, deadline) -> dict:
    import av

    need, last, out, i = set(wanted), wanted[-1], {}, -1
    try:
        for i, frame in enumerate(container.decode(stream)):
            deadline.check()
            if i in need:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    except av.FFmpegError as e:
        raise VideoError(f"{path}: decoding failed at frame {i + 1} ({_reason(e)})") from e
    missing = need.difference(out)
    if missing:
        raise VideoError(f"{path}: only {i + 1} frames decodable, frame {min(missing)} requested")
    return out


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _exists(path) -> bool:
    import os
    return os.path.exists(path)
