"""Throughput of ``predict_many`` / ``extract_features_many`` over generated videos (``uniformerv2 bench
--inference-pipeline``): videos/s for 0..N input workers side by side, the per-core decode rate of a recipe's
test views, and from it the cores a GPU needs.

Inputs: Kinetics-like 340x256, 30 fps H.264 files (``data.benchmark.write_kinetics_like``; keyframes every 250
and every 30 frames, alternately), a few distinct files repeated to make the list.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ..data.benchmark import kinetics_like_files
from .pipeline import RunStats, ViewSpec, video_chunks


def decode_rate_per_core(spec: ViewSpec, paths: list, n: int | None = None) -> float:
    """Videos per CPU-second that the input stage prepares for ``spec`` (decode the test clips, resize while
    decoding, crop to uint8): CPU time of this process, one torch thread, one decoder thread (as in a worker)."""
    from dataclasses import replace

    spec = replace(spec, decoder_threads=1)
    n = n or len(paths)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        list(video_chunks(0, paths[0], spec))           # warm-up: codec and transform set-up
        c0 = time.process_time()
        for i in range(n):
            for chunk in video_chunks(i, paths[i % len(paths)], spec):
                if chunk.error:
                    raise RuntimeError(chunk.error)
        return n / max(time.process_time() - c0, 1e-9)
    finally:
        torch.set_num_threads(saved)


def model_clips_per_s(clf, spec: ViewSpec, iters: int = 3) -> float:
    """Clips (views) per second of the model stage alone on uint8 batches of ``spec.group_views`` views."""
    s = clf.data.crop_size
    batch = torch.zeros((spec.group_views, 3, spec.length, s, s), dtype=torch.uint8)
    clf._forward_views(batch)
    t0 = time.perf_counter()
    for _ in range(iters):
        clf._forward_views(batch)
    return spec.group_views * iters / (time.perf_counter() - t0)


def bench_inference_pipeline(preset: str = "tiny_k400_8x64", *, workers=(0, 1, 2), videos: int = 64,
                             seconds: float = 10.0, views=None, task: str = "predict", device=None, dtype=None,
                             batch_size: int | None = None, rounds: int = 2, workdir=None, model=None,
                             verbose: bool = True) -> dict:
    """videos/s of ``task`` over ``videos`` generated files for each worker count, measured in ``rounds``
    rounds that each run every worker count once (so that a machine whose load drifts affects all alike);
    ratios are to 0 workers. Also the per-core decode rate, the model stage's clips/s alone and the input
    worker cores that this model's rate needs."""
    from ..factory import create_model
    from .classifier import VideoClassifier

    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        distinct = kinetics_like_files(root, min(videos, 8), seconds)
        paths = [str(distinct[i % len(distinct)]) for i in range(videos)]
        if verbose:
            print(f"generated {len(distinct)} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        clf = VideoClassifier(model if model is not None else create_model(preset), device=device, dtype=dtype)
        spec = clf.view_spec(views, None, None, batch_size, len(paths))
        per_core = decode_rate_per_core(spec, [str(p) for p in distinct])
        model_rate = model_clips_per_s(clf, spec)
        many = clf.predict_many if task == "predict" else clf.extract_features_many
        next(iter(many(paths[:1], views=views, workers=0)))     # warm-up
        totals = {w: RunStats(workers=w) for w in workers}
        cpu = {w: 0.0 for w in workers}
        for r in range(rounds):
            for w in workers:
                c0 = _cpu_seconds()
                stream = many(paths, views=views, workers=w, batch_size=spec.group_views)
                for _ in stream:
                    pass
                cpu[w] += _cpu_seconds() - c0
                s, t = stream.stats, totals[w]
                t.videos, t.failed, t.clips = t.videos + s.videos, t.failed + s.failed, t.clips + s.clips
                t.seconds, t.waited = t.seconds + s.seconds, t.waited + s.waited
                if verbose:
                    print(f"round {r + 1}: {w} workers: {s.videos_per_s:.2f} videos/s", file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    base = totals[workers[0]].videos_per_s if workers else 0.0
    rows = [{"workers": w, "videos_per_s": t.videos_per_s, "clips_per_s": t.clips_per_s,
             "data_wait": t.wait_fraction, "ratio": t.videos_per_s / base if base else 0.0,
             "cpu_s_per_video": cpu[w] / max(1, t.videos + t.failed)} for w, t in totals.items()]
    model_videos = model_rate / spec.views_per_window
    return {"preset": preset, "task": task, "views": f"{spec.clips}x{spec.crops}", "frames": spec.length,
            "videos": videos, "seconds_per_video": seconds, "rounds": rounds, "batch_size": spec.group_views,
            "rows": rows, "decode_videos_per_core_s": per_core, "model_clips_per_s": model_rate,
            "model_videos_per_s": model_videos, "cores_for_model": model_videos / per_core,
            "device": str(clf.device)}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the input workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def recipe_decode_rates(presets: list[str], *, videos: int = 4, seconds: float = 10.0, workdir=None) -> list[dict]:
    """Per-core decode rate of the test views of each preset (no model is built): videos/s per core."""
    from ..model.presets import get_preset

    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        paths = [str(p) for p in kinetics_like_files(root, videos, seconds)]
        out = []
        for name in presets:
            data = get_preset(name).data_config()
            spec = ViewSpec(data, data.test_clips, data.test_crops, data.num_frames)
            out.append({"preset": name, "views": f"{spec.clips}x{spec.crops}", "frames": data.num_frames,
                        "size": data.crop_size, "videos_per_core_s": decode_rate_per_core(spec, paths, 2 * videos)})
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()
