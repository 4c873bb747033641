"""Evaluation: ``evaluate(model, loader_or_dataset, ...) -> dict``, sharded over ranks under torchrun, and
``evaluate_run``: the same, recorded per video in an output folder so that a killed run can be resumed.

Items are single clips ``(3, T, H, W)`` or multi-view stacks ``(V, 3, T, H, W)`` (clips x crops); each
video's views are aggregated into one score vector (summed softmax, the official rule, or mean logits).
With a dataset, rank ``r`` of ``N`` evaluates items ``r, r+N, ...``; results are gathered by item index, so
each video is counted exactly once. Videos that cannot be decoded are listed in ``skipped`` and left out
of the metrics. Runs in fp32 by default, as the official test.

``fixed_batch=True`` pads every forward pass to ``batch_size`` items with zeros: at a fixed batch shape a
video's scores do not depend on the other videos of its batch, so they are the same bits for any number of
processes and after a resume (for the same threads per process).
"""
from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import torch

from . import distributed as dist
from .data import item_names, make_eval_loader
from .metrics import (aggregate_views, classification_metrics, group_by_video, plot_confusion,
                      write_per_class_csv, write_predictions_json)


@torch.no_grad()
def predict_scores(model, loader, aggregate: str = "softmax", device=None, amp_dtype=None,
                   progress: bool = False, desc: str = "eval", *, fixed_batch: bool = False, on_batch=None,
                   figures: dict | None = None):
    """Run ``model`` over ``loader``; returns (indices, scores (N, C), labels (N,), skipped) of this rank.

    fixed_batch: pad each forward pass to ``loader.batch_size`` items (see the module doc). on_batch(indices,
    scores, labels, failed): called after each batch, ``failed`` a list of (index or None, path, error).
    figures: filled with this rank's videos, failed, clips, seconds and the seconds spent waiting for data."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    indices, scores, labels, skipped = [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(loader), desc=desc, dynamic_ncols=True, leave=False)
    waited = clips = 0.0
    start = time.perf_counter()
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        skipped.extend(batch.get("skipped", []))
        video = batch["video"]
        got = ([], None, None)
        if video is not None and len(video):
            video = video.to(device, non_blocking=True)
            multi = video.dim() == 6
            b, v = video.shape[0], video.shape[1] if multi else 1
            flat = video.flatten(0, 1) if multi else video
            if fixed_batch and loader.batch_size and b < loader.batch_size:
                flat = torch.cat([flat, flat.new_zeros((loader.batch_size - b) * v, *flat.shape[1:])])
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(flat)[:b * v]
            s = aggregate_views(logits.float().view(b, v, -1), aggregate).cpu()
            y = torch.as_tensor(batch["label"]).long().cpu()
            idx = [int(i) for i in torch.as_tensor(batch["index"]).tolist()]
            scores.append(s)
            labels.append(y)
            indices.extend(idx)
            clips += b * v
            got = (idx, s, y)
        if on_batch is not None:
            failed = list(zip(batch.get("skipped_index", [None] * len(batch.get("skipped", []))),
                              batch.get("skipped", []), batch.get("errors", [""] * len(batch.get("skipped", [])))))
            on_batch(*got, failed)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    if figures is not None:
        figures.update(videos=len(indices), failed=len(skipped), clips=int(clips), waited=waited,
                       seconds=time.perf_counter() - start, workers=getattr(loader, "num_workers", 0))
    if scores:
        return indices, torch.cat(scores), torch.cat(labels), skipped
    c = model.cfg.num_classes if hasattr(model, "cfg") else 0
    return indices, torch.zeros(0, c), torch.zeros(0, dtype=torch.long), skipped


def evaluate(model, data, *, aggregate: str = "softmax", batch_size: int = 8, num_workers: int = 0,
             device=None, amp_dtype=None, labels: list[str] | None = None, out_dir=None,
             video_key: str | None = None, progress: bool = False, desc: str = "eval",
             fixed_batch: bool = False) -> dict:
    """Evaluate ``model`` on a dataset (sharded over ranks) or a DataLoader (used as given).

    Returns {"top1", "top5", "mean_class_accuracy" (percent), "count", "skipped" (list), "per_class",
    "confusion" (tensor), "predictions" (per video: index, name, label, pred, top5, score)} and, with
    ``video_key`` ("path" / "path_stem"), "video_level" metrics over entries grouped by source video.
    With ``out_dir`` (rank 0), writes metrics.json, per_class.csv, predictions.json, confusion.png.
    ``figures``: one dict per rank (videos, failed, clips, seconds, waited, workers).
    """
    if isinstance(data, torch.utils.data.DataLoader):
        loader, dataset = data, data.dataset
    else:
        dataset = data
        info = dist.DistInfo(*dist.rank_world())
        loader = make_eval_loader(dataset, batch_size, num_workers, info.rank, info.world_size)
    figures: dict = {}
    idx, scores, labs, skipped = predict_scores(model, loader, aggregate, device, amp_dtype, progress, desc,
                                                fixed_batch=fixed_batch, figures=figures)

    # gather every rank's share; keep one result per item index
    parts = dist.all_gather_objects((idx, scores, labs, skipped, figures))
    res = summarise(model, dataset, [p[:4] for p in parts], aggregate, labels, video_key)
    res["figures"] = [p[4] for p in parts]
    if out_dir is not None and dist.DistInfo(*dist.rank_world()).is_main:
        write_outputs(Path(out_dir), res, labels if labels is not None else getattr(model, "labels", None))
    return res


def summarise(model, dataset, parts, aggregate: str, labels=None, video_key: str | None = None) -> dict:
    """Metrics from each rank's (indices, scores, labels, skipped), one result per item index."""
    scores = torch.zeros(0, getattr(getattr(model, "cfg", None), "num_classes", 0))
    labs = torch.zeros(0, dtype=torch.long)
    seen: dict[int, int] = {}
    all_idx, all_scores, all_labels, all_skipped, duplicates = [], [], [], [], 0
    for p_idx, p_scores, p_labels, p_skipped in parts:
        all_skipped.extend(p_skipped)
        for j, i in enumerate(p_idx):
            if i in seen:
                duplicates += 1
                continue
            seen[i] = len(all_idx)
            all_idx.append(i)
            all_scores.append(p_scores[j])
            all_labels.append(p_labels[j])
    order = sorted(range(len(all_idx)), key=lambda k: all_idx[k])
    all_idx = [all_idx[k] for k in order]
    scores = torch.stack([all_scores[k] for k in order]) if order else scores[:0]
    labs = torch.stack([all_labels[k] for k in order]) if order else labs[:0]

    num_classes = scores.shape[1] if scores.numel() else getattr(getattr(model, "cfg", None), "num_classes", 0)
    res = classification_metrics(scores, labs, num_classes)
    res["skipped"] = sorted(set(map(str, all_skipped)))
    res["duplicates_dropped"] = duplicates
    res["aggregate"] = aggregate
    labels = labels if labels is not None else getattr(model, "labels", None)
    names = item_names(dataset, all_idx)
    top5 = scores.topk(min(5, scores.shape[1]), dim=1) if scores.numel() else None
    res["predictions"] = [
        {"index": i, "video": names[k], "label": int(labs[k]), "pred": int(top5.indices[k, 0]),
         "pred_name": labels[int(top5.indices[k, 0])] if labels else None,
         "top5": [int(c) for c in top5.indices[k]], "top5_scores": [round(float(s), 6) for s in top5.values[k]],
         "correct": bool(int(top5.indices[k, 0]) == int(labs[k]))}
        for k, i in enumerate(all_idx)]
    if video_key is not None:
        keys = [_video_key(n if n is not None else str(i), video_key) for n, i in zip(names, all_idx)]
        _, vscores, vlabels = group_by_video(keys, scores, labs)
        vres = classification_metrics(vscores, vlabels, num_classes)
        res["video_level"] = {k: vres[k] for k in ("count", "top1", "top5", "mean_class_accuracy")}
    return res


