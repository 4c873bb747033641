"""Accuracy of the fast input path on the demo task: today's path (source files, augmentation in the workers)
against prepared files with augmentation on the device, the demo's recipe, the same seeds.

The recipe is the one ``make demo`` trains (``engine.ablate.synthetic_recipe``: the shipped ``demo_synth``
config, a tiny UniFormerV2 from scratch, 20 epochs, on ``uniformerv2 synth`` data), read from the video files by
one input worker instead of the demo's in-memory clips. ``--rand-augment`` adds the Kinetics RandAugment to both paths (the
demo recipe has none), so that the device RandAugment is exercised too.

    python benchmarks/feed_demo.py --out runs/feed_demo --seeds 0 1 2 [--jobs 2] [--rand-augment]
    python benchmarks/feed_demo.py --out runs/feed_demo --seeds 0 --paths prepared:cpu source:device
    python benchmarks/feed_demo.py --out runs/feed_demo --seeds 0 1 2 --paths prepared:device --crf 8

``--crf`` / ``--keyframe-interval`` / ``--lossless`` prepare the files with other settings than the defaults
(into ``prepared_<settings>``).

``--paths`` picks any of the four (files, augmentation) combinations; the default is the two compared paths.
``--jobs`` trainings run at once, each in its own process on ``--threads`` threads.

Prints one row per (path, seed) and the mean and range of test top-1 of each path; writes ``results_*.json``
in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def train_one(cfg: dict, run_dir: str, threads: int) -> dict:
    """One training (in a worker process): the engine's summary and its wall seconds."""
    import torch

    from uniformerv2.engine import train

    torch.set_num_threads(threads)
    t0 = time.time()
    s = train(cfg, run_dir)
    return {"test_top1": s["test"]["top1"], "best_val_top1": s["best_val_top1"], "seconds": round(time.time() - t0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rand-augment", action="store_true", help="rand-m7-n4-mstd0.5-inc1 on both paths")
    p.add_argument("--workers", type=int, default=2, help="processes for synth and prepare")
    p.add_argument("--paths", nargs="+", default=["source:cpu", "prepared:device"],
                   choices=[f"{f}:{a}" for f in ("source", "prepared") for a in ("cpu", "device")],
                   help="(files, augmentation) combinations to train (default: source:cpu prepared:device)")
    p.add_argument("--crf", type=float, default=None, help="prepare with this CRF (default: prepare's)")
    p.add_argument("--keyframe-interval", type=int, default=None, help="prepare with this keyframe interval")
    p.add_argument("--lossless", action="store_true", help="prepare lossless (exact frames)")
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    args = p.parse_args(argv)

    from uniformerv2 import demo, synth
    from uniformerv2.data.transcode import PrepareSettings, prepare_dataset
    from uniformerv2.engine import load_config
    from uniformerv2.engine.ablate import synthetic_recipe

    changed = {k: v for k, v in (("crf", args.crf), ("keyframe_interval", args.keyframe_interval),
                                 ("lossless", args.lossless or None)) if v is not None}
    settings = PrepareSettings(**changed)
    variant = "".join(f"_{k}{v:g}" if not isinstance(v, bool) else f"_{k}" for k, v in changed.items())
    out = Path(args.out)
    data, prepared = out / "data", out / f"prepared{variant}"
    if not (data / "test.csv").exists():
        synth.generate(data, seed=0, workers=args.workers, progress=False)
    for name in ("train.csv", "val.csv", "test.csv"):
        r = prepare_dataset(data / name, prepared, root=str(data), settings=settings, workers=args.workers,
                            psnr_sample=8)
        print(f"prepared {name}: {r['done']} done, {r['skipped']} already there, {r['failed']} failed; "
              f"{r['bytes_before'] / 2**20:.1f} -> {r['bytes_after'] / 2**20:.1f} MiB; PSNR {r['psnr']['mean']}",
              flush=True)
    epochs = args.epochs or demo.EPOCHS
    roots = {"source": data, "prepared": prepared}
    jobs = []
    for seed in args.seeds:
        for combo in args.paths:
            files, where = combo.split(":")
            cfg = synthetic_recipe(data, epochs=epochs, seed=seed)   # labels and sizes from the source dataset
            cfg["data"].update(root=str(roots[files].resolve()), num_workers=1, augment_on=where)
            cfg["train"]["progress"] = False
            if args.rand_augment:
                cfg["data"]["pipeline"] = {"rand_augment": "rand-m7-n4-mstd0.5-inc1"}
            tag = variant if files == "prepared" else ""
            label = f"{files}{tag} files, {where} augmentation"
            run = out / "runs" / f"{files}{tag}_{where}_seed{seed}_e{epochs}{'_ra' if args.rand_augment else ''}"
            jobs.append((label, seed, cfg, str(run)))
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [(label, seed, pool.submit(train_one, cfg, run, args.threads)) for label, seed, cfg, run in jobs]
        print("| files, augmentation | seed | test top-1 | best val top-1 | seconds |\n|---|---|---|---|---|", flush=True)
        for label, seed, f in futures:
            rows.append({"path": label, "seed": seed, **f.result()})
            r = rows[-1]
            print(f"| {label} | {seed} | {r['test_top1']:.2f} | {r['best_val_top1']:.2f} | {r['seconds']} |", flush=True)
    summary = {}
    for label in dict.fromkeys(r["path"] for r in rows):
        top1 = [r["test_top1"] for r in rows if r["path"] == label]
        summary[label] = {"mean": sum(top1) / len(top1), "min": min(top1), "max": max(top1)}
        print(f"test top-1, {label}: mean {summary[label]['mean']:.2f} (min {min(top1):.2f}, max {max(top1):.2f}, "
              f"{len(top1)} seeds)")
    tag = "_".join(c.replace(":", "-") for c in args.paths) + variant + "_s" + "-".join(map(str, args.seeds))
    (out / f"results_e{epochs}_{tag}.json").write_text(json.dumps(
        {"epochs": epochs, "lr": load_config(jobs[0][2])["train"]["lr"], "prepare": changed, "rows": rows,
         "test_top1": summary, "rand_augment": args.rand_augment},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
