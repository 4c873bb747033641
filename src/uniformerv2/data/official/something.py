"""Something-Something V2 and V1 from the official files.

V2: ``labels.json`` (class name -> index) and ``something-something-v2-{train,validation,test}.json`` (a list
of ``{"id", "template", "label", ...}``): the class is the template with its brackets removed
(``Putting [something] on a surface`` -> ``Putting something on a surface``); videos ``<id>.webm`` (any video
extension). The test file has no templates: no test list.

V1: ``something-something-v1-labels.csv`` (one class per line) and ``something-something-v1-{train,validation,
test}.csv`` (``id;class``); JPEG frame folders ``<id>/00001.jpg ...``, written as frame-folder lists
(``dir,num_frames,label``, frames counted).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ...errors import UserError
from ...labels import shipped_labels
from .common import Entry, Parsed, Rows, VideoIndex, dedupe, label_index, lookup, read_json, read_text, split_of_name

_FRAME = re.compile(r"(img_)?(\d+)\.jpe?g$", re.I)


def parse(dataset: str, annotations, index: VideoIndex, rows: Rows, labels_name: str) -> Parsed:
    names = shipped_labels(labels_name)
    known = label_index(names)
    parsed = Parsed(labels_name, {})
    entries: dict[str, list[Entry]] = {"train": [], "val": []}
    read = _v2_file if dataset == "sthv2" else _v1_file
    for path in annotations:
        info = read(path, rows, known, index, entries, parsed)
        parsed.files.append({"path": str(path), **info})
    for split in ("train", "val"):
        parsed.splits[split], dups = dedupe(entries[split])
        parsed.duplicates += dups
    return parsed


def _split(path) -> str:
    split = split_of_name(path)
    if split is None:
        raise UserError(f"{path}: cannot tell its split: its name says neither train, validation nor test")
    return split


def _class(name: str, known: dict, where: str, title: str) -> int:
    i = lookup(known, name)
    if i is None:
        raise UserError(f"{where}: class {name!r} is not a {title} class")
    return i


# ------------------------------------------------------------------------------------------ V2
def _v2_file(path, rows: Rows, known, index: VideoIndex, entries, parsed) -> dict:
    if Path(path).suffix.lower() != ".json":
        raise UserError(f"{path}: not a Something-Something V2 annotation file (labels.json or "
                        "something-something-v2-{train,validation,test}.json)")
    data = read_json(path)
    if isinstance(data, dict):
        if not all(isinstance(v, (str, int)) and str(v).strip().isdigit() for v in data.values()):
            raise UserError(f"{path}: not a Something-Something V2 labels file (class name -> index)")
        for name in data:
            _class(name, known, str(path), "Something-Something V2")
        return {"kind": "labels", "classes": len(data)}
    if not isinstance(data, list) or (data and not (isinstance(data[0], dict) and "id" in data[0])):
        raise UserError(f"{path}: not a Something-Something V2 split file (a list of {{\"id\", \"template\"}})")
    split = _split(path)
    unlabelled = 0
    for k, item in enumerate(data):
        rows.read += 1
        where = f"{path}: entry {k + 1}"
        if not isinstance(item, dict) or not str(item.get("id", "")).strip():
            rows.bad_row(where, "no video id")
            continue
        vid = str(item["id"]).strip()
        template = item.get("template")
        if split == "test" or template is None:
            if split != "test":
                rows.bad_row(where, "no template")
            else:
                unlabelled += 1
            continue
        if not isinstance(template, str):
            rows.bad_row(where, "the template is not text")
            continue
        name = template.replace("[", "").replace("]", "")
        label = _class(name, known, where, "Something-Something V2")
        entries[split].append(Entry(split, vid, label, f"{vid}.webm", index.find(vid)))
    if unlabelled:
        parsed.dropped["unlabelled test row"] += unlabelled
    return {"kind": "split", "split": split, "rows": len(data)}


# ------------------------------------------------------------------------------------------ V1
def _v1_file(path, rows: Rows, known, index: VideoIndex, entries, parsed) -> dict:
    if Path(path).suffix.lower() not in (".csv", ".txt"):
        raise UserError(f"{path}: not a Something-Something V1 annotation file "
                        "(something-something-v1-{labels,train,validation,test}.csv)")
    lines = read_text(path).splitlines()
    body = [(n, ln.strip()) for n, ln in enumerate(lines, 1) if ln.strip()]
    if "label" in Path(path).stem.lower() and not any(";" in ln for _, ln in body):
        for n, name in body:
            _class(name, known, f"{path}:{n}", "Something-Something V1")
        return {"kind": "labels", "classes": len(body)}
    split = split_of_name(path)
    if (split != "test" and body and ";" not in body[0][1]) or (split == "test" and body and "," in body[0][1]):
        raise UserError(f"{path}: not a Something-Something V1 annotation file (rows 'id;class', or the labels "
                        "file with one class per line)")
    split = _split(path)
    unlabelled = 0
    for n, text in body:
        rows.read += 1
        where = f"{path}:{n}"
        fields = text.split(";")
        vid = fields[0].strip()
        if split == "test" and len(fields) == 1:
            unlabelled += 1
            continue
        if len(fields) != 2 or not vid or not fields[1].strip():
            rows.bad_row(where, "expected 'id;class'")
            continue
        if split == "test":
            unlabelled += 1
            continue
        label = _class(fields[1].strip(), known, where, "Something-Something V1")
        folder, frames, template = _frames(index, vid)
        if template is not None:
            parsed.frame_template = parsed.frame_template or template
        entries[split].append(Entry(split, vid, label, f"{vid}/", folder, num_frames=frames or 0))
    if unlabelled:
        parsed.dropped["unlabelled test row"] += unlabelled
    return {"kind": "split", "split": split, "rows": len(body)}


def _frames(index: VideoIndex, vid: str) -> tuple[str | None, int, str | None]:
    """The frame folder of ``vid`` (``root/<id>`` or ``root/20bn-something-something-v1/<id>``), its frame
    count and the frame names' template; (None, 0, None) when it is missing or holds no frames."""
    folder = index.existing(vid, f"20bn-something-something-v1/{vid}")
    if folder is None or not os.path.isdir(folder):
        return None, 0, None
    found = [m for m in (_FRAME.match(f) for f in os.listdir(folder)) if m]
    if not found:
        return None, 0, None
    first = min(found, key=lambda m: int(m.group(2)))
    digits = len(first.group(2))
    template = f"{first.group(1) or ''}{{:0{digits}d}}.{first.group(0).rsplit('.', 1)[1]}"
    return folder, len(found), template

