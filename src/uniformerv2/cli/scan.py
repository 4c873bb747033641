"""``uniformerv2 scan LIST_OR_DIR --report OUT.json``: check that every video of a list or folder decodes.

Each video is opened, its packets counted (catching truncation) and its first and last frames decoded, in
parallel worker processes (a crash inside a decoder costs one file, not the scan). The report holds, per file,
``{"path", "ok", "error", "frames", "fps", "width", "height", "duration"}``. ``--write-clean`` writes the list
without the failed entries (original lines for list files, ``path,label`` for class folders). Exit code 0 if
every file is readable, 1 otherwise.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..errors import UserError


def add_parser(subparsers):
    p = subparsers.add_parser("scan", help="check that every video in a list or folder decodes",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="LIST_OR_DIR", help="video list file, folder-per-class tree or folder")
    p.add_argument("--report", required=True, metavar="OUT.json", help="where to write the per-file report")
    p.add_argument("--write-clean", metavar="CLEAN.csv", help="write the list without unreadable entries")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: CPUs)")
    p.add_argument("--root", default="", help="prefix for relative paths in a list file")
    p.add_argument("--sep", default=None, help="field separator of the list file (default: ',' or spaces)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("--frame-template", default="img_{:05d}.jpg", help="frame file names for frame-folder lists")
    p.add_argument("--frame-start-index", type=int, default=1, help="number of the first frame file (default 1)")
    p.set_defaults(func=run)


def check_video(path: str, timeout: float, folder: dict | None = None) -> dict:
    """One report row: decode the first and last frame (after a full packet count)."""
    from ..errors import VideoError
    from ..data.decode import read_clip

    row = {"path": path, "ok": False, "error": None, "frames": None, "fps": None, "width": None, "height": None,
           "duration": None}
    try:
        _, _, info = read_clip(path, lambda n: [0, n - 1], timeout=timeout, threads=1, **(folder or {}))
    except (VideoError, OSError) as e:
        row["error"] = " ".join(str(e).split())
        return row
    row.update(ok=True, frames=info.num_frames, fps=round(info.fps, 4), width=info.width, height=info.height,
               duration=round(info.duration, 4))
    return row


def _entries(args) -> tuple[list[tuple[str, dict | None, str]], str]:
    """[(path, frame-folder options or None, line for the clean list)] and the clean list's kind."""
    from ..data.lists import VIDEO_EXTENSIONS, read_video_list, scan_class_folders

    source = Path(args.source)
    if source.is_dir():
        if any(d.is_dir() for d in source.iterdir()):
            items, _ = scan_class_folders(source)
            return [(i.path, None, f"{i.path},{i.label}") for i in items], "csv"
        files = sorted(str(f) for f in source.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise UserError(f"{source}: no videos found")
        return [(f, None, f) for f in files], "paths"
    if not source.exists():
        raise UserError(f"{source}: no such list file or folder")
    items = read_video_list(source, sep=args.sep, root=args.root)
    lines = [ln.rstrip("\n") for ln in source.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    out = []
    for item, line in zip(items, lines):
        folder = None
        if item.num_frames is not None:
            folder = dict(num_frames=item.num_frames, template=args.frame_template,
                          start_index=args.frame_start_index)
        out.append((item.path, folder, line))
    return out, "lines"


def run(args) -> int:
    from tqdm import tqdm

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    entries, _ = _entries(args)
    rows: list = [None] * len(entries)
    with ProcessPoolExecutor(max_workers=min(args.workers, len(entries))) as pool:
        futures = {pool.submit(check_video, path, args.timeout, folder): k
                   for k, (path, folder, _) in enumerate(entries)}
        for future in tqdm(as_completed(futures), total=len(futures), desc="scan", unit="video"):
            k = futures[future]
            try:
                rows[k] = future.result()
            except Exception as e:  # a worker died (e.g. a decoder crash): report the file, keep going
                rows[k] = {"path": entries[k][0], "ok": False, "error": f"checker crashed: {type(e).__name__}",
                           "frames": None, "fps": None, "width": None, "height": None, "duration": None}
    bad = [r for r in rows if not r["ok"]]
    report = {"source": str(args.source), "total": len(rows), "ok": len(rows) - len(bad), "failed": len(bad),
              "files": rows}
    Path(args.report).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.write_clean:
        kept = [line for (_, _, line), r in zip(entries, rows) if r["ok"]]
        Path(args.write_clean).write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    print(f"{len(rows) - len(bad)}/{len(rows)} videos readable; report: {args.report}")
    for r in bad[:10]:
        print(f"  {r['error']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more")
    return 1 if bad else 0
