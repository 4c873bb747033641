"""Accuracy of the fast input path on the demo task: today's path (source files, augmentation in the workers)
against prepared files with augmentation on the device, same recipe, same seeds.

The recipe is a copy of ``configs/demo_synth.yaml`` as it was on main at f233b87 (so later tuning of the demo
does not move this comparison): a tiny UniFormerV2 from scratch on ``uniformerv2 synth`` data, 12 epochs.
``--rand-augment`` adds the Kinetics RandAugment to both paths (the demo recipe has none), so that the device
RandAugment is exercised too.

    python benchmarks/feed_demo.py --out runs/feed_demo --seeds 0 1 [--rand-augment]
    python benchmarks/feed_demo.py --out runs/feed_demo --seeds 0 --paths prepared:cpu source:device

``--paths`` picks any of the four (files, augmentation) combinations; the default is the two compared paths.

Prints one row per (path, seed) and the mean test top-1 of each path; writes ``results.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RECIPE = """
seed: 0
model:
  preset: tiny_ssv2_8x64
  options:
    num_classes: 6
    num_frames: 8
    local_mhra: double
    global_layers: [0, 1]
    head_dropout: 0.0
    global_mlp_dropout: 0.0
data:
  train: train.csv
  val: val.csv
  test: test.csv
  num_workers: 1
  pipeline:
    flip: false
    rand_augment: null
    crop_scale: [1.0, 1.0]
train:
  epochs: 12
  batch_size: 8
  lr: 1.5e-3
  min_lr: 1.0e-5
  warmup_epochs: 1
  warmup_start_lr: 1.0e-5
  precision: fp32
  eval_every: 3
  progress: false
eval:
  batch_size: 16
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--rand-augment", action="store_true", help="rand-m7-n4-mstd0.5-inc1 on both paths")
    p.add_argument("--workers", type=int, default=2, help="processes for synth and prepare")
    p.add_argument("--paths", nargs="+", default=["source:cpu", "prepared:device"],
                   choices=[f"{f}:{a}" for f in ("source", "prepared") for a in ("cpu", "device")],
                   help="(files, augmentation) combinations to train (default: source:cpu prepared:device)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process (default 1)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from uniformerv2 import synth
    from uniformerv2.data.transcode import prepare_dataset
    from uniformerv2.engine import train

    out = Path(args.out)
    data, prepared = out / "data", out / "prepared"
    if not (data / "test.csv").exists():
        synth.generate(data, seed=0, workers=args.workers, progress=False)
    for name in ("train.csv", "val.csv", "test.csv"):
        r = prepare_dataset(data / name, prepared, root=str(data), workers=args.workers, psnr_sample=8)
        print(f"prepared {name}: {r['done']} done, {r['skipped']} already there, {r['failed']} failed; "
              f"{r['bytes_before'] / 2**20:.1f} -> {r['bytes_after'] / 2**20:.1f} MiB; PSNR {r['psnr']['mean']}",
              flush=True)
    recipe = out / "demo_recipe.yaml"
    if not recipe.exists() or recipe.read_text() != RECIPE:  # several invocations may share --out
        recipe.write_text(RECIPE)
    roots = {"source": data, "prepared": prepared}
    paths = {}
    for combo in args.paths:
        files, where = combo.split(":")
        paths[f"{files} files, {where} augmentation"] = (roots[files], where)
    rows = []
    for seed in args.seeds:
        for label, (root, where) in paths.items():
            files = "source" if root == data else "prepared"
            run = out / "runs" / f"{files}_{where}_seed{seed}{'_ra' if args.rand_augment else ''}"
            overrides = [f"seed={seed}", f"data.root={root}", f"model.labels={data / 'labels.txt'}",
                         f"data.augment_on={where}"]
            if args.rand_augment:
                overrides.append("data.pipeline.rand_augment=rand-m7-n4-mstd0.5-inc1")
            t0 = time.time()
            s = train(str(out / "demo_recipe.yaml"), run, overrides=overrides)
            rows.append({"path": label, "seed": seed, "test_top1": s["test"]["top1"],
                         "best_val_top1": s["best_val_top1"], "seconds": round(time.time() - t0)})
            print(f"| {label} | {seed} | {s['test']['top1']:.2f} | {s['best_val_top1']:.2f} | {rows[-1]['seconds']} |",
                  flush=True)
    means = {label: sum(r["test_top1"] for r in rows if r["path"] == label) / len(args.seeds) for label in paths}
    for label, m in means.items():
        print(f"mean test top-1, {label}: {m:.2f}")
    tag = "_".join(c.replace(":", "-") for c in args.paths) + "_s" + "-".join(map(str, args.seeds))
    (out / f"results_{tag}.json").write_text(json.dumps({"rows": rows, "mean_test_top1": means,
                                                   "rand_augment": args.rand_augment}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
