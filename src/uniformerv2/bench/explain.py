"""`uniformerv2 bench explain`: is the explanation faithful, and what does it cost?

On a model trained on a ``uniformerv2 synth`` dataset (the ``make demo`` model), over a labelled list of it:

  mask share   the renderer knows where the moving target is in every frame (``synth.video_target_masks``):
               the share of each map's patch mass that falls on the target, against the target's share of the
               frame (what a map spread evenly would score); and how often the map's peak token lies on it
  deletion     the most-attended patch tubes (a token's footprint: its p x p patch over the s frames of its
               token step) are replaced with the clip's mean colour, 5/10/20 % of them; the drop of the true
               class's probability against as many random tubes and the least-attended ones
  cost         seconds per video of ``explain`` against ``predict``, side by side, on the same videos

The maps are computed for the true class (``target=label``).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

FRACTIONS = (0.05, 0.10, 0.20)
ORDERS = ("attention", "class", "random", "least")


# ----------------------------------------------------------------------------------------------- pieces
def read_list(path, root: str | None = None) -> list[tuple[str, str, int]]:
    """'relative/path.mp4,label' lines -> [(full path, relative path, label)]."""
    path = Path(path)
    base = Path(root) if root else path.parent
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rel, _, label = line.rpartition(",")
        if not rel or not label.strip().lstrip("-").isdigit():
            raise UserError(f"{path}: expected 'path,label' lines, got {line!r}")
        out.append((str(base / rel), rel, int(label)))
    return out


def views_of(clf, video, views=None) -> tuple[torch.Tensor, np.ndarray, object]:
    """The uint8 views (V, 3, T, S, S) the engine makes of ``video``, their frame indices (clips, T) and the
    ``ViewSpec``."""
    from ..inference.pipeline import VideoInput, video_chunks

    spec = clf.view_spec(views)
    chunk = next(iter(video_chunks(0, VideoInput(video), spec)))
    if chunk.error is not None:
        raise UserError(chunk.error)
    return chunk.views, chunk.frames, spec


def explain_window(clf, views: torch.Tensor, frames: np.ndarray, crops: int, target: int | None):
    """An ``ExplainedWindow`` of ready-made uint8 views (no pixel mapping: sizes are the crop's)."""
    from ..inference.explain import ExplainedWindow, explain_views

    batch = max(1, clf.engine.views_per_pass(1) // 4)
    r = explain_views(clf.model, views, clf.data, clf.device, clf.dtype, target, batch,
                      lambda v: clf.engine.forward_views(v)[2])
    s = clf.data.crop_size
    return ExplainedWindow(None, None, frames, crops, r["target"], r["probs"], r["attention"], r["gradient"],
                           r["attention_maps"], r["class_maps"], (s, s), (s, s), s)


def tube_scores(window, kind: str) -> np.ndarray:
    """(V, T'·h·w) score of every patch tube of every view: "attention" (rolled out), "class", or "direct" (the
    query's own weights on the patch tokens, heads and layers averaged)."""
    if kind == "direct":
        m = window.attention.mean(axis=(1, 2))[..., 1:]
    else:
        m = window.token_map(kind)[..., 1:]
    return m.reshape(m.shape[0], -1)


def delete_tubes(views: torch.Tensor, tubes: np.ndarray, time_steps: int, grid: int) -> torch.Tensor:
    """``views`` uint8 (V, 3, T, S, S) with the tubes ``tubes`` (V, n) (indices into T'·h·w) of each view set to
    the view's mean colour (over all its frames and pixels)."""
    out = views.clone()
    _, _, t, size, _ = views.shape
    s, p = t // time_steps, size // grid
    for v in range(len(views)):
        mean = views[v].float().mean(dim=(1, 2, 3)).round().to(torch.uint8)
        for k in tubes[v]:
            step, rest = divmod(int(k), grid * grid)
            i, j = divmod(rest, grid)
            out[v, :, step * s:(step + 1) * s, i * p:(i + 1) * p, j * p:(j + 1) * p] = mean.view(3, 1, 1, 1)
    return out


def deletion(clf, views: torch.Tensor, window, label: int, fractions=FRACTIONS, draws: int = 3,
             rng: np.random.Generator | None = None) -> dict:
    """True-class probability (mean softmax of the views) with no deletion ("none") and after deleting each
    fraction of the tubes in each order: {"none": p, "<order>@<fraction>": p}; "random" is the mean of
    ``draws`` draws."""
    rng = rng or np.random.default_rng(0)
    t, g = window.time_steps, window.grid
    n = t * g * g
    scores = {"attention": tube_scores(window, "attention"), "class": tube_scores(window, "class")}
    variants, names = [views], ["none"]
    for frac in fractions:
        k = max(1, round(frac * n))
        chosen = {"attention": np.argsort(-scores["attention"], axis=1, kind="stable")[:, :k],
                  "class": np.argsort(-scores["class"], axis=1, kind="stable")[:, :k],
                  "least": np.argsort(scores["attention"], axis=1, kind="stable")[:, :k]}
        for d in range(draws):
            chosen[f"random{d}"] = np.stack([rng.choice(n, k, replace=False) for _ in range(len(views))])
        for name, tubes in chosen.items():
            variants.append(delete_tubes(views, tubes, t, g))
            names.append(f"{name}@{frac:g}")
    probs = _probs(clf, torch.cat(variants), len(views))
    out = {name: float(p[label]) for name, p in zip(names, probs)}
    for frac in fractions:
        rand = [out.pop(f"random{d}@{frac:g}") for d in range(draws)]
        out[f"random@{frac:g}"] = float(np.mean(rand))
    return out


def _probs(clf, views: torch.Tensor, per_video: int) -> np.ndarray:
    """Mean softmax over each group of ``per_video`` views, through the engine's inference pass."""
    size = max(per_video, clf.engine.views_per_pass(per_video))
    rows = [clf.engine.forward_views(views[i:i + size])[2] for i in range(0, len(views), size)]
    probs = np.concatenate(rows)
    return probs.reshape(-1, per_video, probs.shape[-1]).mean(1)


def mask_coverage(masks: np.ndarray, frames: np.ndarray, spec, time_steps: int, grid: int) -> np.ndarray:
    """The target's coverage of every patch tube of every view, (V, T'·h·w) in [0, 1]: the masks (video frames,
    H, W) taken through the views' own transform (short side, crops) and averaged over each tube."""
    from ..data.transforms import build_transform

    data = spec.data
    tf = build_transform("test", crop_size=data.crop_size, short_side=data.test_short_side, mean=(0, 0, 0),
                         std=(1 / 255,) * 3, num_crops=spec.crops)
    out = []
    for clip in frames:
        m = torch.from_numpy(np.repeat(masks[clip][..., None], 3, -1).astype(np.float32))
        views = tf(m)
        views = views if views.ndim == 5 else views[None]
        for v in views:  # (3, T, S, S)
            x = v[0]
            t, size = x.shape[0], x.shape[-1]
            s, p = t // time_steps, size // grid
            cov = x.reshape(time_steps, s, grid, p, grid, p).mean(dim=(1, 3, 5))
            out.append(cov.reshape(-1).numpy())
    return np.stack(out)


def mask_share(window, coverage: np.ndarray) -> dict:
    """{map: (share of its patch mass on the target, peak tube on the target)} for each map, plus the
    target's share of the frame ("frame") and how often a tube picked at random is on it."""
    maps = {"direct": tube_scores(window, "direct")}
    for j in range(window.attention.shape[1]):
        maps[f"layer{j}"] = window.token_map("attention", j)[..., 1:].reshape(len(coverage), -1)
    maps["attention"] = tube_scores(window, "attention")
    maps["class"] = tube_scores(window, "class")
    out = {"frame": (float(coverage.mean()), float((coverage > 0.5).mean()))}
    for name, m in maps.items():
        m = np.maximum(m, 0)
        total = m.sum(axis=1)
        share = float(np.mean((m * coverage).sum(axis=1) / np.maximum(total, 1e-12)))
        peak = float(np.mean(coverage[np.arange(len(m)), m.argmax(axis=1)] > 0.5))
        out[name] = (share, peak)
    return out


# ----------------------------------------------------------------------------------------------- the run
def bench_explain(model, list_path, *, root: str | None = None, limit: int | None = None, seed: int = 0,
                  frames: int = 16, size: int = 64, fractions=FRACTIONS, draws: int = 3, timed: int = 10,
                  cost_presets=(), verbose: bool = True) -> dict:
    """The three checks over the videos of ``list_path`` (``limit`` of them, spread over the list) of a
    synthetic dataset generated with ``seed``, ``frames`` and ``size`` (those of ``make demo``: 0, 16, 64);
    ``timed`` videos for the cost, and two of them for each preset of ``cost_presets`` (random weights, one
    view)."""
    from ..inference import VideoClassifier
    from ..synth import video_target_masks

    clf = model if isinstance(model, VideoClassifier) else VideoClassifier.from_pretrained(model, device="cpu")
    items = read_list(list_path, root)
    if limit is not None and limit < len(items):  # spread over the list (lists are grouped by class)
        items = [items[int(i)] for i in np.linspace(0, len(items) - 1, limit).round()]
    if not items:
        raise UserError(f"{list_path}: no videos")
    labels = clf.labels
    rng = np.random.default_rng(seed)
    shares, drops, correct = [], [], 0
    t0 = time.perf_counter()
    for n, (path, rel, label) in enumerate(items, 1):
        views, idx, spec = views_of(clf, path)
        window = explain_window(clf, views, idx, spec.crops, label)
        correct += int(np.argmax(window.probs) == label)
        masks = video_target_masks(rel, labels, seed=seed, frames=frames, size=size)
        cov = mask_coverage(masks, idx, spec, window.time_steps, window.grid)
        shares.append(mask_share(window, cov))
        drops.append(deletion(clf, views, window, label, fractions, draws, rng))
        if verbose and (n % 20 == 0 or n == len(items)):
            print(f"bench explain: {n}/{len(items)} videos ({time.perf_counter() - t0:.0f} s)", flush=True)
    paths = [p for p, _, _ in items[:timed]]
    cost = [dict(time_side_by_side(clf, paths), model="this model")]
    for preset in cost_presets:
        from ..factory import create_model

        torch.manual_seed(0)
        other = VideoClassifier(create_model(preset), device="cpu")
        cost.append(dict(time_side_by_side(other, paths[:2], views="1x1"), model=f"{preset} (random weights)"))
    keys = shares[0].keys()
    share_table = {k: [float(np.mean([s[k][0] for s in shares])), float(np.mean([s[k][1] for s in shares]))]
                   for k in keys}
    names = drops[0].keys()
    base = np.array([d["none"] for d in drops])
    drop_table = {k: float(np.mean(base - np.array([d[k] for d in drops]))) for k in names if k != "none"}
    wins = {f"{frac:g}": float(np.mean([d[f"class@{frac:g}"] < d[f"random@{frac:g}"] for d in drops]))
            for frac in fractions}
    return {"videos": len(items), "accuracy": correct / len(items), "base_prob": float(base.mean()),
            "mask_share": share_table, "deletion_drop": drop_table, "class_beats_random": wins,
            "fractions": list(fractions), "random_draws": draws, "views": "x".join(map(str, clf.data.views)),
            "global_layers": list(clf.model.cfg.global_layers), "cost": cost}


def time_side_by_side(clf, paths: list[str], rounds: int = 2, views=None) -> dict:
    """Median seconds per video of ``predict`` and of ``explain``, alternating on the same videos."""
    clf.predict(paths[0], views=views)
    clf.explain(paths[0], views=views)
    pred, expl = [], []
    for _ in range(rounds):
        for p in paths:
            t = time.perf_counter()
            clf.predict(p, views=views)
            pred.append(time.perf_counter() - t)
            t = time.perf_counter()
            clf.explain(p, views=views)
            expl.append(time.perf_counter() - t)
    a, b = statistics.median(pred), statistics.median(expl)
    return {"predict_s": a, "explain_s": b, "ratio": b / a, "videos": len(paths), "rounds": rounds,
            "threads": torch.get_num_threads(), "views": views}


def explain_tables(r: dict) -> list[str]:
    """The markdown tables of a ``bench_explain`` result."""
    layers = r["global_layers"]
    names = {"frame": "target's share of the frame (uniform map)", "direct": "query attention, patch tokens only",
             "attention": "attention rolled out, all global layers", "class": "class-specific (Chefer et al.)"}
    for j, layer in enumerate(layers):
        names[f"layer{j}"] = f"attention rolled out, global block after layer {layer}"
    out = [f"{r['videos']} test videos, views {r['views']}, top-1 {100 * r['accuracy']:.1f} %, mean true-class "
           f"probability {r['base_prob']:.3f}", "",
           "| map | share of the map on the target | peak on the target |", "|---|---|---|"]
    for k, (share, peak) in r["mask_share"].items():
        out.append(f"| {names.get(k, k)} | {share:.3f} | {100 * peak:.0f} % |")
    out += ["", "| tubes deleted | most-attended (attention) | most-attended (class) | random "
                f"(mean of {r['random_draws']}) | least-attended |", "|---|---|---|---|---|"]
    d = r["deletion_drop"]
    for frac in r["fractions"]:
        f = f"{frac:g}"
        out.append(f"| {100 * frac:.0f} % | {d[f'attention@{f}']:+.3f} | {d[f'class@{f}']:+.3f} | "
                   f"{d[f'random@{f}']:+.3f} | {d[f'least@{f}']:+.3f} |")
    out += ["", "(drop of the true class's probability; higher: the deleted tubes mattered more)", "",
            "| model | views | predict, s per video | explain, s per video | explain / predict |",
            "|---|---|---|---|---|"]
    for c in r["cost"]:
        out.append(f"| {c['model']} | {c.get('views') or r['views']} | {c['predict_s']:.3f} | {c['explain_s']:.3f} | "
                   f"{c['ratio']:.2f}x |")
    c = r["cost"][0]
    out.append(f"(median of {c['rounds']} alternating rounds, {c['threads']} threads)")
    return out
