"""Pretrained weights by name: the shipped registry (``registry.json``) plus the user's own files.

A name is ``PREFIX.TAG`` (timm's idea): the prefix is a preset (``k400_b16_8x224``) for video models or
``clip_<arch>`` for image towers, the tag says which training produced the file (``k710_ft``, ``clip``…).
A bare prefix means its default entry: the first one listed for it, or the one marked ``"default": true``.

``UNIFORMERV2_REGISTRY=a.json[:b.json]`` (``os.pathsep``-separated) reads more files with the same schema
after the shipped one: an entry with a new name is added (all required fields), an entry with a known
name replaces the fields it gives (e.g. only ``urls``).  The schema is in ``docs/pretrained.md``.

This module only reads data; checking that a preset exists is left to the caller (``weights/`` never
imports ``model/``).
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import UserError

ENV_REGISTRY = "UNIFORMERV2_REGISTRY"
VIDEO_LAYOUTS = ("official", "mmaction2", "uniformerv2", "keras", "keras_savedmodel")  # whole UniFormerV2 models
IMAGE_LAYOUTS = ("clip", "clip_visual")  # image towers that arm a backbone
LAYOUTS = VIDEO_LAYOUTS + IMAGE_LAYOUTS
ORIGINS = ("official", "ported", "mmaction2", "openai", "user")

_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_VIEWS = re.compile(r"^\d+x\d+$")
_TOP_KEYS = {"format", "version", "comment", "entries"}


@dataclass(frozen=True)
class Entry:
    """One downloadable weights file (see docs/pretrained.md for every field)."""

    name: str
    file: str
    urls: tuple[str, ...]
    sha256: str  # full digest, or the published prefix (>= 8 hex digits); "" = none published (JSON null)
    layout: str
    size: int | None = None  # bytes; None = not published
    preset: str | None = None  # video layouts: the preset (architecture + recipe) the file belongs to
    arch: str | None = None
    labels: str | tuple[str, ...] | None = None  # head row order: a shipped label list name or the names
    dataset: str = ""
    pretraining: str = ""
    origin: str = "user"
    top1: float | None = None
    views: str | None = None  # test views as "clips x crops", e.g. "4x3"
    accuracy_source: str = ""
    license: str = ""
    notes: str = ""
    default: bool = False
    source: str = field(default="", compare=False)  # the registry file the entry (last) came from

    @property
    def prefix(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def is_video_model(self) -> bool:
        return self.layout in VIDEO_LAYOUTS

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64

    @property
    def verified_source(self) -> bool:
        """Whether a digest is published: without one, a download cannot be checked against its source."""
        return bool(self.sha256)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        d["urls"] = list(self.urls)
        d["sha256"] = self.sha256 or None
        if isinstance(self.labels, tuple):
            d["labels"] = list(self.labels)
        return d


_FIELDS = {f.name for f in fields(Entry)} - {"source"}
_REQUIRED = ("name", "file", "urls", "sha256", "layout")


def _check(raw: dict, where: str, source: str) -> Entry:
    def bad(msg):
        raise UserError(f"{where}: {msg}")

    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        bad(f"missing {', '.join(missing)}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        bad(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    d = dict(raw)
    if not isinstance(d["name"], str) or not _NAME.match(d["name"]):
        bad(f"name {d['name']!r} is not of the form PREFIX.TAG (letters, digits, '_' and '-')")
    if not isinstance(d["file"], str) or not d["file"] or "/" in d["file"] or d["file"].startswith("."):
        bad(f"file {d['file']!r} must be a plain file name")
    urls = d["urls"]
    if isinstance(urls, str) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        bad("urls must be a non-empty list of URLs")
    d["urls"] = tuple(urls)
    if d["sha256"] is None:  # no digest published: the first download records and prints its own
        d["sha256"] = ""
    elif not isinstance(d["sha256"], str) or not _HEX.match(d["sha256"].lower()):
        bad(f"sha256 {d['sha256']!r} must be 8 to 64 hex digits, or null when none is published")
    d["sha256"] = d["sha256"].lower()
    if d["layout"] not in LAYOUTS:
        bad(f"layout {d['layout']!r} is not one of {', '.join(LAYOUTS)}")
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        bad(f"size must be a positive number of bytes or null, got {size!r}")
    if d["layout"] in VIDEO_LAYOUTS:
        if not isinstance(d.get("preset"), str):
            bad(f"layout {d['layout']} needs a preset")
        labels = d.get("labels")
        if isinstance(labels, list) and labels and all(isinstance(c, str) for c in labels):
            d["labels"] = tuple(labels)
        elif not isinstance(labels, str):
            bad("labels must be a shipped label list name or a list of class names")
    elif not isinstance(d.get("arch"), str):
        bad(f"layout {d['layout']} needs an arch")
    if d.get("origin", "user") not in ORIGINS:
        bad(f"origin {d['origin']!r} is not one of {', '.join(ORIGINS)}")
    if d.get("views") is not None and not (isinstance(d["views"], str) and _VIEWS.match(d["views"])):
        bad(f"views {d['views']!r} must be 'CLIPSxCROPS', e.g. '4x3'")
    if d.get("top1") is not None and not isinstance(d["top1"], (int, float)):
        bad(f"top1 must be a number or null, got {d['top1']!r}")
    for k in ("dataset", "pretraining", "accuracy_source", "license", "notes"):
        if not isinstance(d.get(k, ""), str):
            bad(f"{k} must be a string")
    return Entry(**d, source=source)


def _read(text: str, where: str) -> list[dict]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"registry {where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise UserError(f"registry {where} must be an object with an \"entries\" list")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise UserError(f"registry {where}: unknown top-level key(s) {', '.join(unknown)}")
    for i, e in enumerate(doc["entries"]):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise UserError(f"registry {where}: entry {i} is not an object with a name")
    return doc["entries"]


def _shipped_text() -> str:
    return resources.files(__package__).joinpath("registry.json").read_text(encoding="utf-8")


def extra_registry_files() -> list[Path]:
    return [Path(p) for p in os.environ.get(ENV_REGISTRY, "").split(os.pathsep) if p.strip()]


def load_registry() -> dict[str, Entry]:
    """Every entry by name, in order: the shipped ones, then those added by ``$UNIFORMERV2_REGISTRY`` files."""
    extra = tuple(extra_registry_files())
    stamps = tuple((str(p), p.stat().st_mtime_ns if p.is_file() else None) for p in extra)
    return dict(_load(stamps))


@lru_cache(maxsize=8)
def _load(stamps: tuple) -> tuple[tuple[str, Entry], ...]:
    raw: dict[str, dict] = {}
    origin: dict[str, str] = {}
    sources = [("registry.json (shipped)", _shipped_text())]
    for path, mtime in stamps:
        if mtime is None:
            raise UserError(f"{ENV_REGISTRY} names {path}, which is not a file")
        sources.append((path, Path(path).read_text(encoding="utf-8")))
    for where, text in sources:
        for e in _read(text, where):
            name = e["name"]
            raw[name] = {**raw.get(name, {}), **e}
            origin[name] = where
    entries = {n: _check(e, f"registry {origin[n]}: entry {n}", origin[n]) for n, e in raw.items()}
    by_file: dict[str, Entry] = {}
    for e in entries.values():
        other = by_file.setdefault(e.file, e)
        if other is not e and not (other.sha256.startswith(e.sha256) or e.sha256.startswith(other.sha256)):
            raise UserError(f"registry: {other.name} and {e.name} both use the file name {e.file} "
                            "with different digests")
    return tuple(entries.items())


def list_entries(pattern: str | None = None) -> list[Entry]:
    """Entries whose name matches the glob ``pattern`` (all when None), in registry order."""
    return [e for n, e in load_registry().items() if pattern is None or fnmatch.fnmatch(n, pattern)]


def default_entry(prefix: str) -> Entry | None:
    group = [e for e in load_registry().values() if e.prefix == prefix]
    marked = [e for e in group if e.default]
    if marked:
        return marked[-1]
    return group[0] if group else None


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registry name (``PREFIX.TAG``) or a prefix with a default entry."""
    reg = load_registry()
    return name in reg or default_entry(name) is not None


