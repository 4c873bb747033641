"""Putting weights into a model: arming the backbone from an image ViT, and loading whole UniFormerV2
checkpoints (ours, official or MMAction2) with class-name head mapping."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from ..errors import CheckpointError
from .format import is_model_dir, read_config, read_weights
from ..labels import canonical_name, load_labels
from .io import load_file, load_state_dict, refuse_foreign, unwrap_state_dict
from .keras import is_hdf5, load_keras_h5
from .savedmodel import is_savedmodel_zip, load_savedmodel_zip
from .mmaction2 import looks_mmaction2, mmaction2_to_official, split_mmaction2
from .official import is_official, official_to_ours
from .vit import inflate_patch_embed, resize_pos_embed, to_clip_visual

HEAD_KEYS = ("head.fc.weight", "head.fc.bias")

# Head row orders of the official checkpoints, by class count.
_STANDARD_HEADS = {400: "kinetics400_uniformerv2_order", 600: "kinetics600", 700: "kinetics700",
                   710: "kinetics710_uniformerv2_order", 174: "something_something_v2", 339: "moments_in_time",
                   200: "activitynet"}


class ImageWeightsError(CheckpointError):
    """Image-ViT weights (CLIP…) given where a whole UniFormerV2 model is expected: they arm a backbone
    (``pretrained=``) and need a preset to become a video model."""


@dataclass
class LoadReport:
    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # inflated / interpolated / head-mapped
    head: str = "kept"

    def summary(self) -> str:
        return (f"{self.source} [{self.format}]: {len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected, adapted: {', '.join(self.adapted) or 'none'}; head {self.head}")


def arm_backbone(model, path, verbose: bool = False) -> LoadReport:
    """Load image-ViT weights into the backbone; UniFormerV2's own modules keep their initialisation."""
    sd, fmt = to_clip_visual(load_state_dict(path))
    ours, unused = official_to_ours(sd)
    target = model.state_dict()
    report = LoadReport(str(path), fmt, unexpected=sorted(unused))
    new = {}
    for name, t in ours.items():
        if name not in target or not _is_backbone(name):
            report.unexpected.append(name)
            continue
        want = target[name].shape
        if name == "stem.weight" and t.dim() == 4:
            t = inflate_patch_embed(t, want[2])
            report.adapted.append(f"stem inflated to {want[2]}x{want[3]}x{want[4]}")
        if name == "pos_embed" and t.shape != want and t.shape[-1] == want[-1]:
            t = resize_pos_embed(t, want[0])
            report.adapted.append(f"pos_embed resized {ours[name].shape[0]}->{want[0]} (bicubic)")
        if t.shape != want:
            raise CheckpointError(f"{path}: {name} has shape {list(t.shape)} but the model needs {list(want)} "
                                  f"(is this the right arch? model is {model.cfg.arch})")
        new[name] = t
    if not new:
        raise CheckpointError(f"{path}: nothing of the backbone matched this model")
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    report.missing = sorted(k for k in target if _is_backbone(k) and k not in new and "lmhra" not in k)
    if report.missing:
        warnings.warn(f"{path}: backbone tensors not in the file, left random: {report.missing[:5]}")
    if verbose:
        print(report.summary())
    return report


def _is_backbone(name: str) -> bool:
    return name.split(".")[0] in ("stem", "cls_token", "pos_embed", "norm_pre", "blocks")


def read_checkpoint(path) -> tuple[dict, str, list[str] | None]:
    """(our state dict, format, class names of the head rows when known) from a model directory, our
    state-dict file, an official ``.pyth``, an MMAction2 ``.pth`` (format ``mmaction2``: the rows are in
    MMAction2's label order, or the order its ``meta`` names), the Keras port's ``.h5`` (format ``keras``) or its
    zipped SavedModel (format ``keras_savedmodel``)."""
    if is_model_dir(path):
        cfg = read_config(path)
        return read_weights(path), "uniformerv2", cfg.get("labels")
    if is_hdf5(path):
        ours, unknown = official_to_ours(load_keras_h5(path))
        assert not unknown, unknown  # the Keras reader writes official names only
        return ours, "keras", None
    if is_savedmodel_zip(path):
        ours, unknown = official_to_ours(load_savedmodel_zip(path))
        assert not unknown, unknown  # read by the Keras reader: official names only
        return ours, "keras_savedmodel", None
    obj = load_file(path, drop_foreign=True)  # foreign objects are inert markers, never imported
    if looks_mmaction2(obj):
        mm, meta = split_mmaction2(obj, path)
        official, labels = mmaction2_to_official(mm, meta)
        ours, unknown = official_to_ours(official)
        if unknown:
            raise CheckpointError(f"{path}: unknown tensors in an MMAction2 checkpoint: {unknown[:5]}")
        return ours, "mmaction2", load_labels(labels) if isinstance(labels, str) else labels
    refuse_foreign(obj, path)  # anything else is refused as a plain weights-only load would refuse it
    sd = unwrap_state_dict(obj, path)
    if is_official(sd):
        ours, unknown = official_to_ours(sd)
        if unknown:
            raise CheckpointError(f"{path}: unknown tensors in an official checkpoint: {unknown[:5]}")
        return ours, "official", None
    if "query" in sd and "stem.weight" in sd:
        return sd, "uniformerv2", None
    try:
        to_clip_visual(sd)
    except CheckpointError:
        raise CheckpointError(f"{path} is not a UniFormerV2 checkpoint") from None
    raise ImageWeightsError(f"{path} is an image-ViT checkpoint, not a UniFormerV2 one: pass it as pretrained=")


