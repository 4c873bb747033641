"""ActivityNet v1.3 and HACS from the official files.

ActivityNet: ``activity_net.v1-3.min.json`` (``database``: video id -> ``subset``, ``duration``,
``annotations`` of ``{"segment": [start, end], "label"}``). Training: every labelled segment, listed by time
(``path,total_time,start,end,label``: training samples its frames inside the segment, no file is cut);
validation: whole untrimmed videos (``path,label``, the class that covers most of the video's annotated time).

HACS: ``HACS_clips_v1.1.1.csv`` (``classname,youtube_id,subset,start,end,label``; label 1 a positive clip, -1 a
negative one): the positive training clips, listed by time; ``HACS_segments_v1.1.1.json`` (ActivityNet's
layout): validation as for ActivityNet (and training segments when no clips file is given). Videos
``v_<id>.<ext>`` or ``<id>.<ext>`` anywhere under the video folders.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from ...errors import UserError, VideoError
from ...labels import shipped_labels
from .common import Entry, Parsed, Rows, VideoIndex, dedupe, label_index, lookup, read_json, read_text

TITLES = {"activitynet": "ActivityNet", "hacs": "HACS"}
CLIPS_HEADER = ("classname", "youtube_id", "subset", "start", "end", "label")
SUBSETS = {"training": "train", "validation": "val", "testing": "test"}


def parse(dataset: str, annotations, index: VideoIndex, rows: Rows, labels_name: str) -> Parsed:
    known = label_index(shipped_labels(labels_name))
    parsed = Parsed(labels_name, {})
    segments: dict[str, list[Entry]] = {"train": [], "val": []}
    clips: dict[str, list[Entry]] = {"train": [], "val": []}
    durations: dict[str, float] = {}
    have_json = have_clips = False
    for path in annotations:
        kind = _kind(path, dataset)
        if kind == "clips":
            have_clips = True
            n = _clips(path, rows, known, index, clips, parsed)
        else:
            have_json = True
            n = _database(path, dataset, rows, known, index, segments, durations, parsed)
        parsed.files.append({"path": str(path), "kind": kind, "rows": n})
    train = clips["train"] if have_clips else segments["train"]
    val = segments["val"] if have_json else clips["val"]
    if have_clips and segments["train"]:
        parsed.notes.append("training segments come from the clips file; the segments file gives validation")
    for e in train:   # the length of each found video: from the annotation file, else its container
        if e.path is not None and e.total_time is None:
            e.total_time = durations.get(e.key.split("|")[0]) or _duration(e.path)
            if e.total_time is None:
                parsed.dropped["video length unknown"] += 1
                e.path = None
    for e in train:
        if e.total_time is not None and e.path is not None:
            e.end = min(e.end, e.total_time)
    empty = [e for e in train if e.path is not None and not (0 <= e.start < e.end)]
    if empty:
        parsed.dropped["empty segment"] += len(empty)
        train = [e for e in train if e not in empty]
    parsed.splits["train"], d1 = dedupe(train)
    parsed.splits["val"], d2 = dedupe(val)
    parsed.duplicates = d1 + d2
    return parsed


def _kind(path, dataset: str) -> str:
    name = Path(path).name.lower()
    if name.endswith(".csv"):
        if dataset != "hacs":
            raise UserError(f"{path}: a CSV is not an ActivityNet annotation file (activity_net.v1-3.min.json)")
        return "clips"
    if "hacs" in name and dataset == "activitynet":
        raise UserError(f"{path}: a HACS annotation file, not ActivityNet")
    if "activity_net" in name and dataset == "hacs":
        raise UserError(f"{path}: an ActivityNet annotation file, not HACS")
    return "segments"


def _class(name, known: dict, where: str, title: str) -> int:
    i = lookup(known, str(name))
    if i is None:
        raise UserError(f"{where}: class {name!r} is not a {title} class")
    return i


def _find(index: VideoIndex, vid: str) -> str | None:
    return index.find(f"v_{vid}", vid)


def _duration(path: str) -> float | None:
    from ..decode import probe

    try:
        d = probe(path, exact=False).duration
    except (VideoError, OSError):
        return None
    return d if d and d > 0 else None


def _database(path, dataset, rows: Rows, known, index, segments, durations, parsed) -> int:
    data = read_json(path)
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise UserError(f"{path}: not an ActivityNet-style annotation file (no 'database' of videos)")
    title = TITLES[dataset]
    unlabelled = 0
    for vid, video in db.items():
        rows.read += 1
        where = f"{path}: database[{vid!r}]"
        if not isinstance(video, dict) or video.get("subset") not in SUBSETS:
            rows.bad_row(where, "no subset (training, validation or testing)")
            continue
        split = SUBSETS[video["subset"]]
        if split == "test":
            unlabelled += 1
            continue
        try:
            duration = float(video.get("duration") or 0)
        except (TypeError, ValueError):
            duration = 0.0
        if duration > 0:
            durations[vid] = duration
        anns = []
        for k, ann in enumerate(video.get("annotations") or []):
            try:
                start, end = (float(x) for x in ann["segment"])
                name = ann["label"]
            except (KeyError, TypeError, ValueError):
                rows.bad_row(f"{where}.annotations[{k}]", "expected {'segment': [start, end], 'label': name}")
                continue
            anns.append((max(0.0, start), end, _class(name, known, f"{where}.annotations[{k}]", title)))
        if not anns:
            rows.bad_row(where, "no annotations")
            continue
        found = _find(index, vid)
        if split == "train":
            for start, end, label in anns:
                segments["train"].append(Entry("train", f"{vid}|{start:g}|{end:g}|{label}", label, f"v_{vid}.mp4",
                                               found, total_time=duration if duration > 0 else None,
                                               start=start, end=end))
        else:
            cover = Counter()
            for start, end, label in anns:
                cover[label] += max(end - start, 0.0)
            best = max(cover, key=lambda c: (cover[c], -[a[2] for a in anns].index(c)))
            if len(cover) > 1:
                parsed.dropped["other classes of a multi-class validation video"] += len(cover) - 1
            segments["val"].append(Entry("val", vid, best, f"v_{vid}.mp4", found))
    if unlabelled:
        parsed.dropped["unlabelled test video"] += unlabelled
    return len(db)


def _clips(path, rows: Rows, known, index, clips, parsed) -> int:
    table = list(csv.reader(io.StringIO(read_text(path))))
    header = tuple(h.strip().lower() for h in (table[0] if table else ()))
    if header[:len(CLIPS_HEADER)] != CLIPS_HEADER:
        raise UserError(f"{path}: not a HACS clips file (header {','.join(CLIPS_HEADER)})")
    count = 0
    for n, fields in enumerate(table[1:], 2):
        if not fields or not any(f.strip() for f in fields):
            continue
        rows.read += 1
        count += 1
        where = f"{path}:{n}"
        if len(fields) < len(CLIPS_HEADER):
            rows.bad_row(where, f"expected {','.join(CLIPS_HEADER)}")
            continue
        name, vid, subset, start, end, sign = (f.strip() for f in fields[:6])
        try:
            start_s, end_s, positive = float(start), float(end), int(float(sign))
        except ValueError:
            rows.bad_row(where, "start / end / label are not numbers")
            continue
        split = SUBSETS.get(subset)
        if not vid or split is None or positive not in (1, -1) or end_s < start_s:
            rows.bad_row(where, "bad youtube_id, subset, time window or label (1 or -1)")
            continue
        if split == "test":
            parsed.dropped["test clip"] += 1
            continue
        if positive != 1:
            parsed.dropped["negative clip"] += 1
            continue
        label = _class(name, known, where, "HACS")
        found = _find(index, vid)
        if split == "train":
            clips["train"].append(Entry("train", f"{vid}|{start_s:g}|{end_s:g}|{label}", label, f"v_{vid}.mp4",
                                        found, start=max(0.0, start_s), end=end_s))
        else:
            clips["val"].append(Entry("val", vid, label, f"v_{vid}.mp4", found))
    return count
