"""Your own videos as a checked, split training set, for ``uniformerv2 finetune``.

What ``prepare_videos`` takes as ``data``:
  class folders     ``DATA/<class>/.../*.mp4``: one sub-folder per class, videos at any depth inside it; the
                    classes are the sub-folder names in sorted order (hidden folders are ignored, videos
                    directly in DATA belong to no class and are left out)
  split folders     ``DATA/train/<class>/...`` and ``DATA/val/<class>/...`` (or ``validation/``): the val
                    split is given, nothing is split
  a list file       official CSV (``path,label``) or MMAction2 (``path label``); labels are class indices or
                    names from a labels file (``labels=``, else ``labels.txt`` / ``classes.txt`` beside the
                    list); relative paths are under ``root`` (default: the list's folder). A val list is
                    ``val=``, else the list's sibling with ``train`` replaced by ``val`` when it exists.

Every video is opened and its first and last frames decoded after a full packet count (the rule of
``uniformerv2 scan``), in worker processes; the undecodable ones are reported and left out. A class with
fewer than ``min_videos`` usable videos stops the preparation with one line, or is left out with
``skip_small_classes``. Without a given val split, each class is split on its own (stratified) with a
fixed seed, so the same data and seed give the same lists.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..data.check import check_videos
from ..errors import UserError
from ..fileio import atomic_write_json, atomic_write_text

SPLIT_NAMES = ({"train"}, {"val", "validation"})
LABEL_FILES = ("labels.txt", "classes.txt")


@dataclass
class Prepared:
    """The checked data: absolute paths with class indices, and what was left out."""

    root: str                                  # the folder list paths are written relative to (data.root)
    classes: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    layout: str                                # "class folders", "split folders" or "list file"
    val_source: str                            # how the val split came about
    failed: list[dict] = field(default_factory=list)        # {"path", "error"} of undecodable videos
    dropped_classes: list[str] = field(default_factory=list)
    total: int = 0                             # videos found (before the scan)

    def counts(self) -> dict[str, list[int]]:
        """Per class: (train videos, val videos)."""
        out = {c: [0, 0] for c in self.classes}
        for k, items in enumerate((self.train, self.val)):
            for _, label in items:
                out[self.classes[label]][k] += 1
        return out


def prepare_videos(data, *, val=None, labels=None, root=None, val_fraction: float = 0.2, seed: int = 0,
                   min_videos: int = 2, skip_small_classes: bool = False, timeout: float = 60.0,
                   workers: int | None = None, report=None, progress: bool = True) -> Prepared:
    """Collect, scan and split ``data`` (see the module docstring). ``report``: where to write the scan
    report (written before any refusal, so the user can read what failed)."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"the val fraction must be between 0 and 1, got {val_fraction}")
    if min_videos < 2:
        raise UserError(f"min_videos must be at least 2 (one video to train on, one to validate), got {min_videos}")
    base, classes, train, given_val, layout, problems = collect(data, val=val, labels=labels, root=root)
    everything = train + (given_val or [])
    errors = scan([p for p, _ in everything], timeout=timeout, workers=workers, progress=progress)
    failed = [{"path": p, "error": msg} for p, msg in problems]
    failed += [{"path": p, "error": errors[p]} for p, _ in everything if errors.get(p)]
    if report is not None:
        write_scan_report(report, str(data), layout, len(everything) + len(problems), failed)
    train = [(p, c) for p, c in train if not errors.get(p)]
    given_val = None if given_val is None else [(p, c) for p, c in given_val if not errors.get(p)]
    where = f" (undecodable files: {report})" if report is not None else ""
    keep, dropped = _check_counts(classes, train, given_val, everything, min_videos, skip_small_classes, where)
    if dropped:
        remap = {old: new for new, old in enumerate(keep)}
        classes = [classes[k] for k in keep]
        train = [(p, remap[c]) for p, c in train if c in remap]
        given_val = None if given_val is None else [(p, remap[c]) for p, c in given_val if c in remap]
    if given_val is None:
        train, val_items = stratified_split(train, len(classes), val_fraction, seed)
        val_source = f"{val_fraction:.0%} of each class, seed {seed}"
    else:
        val_items = given_val
        val_source = f"given ({val if val is not None else 'val folder'})"
    return Prepared(base, classes, train, val_items, layout, val_source, failed, dropped, len(everything))


