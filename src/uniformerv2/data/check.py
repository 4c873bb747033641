"""Whether videos decode: one report row per file, for ``uniformerv2 scan`` and fine-tuning's data check.

A file passes when its first and last frame decode after every packet has been counted (the truncation checks
of :mod:`uniformerv2.data.decode` run on the way).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed

from ..errors import VideoError
from .decode import read_clip
from .video import pool_context

EMPTY_ROW = {"frames": None, "fps": None, "width": None, "height": None, "duration": None}


def check_video(path: str, timeout: float, folder: dict | None = None) -> dict:
    """One report row: path, ok, error and, for a readable file, frames, fps, width, height, duration."""
    row = {"path": path, "ok": False, "error": None, **EMPTY_ROW}
    try:
        _, _, info = read_clip(path, lambda n: [0, n - 1], timeout=timeout, threads=1, **(folder or {}))
    except (VideoError, OSError) as e:
        row["error"] = " ".join(str(e).split())
        return row
    row.update(ok=True, frames=info.num_frames, fps=round(info.fps, 4), width=info.width, height=info.height,
               duration=round(info.duration, 4))
    return row


def check_videos(entries: list[tuple[str, dict | None]], *, timeout: float, workers: int,
                 progress: bool = True) -> list[dict]:
    """Rows of ``check_video`` for ``[(path, frame-folder options or None)]``, in input order, checked in
    ``workers`` processes (0: in this one). A worker that dies (a decoder crash) fails only its file."""
    from tqdm import tqdm

    rows: list = [None] * len(entries)
    bar = tqdm(total=len(entries), desc="scan", unit="video", disable=not progress or not entries, leave=False)
    if workers < 1:
        for k, (path, folder) in enumerate(entries):
            rows[k] = check_video(path, timeout, folder)
            bar.update(1)
    elif entries:
        with ProcessPoolExecutor(max_workers=min(workers, len(entries)), mp_context=pool_context()) as pool:
            futures = {pool.submit(check_video, path, timeout, folder): k for k, (path, folder) in enumerate(entries)}
            for future in as_completed(futures):
                k = futures[future]
                try:
                    rows[k] = future.result()
                except Exception as e:  # a worker died: report the file, keep going
                    rows[k] = {"path": entries[k][0], "ok": False, "error": f"checker crashed: {type(e).__name__}",
                               **EMPTY_ROW}
                bar.update(1)
    bar.close()
    return rows
