"""MMAction2's UniFormerV2 checkpoints ↔ the official layout.

MMAction2 (``mmaction/models/backbones/uniformerv2.py`` + ``UniFormerHead`` in a ``Recognizer3D``) saves
``{"meta": {...}, "state_dict": {...}}``.  Its backbone keys are the official ones, except that the
official head ``backbone.transformer.proj = Sequential(LayerNorm, Dropout, Linear)`` is split:

    backbone.transformer.proj.0.{weight,bias}  <->  backbone.transformer.norm.{weight,bias}
    backbone.transformer.proj.2.{weight,bias}  <->  cls_head.fc_cls.{weight,bias}

and the head rows follow MMAction2's label maps (``tools/data/kinetics/label_map_k{400,600,700}.txt``,
``tools/data/kinetics710/label_map_k710.txt``, ``tools/data/mit/label_map.txt``), which are the shipped
lists ``kinetics400`` (alphabetical), ``kinetics600``, ``kinetics700``, ``kinetics710`` and
``moments_in_time``.  MMAction2's model always blends the video query with the frame class tokens
(``balance``), so a frozen-backbone model (no ``balance``) has no MMAction2 form.

Reading is safe: the file goes through ``weights_only`` unpickling; objects that would need importing
code (e.g. a config class in ``meta``) are never imported — they are dropped with a warning outside the
weights and refused among them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError, UserError
from .io import Foreign, load_file
from .official import _official_order, strip_backbone_prefix

# Head row order of MMAction2's checkpoints, by class count (shipped label list names).
MMACTION2_HEAD_LABELS = {400: "kinetics400", 600: "kinetics600", 700: "kinetics700", 710: "kinetics710",
                         339: "moments_in_time"}

_OFFICIAL_TO_MM = {
    "backbone.transformer.proj.0.weight": "backbone.transformer.norm.weight",
    "backbone.transformer.proj.0.bias": "backbone.transformer.norm.bias",
    "backbone.transformer.proj.2.weight": "cls_head.fc_cls.weight",
    "backbone.transformer.proj.2.bias": "cls_head.fc_cls.bias",
}
_MM_TO_OFFICIAL = {v: k for k, v in _OFFICIAL_TO_MM.items()}
_IGNORED = ("data_preprocessor.mean", "data_preprocessor.std")  # normalisation constants, not weights


def is_mmaction2(sd: dict) -> bool:
    """Whether a flat state dict is an MMAction2 UniFormerV2 recognizer (or its backbone)."""
    return "backbone.transformer.temporal_cls_token" in sd and (
        "cls_head.fc_cls.weight" in sd or "backbone.transformer.norm.weight" in sd)


# ----------------------------------------------------------------------------- reading
def _prune(obj, path: str, dropped: list[str]):
    """``obj`` without :class:`Foreign` objects (their paths go to ``dropped``)."""
    if isinstance(obj, dict):
        items = [(f"{path}.{k}", k, v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"{path}[{i}]", i, v) for i, v in enumerate(obj)]
    else:
        return obj
    kept = []
    for where, k, v in items:
        if isinstance(v, Foreign):
            dropped.append(f"{where} ({v.name})")
        else:
            kept.append((k, _prune(v, where, dropped)))
    if isinstance(obj, dict):
        return dict(kept)
    return (list if isinstance(obj, list) else tuple)(v for _, v in kept)


def read_mmaction2(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) of an MMAction2 checkpoint file, read without importing anything."""
    return split_mmaction2(load_file(path, drop_foreign=True), path)


def looks_mmaction2(obj: dict) -> bool:
    """Whether a file's top-level object (read with ``drop_foreign=True``) is an MMAction2 UniFormerV2
    checkpoint: ``{"meta", "state_dict"}`` or a bare state dict with MMAction2's names."""
    sd = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj
    return is_mmaction2({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)})


def split_mmaction2(obj: dict, path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) of a loaded MMAction2 checkpoint: foreign objects among the weights are refused,
    elsewhere dropped with a warning (see the module docstring)."""
    sd = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj
    foreign = [f"{k} ({v.name})" for k, v in sd.items() if isinstance(v, Foreign)]
    if foreign:
        raise CheckpointError(f"refusing {path}: its weights hold objects that would need importing code: "
                              f"{', '.join(foreign[:3])}")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not is_mmaction2(tensors):
        raise CheckpointError(f"{path} is not an MMAction2 UniFormerV2 checkpoint "
                              "(no backbone.transformer.temporal_cls_token with cls_head.fc_cls / transformer.norm)")
    dropped: list[str] = []
    meta = obj.get("meta") if sd is not obj else None
    meta = _prune(meta, "meta", dropped) if isinstance(meta, dict) else {}
    for k, v in obj.items():  # optimizer states and the like are not used; only say what was not imported
        if k not in ("meta", "state_dict") and sd is not obj:
            _prune(v, k, dropped)
    if dropped:
        warnings.warn(f"{path}: dropped {len(dropped)} object(s) that would need importing code: "
                      f"{', '.join(dropped[:5])}{' ...' if len(dropped) > 5 else ''}", stacklevel=3)
    return tensors, meta


def head_labels(sd: dict, meta: dict | None = None) -> str | list[str] | None:
    """Class names of an MMAction2 head's rows: ``meta["dataset_meta"]["classes"]`` when the file names
    them, else MMAction2's label map for that class count (a shipped list name), else None."""
    w = sd.get("cls_head.fc_cls.weight")
    if w is None:
        return None
    n = w.shape[0]
    classes = ((meta or {}).get("dataset_meta") or {}).get("classes")
    if isinstance(classes, (list, tuple)) and len(classes) == n and all(isinstance(c, str) for c in classes):
        return list(classes)
    return MMACTION2_HEAD_LABELS.get(n)


