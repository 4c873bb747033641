"""The engine's view of the data pipeline: datasets from the config's list files, and the loaders.

Any dataset works with the engine if ``ds[i]`` returns ``{"video": (3,T,H,W) or (V,3,T,H,W) float,
"label": int, "index": i}`` (or a failure marker the collate function drops) and, for training,
``set_epoch(e)`` keys its randomness on (seed, epoch, index). The loaders never touch the global RNG, so
creating one does not change the model's dropout stream (needed for exact resume).

``data.augment_on``: ``cpu`` (the workers run the whole training transform and ship normalised float clips) or
``device`` (the workers ship the decoded uint8 clips, ``make_augment`` runs RandAugment, the crop, the flip,
normalisation and repeated augmentation batched on the training device). Mixup (``data.mixup``) runs on the
device either way. ``make_augment`` gives the loop its one call: ``video, labels = augment(batch, epoch)``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..errors import UserError
from .distributed import DistInfo, ShardSampler, TrainSampler


def _list_path(root: str, name: str) -> str:
    p = Path(name)
    if p.is_file() or p.is_absolute():
        return str(p)
    return str(Path(root) / name)


def build_datasets(cfg: dict, data_config, splits=("train", "val"), labels=None,
                   num_classes: int | None = None, cache=None) -> dict:
    """{"train": clips with training augmentation, "val": one centre view, "test": all test views}.

    ``data_config`` is the model's ``DataConfig`` (frames, crop, mean/std, sampling, flip, RandAugment,
    repeated augmentation, BGR, test views), ``data.pipeline`` already applied; ``labels`` resolve class
    names in lists; ``cache``: a ``data.ClipCache`` the datasets keep decoded videos in (small datasets only).
    """
    from .. import data as D

    d, dc, out = cfg["data"], data_config, {}
    common = dict(num_frames=dc.num_frames, sampling=dc.sampling, stride=dc.stride, backend=d["backend"],
                  timeout=d["timeout"], frame_template=d["frame_template"],
                  frame_start_index=d["frame_start_index"], bgr=dc.bgr, cache=cache)
    norm = dict(crop_size=dc.crop_size, short_side=dc.test_short_side, mean=dc.mean, std=dc.std)
    for split in splits:
        if not d.get(split):
            if split == "train":
                raise UserError("data.train is not set (a list file of 'path,label' lines)")
            continue
        path = _list_path(d["root"], d[split])
        if not Path(path).is_file():
            raise UserError(f"data.{split}: list file {path} not found")
        items = D.read_video_list(path, sep=d["separator"], root=d["root"], labels=labels, num_classes=num_classes)
        if split == "train" and d["augment_on"] == "device":  # decode and sample only: TrainAugment does the rest
            out[split] = D.VideoListDataset(items, split="train", raw=True, seed=cfg["seed"], **common)
        elif split == "train":
            tf = D.build_transform("train", flip=dc.flip, rand_augment=dc.rand_augment, scale=tuple(dc.crop_scale),
                                   **norm)
            out[split] = D.VideoListDataset(items, split="train", transform=tf, seed=cfg["seed"],
                                            repeats=dc.repeated_aug, **common)
        elif split == "val":  # official validation: one clip at the segment midpoints, centre crop
            tf = D.build_transform("val", num_crops=1, **norm)
            out[split] = D.VideoListDataset(items, split="val", transform=tf, seed=cfg["seed"], **common)
        else:
            clips = cfg["eval"].get("test_clips") or dc.test_clips
            crops = cfg["eval"].get("test_crops") or dc.test_crops
            tf = D.build_transform("test", num_crops=crops, **norm)
            out[split] = D.MultiViewDataset(items, transform=tf, num_clips=clips, num_crops=crops, **common)
    return out


def collate_fn(dataset, augment_on: str = "cpu"):
    """The dataset's own collate, else the data package's (drops undecodable videos into "skipped"); for
    ``augment_on="device"``, ``collate_clips`` (decoded clips of any size on one uint8 canvas)."""
    fn = getattr(dataset, "collate", None)
    if fn is not None:
        return fn
    from .. import data as D

    return D.collate_clips if augment_on == "device" else D.collate


def make_augment(cfg: dict, data_config, dataset, device: torch.device, num_classes: int):
    """The loop's augmentation call ``augment(batch, epoch) -> (video, labels)`` on ``device``:
    ``TrainAugment`` for ``data.augment_on=device`` (the dataset must ship decoded clips: ``raw=True``), else
    ``ToDevice``; both apply ``data.mixup`` when set."""
    from ..data.device_augment import ToDevice, TrainAugment
    from ..data.mixup import Mixup

    d = cfg["data"]
    mixup = Mixup(num_classes, **d["mixup"]) if d["mixup"] is not None else None
    if d["augment_on"] == "device":
        if not getattr(dataset, "raw", False):
            raise UserError("data.augment_on=device needs a training dataset that returns decoded clips "
                            "(VideoListDataset(raw=True), what data.train builds)")
        return TrainAugment.from_data_config(data_config, seed=cfg["seed"], device=device, mixup=mixup)
    return ToDevice(device, mixup=mixup, seed=cfg["seed"])


def make_train_loader(dataset, cfg: dict, info: DistInfo):
    tc = cfg["train"]
    sampler = TrainSampler(len(dataset), tc["batch_size"], tc["accum_steps"], info.rank, info.world_size,
                           cfg["seed"])
    if sampler.batches_per_epoch < 1:
        raise UserError(f"{len(dataset)} training videos make no full global batch of {tc['batch_size']}")
    workers = cfg["data"]["num_workers"]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=sampler.micro_batch, sampler=sampler, num_workers=workers, drop_last=False,
        collate_fn=collate_fn(dataset, cfg["data"]["augment_on"]), pin_memory=info.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg["seed"]),  # not the global RNG
        persistent_workers=False, prefetch_factor=4 if workers else None)
    return loader, sampler


def make_eval_loader(dataset, batch_size: int, num_workers: int = 0, rank: int = 0, world_size: int = 1):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=num_workers, collate_fn=collate_fn(dataset), generator=torch.Generator().manual_seed(0))


def item_names(dataset, indices: list[int]) -> list[str | None]:
    """The video path of each item index, when the dataset can tell."""
    for attr in ("paths", "videos", "items", "samples", "entries"):
        seq = getattr(dataset, attr, None)
        if seq is not None:
            try:
                return [_name(seq[i]) for i in indices]
            except (IndexError, TypeError, KeyError):
                break
    return [None] * len(indices)


def _name(entry) -> str | None:
    if isinstance(entry, (str, Path)):
        return str(entry)
    for attr in ("path", "video"):
        v = getattr(entry, attr, None) if not isinstance(entry, dict) else entry.get(attr)
        if v is not None:
            return str(v)
    if isinstance(entry, (tuple, list)) and entry:
        return str(entry[0])
    return None


LABEL_FILES = ("labels.txt", "classes.txt")   # the class names of a list's label indices, beside the list


def labelled_items(list_path, *, root: str = "", sep: str | None = None, model_labels: list[str] | None = None,
                   list_labels=None) -> tuple[list, str]:
    """The videos of a labelled list, each label an index into the model's classes, and how labels were read.

    A list's labels are class names or class indices. Names are matched to the model's class names. Indices
    are indices into the list's own class names: ``list_labels`` (a labels file or a list of names), else
    ``labels.txt`` / ``classes.txt`` beside the list; they are mapped to the model's classes by name (a list
    written in another class order than the model's is read right). Indices with no names to map are refused
    unless the model has no class names or ``list_labels="model"`` (the user says they are in the model's
    order): a silent remap would report wrong classes."""
    from ..data.lists import label_kinds, read_labels, read_video_list
    from ..labels import canonical_name

    named_model = bool(model_labels) and not all(n == f"class {i}" for i, n in enumerate(model_labels))
    n_model = len(model_labels) if model_labels else None
    kinds = label_kinds(list_path, sep=sep)
    if "index" not in kinds or list_labels == "model" or not named_model:
        how = ("class names" if "index" not in kinds else
               "class indices in the model's order" if list_labels == "model" else
               "class indices (the model names no classes)")
        names = model_labels if named_model else None
        return read_video_list(list_path, sep=sep, root=root, labels=names, num_classes=n_model), how
    source = list_labels
    if source is None:
        source = next((Path(list_path).parent / f for f in LABEL_FILES if (Path(list_path).parent / f).is_file()),
                      None)
    if source is None:
        raise UserError(f"{list_path}: the labels are class indices, and no class names say which classes they "
                        f"are ({' / '.join(LABEL_FILES)} beside the list); give the list's labels file "
                        "(--labels FILE), or --labels model if the indices are in the model's class order")
    names = read_labels(source)
    index = {canonical_name(n): i for i, n in enumerate(model_labels)}
    unknown = [n for n in names if canonical_name(n) not in index]
    items = read_video_list(list_path, sep=sep, root=root, labels=names, num_classes=len(names))
    used = sorted({names[it.label] for it in items} & set(unknown))
    if used:
        raise UserError(f"{list_path}: classes {', '.join(repr(u) for u in used[:5])} of {source} are not among the "
                        f"model's {len(model_labels)} classes")
    mapped = [dataclasses.replace(it, label=index[canonical_name(names[it.label])]) for it in items]
    return mapped, f"class indices named by {source}, mapped to the model's classes by name"
