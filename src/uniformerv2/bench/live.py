"""Live recognition (``uniformerv2 bench live``): lag and share of skipped windows of ``VideoClassifier.live`` on
a feed played in real time, per model and thread count, and the feed rate each keeps up with.

The feed is a generated Kinetics-like file (340x256 H.264, ``bench.videos.write_kinetics_like``) at ``fps``,
read with ``realtime=True``: the decoding thread paces it by its timestamps as a camera would deliver it, and
the whole live path runs (ring buffer, newest window wins, views, ``Engine.forward_views``). Models have random
weights (seed 0); one centre view, the default window and ``every`` of the model's recipe.

What a model keeps up with: at a feed k times faster, a window comes due every ``every / k`` seconds, so the
model keeps every window while its time per update stays under that: ``fps x every / model seconds per update``.
The decoding thread keeps up with ``1 / (decode + resize seconds per frame)`` frames per second (measured on its
own, one thread). The feed rate kept up with is the lower of the two.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ..errors import UserError

PRESETS = ("tiny_k400_8x64", "k400_b16_8x224")


def decode_seconds_per_frame(path, short_side: int, frames: int = 150) -> float:
    """CPU seconds to decode one frame of ``path`` to RGB and resize it to ``short_side`` (what the live decoding
    thread does per frame), one decoder thread."""
    import av

    from ..data.video import resize_short_side

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "SLICE"
        s.codec_context.thread_count = 1
        n = 0
        t0 = time.process_time()
        for frame in c.decode(s):
            resize_short_side(frame.to_ndarray(format="rgb24"), short_side)
            n += 1
            if n >= frames:
                break
        return (time.process_time() - t0) / max(n, 1)


def run_case(clf, path, seconds: float, threads: int, fps: float) -> dict:
    """One live run over ``seconds`` of the feed: the ``LiveStats`` figures and the plan's window and every."""
    t0 = time.monotonic()
    stream = clf.live(path, realtime=True, duration=seconds, threads=threads)
    for _ in stream:
        pass
    wall = time.monotonic() - t0
    s = stream.stats.to_dict()
    s.update(window=stream.plan.window_s(fps), every=stream.plan.every_s(fps), wall=wall,
             lag_max=max(stream.stats.lags) if stream.stats.lags else 0.0)
    return s


def bench_live(presets=PRESETS, threads=(1, 2), seconds: float = 25.0, fps: int = 25, workdir=None,
               verbose: bool = True) -> dict:
    from ..factory import create_model
    from ..inference import VideoClassifier
    from .videos import write_kinetics_like

    if seconds <= 0 or fps <= 0:
        raise UserError(f"seconds and fps must be positive, got {seconds} and {fps}")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="uniformerv2-bench-live-")
        workdir = tmp.name
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"feed_{fps}fps_{seconds + 2:g}s.mp4"
    if not path.exists():
        write_kinetics_like(path, gop=2 * fps, seconds=seconds + 2, fps=fps)
    rows = []
    try:
        for preset in presets:
            torch.manual_seed(0)
            clf = VideoClassifier(create_model(preset), device="cpu", dtype="fp32")
            short = clf.data.test_short_side
            decode_s = decode_seconds_per_frame(path, short)
            for n in threads:
                if verbose:
                    print(f"{preset}, {n} thread(s): {seconds:g} s of a {fps} fps feed ...", file=sys.stderr,
                          flush=True)
                r = run_case(clf, path, seconds, n, fps)
                model_s = max(r["mean_model_s"], 1e-9)
                r.update(preset=preset, threads=n, fps=fps, short_side=short, decode_s_per_frame=decode_s,
                         model_fps=fps * r["every"] / model_s, decode_fps=1 / max(decode_s, 1e-9))
                r["keeps_up_fps"] = min(r["model_fps"], r["decode_fps"])
                rows.append(r)
            del clf
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"rows": rows, "seconds": seconds, "fps": fps, "feed": "340x256 H.264 (generated, Kinetics-like)",
            "cores": _cores()}


def _cores() -> int:
    from ..inference.pipeline import usable_cores

    return usable_cores()


def live_table(r: dict) -> list[str]:
    out = ["| model | threads | window / every | updates | skipped windows | lag mean | lag p95 | model s per "
           "update | decode ms per frame | keeps up with |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        out.append(f"| {x['preset']} | {x['threads']} | {x['window']:g} s / {x['every']:g} s | {x['updates']} | "
                   f"{x['skipped']} ({100 * x['skipped_share']:.0f}%) | {x['mean_lag']:.2f} s | {x['p95_lag']:.2f} s | "
                   f"{x['mean_model_s']:.3f} | {1000 * x['decode_s_per_frame']:.1f} | "
                   f"{_rate(x['keeps_up_fps'])} fps |")
    return out


def _rate(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def summary(r: dict) -> str:
    lags = [x["mean_lag"] for x in r["rows"]]
    return (f"{len(r['rows'])} runs of {r['seconds']:g} s of a {r['fps']} fps {r['feed']} feed read in real time, "
            f"{r['cores']} usable cores; lag mean from {min(lags):.2f} to {max(lags):.2f} s" if lags else "no runs")


__all__ = ["bench_live", "live_table", "decode_seconds_per_frame", "run_case", "summary"]
