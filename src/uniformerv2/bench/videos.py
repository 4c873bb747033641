"""Generated Kinetics-like inputs for the benchmarks: 340x256, 30 fps H.264 files written with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_kinetics_like(path, gop: int, seconds: float = 10.0, width: int = 340, height: int = 256,
                        fps: int = 30, seed: int = 0) -> Path:
    """A panning textured scene with sensor-like noise and a moving object, libx264 (preset ``veryfast``,
    B-frames chosen by x264, keyframe every ``gop`` frames); about 1 Mbit/s like Kinetics clips at this size."""
    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height + n // 3 + 1, 0:width + n // 2 + 1].astype(np.float32)
    scene = 128 + 60 * (np.sin(xx / 13) * np.cos(yy / 29))[..., None] + rng.normal(0, 45, (*xx.shape, 3))
    scene = (scene[:-1, :-1] + scene[1:, 1:] + scene[1:, :-1] + scene[:-1, 1:]) / 4   # soften the texture
    noise = rng.integers(-8, 9, (16, height, width, 3))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast", "crf": "20", "keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(n):
            t = i / fps
            img = scene[i // 3:i // 3 + height, i // 2:i // 2 + width] + noise[i % 16]
            x0, y0 = int((width - 60) * (0.5 + 0.5 * np.sin(t))), int((height - 60) * (0.5 + 0.5 * np.cos(1.7 * t)))
            img[y0:y0 + 60, x0:x0 + 60] = (250, 40, 40)
            frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


def kinetics_like_files(root, count: int = 4, seconds: float = 10.0) -> list:
    """``count`` generated Kinetics-like files (340×256, 30 fps H.264) in ``root``, half of them with a keyframe
    every 250 frames and half every 30 (what the pipeline benchmarks read); existing ones are reused."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = root / f"v{i}_{seconds:g}s.mp4"
        if not p.exists():
            write_kinetics_like(p, gop=250 if i % 2 == 0 else 30, seconds=seconds, seed=i)
        paths.append(p)
    return paths
