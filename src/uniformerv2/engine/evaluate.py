"""Evaluation against labels.

``evaluate_videos(clf, items, ...) -> dict``: multi-view evaluation of labelled videos (the ``eval`` command,
the test at the end of training and of fine-tuning). It runs through the inference engine
(``inference.engine``), so a video's scores are ``VideoClassifier.predict``'s probabilities, bit for bit at the
same thread count; with ``out_dir`` it is recorded per video (``inference.run.run_dataset``, task ``eval``) so
that a killed run can be resumed, and sharded over processes under torchrun.

``evaluate(model, loader_or_dataset, ...) -> dict``: the same metrics over a dataset of already transformed
clips, for validation inside training (its datasets may hold decoded clips in memory, ``data.ClipCache``, which
the engine's file readers do not). Items are single clips ``(3, T, H, W)`` or multi-view stacks
``(V, 3, T, H, W)``; with a dataset, rank ``r`` of ``N`` evaluates items ``r, r+N, ...``; results are gathered
by item index. ``fixed_batch=True`` pads every forward pass to ``batch_size`` items with zeros.

Either way each video's views are aggregated into one score vector (the mean of the views' softmaxes, the
official summed softmax divided by the number of views, or mean logits); videos that cannot be decoded are
listed in ``skipped`` and left out of the metrics. Runs in fp32 by default, as the official test.
"""
from __future__ import annotations

import time
from pathlib import Path

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
    num_classes = getattr(getattr(model, "cfg", None), "num_classes", 0)
    idx = sorted({i for p in parts for i in p[0]})
    return summarise_scores(parts, item_names(dataset, idx), idx, num_classes, aggregate,
                            labels if labels is not None else getattr(model, "labels", None), video_key)


def summarise_scores(parts, names: list, order: list[int], num_classes: int, aggregate: str, labels=None,
                     video_key: str | None = None) -> dict:
    """Metrics from (indices, scores (n, C), labels (n,), skipped) parts, one result per item index;
    ``names[k]``: the video of item ``order[k]``."""
    seen: dict[int, tuple] = {}
    all_skipped, duplicates = [], 0
    for p_idx, p_scores, p_labels, p_skipped in parts:
        all_skipped.extend(p_skipped)
        for j, i in enumerate(p_idx):
            if i in seen:
                duplicates += 1
                continue
            seen[i] = (torch.as_tensor(p_scores[j]).float(), int(p_labels[j]))
    all_idx = sorted(seen)
    scores = torch.stack([seen[i][0] for i in all_idx]) if all_idx else torch.zeros(0, num_classes)
    labs = torch.tensor([seen[i][1] for i in all_idx], dtype=torch.long)
    num_classes = scores.shape[1] if scores.numel() else num_classes
    res = classification_metrics(scores, labs, num_classes)
    res["skipped"] = sorted(set(map(str, all_skipped)))
    res["duplicates_dropped"] = duplicates
    res["aggregate"] = aggregate
    res["scores"] = scores          # (count, C), rows in the order of "predictions"
    name_of = dict(zip(order, names))
    names = [name_of.get(i) for i in all_idx]
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


def config_views(cfg: dict, data_config) -> str:
    """The test views of a training config: ``eval.test_clips`` x ``eval.test_crops``, each falling back to
    the model's ``DataConfig``."""
    e = cfg["eval"]
    return f"{e['test_clips'] or data_config.test_clips}x{e['test_crops'] or data_config.test_crops}"


def evaluate_videos(clf, items, *, aggregate: str = "softmax", views=None, workers: int | None = None,
                    batch_size: int | None = None, out_dir=None, video_key: str | None = None,
                    resume: bool = False, retry_failed: bool = False, overwrite: bool = False,
                    signature: dict | None = None, progress: bool = False, backend: str = "pyav",
                    timeout: float | None = None, frame_template: str = "img_{:05d}.jpg",
                    frame_start_index: int = 1) -> dict | None:
    """Evaluate ``clf`` (a ``VideoClassifier``) on ``items`` (``data.VideoItem``\\ s whose labels index the
    model's classes, e.g. from ``engine.data.labelled_items``) through the inference engine with test views
    ``views`` (default: the model's).

    Returns {"top1", "top5", "mean_class_accuracy" (percent), "count", "skipped", "per_class", "confusion",
    "predictions" (per video), "stats" (a ``RunStats`` over every process)} and, with ``video_key``,
    "video_level". With ``out_dir``: recorded per video there (resumable), and metrics.json, per_class.csv,
    predictions.json, confusion.png and manifest.jsonl written; under torchrun rank 0 returns the result and
    the other ranks None. Without it, ranks share the videos and all return the result."""
    from ..inference.engine import Failure, video_scores
    from ..inference.pipeline import RunStats, VideoInput
    from ..inference.run import decode_scores, run_dataset

    items = list(items)
    inputs = [VideoInput(it.path, folder=None if it.num_frames is None else dict(
        num_frames=it.num_frames, template=frame_template, start_index=frame_start_index)) for it in items]
    targets = [int(it.label) for it in items]
    names = [it.path for it in items]
    order = list(range(len(items)))
    if out_dir is not None:
        report = run_dataset(clf, inputs, out_dir, task="eval", labels=targets, aggregate=aggregate, views=views,
                             workers=workers, batch_size=batch_size, resume=resume, retry_failed=retry_failed,
                             overwrite=overwrite, signature=signature, progress=progress, backend=backend,
                             timeout=timeout)
        if report.records is None:
            return None
        done = [r for r in report.records if r["status"] == "done"]
        part = ([r["index"] for r in done], [decode_scores(r["scores"]) for r in done], [r["label"] for r in done],
                [r["path"] for r in report.records if r["status"] != "done"])
        res = summarise_scores([part], names, order, len(clf.labels), aggregate, clf.labels, video_key)
        res["stats"] = report.stats
        write_outputs(Path(out_dir), res, clf.labels)
        return res
    rank, world = dist.rank_world()
    spec = clf.engine.spec(views, batch_size=batch_size, backend=backend, timeout=timeout)
    stats = RunStats()
    idx, scores, labs, failed = [], [], [], []
    mine = order[rank::world]
    bar = _bar(len(mine), progress and rank == 0)
    for i, out in clf.engine.run(inputs, mine, spec, workers=workers, stats=stats):
        if isinstance(out, Failure):
            failed.append(names[i])
        else:
            idx.append(i)
            scores.append(video_scores(out, aggregate))
            labs.append(targets[i])
        bar.update(1)
    bar.close()
    parts = dist.all_gather_objects((idx, scores, labs, failed, stats.to_dict()))
    res = summarise_scores([p[:4] for p in parts], names, order, len(clf.labels), aggregate, clf.labels, video_key)
    res["stats"] = RunStats.combine([p[4] for p in parts])
    return res


def _bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", disable=not show or total < 2, dynamic_ncols=True, leave=False)


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