def get_entry(name: str) -> Entry:
    """The entry called ``name``, or the default entry of the prefix ``name``."""
    reg = load_registry()
    if name in reg:
        return reg[name]
    entry = default_entry(name)
    if entry is not None:
        return entry
    close = close_names(name)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `uniformerv2 models --pretrained`"
    raise UserError(f"no pretrained weights called {name!r}{hint}")


def close_names(name: str, n: int = 3) -> list[str]:
    """Registered names (and bare prefixes) that look like ``name``, closest first (for "did you mean")."""
    reg = load_registry()
    candidates = list(reg) + sorted({e.prefix for e in reg.values()})
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)


def entries_for(preset: str) -> list[Entry]:
    """The entries of a preset (video models), default first."""
    group = [e for e in load_registry().values() if e.preset == preset]
    first = default_entry(preset)
    return sorted(group, key=lambda e: e is not first)


def image_entry(arch: str, tag: str | None = None) -> Entry:
    """The image tower (``clip`` / ``clip_visual`` layout) that arms backbone ``arch``: the default of
    ``clip_<size>`` (OpenAI's file), or the one with ``tag`` (e.g. ``mmaction2``)."""
    group = [e for e in load_registry().values() if e.layout in IMAGE_LAYOUTS and e.arch == arch]
    if tag is not None:
        group = [e for e in group if e.tag == tag]
    if not group:
        raise UserError(f"no pretrained image weights for {arch}" + (f" with tag {tag!r}" if tag else ""))
    marked = [e for e in group if e.default]
    return marked[-1] if marked else group[0]
