"""Class-name lists shipped with the package (one name per line, line number = class index).

``load_labels(name_or_path)`` takes a shipped list's name (``kinetics400``, ``kinetics400_uniformerv2_order``,
``kinetics600``, ``kinetics700``, ``kinetics710``, ``kinetics710_uniformerv2_order``, ``something_something_v1``,
``something_something_v2``, ``moments_in_time``, ``activitynet``) or a path to a text file.

``kinetics710_uniformerv2_order`` is the order of the official UniFormerV2 K710 heads: rows 0–399 are the
Kinetics-400 classes in the official UniFormerV2 K400 order, rows 400–709 the remaining K710 classes in the
order of the MMAction2 K710 list (the only published order for them).  K710/K600/K700 spell 13 Kinetics-400
classes differently ("balloon blowing" is "inflating balloons"); ``canonical_name`` maps the K400 spelling to
the later one so that heads can be matched by class name across datasets.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import UserError


def _read(path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


@lru_cache(maxsize=None)
def _shipped(name: str) -> tuple[str, ...]:
    if name == "kinetics710_uniformerv2_order":
        k710 = _shipped("kinetics710")  # rows 0-399: Kinetics-400 in alphabetical order, later spellings
        aliases = _k400_aliases()
        return tuple(aliases.get(c, c) for c in _shipped("kinetics400_uniformerv2_order")) + k710[400:]
    ref = resources.files(__name__).joinpath(f"{name}.txt")
    if not ref.is_file():
        raise UserError(f"unknown label list {name!r}; shipped: {', '.join(list_label_sets())}")
    with resources.as_file(ref) as p:
        return tuple(_read(p))


@lru_cache(maxsize=None)
def _k400_aliases() -> dict[str, str]:
    old, new = _shipped("kinetics400"), _shipped("kinetics710")[:400]
    return {o: n for o, n in zip(old, new) if o != n}


# Kinetics spellings that differ between the K600/K700 lists and the K710 list.
_EXTRA_ALIASES = {"throwing ball (not baseball or american football)": "throwing ball"}


def canonical_name(name: str) -> str:
    """A class name for matching across Kinetics lists: Kinetics-400 spellings replaced by the K710 ones,
    lower-cased (K600 writes "passing american football", K710 "passing American football")."""
    name = _k400_aliases().get(name, name).lower()
    return _EXTRA_ALIASES.get(name, name)


def list_label_sets() -> list[str]:
    names = [p.name[:-4] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt")]
    return sorted(names + ["kinetics710_uniformerv2_order"])


def load_labels(name_or_path: str | Path) -> list[str]:
    """A shipped label list by name, or a labels file (one class per line)."""
    p = Path(name_or_path)
    if p.suffix == ".txt" or p.exists() or "/" in str(name_or_path):
        if not p.is_file():
            raise UserError(f"labels file not found: {p}")
        return _read(p)
    return list(_shipped(str(name_or_path)))


@lru_cache(maxsize=None)
def kinetics710_map(version: int) -> tuple[int, ...]:
    """Entry i: the index in ``kinetics710`` of class i of ``kinetics{version}`` (400, 600 or 700), the
    Kinetics-710 channel map of the official K710 heads."""
    import json

    if version not in (400, 600, 700):
        raise UserError(f"no Kinetics-710 map for Kinetics-{version}; 400, 600 or 700")
    ref = resources.files(__name__).joinpath(f"kinetics710_map_k{version}.json")
    return tuple(int(i) for i in json.loads(ref.read_text(encoding="utf-8")))


def shipped_labels(name: str) -> list[str]:
    """A shipped label list by name only (never a file or folder of that name in the working directory)."""
    return list(_shipped(str(name)))