def load_checkpoint(model, path, head: str = "auto", checkpoint_labels=None, verbose: bool = False) -> LoadReport:
    sd, fmt, file_labels = read_checkpoint(path)
    report = LoadReport(str(path), fmt)
    target = model.state_dict()
    body = {k: v for k, v in sd.items() if k not in HEAD_KEYS}
    unexpected = sorted(set(body) - set(target))
    missing = sorted(k for k in target if k not in sd and k not in HEAD_KEYS)
    wrong = [f"{k} {list(v.shape)} vs {list(target[k].shape)}" for k, v in body.items()
             if k in target and v.shape != target[k].shape]
    if unexpected or missing or wrong:
        hint = _arch_hint(unexpected, missing)
        detail = "; ".join(filter(None, [f"shape {wrong[0]}" if wrong else "",
                                         f"unexpected {unexpected[0]}" if unexpected else "",
                                         f"missing {missing[0]}" if missing else ""]))
        raise CheckpointError(f"{path} is a checkpoint of another architecture ({detail}){hint}")
    body.update(_adapt_head(model, sd, head, checkpoint_labels or file_labels, report))
    missing, _ = model.load_state_dict(body, strict=False)
    assert set(missing) <= set(HEAD_KEYS) and (report.head == "reset" or not missing)
    report.loaded = sorted(body)
    if verbose:
        print(report.summary())
    return report


def _arch_hint(unexpected, missing) -> str:
    if any("lmhra" in k for k in unexpected):
        return ": it has local MHRA (a Something-Something recipe); use local_mhra='double' / an ssv2 preset"
    if any("lmhra" in k for k in missing):
        return ": it has no local MHRA (a Kinetics recipe); use local_mhra='none' / a k400 preset"
    if any(k.startswith(("dpe.", "global_blocks.")) for k in unexpected + missing):
        return ": the number of global blocks differs (global_layers)"
    if "balance" in unexpected or "balance" in missing:
        return ": frozen_backbone differs"
    return ""


def _adapt_head(model, sd, head, src_labels, report) -> dict:
    """Head tensors to load: kept, mapped by class name, or re-initialised (returned empty)."""
    w, b = sd.get("head.fc.weight"), sd.get("head.fc.bias")
    n_model = model.cfg.num_classes
    if head == "reset" or w is None:
        _reset_head(model)
        report.head = "reset"
        return {}
    if w.shape[1] != model.cfg.embed_dim:
        raise CheckpointError(f"head width {w.shape[1]} does not match embed_dim {model.cfg.embed_dim}")
    model_labels = getattr(model, "labels", None)
    rows = None
    if w.shape[0] == n_model and head == "auto" and src_labels is not None and model_labels is not None \
            and list(src_labels) != list(model_labels):  # same classes in another order: map by name
        rows = _map_rows(src_labels, w.shape[0], model_labels)
    if w.shape[0] == n_model and head in ("auto", "keep") and rows is None:
        report.head = "kept"
        return {"head.fc.weight": w, "head.fc.bias": b}
    if head == "keep":
        raise CheckpointError(f"head has {w.shape[0]} classes, model has {n_model}: use head='auto' or 'reset'")
    if rows is None:
        rows = _map_rows(src_labels, w.shape[0], model_labels)
    if rows is None:
        warnings.warn(f"checkpoint head has {w.shape[0]} classes, model has {n_model}, and no class-name "
                      "mapping is known: the head is re-initialised")
        _reset_head(model)
        report.head = "reset"
        return {}
    idx = torch.tensor(rows)
    report.head = f"mapped {w.shape[0]}->{n_model} rows by class name"
    report.adapted.append(report.head)
    return {"head.fc.weight": w[idx].clone(), "head.fc.bias": b[idx].clone()}


def _map_rows(src_labels, n_src, dst_labels) -> list[int] | None:
    if dst_labels is None:
        return None
    if src_labels is None and n_src in _STANDARD_HEADS:
        src_labels = load_labels(_STANDARD_HEADS[n_src])
    if src_labels is None or len(src_labels) != n_src:
        return None
    where = {canonical_name(c): i for i, c in enumerate(src_labels)}
    rows = [where.get(canonical_name(c)) for c in dst_labels]
    return None if any(r is None for r in rows) else rows


def _reset_head(model):
    model.head.fc.reset_parameters()
