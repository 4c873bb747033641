"""The decoder (``uniformerv2 bench decode``): sparse clip reading vs. decoding every frame, per core.

Kinetics-like inputs: 10 s, 340x256, 30 fps H.264 (B-frames chosen by x264) with a keyframe every 250 and
every 30 frames, written with PyAV. Each clip is 8 segment-sampled frames; the baseline decodes and converts
every frame and then indexes. Both sides use one decoder thread and one torch thread; times are CPU time of the process (per core).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from .videos import write_kinetics_like


def decode_everything(path, indices) -> np.ndarray:
    """Baseline reader: decode and convert every frame, then index."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "AUTO", 1
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    return np.stack([frames[i] for i in indices])


def _time(fn, repeats: int) -> float:
    """Median CPU milliseconds per call of this process (all its threads): a per-core cost that other
    programs on the machine do not inflate the way they inflate wall time."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times)) * 1e3


def bench_decode(*, repeats: int = 5, num_frames: int = 8, workdir=None) -> dict:
    """Time one worker (one decoder thread, one torch thread) per case; the rows of ``format_table``.

    Rows: reading only, reading + train transform, reading + 3-crop test transform, for keyframes every 250
    and every 30 frames. Also compares shipping float clips with shipping uint8 clips normalised later
    (``DeviceAugment``; timed here on the CPU).
    """
    from ..data.decode import read_clip
    from ..data.sampling import sparse_indices
    from ..data.transforms import DeviceAugment, build_transform

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    transforms = {"read only": None,
                  "train": build_transform("train", crop_size=224, rand_augment="rand-m7-n4-mstd0.5-inc1"),
                  "test 3-crop": build_transform("test", crop_size=224, num_crops=3)}
    rows = []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            for gop in (250, 30):
                path = write_kinetics_like(os.path.join(tmp, f"gop{gop}.mp4"), gop)
                for name, tf in transforms.items():
                    split = "train" if name == "train" else "val"

                    def sample(n, split=split):
                        return sparse_indices(n, num_frames, split=split, generator=gen)

                    def finish(clip, tf=tf):
                        return clip if tf is None else tf(torch.from_numpy(clip), generator=gen)

                    ms_ours = _time(lambda: finish(read_clip(path, sample, threads=1)[0]), repeats)
                    ms_base = _time(lambda: finish(decode_everything(path, sample(300))), repeats)
                    rows.append({"keyframe_every": gop, "case": name, "ms_per_clip": ms_ours,
                                 "ms_per_clip_decode_all": ms_base, "clips_per_s": 1e3 / ms_ours,
                                 "clips_per_s_decode_all": 1e3 / ms_base, "speedup": ms_base / ms_ours})
            clip = torch.from_numpy(read_clip(path, lambda n: sparse_indices(n, num_frames), threads=1)[0])
            as_float = build_transform("val", crop_size=224)
            as_uint8 = build_transform("val", crop_size=224, output="uint8")
            norm = DeviceAugment()
            shipping = {"float_worker_ms": _time(lambda: as_float(clip), repeats * 4),
                        "uint8_worker_ms": _time(lambda: as_uint8(clip), repeats * 4),
                        "device_normalise_ms": _time(lambda: norm(as_uint8(clip)[None]), repeats * 4)
                        - _time(lambda: as_uint8(clip), repeats * 4),
                        "float_bytes": as_float(clip).nbytes, "uint8_bytes": as_uint8(clip).nbytes}
    finally:
        torch.set_num_threads(torch_threads)
    result = {"rows": rows, "shipping": shipping, "frames_per_clip": num_frames, "repeats": repeats}
    return result


def format_table(rows) -> str:
    lines = ["| keyframe every | case | CPU ms/clip, sparse reader | CPU ms/clip, decode all | clips/s per core | speed-up |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['keyframe_every']} | {r['case']} | {r['ms_per_clip']:.1f} | "
                     f"{r['ms_per_clip_decode_all']:.1f} | {r['clips_per_s']:.2f} | {r['speedup']:.2f}x |")
    return "\n".join(lines)