def evaluate_run(model, dataset, out_dir, *, aggregate: str = "softmax", batch_size: int = 8,
                 num_workers: int = 0, labels: list[str] | None = None, video_key: str | None = None,
                 resume: bool = False, retry_failed: bool = False, overwrite: bool = False,
                 signature: dict | None = None, progress: bool = False) -> dict | None:
    """``evaluate`` recorded per video in ``out_dir`` (``fileio.RunRecords``: each video's aggregated scores,
    or why it failed, as soon as its batch is through), so that a killed run continues with ``resume``
    (skipping what is recorded; failed videos again only with ``retry_failed``) and ends with the same files.
    Forward passes are padded to ``batch_size`` (``fixed_batch``). Rank ``r`` of ``N`` takes every ``N``-th
    video still to do; rank 0 waits for the others (through the folder, no collective time-out), then writes
    metrics.json, per_class.csv, predictions.json, confusion.png and manifest.jsonl (one line per video).
    Returns ``evaluate``'s dict on rank 0 (``figures``: every rank's), None on the others."""
    import json

    from ..fileio import RunRecords, atomic_write
    from .data import collate_fn

    rank, world = dist.rank_world()
    out = Path(out_dir)
    names = item_names(dataset, list(range(len(dataset))))
    sig = {"task": "eval", "aggregate": aggregate, "batch_size": batch_size, "items": len(dataset),
           "items_sha256": _digest(names), **(signature or {})}
    records = RunRecords(out, rank, world, dist.barrier)
    earlier = records.open(sig, resume=resume, overwrite=overwrite)
    skip = {i for i, r in earlier.items() if r["status"] == "done" or not retry_failed}
    todo = [i for i in range(len(dataset)) if i not in skip]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=todo[rank::world], num_workers=num_workers,
        collate_fn=FailedIndices(collate_fn(dataset)), generator=torch.Generator().manual_seed(0))

    def record(indices, scores, labs, failed):
        for k, i in enumerate(indices):
            records.append({"index": i, "path": names[i], "status": "done", "label": int(labs[k]),
                            "scores": _encode(scores[k])})
        for i, path, error in failed:
            records.append({"index": i, "path": path, "status": "failed", "error": error})

    figures: dict = {}
    predict_scores(model, loader, aggregate, progress=progress, fixed_batch=True, on_batch=record, figures=figures)
    records.close(figures)
    if rank != 0:
        return None
    all_figures = records.wait_for_all()
    latest = records.latest()
    done = sorted(i for i, r in latest.items() if r["status"] == "done")
    failed = [latest[i]["path"] for i in sorted(latest) if latest[i]["status"] != "done"]
    c = getattr(getattr(model, "cfg", None), "num_classes", 0)
    scores = torch.stack([_decode(latest[i]["scores"]) for i in done]) if done else torch.zeros(0, c)
    labs = torch.tensor([latest[i]["label"] for i in done], dtype=torch.long)
    res = summarise(model, dataset, [(done, scores, labs, failed)], aggregate, labels, video_key)
    res["figures"] = all_figures
    write_outputs(out, res, labels if labels is not None else getattr(model, "labels", None))
    lines = "".join(json.dumps({k: latest[i][k] for k in ("index", "path", "status", "error", "label", "attempts")
                                if k in latest[i]}) + "\n" for i in sorted(latest))
    atomic_write(out / "manifest.jsonl", lambda p: Path(p).write_text(lines))
    return res


