"""Inference throughput (``uniformerv2 bench inference``): ``predict_many`` / ``extract_features_many`` with the
default input workers (``workers=None``: what ``uniformerv2 predict`` runs when ``--workers`` is not given)
against explicit worker counts, side by side in one run, for one video and for a folder of videos; optionally
the whole ``uniformerv2 predict`` command as a subprocess. Also the per-core decode rate of a recipe's test
views (``uniformerv2 bench views``) and from it the cores a GPU needs.

Inputs: Kinetics-like 340x256, 30 fps H.264 files (``bench.videos.write_kinetics_like``; keyframes every 250
and every 30 frames, alternately), a few distinct files repeated to make the folder.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from ..errors import UserError
from ..inference.pipeline import ViewSpec, video_chunks
from .videos import kinetics_like_files


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


CASES = ("one", "folder")


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _setting(w) -> str:
    return "default" if w is None else str(w)


def compare(times: dict) -> dict:
    """``{setting: [seconds per round]}`` (setting "default" and explicit worker counts) to the comparison:
    the median seconds of each, the fastest explicit setting, and default / fastest (> 1: the default is
    slower), from the medians and from the fastest rounds."""
    median = {k: _median(v) for k, v in times.items()}
    best_round = {k: min(v) for k, v in times.items()}
    explicit = [k for k in times if k != "default"]
    out = {"median_s": median, "min_s": best_round}
    if "default" in times and explicit:
        best = min(explicit, key=lambda k: median[k])
        out.update(best_explicit=best, default_over_best=median["default"] / median[best],
                   default_over_best_min=best_round["default"] / min(best_round[k] for k in explicit))
    return out


def _case_inputs(root: Path, distinct: list, videos: int) -> dict:
    """{"one": [first video], "folder": [a folder of ``videos`` files]} (hard links where possible)."""
    import os
    import shutil

    folder = root / "folder"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(videos):
        p = folder / f"video_{i:03d}.mp4"
        if not p.exists():
            try:
                os.link(distinct[i % len(distinct)], p)
            except OSError:
                shutil.copyfile(distinct[i % len(distinct)], p)
        paths.append(str(p))
    return {"one": [str(distinct[0])], "folder": paths}


def bench_inference(preset: str | None = "tiny_k400_8x64", *, model_path=None, workers=(0, 1, 2), videos: int = 8,
                    seconds: float = 10.0, views=None, task: str = "predict", device=None, dtype=None,
                    rounds: int = 2, cases=CASES, command: bool = False, workdir=None, video=None, folder=None,
                    verbose: bool = True) -> dict:
    """Wall seconds of ``task`` (``predict_many`` / ``extract_features_many``) with the default input workers
    (``workers=None``) and with each count in ``workers``, side by side: for one video and for a folder of
    ``videos`` generated files (``cases``; ``video`` / ``folder``: your own file and folder instead), in
    ``rounds`` rounds that each run every setting once, in an order that rotates from round to round (so that a
    machine whose load drifts affects all alike). Each timed call
    is a whole call of the public API on a loaded model (input workers started and stopped inside it).

    ``command``: also time the whole ``uniformerv2 predict VIDEO --model DIR [--workers N]`` in a subprocess
    for the one video (start, loading, prediction: what a user waits for), the model saved to a directory
    first when it comes from ``preset``.

    Returns per case and setting the seconds of every round, videos/s, the model's data-wait share and the
    worker count the default resolved to, and per case the comparison of ``compare``."""
    from ..factory import create_model
    from ..inference.classifier import VideoClassifier

    if task not in ("predict", "features"):
        raise UserError(f"task must be predict or features, got {task!r}")
    if (preset is None) == (model_path is None):
        raise UserError("give a preset (random weights) or a model, not both")
    workers = [int(w) for w in workers]
    if any(w < 0 for w in workers) or len(set(workers)) != len(workers):
        raise UserError(f"explicit worker counts must be distinct and >= 0, got {workers}")
    if rounds < 1 or videos < 1:
        raise UserError(f"rounds and videos must be >= 1, got {rounds} and {videos}")
    cases = list(cases)
    if not cases or any(c not in CASES for c in cases):
        raise UserError(f"cases must be some of {', '.join(CASES)}, got {cases}")
    if command and task != "predict":
        raise UserError("the command is timed for predict only")
    settings = [None, *workers]
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        generate = ("one" in cases and video is None) or ("folder" in cases and folder is None)
        distinct = kinetics_like_files(root / "videos", min(videos, 8), seconds) if generate else []
        inputs = _case_inputs(root, distinct, videos) if generate else {}
        if verbose and generate:
            print(f"generated {len(distinct)} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if video is not None:
            if not Path(video).is_file():
                raise UserError(f"{video}: no such video file")
            inputs["one"] = [str(video)]
        if folder is not None:
            from ..data.video import find_videos

            inputs["folder"] = find_videos(folder)[0]
            if not inputs["folder"]:
                raise UserError(f"{folder}: no video files in it")
        if model_path is not None:
            clf = VideoClassifier.from_pretrained(model_path, device=device, dtype=dtype)
        else:
            clf = VideoClassifier(create_model(preset), device=device, dtype=dtype)
        many = clf.predict_many if task == "predict" else clf.extract_features_many
        for _ in many(inputs[cases[0]][:1], views=views, workers=0):   # warm-up: kernels, codec, allocator
            pass
        rows = {c: {_setting(w): {"workers": w, "seconds": [], "videos": 0, "failed": 0, "waited": 0.0,
                                  "resolved_workers": []} for w in settings} for c in cases}
        for r in range(rounds):
            for case in cases:
                order = settings[r % len(settings):] + settings[:r % len(settings)]
                for w in order:
                    t = time.perf_counter()
                    stream = many(inputs[case], views=views, workers=w)
                    done = sum(1 for _ in stream)
                    elapsed = time.perf_counter() - t
                    row, stats = rows[case][_setting(w)], stream.stats
                    if done != len(inputs[case]):
                        raise RuntimeError(f"{done} results for {len(inputs[case])} videos")
                    row["seconds"].append(elapsed)
                    row["videos"] += stats.videos
                    row["failed"] += stats.failed
                    row["waited"] += stats.waited
                    row["resolved_workers"].append(getattr(stats, "workers", None))
                    if verbose:
                        print(f"round {r + 1}, {case}: workers {_setting(w)}: {elapsed:.2f} s", file=sys.stderr)
        out_cases = {}
        for case in cases:
            for row in rows[case].values():
                total = sum(row["seconds"])
                row["videos_per_s"] = (row["videos"] + row["failed"]) / total
                row["data_wait"] = row["waited"] / total
            out_cases[case] = {"videos": len(inputs[case]), "rows": list(rows[case].values()),
                               **compare({k: v["seconds"] for k, v in rows[case].items()})}
        result = {"model": str(model_path) if model_path is not None else None, "preset": preset, "task": task,
                  "views": views or "x".join(map(str, clf.default_views)), "device": str(clf.device),
                  "dtype": str(clf.dtype).replace("torch.", ""), "seconds_per_video": seconds if generate else None,
                  "video": None if video is None else str(video), "folder": None if folder is None else str(folder),
                  "distinct_videos": len(distinct), "rounds": rounds, "explicit_workers": workers,
                  "cases": out_cases}
        if command:
            del clf
            first = inputs["one"][0] if "one" in inputs else inputs["folder"][0]
            result["command"] = time_command(first, model_path, preset, settings, rounds, root, views, device, dtype,
                                             verbose)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def time_command(video: str, model_path, preset, settings, rounds: int, root: Path, views=None, device=None,
                 dtype=None, verbose: bool = True) -> dict:
    """Wall seconds of ``python -m uniformerv2 predict VIDEO --model DIR --quiet [--workers N]`` for each
    setting (None: ``--workers`` not given), ``rounds`` rounds in rotating order, and their comparison."""
    import os
    import subprocess

    if model_path is None:
        from ..factory import create_model, save_pretrained

        model_path = root / "model"
        if not (model_path / "config.json").exists():
            save_pretrained(create_model(preset), model_path)
    base = [sys.executable, "-m", "uniformerv2", "predict", video, "--model", str(model_path), "--quiet"]
    for flag, value in (("--views", views), ("--device", device), ("--dtype", dtype)):
        if value is not None:
            base += [flag, str(value)]
    times: dict = {_setting(w): [] for w in settings}
    for r in range(rounds):
        for w in settings[r % len(settings):] + settings[:r % len(settings)]:
            cmd = base + ([] if w is None else ["--workers", str(w)])
            t = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            elapsed = time.perf_counter() - t
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
            times[_setting(w)].append(elapsed)
            if verbose:
                print(f"round {r + 1}, command: workers {_setting(w)}: {elapsed:.2f} s", file=sys.stderr)
    return {"argv": base[2:], "seconds": times, **compare(times)}

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


def _workers(setting: str) -> str:
    return f"{setting} worker{'' if setting == '1' else 's'}"


def inference_table(result: dict) -> list[str]:
    """Markdown lines of ``bench_inference``: per case, one row per setting, and the default / best ratio."""
    who = result["model"] or result["preset"]
    rounds = f"{result['rounds']} round{'s' if result['rounds'] > 1 else ''}"
    made = ("given videos" if result["seconds_per_video"] is None
            else f"generated {result['seconds_per_video']:g} s 340x256 videos")
    lines = [f"{result['task']}, {who}, views {result['views']}, {result['device']} {result['dtype']}; {made}; "
             f"{rounds}, median seconds per call", ""]
    for case, c in result["cases"].items():
        lines += [f"{case} ({c['videos']} video{'s' if c['videos'] > 1 else ''}):", "",
                  "| workers | seconds (median) | seconds (each round) | videos/s | data wait | default resolved to |",
                  "|---|---|---|---|---|---|"]
        for row in c["rows"]:
            name = _setting(row["workers"])
            resolved = ", ".join(str(x) for x in sorted(set(row["resolved_workers"]), key=str)) \
                if row["workers"] is None else ""
            lines.append(f"| {name} | {c['median_s'][name]:.2f} | {' '.join(f'{x:.2f}' for x in row['seconds'])} | "
                         f"{row['videos_per_s']:.2f} | {100 * row['data_wait']:.0f}% | {resolved} |")
        if "default_over_best" in c:
            lines += ["", f"default / best explicit ({_workers(c['best_explicit'])}): {c['default_over_best']:.3f} "
                          f"(fastest rounds: {c['default_over_best_min']:.3f})", ""]
    cmd = result.get("command")
    if cmd:
        lines += [f"`uniformerv2 {' '.join(cmd['argv'][1:])} [--workers N]` as a subprocess:", "",
                  "| workers | seconds (median) | seconds (each round) |", "|---|---|---|"]
        lines += [f"| {k} | {cmd['median_s'][k]:.2f} | {' '.join(f'{x:.2f}' for x in v)} |"
                  for k, v in cmd["seconds"].items()]
        if "default_over_best" in cmd:
            lines += ["", f"default / best explicit ({_workers(cmd['best_explicit'])}): {cmd['default_over_best']:.3f} "
                          f"(fastest rounds: {cmd['default_over_best_min']:.3f})"]
    return lines
