"""Accuracy of the fast input path on the demo task (``uniformerv2 bench feed-demo``): today's path (source
files, augmentation in the workers) against prepared files with augmentation on the device, the demo's recipe,
the same seeds.

The recipe is the one ``make demo`` trains (``engine.ablate.synthetic_recipe``: the shipped ``demo_synth``
config, a tiny UniFormerV2 from scratch, 20 epochs, on ``uniformerv2 synth`` data), read from the video files by
one input worker instead of the demo's in-memory clips. ``rand_augment`` adds the Kinetics RandAugment to both
paths (the demo recipe has none), so that the device RandAugment is exercised too. ``crf`` /
``keyframe_interval`` / ``lossless`` prepare the files with other settings than the defaults (into
``prepared_<settings>``). ``paths`` picks any of the four (files, augmentation) combinations; the default is
the two compared paths. ``jobs`` trainings run at once, each in its own process on ``threads`` threads.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def train_one(cfg: dict, run_dir: str, threads: int) -> dict:
    """One training (in a worker process): the engine's summary and its wall seconds."""
    import torch

    from ..engine import train

    torch.set_num_threads(threads)
    t0 = time.time()
    s = train(cfg, run_dir)
    return {"test_top1": s["test"]["top1"], "best_val_top1": s["best_val_top1"], "seconds": round(time.time() - t0)}


PATHS = tuple(f"{f}:{a}" for f in ("source", "prepared") for a in ("cpu", "device"))


def feed_demo(workdir, seeds=(0, 1, 2), *, paths=("source:cpu", "prepared:device"), rand_augment: bool = False,
              workers: int = 2, crf: float | None = None, keyframe_interval: int | None = None,
              lossless: bool = False, epochs: int | None = None, lr: float | None = None, jobs: int = 2,
              threads: int = 1, verbose: bool = True) -> dict:
    """Generate the demo data in ``workdir``, prepare it, train once per seed and path (the runs stay in
    ``workdir/runs``); returns one row per training and the mean and range of test top-1 per path.
    ``epochs`` / ``lr``: instead of the recipe's."""
    from .. import synth
    from ..data.transcode import PrepareSettings, prepare_dataset
    from ..engine import load_config
    from ..engine.ablate import synthetic_recipe
    from ..errors import UserError

    if not paths or any(p not in PATHS for p in paths):
        raise UserError(f"paths must be some of {', '.join(PATHS)}, got {list(paths)}")
    changed = {k: v for k, v in (("crf", crf), ("keyframe_interval", keyframe_interval),
                                 ("lossless", lossless or None)) if v is not None}
    settings = PrepareSettings(**changed)
    variant = "".join(f"_{k}{v:g}" if not isinstance(v, bool) else f"_{k}" for k, v in changed.items())
    out = Path(workdir)
    data, prepared = out / "data", out / f"prepared{variant}"
    if not (data / "test.csv").exists():
        synth.generate(data, seed=0, workers=workers, progress=False)
    for name in ("train.csv", "val.csv", "test.csv"):
        r = prepare_dataset(data / name, prepared, root=str(data), settings=settings, workers=workers,
                            psnr_sample=8)
        if verbose:
            print(f"prepared {name}: {r['done']} done, {r['skipped']} already there, {r['failed']} failed; "
                  f"{r['bytes_before'] / 2**20:.1f} -> {r['bytes_after'] / 2**20:.1f} MiB; PSNR {r['psnr']['mean']}",
                  file=sys.stderr, flush=True)
    epochs = epochs or load_config("demo_synth")["train"]["epochs"]   # the demo's recipe
    roots = {"source": data, "prepared": prepared}
    todo = []
    for seed in seeds:
        for combo in paths:
            files, where = combo.split(":")
            cfg = synthetic_recipe(data, epochs=epochs, seed=seed)   # labels and sizes from the source dataset
            cfg["data"].update(root=str(roots[files].resolve()), num_workers=1, augment_on=where)
            cfg["train"]["progress"] = False
            if lr is not None:
                cfg["train"]["lr"] = lr
            if rand_augment:
                cfg["data"]["pipeline"] = {"rand_augment": "rand-m7-n4-mstd0.5-inc1"}
            tag = variant if files == "prepared" else ""
            label = f"{files}{tag} files, {where} augmentation"
            run = out / "runs" / (f"{files}{tag}_{where}_seed{seed}_e{epochs}{'_ra' if rand_augment else ''}"
                                  f"{'' if lr is None else f'_lr{lr:g}'}")
            todo.append((label, seed, cfg, str(run)))
    rows = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [(label, seed, pool.submit(train_one, cfg, run, threads)) for label, seed, cfg, run in todo]
        for label, seed, f in futures:
            rows.append({"path": label, "seed": seed, **f.result()})
            if verbose:
                print(feed_demo_table({"rows": rows[-1:]})[-1], file=sys.stderr, flush=True)
    summary = {}
    for label in dict.fromkeys(r["path"] for r in rows):
        top1 = [r["test_top1"] for r in rows if r["path"] == label]
        summary[label] = {"mean": sum(top1) / len(top1), "min": min(top1), "max": max(top1), "seeds": len(top1)}
    return {"epochs": epochs, "lr": load_config(todo[0][2])["train"]["lr"], "prepare": changed, "rows": rows,
            "test_top1": summary, "rand_augment": rand_augment, "paths": list(paths), "seeds": list(seeds)}


def feed_demo_table(result: dict) -> list[str]:
    return ["| files, augmentation | seed | test top-1 | best val top-1 | seconds |", "|---|---|---|---|---|"] + [
        f"| {r['path']} | {r['seed']} | {r['test_top1']:.2f} | {r['best_val_top1']:.2f} | {r['seconds']} |"
        for r in result["rows"]]
