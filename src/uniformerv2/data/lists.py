"""Video lists: official CSV, MMAction2-style, frame-folder, untrimmed, and folder-per-class trees.

Line formats (fields separated by ``sep``; default: "," if the line has one, else whitespace; the path is
everything before the remaining fields, so it may contain spaces):
- videos: ``path,label`` or ``path label``
- frame folders: ``dir num_frames label``
- untrimmed: ``path total_time start end label`` (seconds)
A label is a class index or a class name from the labels file. Blank lines and ``#`` comments are skipped.
Malformed lines and unknown classes raise ``UserError`` naming the file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .video import VIDEO_EXTENSIONS, find_videos

FIELDS = {"video": 2, "frames": 3, "untrimmed": 5}


@dataclass(frozen=True)
class VideoItem:
    path: str
    label: int
    num_frames: int | None = None      # frame folders
    total_time: float | None = None    # untrimmed: whole video length and the action's [start, end] (s)
    start: float | None = None
    end: float | None = None


def read_labels(source) -> list[str]:
    """Class names, one per line (a path), or the list itself."""
    if isinstance(source, (list, tuple)):
        return list(source)
    try:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{source}: cannot read labels file ({e.strerror})") from e
    return [line.strip() for line in lines if line.strip()]


def read_video_list(path, *, fmt: str = "auto", sep: str | None = None, root: str = "",
                    labels=None, num_classes: int | None = None) -> list[VideoItem]:
    """Parse a list file into ``VideoItem``s; ``root`` is prefixed to relative paths."""
    if fmt != "auto" and fmt not in FIELDS:
        raise UserError(f"unknown list format {fmt!r}; choose auto, {', '.join(FIELDS)}")
    names = read_labels(labels) if labels is not None else None
    by_name = {n: i for i, n in enumerate(names)} if names else {}
    limit = num_classes if num_classes is not None else (len(names) if names else None)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read video list ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text video list") from e
    items = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        fields = _split(text, sep, fmt)
        kind = fmt if fmt != "auto" else {2: "video", 3: "frames", 5: "untrimmed"}.get(len(fields))
        if kind is None or len(fields) != FIELDS[kind]:
            raise UserError(f"{where}: expected 'path label', 'dir num_frames label' or "
                            f"'path total_time start end label', got {text[:80]!r}")
        label = _label(fields[-1], by_name, limit, where)
        video = fields[0] if os.path.isabs(fields[0]) or not root else os.path.join(root, fields[0])
        try:
            if kind == "video":
                items.append(VideoItem(video, label))
            elif kind == "frames":
                items.append(VideoItem(video, label, num_frames=int(fields[1])))
            else:
                total, start, end = (float(f) for f in fields[1:4])
                if not (0 <= start <= end and total > 0):
                    raise ValueError
                items.append(VideoItem(video, label, total_time=total, start=start, end=end))
        except ValueError:
            raise UserError(f"{where}: bad number in {text[:80]!r}") from None
    return items


def label_kinds(path, *, fmt: str = "auto", sep: str | None = None) -> set[str]:
    """Which kinds of label the list ``path`` holds: a subset of {"index", "name"} (class indices or class
    names), read as ``read_video_list`` reads them."""
    kinds = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            kinds.add("index" if _split(text, sep, fmt)[-1].lstrip("-").isdigit() else "name")
    return kinds


def _split(text: str, sep: str | None, fmt: str) -> list[str]:
    sep = sep if sep is not None else ("," if "," in text else None)
    want = FIELDS.get(fmt)
    if want is None:   # auto: count the numeric fields between the path and the label
        parts = text.split(sep) if sep else text.split()
        numeric = 0
        for p in reversed(parts[1:-1]):
            if not _is_number(p):
                break
            numeric += 1
        want = {0: 2, 1: 3, 2: 4}.get(numeric, 5)   # 4 fields matches no format: reported below
    parts = text.rsplit(sep, want - 1) if sep else text.rsplit(None, want - 1)
    return [p.strip() for p in parts]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _label(field: str, by_name: dict, limit: int | None, where: str) -> int:
    if field.lstrip("-").isdigit():
        label = int(field)
        if label < 0 or (limit is not None and label >= limit):
            raise UserError(f"{where}: label {label} out of range for {limit} classes")
        return label
    if field in by_name:
        return by_name[field]
    raise UserError(f"{where}: unknown class {field!r}" + ("" if by_name else " (no labels file given)"))


def scan_class_folders(root, extensions=VIDEO_EXTENSIONS) -> tuple[list[VideoItem], list[str]]:
    """``root/<class>/.../<video>`` tree -> (items, class names sorted alphabetically). Every file with a video
    suffix counts, at any depth inside its class folder (``data.video.find_videos``); videos directly in ``root``
    belong to no class and are left out."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    items = [VideoItem(f, label) for label, name in enumerate(classes)
             for f in find_videos(root / name, extensions)[0]]
    if not items:
        raise UserError(f"{root}: no videos found in class folders")
    return items, classes
