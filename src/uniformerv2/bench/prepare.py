"""The keyframe-interval table behind ``PrepareSettings``' default (``uniformerv2 bench prepare``): PSNR, size
and the CPU time of sparse training reads of prepared files, per keyframe interval."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from .common import threads
from .videos import kinetics_like_files


def sparse_read_ms(paths, num_frames: int, draws: int = 6) -> float:
    """CPU milliseconds (this process, one decoder thread) to read one training clip of ``num_frames``
    segment-sampled frames, median over ``draws`` random draws per file."""
    from ..data.decode import read_clip
    from ..data.sampling import sparse_indices

    g = torch.Generator().manual_seed(0)
    times = []
    for p in paths:
        read_clip(p, lambda n: sparse_indices(n, num_frames, split="train", generator=g), threads=1, timeout=None)
        for _ in range(draws):
            c0 = time.process_time()
            read_clip(p, lambda n: sparse_indices(n, num_frames, split="train", generator=g), threads=1,
                      timeout=None)
            times.append(time.process_time() - c0)
    return 1e3 * float(sorted(times)[len(times) // 2])


def bench_prepare(*, intervals=(1, 2, 4, 8, 16, 32), frames=(8, 16, 32), files: int = 4, seconds: float = 10.0,
                  workdir=None, settings=None, draws: int = 6, sources=None, verbose: bool = True) -> dict:
    """The keyframe-interval table behind ``PrepareSettings``' default: for each interval, generated
    Kinetics-like files (or ``sources``) prepared with otherwise default settings; the mean PSNR against the
    sources, the size relative to them, and the CPU ms to read a sparse training clip of each length in
    ``frames`` (one core, ``sparse_read_ms``). The first row is the sources themselves."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from ..data.transcode import PrepareSettings, transcode

    base = settings or PrepareSettings()
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    try:
        with threads(1):
            srcs = [Path(s) for s in sources] if sources else kinetics_like_files(root / "raw", files, seconds)
            size_in = sum(p.stat().st_size for p in srcs)
            rows = [{"keyframe_interval": "source", "psnr": None, "size_ratio": 1.0, "bytes": size_in,
                     "read_ms": {t: sparse_read_ms(srcs, t, draws) for t in frames}}]
            if verbose:
                print(_prepare_row(rows[-1], frames), file=sys.stderr)
            for k in intervals:
                s = dataclasses.replace(base, keyframe_interval=k)
                outs, psnrs = [], []
                for i, p in enumerate(srcs):
                    out = root / f"k{k}" / f"{i}_{p.name}"
                    psnrs.append(transcode(p, out, s, psnr_frames=16)["psnr"])
                    outs.append(out)
                size = sum(p.stat().st_size for p in outs)
                rows.append({"keyframe_interval": k, "psnr": float(np.mean(psnrs)), "size_ratio": size / size_in,
                             "bytes": size, "read_ms": {t: sparse_read_ms(outs, t, draws) for t in frames}})
                if verbose:
                    print(_prepare_row(rows[-1], frames), file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"rows": rows, "frames": list(frames), "files": len(srcs), "settings": dataclasses.asdict(base)}


def _prepare_row(r: dict, frames) -> str:
    psnr = "-" if r["psnr"] is None else f"{r['psnr']:.1f}"
    ms = " | ".join(f"{r['read_ms'][t]:.1f}" for t in frames)
    return f"| {r['keyframe_interval']} | {psnr} | {r['size_ratio']:.2f} | {ms} |"


def prepare_table(result: dict) -> list[str]:
    frames = result["frames"]
    head = ("| keyframe interval | PSNR (dB) | size vs source | "
            + " | ".join(f"CPU ms per {t}-frame clip" for t in frames) + " |")
    return [head, "|" + "---|" * (3 + len(frames))] + [_prepare_row(r, frames) for r in result["rows"]]
