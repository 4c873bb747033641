"""``uniformerv2 scan LIST_OR_DIR --output OUT.json``: check that every video of a list or folder decodes.

A folder is searched at any depth for files with a video suffix (the list every command uses), whatever its
layout; the report says which layout was recognised: ``class folders`` (every video inside a first-level
sub-folder: labels are the sorted sub-folder names, as the datasets read them), ``flat folder`` or ``mixed``
(videos both at the top and in sub-folders: no labels). Each video is opened, its packets counted (catching
truncation: a declared frame count or duration that the data does not reach) and its first and last frames
decoded, in parallel worker processes (a crash inside a decoder costs one file, not the scan). FIFOs, devices
and other special files are reported without being opened; symbolic link loops, broken links and unreadable
files each get their own message. The report holds ``source``, ``layout``, ``total``, ``ok``, ``failed`` and, per
file, ``{"path", "ok", "error", "frames", "fps", "width", "height", "duration"}``. ``--write-clean`` writes the
list without the failed entries (original lines for list files, ``path,label`` for class folders, paths
otherwise). Exit code 0 if every file is readable, 1 otherwise.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..data.check import EMPTY_ROW, check_videos
from ..errors import UserError
from ..fileio import atomic_write_text
from .common import add_output, add_quiet, add_workers, workers_for



def add_parser(subparsers):
    p = subparsers.add_parser("scan", help="check that every video in a list or folder decodes",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="LIST_OR_DIR", help="video list file, or a folder searched at any depth")
    add_output(p, required=True, metavar="OUT.json", aliases=("--report",), help="where to write the per-file report")
    p.add_argument("--write-clean", metavar="CLEAN.csv", help="write the list without unreadable entries")
    add_workers(p, "processes that open the videos")
    p.add_argument("--root", default="", help="prefix for relative paths in a list file")
    p.add_argument("--sep", default=None, help="field separator of the list file (default: ',' or spaces)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("--frame-template", default="img_{:05d}.jpg", help="frame file names for frame-folder lists")
    p.add_argument("--frame-start-index", type=int, default=1, help="number of the first frame file (default 1)")
    add_quiet(p)
    p.set_defaults(func=run)


def folder_entries(source: Path) -> tuple[list[tuple[str, dict | None, str]], list[dict], str]:
    """Entries (path, None, line for the clean list), rows for problems met while walking, and the layout."""
    from ..data.video import find_videos

    files, problems = find_videos(source)
    rows = [{"path": p, "ok": False, "error": f"{p}: {msg}", **EMPTY_ROW} for p, msg in problems]
    if not files:
        if rows:
            return [], rows, "no videos"
        raise UserError(f"{source}: no videos found (searched at any depth for {', '.join(_suffixes())})")
    top = [f for f in files if os.path.dirname(f) == str(source)]
    if top and len(top) == len(files):
        return [(f, None, f) for f in files], rows, "flat folder"
    if top:
        layout = (f"mixed: {len(top)} video(s) at the top level and {len(files) - len(top)} in sub-folders "
                  f"(not a class-folder tree: no labels)")
        return [(f, None, f) for f in files], rows, layout
    classes = sorted(d.name for d in source.iterdir() if d.is_dir())
    label = {name: k for k, name in enumerate(classes)}
    entries = [(f, None, f"{f},{label[Path(os.path.relpath(f, source)).parts[0]]}") for f in files]
    return entries, rows, f"class folders ({len(classes)} classes)"


def _suffixes() -> list[str]:
    from ..data.video import VIDEO_EXTENSIONS
    return sorted(VIDEO_EXTENSIONS)


def _entries(args) -> tuple[list[tuple[str, dict | None, str]], list[dict], str]:
    """[(path, frame-folder options or None, line for the clean list)], problem rows, and the layout."""
    from ..data.lists import read_video_list

    source = Path(args.source)
    if source.is_dir():
        return folder_entries(source)
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
    return out, [], "list file"


def run(args) -> int:
    entries, problems, layout = _entries(args)
    workers = workers_for(len(entries)) if args.workers is None else args.workers
    rows = check_videos([(path, folder) for path, folder, _ in entries], timeout=args.timeout, workers=workers,
                        progress=not args.quiet)
    rows += problems
    bad = [r for r in rows if not r["ok"]]
    report = {"source": str(args.source), "layout": layout, "total": len(rows), "ok": len(rows) - len(bad),
              "failed": len(bad), "files": rows}
    atomic_write_text(args.output, json.dumps(report, indent=1) + "\n")
    if args.write_clean:
        kept = [line for (_, _, line), r in zip(entries, rows) if r["ok"]]
        atomic_write_text(args.write_clean, "".join(f"{line}\n" for line in kept))
    print(f"wrote {args.output}" + (f" and {args.write_clean}" if args.write_clean else ""), file=sys.stderr)
    print(f"{len(rows) - len(bad)}/{len(rows)} videos readable ({layout})")
    for r in bad[:10]:
        print(f"  {r['error']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more")
    return 1 if bad else 0
