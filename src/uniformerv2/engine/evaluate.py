"""Evaluation: ``evaluate(model, loader_or_dataset, ...) -> dict``, sharded over ranks under torchrun.

Items are single clips ``(3, T, H, W)`` or multi-view stacks ``(V, 3, T, H, W)`` (clips x crops); each
video's views are aggregated into one score vector (summed softmax, the official rule, or mean logits).
With a dataset, rank ``r`` of ``N`` evaluates items ``r, r+N, ...``; results are gathered by item index, so
each video is counted exactly once. Videos that cannot be decoded are listed in ``skipped`` and left out
of the metrics. Runs in fp32 by default, as the official test.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import distributed as dist
from .data import item_names, make_eval_loader
from .metrics import (aggregate_views, classification_metrics, group_by_video, plot_confusion,
                      write_per_class_csv, write_predictions_json)


@torch.no_grad()
def predict_scores(model, loader, aggregate: str = "softmax", device=None, amp_dtype=None,
                   progress: bool = False, desc: str = "eval"):
    """Run ``model`` over ``loader``; returns (indices, scores (N, C), labels (N,), skipped) of this rank."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    indices, scores, labels, skipped = [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(loader), desc=desc, dynamic_ncols=True, leave=False)
    for batch in loader:
        skipped.extend(batch.get("skipped", []))
        video = batch["video"]
        if video is not None and len(video):
            video = video.to(device, non_blocking=True)
            multi = video.dim() == 6
            b, v = video.shape[0], video.shape[1] if multi else 1
            flat = video.flatten(0, 1) if multi else video
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(flat)
            s = aggregate_views(logits.float().view(b, v, -1), aggregate)
            scores.append(s.cpu())
            labels.append(torch.as_tensor(batch["label"]).long().cpu())
            indices.extend(int(i) for i in torch.as_tensor(batch["index"]).tolist())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    if scores:
        return indices, torch.cat(scores), torch.cat(labels), skipped
    c = model.cfg.num_classes if hasattr(model, "cfg") else 0
    return indices, torch.zeros(0, c), torch.zeros(0, dtype=torch.long), skipped


def evaluate(model, data, *, aggregate: str = "softmax", batch_size: int = 8, num_workers: int = 0,
             device=None, amp_dtype=None, labels: list[str] | None = None, out_dir=None,
             video_key: str | None = None, progress: bool = False, desc: str = "eval") -> dict:
    """Evaluate ``model`` on a dataset (sharded over ranks) or a DataLoader (used as given).

    Returns {"top1", "top5", "mean_class_accuracy" (percent), "count", "skipped" (list), "per_class",
    "confusion" (tensor), "predictions" (per video: index, name, label, pred, top5, score)} and, with
    ``video_key`` ("path" / "path_stem"), "video_level" metrics over entries grouped by source video.
    With ``out_dir`` (rank 0), writes metrics.json, per_class.csv, predictions.json, confusion.png.
    """
    if isinstance(data, torch.utils.data.DataLoader):
        loader, dataset = data, data.dataset
    else:
        dataset = data
        info = dist.DistInfo(*dist.rank_world())
        loader = make_eval_loader(dataset, batch_size, num_workers, info.rank, info.world_size)
    idx, scores, labs, skipped = predict_scores(model, loader, aggregate, device, amp_dtype, progress, desc)

    # gather every rank's share; keep one result per item index
    parts = dist.all_gather_objects((idx, scores, labs, skipped))
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
    if out_dir is not None and dist.DistInfo(*dist.rank_world()).is_main:
        write_outputs(Path(out_dir), res, labels)
    return res


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

