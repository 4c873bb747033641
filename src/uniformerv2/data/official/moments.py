"""Moments in Time from the official files: ``moments_categories.txt`` (``name,index``) and
``trainingSet.csv`` / ``validationSet.csv`` (``class/file.mp4,class,...``). A video is
``<root>/<class>/<file>``, ``<root>/training/<class>/<file>`` or ``<root>/validation/<class>/<file>``."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ...errors import UserError
from ...labels import shipped_labels
from ..video import VIDEO_EXTENSIONS
from .common import Entry, Parsed, Rows, VideoIndex, dedupe, label_index, lookup, read_text, split_of_name

TITLE = "Moments in Time"
FOLDERS = {"train": "training", "val": "validation"}


def parse(dataset: str, annotations, index: VideoIndex, rows: Rows, labels_name: str) -> Parsed:
    known = label_index(shipped_labels(labels_name))
    parsed = Parsed(labels_name, {})
    categories: dict[str, str] = {}          # the categories file's index -> name
    entries: dict[str, list[Entry]] = {"train": [], "val": []}
    splits = []
    for path in annotations:
        table = list(csv.reader(io.StringIO(read_text(path))))
        body = [(n, f) for n, f in enumerate(table, 1) if f and any(x.strip() for x in f)]
        if body and "youtube_id" in [x.strip().lower() for x in body[0][1]]:
            raise UserError(f"{path}: a Kinetics annotation file, not Moments in Time")
        if "categor" in Path(path).stem.lower():
            for n, fields in body:
                where = f"{path}:{n}"
                if len(fields) != 2 or not fields[1].strip().isdigit():
                    raise UserError(f"{where}: not a Moments in Time categories file (rows 'name,index')")
                _class(fields[0].strip(), known, where)
                categories[fields[1].strip()] = fields[0].strip()
            parsed.files.append({"path": str(path), "kind": "categories", "classes": len(body)})
            continue
        if body and not _is_video_path(body[0][1][0]):
            raise UserError(f"{path}: not a Moments in Time annotation file (rows 'class/file.mp4,class,...')")
        split = split_of_name(path)
        if split not in ("train", "val"):
            raise UserError(f"{path}: cannot tell its split: its name says neither training nor validation")
        splits.append((path, split, body))
        parsed.files.append({"path": str(path), "kind": "split", "split": split, "rows": len(body)})
    for path, split, body in splits:
        for n, fields in body:
            rows.read += 1
            where = f"{path}:{n}"
            rel = fields[0].strip()
            if len(fields) < 2 or not _is_video_path(rel) or not fields[1].strip():
                rows.bad_row(where, "expected 'class/file.mp4,class,...'")
                continue
            name = fields[1].strip()
            if name.isdigit() and name in categories:
                name = categories[name]
            label = _class(name, known, where)
            found = index.existing(f"{FOLDERS[split]}/{rel}", rel)
            entries[split].append(Entry(split, rel, label, rel, found))
    for split in ("train", "val"):
        parsed.splits[split], dups = dedupe(entries[split])
        parsed.duplicates += dups
    return parsed


def _is_video_path(text: str) -> bool:
    return Path(text.strip()).suffix.lower() in VIDEO_EXTENSIONS


def _class(name: str, known: dict, where: str) -> int:
    i = lookup(known, name)
    if i is None:
        raise UserError(f"{where}: class {name!r} is not a {TITLE} class")
    return i
