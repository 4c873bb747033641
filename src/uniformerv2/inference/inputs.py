"""Command-line inputs: files and folders (walked recursively for videos) -> an ordered list of videos."""
from __future__ import annotations

import os
from pathlib import Path

from ..data.video import VIDEO_EXTENSIONS
from ..errors import UserError


def collect_videos(paths) -> list[tuple[Path, Path]]:
    """(video path, path relative to the folder it was found in) for each input, in order.

    A file is taken as it is, whatever its extension (so that a bad file is reported, not skipped); a folder
    contributes its video files (by extension), sorted, recursively; a missing path is kept so that it is
    reported as a failed input.
    """
    out, seen = [], set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(Path(root) / f for root, _, files in os.walk(p, followlinks=True) for f in files
                           if Path(f).suffix.lower() in VIDEO_EXTENSIONS and not f.startswith("."))
            pairs = [(f, f.relative_to(p)) for f in found]
        else:
            pairs = [(p, Path(p.name))]
        for f, rel in pairs:
            key = os.path.abspath(f)
            if key not in seen:
                seen.add(key)
                out.append((f, rel))
    if not out:
        raise UserError(f"no videos found in {', '.join(map(str, paths))}")
    return out
