"""Write a synthetic dataset: H.264 ``.mp4`` clips plus Kinetics-style split lists and ``labels.txt``.

Layout of ``out_dir``::

    labels.txt                 one class name per line (line number = label index)
    train.csv val.csv test.csv "videos/<class>/<nnnn>.mp4,<label index>" per line, no header
    videos/<class_slug>/<nnnn>.mp4

Clip ``k`` of a reversal pair is rendered once from the seed ``(seed, pair, k)``; the forward class
gets it as is and the partner class gets it reversed, both in the same split, so the two classes
share exactly the same frames and no frame content crosses splits.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from .render import AVAILABLE_CLASSES, CLASSES, DEFAULT_CLASSES, PAIRS, render_clip, target_masks

SPLITS = ("train", "val", "test")


def write_mp4(path, frames: np.ndarray, fps: int = 8, crf: int = 20) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as H.264 (libx264, yuv420p) into an ``.mp4``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "crf": str(crf), "threads": "1", "flags": "+bitexact"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(stream.encode(None))
    os.replace(tmp, path)


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _split_counts(n: int | None, splits) -> tuple[int, int, int]:
    if len(splits) != 3 or any(s < 0 for s in splits):
        raise UserError(f"splits must be three non-negative numbers (train, val, test), got {splits!r}")
    if all(isinstance(s, (int, np.integer)) for s in splits):
        counts = tuple(int(s) for s in splits)
        if n is not None and sum(counts) != n:
            raise UserError(f"split counts {counts} do not add up to videos_per_class={n}")
    else:
        n = 200 if n is None else n
        total = float(sum(splits))
        if total <= 0:
            raise UserError("split fractions must not all be zero")
        val, test = (int(round(n * s / total)) for s in splits[1:])
        counts = (n - val - test, val, test)
    if sum(counts) < 1:
        raise UserError("need at least one video per class")
    return counts


def _job(job):
    """Render clip k of a pair and write it for each requested direction; returns #videos written."""
    root, pair, k, seed, frames, size, fps, balance, targets = job
    clip = render_clip(PAIRS[pair][0], np.random.SeedSequence([seed, pair, k]),
                       frames=frames, size=size, balance_opacity=balance)
    for rel, direction in targets:
        write_mp4(Path(root) / rel, clip if direction > 0 else clip[::-1], fps=fps)
    return len(targets)


def video_target_masks(rel_path: str, classes, *, seed: int = 0, frames: int = 16, size: int = 64) -> np.ndarray:
    """The target's per-frame coverage ``(frames, size, size)`` in the video ``rel_path``
    ("videos/<class>/<nnnn>.mp4", as the split lists name it) of a dataset that ``generate`` wrote with
    ``classes`` (labels.txt), ``seed``, ``frames`` and ``size``: the clip is rendered again from its seed, so the
    masks line up with the frames as rendered (the file holds them after lossy H.264)."""
    parts = Path(rel_path).parts
    slug, stem = (parts[-2], Path(parts[-1]).stem) if len(parts) >= 2 else (None, None)
    names = {_slug(c): c for c in classes}
    if slug not in names or not stem.isdigit():
        raise UserError(f"{rel_path}: not a video of this synthetic dataset (videos/<class>/<nnnn>.mp4)")
    name = names[slug]
    pair, _, direction = CLASSES[name]
    balance = any(CLASSES[c][1] == "opacity" for c in classes)
    masks = target_masks(PAIRS[pair][0], np.random.SeedSequence([seed, pair, int(stem)]), frames=frames, size=size,
                         balance_opacity=balance)
    return masks if direction > 0 else np.ascontiguousarray(masks[::-1])


def generate(out_dir, *, classes=None, videos_per_class: int | None = None, frames: int = 16,
             size: int = 64, seed: int = 0, splits=(0.7, 0.15, 0.15), fps: int = 8,
             workers: int | None = None, progress: bool = True) -> dict:
    """Generate the temporal-order benchmark in ``out_dir`` and return a summary dict.

    ``classes``: names from :data:`AVAILABLE_CLASSES` (default :data:`DEFAULT_CLASSES`, 6 classes);
    label indices follow the given order.  ``splits``: per-class fractions (default 70/15/15 of
    ``videos_per_class``, default 200) or integer counts.  ``workers``: processes (default: CPU count;
    0 or 1 = in this process).  Same arguments give the same frames (and, with the same PyAV/x264
    build, the same bytes)."""
    t0 = time.perf_counter()
    classes = list(DEFAULT_CLASSES if classes is None else classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise UserError(f"classes must be distinct names from: {', '.join(AVAILABLE_CLASSES)}"
                        + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else ""))
    if size < 16 or size % 2:
        raise UserError(f"size must be an even number >= 16 (H.264 yuv420p), got {size}")
    if frames < 4:
        raise UserError(f"frames must be >= 4, got {frames}")
    if fps < 1:
        raise UserError(f"fps must be >= 1, got {fps}")
    if videos_per_class is not None and videos_per_class < 1:
        raise UserError(f"videos_per_class must be >= 1, got {videos_per_class}")
    counts = _split_counts(videos_per_class, splits)
    n = sum(counts)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a directory")
    balance = any(CLASSES[c][1] == "opacity" for c in classes)

    # one job per (pair, k); each writes the forward and/or the reversed clip
    split_of = [s for s, c in zip(SPLITS, counts) for _ in range(c)]
    lists = {s: [] for s in SPLITS}
    jobs = []
    for pair in sorted({CLASSES[c][0] for c in classes}):
        wanted = [(c, CLASSES[c][2]) for c in classes if CLASSES[c][0] == pair]
        for c, _ in wanted:
            (root / "videos" / _slug(c)).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            targets = [(f"videos/{_slug(c)}/{k:04d}.mp4", d) for c, d in wanted]
            jobs.append((str(root), pair, k, seed, frames, size, fps, balance, targets))
    for c in classes:
        for k in range(n):
            lists[split_of[k]].append(f"videos/{_slug(c)}/{k:04d}.mp4,{classes.index(c)}")

    workers = (os.cpu_count() or 1) if workers is None else workers
    workers = max(1, min(workers, len(jobs)))
    bar = _bar(total=n * len(classes), disable=not progress)
    try:
        if workers == 1:
            for j in jobs:
                bar.update(_job(j))
        else:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                for done in pool.imap_unordered(_job, jobs, chunksize=4):
                    bar.update(done)
    finally:
        bar.close()

    (root / "labels.txt").write_text("".join(c + "\n" for c in classes))
    for s in SPLITS:
        (root / f"{s}.csv").write_text("".join(line + "\n" for line in lists[s]))
    return {
        "root": str(root), "classes": classes, "labels": str(root / "labels.txt"),
        "splits": {s: {"csv": str(root / f"{s}.csv"), "count": len(lists[s])} for s in SPLITS},
        "videos": n * len(classes), "videos_per_class": n, "frames": frames, "size": size,
        "fps": fps, "seed": seed, "seconds": round(time.perf_counter() - t0, 2),
    }


def _bar(total: int, disable: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="video", desc="synth", disable=disable or total < 20, leave=False)
