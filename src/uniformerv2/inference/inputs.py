"""Command-line inputs -> an ordered list of videos.

Each input is one of:
  a folder        its video files (by suffix, ``data.video.VIDEO_EXTENSIONS``), at any depth, sorted
  a list file     ``.txt``, ``.csv``, ``.lst`` or ``.list``: one video per line (see ``read_path_list``)
  a glob          ``"videos/**/*.mp4"`` (quoted, so that the shell leaves it alone; ``**`` spans folders)
  a file          taken as it is, whatever its extension, so that a bad file is reported and not skipped; a
                  missing path is kept too, and reported as a failed input
Relative video paths (inputs, glob patterns, list entries) are resolved against ``root`` when it is given;
list files themselves are opened from the current folder. Each video is listed once (first occurrence).
"""
from __future__ import annotations

import csv
import glob
import io
import os
from pathlib import Path

from ..data.video import find_videos
from ..errors import UserError

LIST_SUFFIXES = frozenset({".txt", ".csv", ".lst", ".list"})
PATH_COLUMNS = ("path", "video", "filename", "file", "video_path")


def collect_videos(paths, root=None, warn=None) -> list[tuple[Path, Path]]:
    """(video path, its name relative to the folder, glob or list it came from) for each video, in order.

    ``warn(message)`` hears about folders that could not be listed and link loops (default: ignored)."""
    base = Path(root) if root is not None else None
    if base is not None and not base.is_dir():
        raise UserError(f"--root {base} is not a folder")
    out, seen = [], set()
    for raw in paths:
        for f, rel in _expand(str(raw), base, warn or (lambda msg: None)):
            key = os.path.abspath(f)
            if key not in seen:
                seen.add(key)
                out.append((Path(f), Path(rel)))
    if not out:
        raise UserError(f"no videos found in {', '.join(map(str, paths))}")
    return out


def _under(base: Path | None, p: str) -> str:
    return str(base / p) if base is not None and not os.path.isabs(p) else p


def _expand(raw: str, base: Path | None, warn):
    listed = Path(raw)
    if listed.suffix.lower() in LIST_SUFFIXES and listed.is_file():
        for entry in read_path_list(listed):
            yield _under(base, entry), (entry if not os.path.isabs(entry) else _relative(entry, base))
        return
    p = _under(base, raw)
    if os.path.isdir(p):
        files, problems = find_videos(p)
        for where, msg in problems:
            warn(f"{where}: {msg}")
        for f in files:
            if not os.path.basename(f).startswith("."):
                yield f, os.path.relpath(f, p)
        return
    if glob.has_magic(raw) and not os.path.exists(p):
        prefix = _static_prefix(p)
        for f in sorted(glob.glob(p, recursive=True)):
            if os.path.isdir(f):
                yield from ((g, os.path.relpath(g, prefix)) for g in find_videos(f)[0])
            else:
                yield f, os.path.relpath(f, prefix)
        return
    yield p, os.path.basename(p)


def _static_prefix(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _relative(path: str, base: Path | None) -> str:
    if base is not None:
        try:
            return str(Path(path).relative_to(base))
        except ValueError:
            pass
    return os.path.basename(path)


def read_path_list(path) -> list[str]:
    """Video paths of a list file, one per line; blank lines and ``#`` comments are skipped.

    CSV (``.csv``): the column named path / video / filename / file / video_path when the first row is a
    header, else the first column. Text: the line up to its first comma or tab; in a line without either,
    trailing integer fields are dropped (``path label`` and ``dir num_frames label`` lines of training lists),
    so paths may contain spaces.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read the list ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text list of videos") from e
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(io.StringIO("\n".join(lines))) if r]
        column = 0
        if rows and any(c.strip().lower() in PATH_COLUMNS for c in rows[0]):
            column = next(i for i, c in enumerate(rows[0]) if c.strip().lower() in PATH_COLUMNS)
            rows = rows[1:]
        return [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    out = []
    for line in lines:
        text = line.strip()
        cut = min((text.index(c) for c in ",\t" if c in text), default=None)
        if cut is not None:
            text = text[:cut].strip()
        else:
            fields = text.split()
            while len(fields) > 1 and fields[-1].lstrip("-").isdigit():
                fields.pop()
            text = " ".join(fields) if len(fields) < len(text.split()) else text
        if text:
            out.append(text)
    return out


def output_names(videos: list[tuple[Path, Path]]) -> list[Path]:
    """One output stem per video: its relative name without the extension (``clips/a.mp4`` -> ``clips/a``),
    or with it where two videos of the list share a stem (``test.mp4`` and ``test.avi`` -> ``test.mp4`` and
    ``test.avi``), so the video of each output can be told from its name; ``-1``, ``-2``... added only when
    the same relative name is listed twice (from two roots). Depends only on the list, so every process of a
    run computes the same names."""
    rels = [rel for _, rel in videos]
    by_stem: dict[Path, set] = {}
    for rel in rels:
        by_stem.setdefault(rel.with_suffix(""), set()).add(rel.suffix)
    used, out = set(), []
    for rel in rels:
        stem = rel.with_suffix("")
        target = rel if len(by_stem[stem]) > 1 else stem
        cand, n = target, 0
        while cand in used:
            n += 1
            cand = target.with_name(f"{target.name}-{n}")
        used.add(cand)
        out.append(cand)
    return out
