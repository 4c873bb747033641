"""Classification metrics from video-level scores, and the files an evaluation writes.

``aggregate_views``: (V, C) logits of one video's views -> one score vector, by summed softmax (official,
``ADD_SOFTMAX``) or by mean logits. ``classification_metrics``: top-1 / top-5 / mean class accuracy,
per-class accuracy and the confusion matrix (rows = true class, columns = predicted class).
"""
from __future__ import annotations

import csv
import json
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import UserError

AGGREGATIONS = ("softmax", "logits")


def aggregate_views(logits: torch.Tensor, how: str = "softmax") -> torch.Tensor:
    """(..., V, C) per-view logits -> (..., C): mean of per-view softmaxes (the official summed softmax divided
    by V: a distribution, as ``predict`` reports), or mean of logits."""
    logits = logits.float()
    if how == "softmax":
        return logits.softmax(-1).mean(-2)
    if how == "logits":
        return logits.mean(-2)
    raise UserError(f"view aggregation must be one of {AGGREGATIONS}, got {how!r}")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool (N,): is the label among the ``k`` highest scores (ties broken by class index)."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> dict:
    """top1/top5 (%), mean class accuracy (%, over classes present), per-class accuracy, confusion matrix."""
    scores, labels = scores.float(), labels.long()
    n = len(labels)
    c = num_classes or scores.shape[1]
    if n == 0:
        return {"count": 0, "top1": float("nan"), "top5": float("nan"), "mean_class_accuracy": float("nan"),
                "per_class": [], "confusion": torch.zeros(c, c, dtype=torch.long)}
    pred = scores.argmax(1)
    confusion = torch.zeros(c, c, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    support = confusion.sum(1)
    correct = confusion.diag()
    per_class = [{"class": i, "support": int(support[i]), "correct": int(correct[i]),
                  "accuracy": (100.0 * float(correct[i]) / float(support[i])) if support[i] else None}
                 for i in range(c)]
    present = support > 0
    mca = 100.0 * float((correct[present].double() / support[present].double()).mean())
    return {"count": n,
            "top1": 100.0 * float(topk_correct(scores, labels, 1).double().mean()),
            "top5": 100.0 * float(topk_correct(scores, labels, 5).double().mean()),
            "mean_class_accuracy": mca, "per_class": per_class, "confusion": confusion}


def group_by_video(keys: list[str], scores: torch.Tensor, labels: torch.Tensor):
    """Untrimmed video-level scores: sum the (already aggregated) scores of all entries sharing a key.

    Returns (keys, scores (K, C), labels (K,)); an entry's label must agree with the others of its video.
    """
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out_s, out_l = [], []
    for k, idx in groups.items():
        labs = labels[idx].unique()
        if len(labs) != 1:
            raise UserError(f"video {k!r} has entries with different labels {labs.tolist()}")
        out_s.append(scores[idx].sum(0))
        out_l.append(labs[0])
    if not out_s:
        return [], scores[:0], labels[:0]
    return list(groups), torch.stack(out_s), torch.stack(out_l)


def write_per_class_csv(path: Path, per_class: list[dict], labels: list[str] | None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "name", "support", "correct", "accuracy"])
        for r in per_class:
            name = labels[r["class"]] if labels and r["class"] < len(labels) else ""
            acc = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            w.writerow([r["class"], name, r["support"], r["correct"], acc])


def write_predictions_json(path: Path, records: list[dict]) -> None:
    Path(path).write_text(json.dumps(records, indent=1) + "\n")


def plot_confusion(path: Path, confusion: torch.Tensor, labels: list[str] | None = None,
                   max_classes: int = 60) -> bool:
    """Confusion matrix PNG (row-normalised). Returns False if matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cm = confusion.double()
    cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    c = cm.shape[0]
    fig, ax = plt.subplots(figsize=(min(2 + 0.25 * c, 20), min(2 + 0.25 * c, 20)))
    im = ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if labels and c <= max_classes:
        ax.set_xticks(range(c), labels[:c], rotation=90, fontsize=6)
        ax.set_yticks(range(c), labels[:c], fontsize=6)
    ax.set_title("confusion (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_curves(path: Path, records: list[dict]) -> bool:
    """Training loss / LR / val top-1 against the step, from metrics.jsonl records."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_top1" in r]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if train:
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
        axes[1].plot([r["step"] for r in train], [r["lr"] for r in train])
    if val:
        axes[2].plot([r["step"] for r in val], [r["val_top1"] for r in val], marker="o")
    for ax, title in zip(axes, ("train loss", "learning rate", "val top-1 (%)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
