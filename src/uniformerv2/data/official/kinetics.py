"""Kinetics-400/600/700 and Kinetics-710 from the official CSVs.

A CSV holds ``label,youtube_id,time_start,time_end,split[,is_cc]`` (a header row; test files may lack the
label). Its version comes from its folder or name (``kinetics400/``, ``k600_val.csv``...), else from its
classes (the first of 400, 600, 700 whose list holds them all); its split from the ``split`` column, else its
name. A video is found as ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` or ``<youtube_id>.<ext>``, anywhere
under the video folders.

Kinetics-710 (UniFormerV2's rule): the union of the three training sets, de-duplicated by YouTube id (the
earliest version's row is kept), minus every video of any version's validation or test set; each class mapped
to its K710 class through the K710 channel maps (``labels.kinetics710_map``); validation is the union of the
three validation sets, de-duplicated.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...errors import UserError
from ...labels import canonical_name, kinetics710_map, shipped_labels
from .common import SPLIT_WORDS, Entry, Parsed, Rows, VideoIndex, dedupe, read_text, split_of_name

VERSIONS = (400, 600, 700)
_VERSION = re.compile(r"(?:kinetics|k)[-_ ]?(400|600|700)(?!\d)", re.I)
REQUIRED = ("youtube_id", "time_start", "time_end")


@dataclass
class Row:
    version: int | None
    split: str
    yid: str
    start: int
    end: int
    label: str | None     # class name as written; None: an unlabelled (test) row
    where: str


@lru_cache(maxsize=None)
def _canon(version: int) -> dict[str, int]:
    return {canonical_name(n): i for i, n in enumerate(shipped_labels(f"kinetics{version}"))}


def version_of_path(path) -> tuple[int | None, str]:
    p = Path(path)
    for part, what in ((p.name, "name"), (p.parent.name, "folder")):
        m = _VERSION.search(part)
        if m:
            return int(m.group(1)), what
    return None, ""


def read_file(path, rows: Rows) -> tuple[list[Row], dict]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise UserError(f"{path}: empty file, not a Kinetics annotation CSV") from None
    if not all(h in header for h in REQUIRED):
        raise UserError(f"{path}: not a Kinetics annotation CSV (its header {','.join(header)[:80]!r} lacks "
                        f"{','.join(REQUIRED)})")
    col = {h: k for k, h in enumerate(header)}
    version, from_where = version_of_path(path)
    named_split = split_of_name(path)
    out = []
    for lineno, fields in enumerate(reader, 2):
        if not fields or not any(f.strip() for f in fields):
            continue
        rows.read += 1
        where = f"{path}:{lineno}"
        if len(fields) != len(header):
            rows.bad_row(where, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}")
            continue
        yid = fields[col["youtube_id"]].strip()
        try:
            start, end = (int(float(fields[col[k]])) for k in ("time_start", "time_end"))
        except ValueError:
            rows.bad_row(where, "time_start / time_end are not numbers")
            continue
        if not yid or start < 0 or end < start:
            rows.bad_row(where, "empty youtube_id or a bad time window")
            continue
        split = named_split
        if "split" in col:
            word = fields[col["split"]].strip().lower()
            split = SPLIT_WORDS.get(word)
            if split is None:
                rows.bad_row(where, f"unknown split {word!r}")
                continue
        if split is None:
            raise UserError(f"{path}: cannot tell its split (no split column, and its name says neither train, "
                            "validate nor test)")
        label = fields[col["label"]].strip() if "label" in col else ""
        out.append(Row(version, split, yid, start, end, label or None, where))
    names = {r.label for r in out if r.label}
    if version is None and names:
        for v in VERSIONS:
            known = _canon(v)
            if all(canonical_name(n) in known for n in names):
                version, from_where = v, "classes"
                break
        else:
            every = _canon(700) | _canon(600) | _canon(400)
            bad = next(r for r in out if r.label and canonical_name(r.label) not in every)
            raise UserError(f"{bad.where}: class {bad.label!r} is in no Kinetics list (400, 600, 700)")
    for r in out:
        r.version = version
    info = {"path": str(path), "version": version, "version_from": from_where or None,
            "splits": dict(Counter(r.split for r in out)), "rows": len(out)}
    return out, info


def parse(dataset: str, annotations, index: VideoIndex, rows: Rows, labels_name: str) -> Parsed:
    want = None if dataset == "kinetics710" else int(dataset.removeprefix("kinetics"))
    out_index = {canonical_name(n): i for i, n in enumerate(shipped_labels(labels_name))}
    k710 = shipped_labels("kinetics710")
    all_rows: list[Row] = []
    files = []
    for path in annotations:
        got, info = read_file(path, rows)
        v = info["version"]
        if want is not None and v is not None and v != want and info["version_from"] in ("name", "folder"):
            raise UserError(f"{path}: a Kinetics-{v} annotation file (by its {info['version_from']}), "
                            f"not Kinetics-{want}")
        if want is not None:
            for r in got:
                r.version = want
            info["version"] = want
        files.append(info)
        all_rows.extend(got)
    parsed = Parsed(labels_name, {}, files)

    memo: dict[tuple, int] = {}

    def label_of(r: Row) -> int:
        key = (r.version, r.label)
        if key not in memo:
            memo[key] = _label_of(r)
        return memo[key]

    def _label_of(r: Row) -> int:
        known = _canon(r.version)
        i = known.get(canonical_name(r.label))
        if i is None:
            raise UserError(f"{r.where}: class {r.label!r} is not a Kinetics-{r.version} class")
        name = canonical_name(r.label) if want is not None else canonical_name(k710[kinetics710_map(r.version)[i]])
        if name not in out_index:   # cannot happen with the shipped lists: they agree by name
            raise UserError(f"{r.where}: class {r.label!r} has no class in {labels_name}")
        return out_index[name]

    for r in all_rows:   # every class named, also in rows left out below
        if r.label is not None:
            label_of(r)
    order = {v: k for k, v in enumerate(VERSIONS)}
    all_rows.sort(key=lambda r: order.get(r.version, len(VERSIONS)))   # stable: file order inside a version
    by_split = {s: [r for r in all_rows if r.split == s] for s in ("train", "val", "test")}
    held_out = {r.yid for s in ("val", "test") for r in by_split[s]}

    def entry(r: Row, split: str) -> Entry:
        stem = f"{r.yid}_{r.start:06d}_{r.end:06d}"
        return Entry(split, r.yid, label_of(r), f"{stem}.mp4", index.find(stem, r.yid))

    train_rows = by_split["train"]
    unlabelled = [r for r in train_rows + by_split["val"] if r.label is None]
    for r in unlabelled:
        rows.bad_row(r.where, "no label")
    train_rows = [r for r in train_rows if r.label is not None]
    val_rows = [r for r in by_split["val"] if r.label is not None]
    first: dict[str, Row] = {}
    conflicts = 0
    for r in train_rows:
        if r.yid in first:
            if label_of(first[r.yid]) != label_of(r):
                conflicts += 1
        else:
            first[r.yid] = r
    unique = list(first.values())
    leaks = [r for r in unique if r.yid in held_out]
    kept = [r for r in unique if r.yid not in held_out]
    val, val_dups = dedupe([entry(r, "val") for r in val_rows])
    parsed.splits["train"] = [entry(r, "train") for r in kept]
    parsed.splits["val"] = val
    parsed.duplicates = len(train_rows) - len(unique) + val_dups
    parsed.dropped["in a validation or test set"] = len(leaks)
    test_rows = [r for r in by_split["test"] if r.label is not None]
    if test_rows and want is not None:
        parsed.splits["test"], dups = dedupe([entry(r, "test") for r in test_rows])
        parsed.duplicates += dups
    if want is not None:
        parsed.dropped["unlabelled test row"] = len(by_split["test"]) - len(test_rows)
    if dataset == "kinetics710":
        parsed.steps["kinetics710"] = {
            "versions": sorted({r.version for r in all_rows if r.version is not None}),
            "train_rows": {str(v): sum(r.version == v for r in train_rows) for v in VERSIONS},
            "train_union_before": len(train_rows),
            "train_unique": len(unique),
            "train_in_val_or_test": len(leaks),
            "train_after": len(kept),
            "label_conflicts": conflicts,
            "test_rows": len(by_split["test"]),
            "val_rows": len(val_rows),
            "val_unique": len(val),
        }
        seen = set(parsed.steps["kinetics710"]["versions"])
        if seen != set(VERSIONS):
            parsed.notes.append("Kinetics-710 is built from Kinetics-400, 600 and 700; given: "
                                + ", ".join(str(v) for v in sorted(seen)))
    else:
        parsed.steps["in_val_or_test"] = len(leaks)
    return parsed