# ----------------------------------------------------------------------------------------------- collecting
def collect(data, *, val=None, labels=None, root=None):
    """(root, classes, train items, val items or None, layout, walk problems); items are (absolute path, label)."""
    src = Path(data)
    if src.is_dir():
        if labels is not None:
            raise UserError("a labels file is for list files; in a class-folder tree the folder names are the classes")
        return _collect_folders(src, val)
    if not src.is_file():
        raise UserError(f"{data}: no such folder or list file")
    return _collect_list(src, val, labels, root)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _split_dirs(src: Path) -> tuple[Path, Path] | None:
    """``train/`` and ``val/`` (or ``validation/``) class-folder trees, when DATA holds exactly those (and test/)."""
    dirs = {d.name.lower(): d for d in _class_dirs(src)}
    train = next((dirs[n] for n in SPLIT_NAMES[0] if n in dirs), None)
    val = next((dirs[n] for n in SPLIT_NAMES[1] if n in dirs), None)
    if train is None or val is None or set(dirs) - SPLIT_NAMES[0] - SPLIT_NAMES[1] - {"test"}:
        return None
    if not _class_dirs(train):
        return None
    return train, val


def _videos_by_class(folder: Path, classes: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    from ..data.video import find_videos

    items, problems = [], []
    for label, name in enumerate(classes):
        d = folder / name
        if not d.is_dir():
            continue
        files, bad = find_videos(d)
        items += [(os.path.abspath(f), label) for f in files]
        problems += bad
    return items, problems


def _collect_folders(src: Path, val):
    split = _split_dirs(src)
    if split is not None:
        if val is not None:
            raise UserError(f"{src} already has a val folder ({split[1].name}/); do not pass a val list as well")
        train_dir, val_dir = split
        classes = [d.name for d in _class_dirs(train_dir)]
        unknown = sorted({d.name for d in _class_dirs(val_dir)} - set(classes))
        if unknown:
            raise UserError(f"{val_dir}: class folder(s) {', '.join(map(repr, unknown))} are not in {train_dir}")
        train, p1 = _videos_by_class(train_dir, classes)
        given, p2 = _videos_by_class(val_dir, classes)
        return str(src.resolve()), classes, train, given, "split folders", p1 + p2
    classes = [d.name for d in _class_dirs(src)]
    if not classes:
        raise UserError(f"{src}: no class folders (expected {src}/<class>/<video>, one sub-folder per class)")
    train, problems = _videos_by_class(src, classes)
    if not train and not problems:
        raise UserError(f"{src}: no videos found in its class folders")
    given = None
    if val is not None:
        given = _read_list(Path(val), str(src.resolve()), classes)
    return str(src.resolve()), classes, train, given, "class folders", problems


def _collect_list(src: Path, val, labels, root):
    base = Path(root).resolve() if root is not None else src.resolve().parent
    names = _label_names(src, labels)
    train = _read_list(src, str(base), names)
    if names is None:  # class indices without a labels file: the classes are named by their index
        names = [str(k) for k in range(max(c for _, c in train) + 1)] if train else []
    val_path = Path(val) if val is not None else _sibling_val(src)
    given = _read_list(val_path, str(base), names) if val_path is not None else None
    if given and max(c for _, c in given) >= len(names):
        raise UserError(f"{val_path}: label {max(c for _, c in given)} is beyond the {len(names)} classes of {src}")
    return str(base), names, train, given, "list file", []


def _label_names(src: Path, labels) -> list[str] | None:
    from ..labels import load_labels

    if labels is not None:
        return load_labels(labels)
    for name in LABEL_FILES:
        if (src.parent / name).is_file():
            return load_labels(src.parent / name)
    return None


def _sibling_val(src: Path) -> Path | None:
    for a, b in (("train", "val"), ("training", "validation"), ("train", "validation")):
        if a in src.name:
            cand = src.with_name(src.name.replace(a, b))
            if cand != src and cand.is_file():
                return cand
    return None


def _read_list(path: Path, root: str, names: list[str] | None) -> list[tuple[str, int]]:
    from ..data.lists import read_video_list

    if not path.is_file():
        raise UserError(f"{path}: no such list file")
    items = read_video_list(path, root=root, labels=names)
    odd = next((it for it in items if it.num_frames is not None or it.total_time is not None), None)
    if odd is not None:
        raise UserError(f"{path}: {odd.path} is a frame-folder or untrimmed entry; fine-tuning takes video files "
                        "(train such lists with `uniformerv2 train`)")
    return [(os.path.abspath(it.path), it.label) for it in items]


# ----------------------------------------------------------------------------------------------- scanning
def scan(paths: list[str], *, timeout: float = 60.0, workers: int | None = None,
         progress: bool = True) -> dict[str, str | None]:
    """{path: error or None} for every path, checked in ``workers`` processes (default: the CPUs, at most 8)."""
    unique = sorted(set(paths))
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    rows = check_videos([(p, None) for p in unique], timeout=timeout, workers=workers if workers > 1 else 0,
                        progress=progress)
    return {row["path"]: row["error"] for row in rows}


def write_scan_report(path, source: str, layout: str, total: int, failed: list[dict]) -> None:
    """The report of ``uniformerv2 scan`` (source, layout, total, ok, failed, files), listing the failures."""
    files = [{"path": f["path"], "ok": False, "error": f["error"]} for f in failed]
    report = {"source": source, "layout": layout, "total": total, "ok": total - len(failed),
              "failed": len(failed), "files": files}
    atomic_write_json(path, report)


# ----------------------------------------------------------------------------------------------- counts, split
def _check_counts(classes, train, given_val, everything, min_videos, skip, where):
    """Indices of the classes to keep; refuses (one line) or drops the classes with too few usable videos."""
    found = [0] * len(classes)
    for _, c in everything:
        found[c] += 1
    usable = [0] * len(classes)
    in_train = [0] * len(classes)
    for _, c in train:
        usable[c] += 1
        in_train[c] += 1
    for _, c in given_val or []:
        usable[c] += 1
    short = [k for k in range(len(classes)) if usable[k] < min_videos or in_train[k] < 1]
    if not short:
        return list(range(len(classes))), []
    if skip and len(short) < len(classes):
        return [k for k in range(len(classes)) if k not in short], [classes[k] for k in short]
    desc = ", ".join(f"{classes[k]!r} ({usable[k]} of {found[k]} usable"
                     + (", none to train on" if given_val is not None and in_train[k] < 1 else "") + ")"
                     for k in short[:5])
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    what = "class" if len(short) == 1 else "classes"
    hint = ("add videos or remove the folder, or leave such classes out with --skip-small-classes"
            if len(short) < len(classes) else "add videos")
    raise UserError(f"{what} {desc}{more}: each class needs at least {min_videos} usable videos "
                    f"(one to train on, one to validate){where}; {hint}")


def stratified_split(items: list[tuple[str, int]], num_classes: int, fraction: float,
                     seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Per class, a seeded shuffle of its (sorted) videos; round(fraction * n) of them, at least 1 and at most
    n - 1, go to val. Depends only on the paths, the classes, ``fraction`` and ``seed``."""
    train, val = [], []
    for c in range(num_classes):
        mine = sorted(p for p, label in items if label == c)
        random.Random(f"{seed}:{c}:{len(mine)}").shuffle(mine)
        n_val = min(len(mine) - 1, max(1, round(fraction * len(mine))))
        val += [(p, c) for p in sorted(mine[:n_val])]
        train += [(p, c) for p in sorted(mine[n_val:])]
    return train, val


def write_lists(out: Path, prep: Prepared) -> dict[str, Path]:
    """``train.csv``, ``val.csv`` (``path,label``, paths relative to ``prep.root`` where they are under it) and
    ``labels.txt`` in ``out``."""
    def rel(p: str) -> str:
        r = os.path.relpath(p, prep.root)
        return p if r.startswith("..") else r

    paths = {"train": out / "train.csv", "val": out / "val.csv", "labels": out / "labels.txt"}
    for split in ("train", "val"):
        text = "".join(f"{rel(p)},{c}\n" for p, c in getattr(prep, split))
        atomic_write_text(paths[split], text)
    names = "".join(f"{c}\n" for c in prep.classes)
    atomic_write_text(paths["labels"], names)
    return paths