def mmaction2_to_official(sd: dict, meta: dict | None = None) -> tuple[dict, str | list[str] | None]:
    """MMAction2 state dict -> (official-layout state dict, class names of its head rows).

    The rows are left in MMAction2's order; the second value names that order (a shipped label list
    name, the list from ``meta``, or None when unknown) so the caller can map rows by class name."""
    if not is_mmaction2(sd):
        raise CheckpointError("not an MMAction2 UniFormerV2 state dict")
    out, unknown = {}, []
    for k, v in sd.items():
        if k in _IGNORED:
            continue
        if k in _MM_TO_OFFICIAL:
            out[_MM_TO_OFFICIAL[k]] = v
        elif k.startswith("backbone."):
            out[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f"unknown tensors in an MMAction2 checkpoint: {', '.join(unknown[:5])}")
    out = dict(sorted(out.items(), key=lambda kv: _official_order(kv[0][len("backbone."):])))
    return out, head_labels(sd, meta)


# ----------------------------------------------------------------------------- writing
def official_to_mmaction2(sd: dict, labels: list[str] | None = None) -> tuple[dict, list[str] | None]:
    """Official-layout state dict (+ the class names of its head rows) -> (MMAction2 state dict, row names).

    Heads of a standard dataset (the rows are a permutation of MMAction2's label map, by class name)
    are re-ordered into MMAction2's order; any other head keeps its rows and names."""
    sd = {f"backbone.{k}": v for k, v in strip_backbone_prefix(sd).items()}
    if "backbone.transformer.temporal_cls_token" not in sd:
        raise UserError("not an official-layout UniFormerV2 state dict (no transformer.temporal_cls_token)")
    if "backbone.transformer.balance" not in sd:
        raise UserError("a frozen-backbone model (no `balance`: the video query alone feeds the head) has no "
                        "MMAction2 form; MMAction2's UniFormerV2 always blends the query with the frame tokens")
    out = {_OFFICIAL_TO_MM.get(k, k): v for k, v in sd.items()}
    out = dict(sorted(out.items(), key=lambda kv: kv[0].startswith("cls_head.")))  # backbone first, as MMAction2
    w, b = out.get("cls_head.fc_cls.weight"), out.get("cls_head.fc_cls.bias")
    if w is None or labels is None:
        return out, (list(labels) if labels is not None else None)
    if len(labels) != w.shape[0]:
        raise UserError(f"{len(labels)} class names for a head of {w.shape[0]} rows")
    rows = _mmaction2_rows(labels)
    if rows is None:
        return out, list(labels)
    idx = torch.tensor(rows[0])
    out["cls_head.fc_cls.weight"], out["cls_head.fc_cls.bias"] = w[idx].clone(), b[idx].clone()
    return out, rows[1]


def _mmaction2_rows(labels: list[str]) -> tuple[list[int], list[str]] | None:
    """(row of each MMAction2 class in ``labels``, MMAction2's names) when ``labels`` is a permutation of
    MMAction2's label map of that size (compared by canonical class name), else None."""
    from ..labels import canonical_name, load_labels

    name = MMACTION2_HEAD_LABELS.get(len(labels))
    if name is None:
        return None
    target = load_labels(name)
    where = {canonical_name(c): i for i, c in enumerate(labels)}
    if len(where) != len(labels):
        return None
    rows = [where.get(canonical_name(c)) for c in target]
    if any(r is None for r in rows):
        return None
    return rows, target


def mmaction2_label_map(labels) -> str | None:
    """The MMAction2 label map (a shipped list name) whose classes ``labels`` are, in any order (compared by
    canonical class name), or None: the order such a head is written in."""
    if labels is None or _mmaction2_rows(list(labels)) is None:
        return None
    return MMACTION2_HEAD_LABELS[len(labels)]


def mmaction2_checkpoint(sd: dict, labels: list[str] | None = None) -> dict:
    """``{"meta", "state_dict"}`` as MMAction2 saves it (the class names, if any, in ``dataset_meta``)."""
    meta = {"dataset_meta": {"classes": list(labels)}} if labels is not None else {}
    return {"meta": meta, "state_dict": {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}}


def save_mmaction2(path: str | Path, official_sd: dict, labels: list[str] | None = None) -> Path:
    """Write an official-layout state dict as an MMAction2 checkpoint (atomically); returns the path."""
    from ..fileio import atomic_write

    sd, row_labels = official_to_mmaction2(official_sd, labels)
    ckpt = mmaction2_checkpoint(sd, row_labels)
    return atomic_write(Path(path), lambda p: torch.save(ckpt, p))
