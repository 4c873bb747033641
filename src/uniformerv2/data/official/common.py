"""What every dataset family shares: list entries, the bad-row policy, finding videos, de-duplication, and
writing the lists, the labels, ``missing.txt`` and ``report.json``."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ...fileio import atomic_write_json, atomic_write_text
from ..video import VIDEO_EXTENSIONS

SPLIT_WORDS = {"train": "train", "training": "train", "trainingset": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "validationset": "val", "test": "test",
               "testing": "test"}


@dataclass
class Entry:
    """One row of a written list."""
    split: str
    key: str                   # identity for duplicates (YouTube id, video id, relative path, segment)
    label: int                 # index into the written labels.txt
    expected: str              # the file (or folder) looked for, for missing.txt
    path: str | None = None    # found video file or frame folder; None: missing
    num_frames: int | None = None                  # frame folders
    total_time: float | None = None                # untrimmed segments: video length, [start, end] (s)
    start: float | None = None
    end: float | None = None

    def line(self) -> str:
        if self.num_frames is not None:
            return f"{self.path},{self.num_frames},{self.label}"
        if self.total_time is not None:
            return f"{self.path},{_num(self.total_time)},{_num(self.start)},{_num(self.end)},{self.label}"
        return f"{self.path},{self.label}"


def _num(x: float) -> str:
    return repr(round(float(x), 3)).removesuffix(".0")


@dataclass
class Parsed:
    """What a dataset family reads from its annotation files."""
    labels: str                                   # the shipped list that gives the written class order
    splits: dict[str, list[Entry]]                # "train", "val", "test" (labelled test only)
    files: list[dict] = field(default_factory=list)       # per annotation file: path, kind, split, rows...
    dropped: Counter = field(default_factory=Counter)     # reason -> rows left out before looking for videos
    duplicates: int = 0
    steps: dict = field(default_factory=dict)     # dataset-specific counts (the Kinetics-710 union)
    notes: list[str] = field(default_factory=list)
    frame_template: str | None = None


class Rows:
    """The bad-row policy: a malformed row stops the run with one line naming ``file:line``, or, with
    ``skip_bad``, is counted and left out."""

    def __init__(self, skip_bad: bool):
        self.skip_bad, self.bad, self.read = skip_bad, [], 0

    def bad_row(self, where: str, msg: str) -> None:
        if not self.skip_bad:
            raise UserError(f"{where}: {msg} (--skip-bad leaves such rows out)")
        self.bad.append(f"{where}: {msg}")


def read_text(path) -> str:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: annotation file not found")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text annotation file") from None


def read_json(path):
    import json

    try:
        return json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path}: not a JSON file") from None


def split_of_name(path) -> str | None:
    """The split a file name says (``trainingSet.csv``, ``something-something-v2-validation.json``...)."""
    import re

    words = re.split(r"[^a-z]+", Path(path).stem.lower())
    for w in reversed(words):
        if w in SPLIT_WORDS:
            return SPLIT_WORDS[w]
    return None


def label_index(names) -> dict[str, int]:
    """Exact names first, then lower-case ones."""
    out = {n.lower(): i for i, n in reversed(list(enumerate(names)))}
    out.update({n: i for i, n in reversed(list(enumerate(names)))})
    return out


def lookup(index: dict[str, int], name: str) -> int | None:
    i = index.get(name)
    return i if i is not None else index.get(name.lower())


def dedupe(entries: list[Entry]) -> tuple[list[Entry], int]:
    """The first entry of every key, in order, and how many were left out."""
    seen, out = set(), []
    for e in entries:
        if e.key not in seen:
            seen.add(e.key)
            out.append(e)
    return out, len(entries) - len(out)


class VideoIndex:
    """Every video file under the roots (any depth), by file stem."""

    def __init__(self, roots):
        self.roots = [Path(r) for r in roots]
        for r in self.roots:
            if not r.is_dir():
                raise UserError(f"--videos {r}: not a folder")
        self._by_stem: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                dirnames.sort()
                for name in sorted(filenames):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in VIDEO_EXTENSIONS:
                        found.setdefault(stem, os.path.abspath(os.path.join(dirpath, name)))
        return found

    def find(self, *stems: str) -> str | None:
        if self._by_stem is None:
            self._by_stem = self._build()
        for s in stems:
            if s in self._by_stem:
                return self._by_stem[s]
        return None

    def existing(self, *relative: str) -> str | None:
        """The first ``root/relative`` that exists."""
        for root in self.roots:
            for rel in relative:
                p = root / rel
                if p.exists():
                    return os.path.abspath(p)
        return None


# ------------------------------------------------------------------------------------------ writing
def finish(dataset: str, parsed: Parsed, rows: Rows, output, *, videos, labels: list[str], check: bool,
           workers: int, timeout: float, progress: bool) -> dict:
    """Look for undecodable videos (``check``), write the lists, labels.txt, missing.txt and report.json; the
    report."""
    out = Path(output)
    splits = {s: es for s, es in parsed.splits.items() if es is not None}
    missing = [e for es in splits.values() for e in es if e.path is None]
    undecodable: list[dict] = []
    bad_paths: set[str] = set()
    if check:
        from ..check import check_videos

        todo = sorted({(e.path, e.num_frames) for es in splits.values() for e in es if e.path is not None})
        entries = [(p, None if n is None else dict(num_frames=n, template=parsed.frame_template or "{:05d}.jpg",
                                                   start_index=1)) for p, n in todo]
        for r in check_videos(entries, timeout=timeout, workers=workers, progress=progress):
            if not r["ok"]:
                bad_paths.add(r["path"])
                undecodable.append({"path": r["path"], "error": r["error"]})
    per_split = {}
    files = {}
    for split, es in splits.items():
        kept = [e for e in es if e.path is not None and e.path not in bad_paths]
        n_missing = sum(e.path is None for e in es)
        n_bad = sum(e.path is not None and e.path in bad_paths for e in es)
        per_split[split] = {"entries": len(es), "found": len(es) - n_missing, "missing": n_missing,
                            "undecodable": n_bad, "written": len(kept)}
        files[split] = "".join(e.line() + "\n" for e in kept)
    test_list = "test"
    if "test" not in files and "val" in files:   # no labelled test split: the test views run on the val set
        files["test"], test_list = files["val"], "val"
    dropped = Counter(parsed.dropped)
    if rows.bad:
        dropped["malformed row"] += len(rows.bad)
    if parsed.duplicates:
        dropped["duplicate"] += parsed.duplicates
    dropped["missing video"] += len(missing)
    dropped["undecodable video"] += sum(s["undecodable"] for s in per_split.values())
    report = {
        "dataset": dataset,
        "annotations": parsed.files,
        "videos": [str(v) for v in videos],
        "labels": parsed.labels, "classes": len(labels),
        "rows_read": rows.read,
        "bad_rows": len(rows.bad), "bad_row_messages": rows.bad[:50],
        "videos_found": sum(s["found"] for s in per_split.values()),
        "missing": len(missing),
        "undecodable": sum(s["undecodable"] for s in per_split.values()), "checked": check,
        "duplicates": parsed.duplicates,
        "dropped": {k: v for k, v in sorted(dropped.items()) if v},
        "splits": per_split,
        "test_list": test_list,
        **parsed.steps,
        "undecodable_videos": undecodable,
        "notes": parsed.notes,
    }
    if parsed.frame_template is not None:
        report["frame_template"] = parsed.frame_template
    for split, text in files.items():
        atomic_write_text(out / f"{split}.csv", text)
    atomic_write_text(out / "labels.txt", "".join(n + "\n" for n in labels))
    atomic_write_text(out / "missing.txt", "".join(f"{e.split},{e.key},{e.expected}\n" for e in missing))
    atomic_write_json(out / "report.json", report)
    return report


def summary(report: dict) -> list[str]:
    """The printed summary of a report, a few lines."""
    lines = [f"{report['dataset']}: {report['rows_read']} rows read, {report['videos_found']} videos found, "
             f"{report['missing']} missing, {report['undecodable']} undecodable"
             + ("" if report["checked"] else " (not checked: --check decodes them)")
             + f", {report['duplicates']} duplicates, {report['bad_rows']} malformed rows skipped"]
    for split, s in report["splits"].items():
        lines.append(f"  {split}.csv: {s['written']} of {s['entries']} ({s['missing']} missing, "
                     f"{s['undecodable']} undecodable)")
    if report.get("test_list") == "val":
        lines.append("  test.csv: the validation list (no labelled test split given)")
    if report["dropped"]:
        lines.append("  dropped: " + ", ".join(f"{v} {k}" for k, v in report["dropped"].items()))
    lines.extend(f"  note: {n}" for n in report["notes"])
    return lines
