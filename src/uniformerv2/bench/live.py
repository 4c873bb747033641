"""Live recognition (``uniformerv2 bench live``): lag and share of skipped windows of ``VideoClassifier.live`` on
a feed played in real time, per model and thread count, and the feed rate each keeps up with.

The feed is a generated Kinetics-like file (340x256 H.264, ``bench.videos.write_kinetics_like``) at ``fps``,
read with ``realtime=True``: the decoding thread paces it by its timestamps as a camera would deliver it, and
the whole live path runs (ring buffer, newest window wins, views, ``Engine.forward_views``). Models have random
weights (seed 0), one warm-up forward pass each; one centre view, the default window and ``every`` of the
model's recipe.

What each keeps up with, from the run's own figures: the model keeps every window while ``every`` (seconds of
feed between updates) is at least its seconds per update, so the shortest ``every`` it keeps up with is that
time; the decoding thread keeps up with a feed of up to ``1 / (its seconds per frame)`` frames per second, its
seconds per frame (decode, RGB, resize to the model's short side, buffer) measured in the run, beside the model.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ..errors import UserError

PRESETS = ("tiny_k400_8x64", "k400_b16_8x224")


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
    from .common import load_text

    load_start = load_text()
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
            size, frames = clf.data.crop_size, int(clf.model.num_frames)
            clf.engine.forward_views(torch.zeros(1, 3, frames, size, size, dtype=torch.uint8))   # warm-up
            for n in threads:
                if verbose:
                    print(f"{preset}, {n} thread(s): {seconds:g} s of a {fps} fps feed ...", file=sys.stderr,
                          flush=True)
                r = run_case(clf, path, seconds, n, fps)
                r.update(preset=preset, threads=n, fps=fps, short_side=short, min_every=r["mean_model_s"],
                         keeps_up_fps=1 / max(r["decode_s_per_frame"], 1e-9))
                rows.append(r)
            del clf
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"rows": rows, "seconds": seconds, "fps": fps, "feed": "340x256 H.264 (generated, Kinetics-like)",
            "cores": _cores(), "load_start": load_start, "load_end": load_text(), "av": _av_version()}


def _av_version() -> str:
    import av

    return av.__version__


def _cores() -> int:
    from ..inference.pipeline import usable_cores

    return usable_cores()


def live_table(r: dict) -> list[str]:
    out = ["| model | threads | window / every | updates | skipped windows | lag mean | lag p95 | model s per "
           "update = shortest every kept up with | decoding ms per frame | feed rate the decoding keeps up with |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        out.append(f"| {x['preset']} | {x['threads']} | {x['window']:g} s / {x['every']:g} s | {x['updates']} | "
                   f"{x['skipped']} ({100 * x['skipped_share']:.0f}%) | {x['mean_lag']:.2f} s | {x['p95_lag']:.2f} s | "
                   f"{x['mean_model_s']:.3f} s | {1000 * x['decode_s_per_frame']:.1f} | "
                   f"{_rate(x['keeps_up_fps'])} fps |")
    return out


def _rate(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def summary(r: dict) -> str:
    lags = [x["mean_lag"] for x in r["rows"]]
    if not lags:
        return "no runs"
    return (f"{len(r['rows'])} runs of {r['seconds']:g} s of a {r['fps']} fps {r['feed']} feed read in real time, "
            f"{r['cores']} usable cores, PyAV {r['av']}; load average {r['load_start']} at the start, "
            f"{r['load_end']} at the end")


__all__ = ["bench_live", "live_table", "run_case", "summary"]