class FailedIndices:
    """A collate function that also lists the item index of each video that failed (``skipped_index``)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, items):
        out = self.collate(items)
        out["skipped_index"] = [it.get("index") for it in items if isinstance(it, dict) and "error" in it]
        return out


def _encode(scores: torch.Tensor) -> str:
    """float32 scores as base64 (exact round trip, 4 bytes a class)."""
    return base64.b64encode(scores.float().numpy().astype("<f4").tobytes()).decode()


def _decode(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").copy())


def _digest(names) -> str:
    import hashlib

    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


def write_outputs(out: Path, res: dict, labels: list[str] | None = None) -> None:
    import json

    out.mkdir(parents=True, exist_ok=True)
    summary = {k: res[k] for k in ("count", "top1", "top5", "mean_class_accuracy", "aggregate",
                                   "duplicates_dropped") if k in res}
    summary["skipped"] = res["skipped"]
    if "video_level" in res:
        summary["video_level"] = res["video_level"]
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_per_class_csv(out / "per_class.csv", res["per_class"], labels)
    write_predictions_json(out / "predictions.json", res["predictions"])
    if res["count"]:
        plot_confusion(out / "confusion.png", res["confusion"], labels)


def _video_key(name: str, how: str) -> str:
    if how == "path":
        return name
    stem = Path(name).stem  # "path_stem": drop the folder and extension, and a trailing _<start>_<end> cut
    parts = stem.rsplit("_", 2)
    if len(parts) == 3 and all(p.replace(".", "", 1).isdigit() for p in parts[1:]):
        return parts[0]
    return stem

