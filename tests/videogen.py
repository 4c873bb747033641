"""Synthetic test videos whose frames carry their own index.

Each frame shows a 4x4 grid of black/white blocks in its top three quarters: block ``k`` (row-major) is white
when bit ``k`` of the frame number is set, so ``read_code`` recovers the number after lossy compression. The
bottom quarter is pure red (RGB 255,0,0), which tells RGB from BGR frames apart.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

BITS = 16
GRID = 4


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) frame stamped with ``index``."""
    if not 0 <= index < 2**BITS:
        raise ValueError(f"frame index {index} does not fit in {BITS} bits")
    img = np.zeros((height, width, 3), np.uint8)
    code_h = height * 3 // 4
    for k in range(BITS):
        if index >> k & 1:
            r, c = divmod(k, GRID)
            img[r * code_h // GRID:(r + 1) * code_h // GRID, c * width // GRID:(c + 1) * width // GRID] = 255
    img[code_h:, :, 0] = 255
    return img


def read_code(frame_rgb: np.ndarray) -> int:
    """Frame number stamped by ``frame_image`` (reads the centre of each block)."""
    frame = np.asarray(frame_rgb)
    h, w = frame.shape[:2]
    code_h = h * 3 // 4
    gray = frame[..., :3].astype(np.float32).mean(-1) if frame.ndim == 3 else frame.astype(np.float32)
    value = 0
    for k in range(BITS):
        r, c = divmod(k, GRID)
        y0, y1 = r * code_h // GRID, (r + 1) * code_h // GRID
        x0, x1 = c * w // GRID, (c + 1) * w // GRID
        dy, dx = max((y1 - y0) // 4, 0), max((x1 - x0) // 4, 0)
        if gray[y0 + dy:y1 - dy, x0 + dx:x1 - dx].mean() > 127:
            value |= 1 << k
    return value


def write_video(path, num_frames: int, width: int = 64, height: int = 48, fps: float = 30, codec: str = "libx264",
                gop: int | None = None, *, pix_fmt: str | None = None, bframes: int | None = None,
                timestamps: list[float] | None = None, rotation: int | None = None, audio: bool = False,
                options: dict | None = None, drop_packets: int = 0, thumbnail: bool = False) -> Path:
    """Write ``num_frames`` stamped frames (frame i shows code i) with PyAV and return the path.

    ``gop`` is the keyframe interval, ``bframes`` the max consecutive B-frames (codec default if None),
    ``timestamps`` per-frame presentation times in seconds (variable frame rate), ``rotation`` display-matrix
    degrees, ``audio`` adds a short silent audio track, ``options`` are encoder options.
    ``drop_packets=k`` leaves out the first k encoded packets (decoding order): a stream that starts mid-GOP, as
    a cut without re-encoding makes. ``thumbnail`` writes a one-frame video stream first (a cover or preview
    picture), so that the real video is the second video stream.
    """
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        thumb = _add_thumbnail(out, width, height) if thumbnail else None
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuv420p" if codec != "ffv1" else "yuv444p")
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        opts = {}
        if codec in ("libx264", "libx265"):
            opts.update(preset="ultrafast" if bframes is None else "fast", crf="18")
        if codec == "libvpx-vp9":
            opts.update(deadline="realtime", **{"cpu-used": "8", "crf": "20", "b": "0"})
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                opts.update({"keyint_min": str(gop), "sc_threshold": "0"})
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
            if codec == "libx264":
                opts["bframes"] = str(bframes)
        opts.update(options or {})
        stream.options = opts
        if rotation is not None:
            stream.set_display_rotation(rotation)
        a_stream = out.add_stream("aac", rate=16000) if audio else None
        if thumb is not None:
            thumb()
        written = 0

        def mux(packets):
            nonlocal written
            for packet in packets:
                written += 1
                if written > drop_packets:
                    out.mux(packet)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
            if timestamps is not None:
                frame.pts, frame.time_base = round(timestamps[i] * 1000), Fraction(1, 1000)
            mux(stream.encode(frame))
        mux(stream.encode())
        if a_stream is not None:
            _write_silence(out, a_stream, seconds=num_frames / float(fps))
    return path


def _add_thumbnail(out, width: int, height: int):
    """Add a one-frame MJPEG stream (code 65535, all blocks white) as the first stream; returns the function that
    writes its frame (called once every stream is added)."""
    import av

    thumb = out.add_stream("mjpeg", rate=1)
    thumb.width, thumb.height, thumb.pix_fmt = width, height, "yuvj420p"

    def write():
        frame = av.VideoFrame.from_ndarray(frame_image(2**BITS - 1, width, height), format="rgb24")
        for packet in list(thumb.encode(frame)) + list(thumb.encode()):
            out.mux(packet)
    return write


def trim_edit_list(path, frames: int, fps: float = 30) -> Path:
    """Start the MP4's single edit a few ``frames`` into the media, in place, as a cut without re-encoding does:
    the ``elst`` entry's media time moves up and its segment duration down by that many frame durations
    (ISO/IEC 14496-12 §8.6.6; movie timescale from ``mvhd``, media timescale from ``mdhd``)."""
    import struct

    path = Path(path)
    data = bytearray(path.read_bytes())
    boxes = {name: (start, size) for name, start, size in _boxes(data)}
    if "elst" not in boxes:
        raise ValueError(f"{path}: no edit list to trim")

    def timescale(name):
        start, _ = boxes[name]
        version = data[start + 8]
        return struct.unpack(">I", data[start + (28 if version == 1 else 20):][:4])[0]

    movie, media = timescale("mvhd"), timescale("mdhd")
    start, _ = boxes["elst"]
    version, count = data[start + 8], struct.unpack(">I", data[start + 12:start + 16])[0]
    if count != 1:
        raise ValueError(f"{path}: {count} edit list entries, expected 1")
    fmt = ">Qq" if version == 1 else ">Ii"
    at = start + 16
    duration, media_time = struct.unpack(fmt, data[at:at + struct.calcsize(fmt)])
    duration -= round(frames * movie / fps)
    media_time += round(frames * media / fps)
    data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, duration, media_time)
    path.write_bytes(bytes(data))
    return path


def _boxes(data, start: int = 0, end: int | None = None):
    """(type, offset, size) of every box, descending into the boxes on the path to ``elst``/``mdhd``."""
    import struct

    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        elif size == 0:
            size = end - start
        name = kind.decode("latin-1")
        yield name, start, size
        if name in ("moov", "trak", "edts", "mdia"):
            yield from _boxes(data, start + header, start + size)
        start += size


def write_audio_only(path, seconds: float = 1.0) -> Path:
    """A file with one silent audio stream and no video."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_silence(out, out.add_stream("aac", rate=16000), seconds)
    return path


def _write_silence(out, stream, seconds: float) -> None:
    import av

    samples = 1024
    for i in range(max(1, int(seconds * stream.rate / samples))):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, i * samples
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_frame_folder(directory, num_frames: int, width: int = 64, height: int = 48,
                       template: str = "img_{:05d}.jpg", start: int = 1) -> Path:
    """JPEG frames ``template.format(start + i)`` showing code ``i`` (RGB on disk)."""
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(frame_image(i, width, height)).save(directory / template.format(start + i), quality=95)
    return directory
