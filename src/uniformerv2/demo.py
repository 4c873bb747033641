"""The embedded default (``make demo``): why a video model needs time, in a few minutes on a CPU.

1. ``uniformerv2 synth``: a Something-Something-like dataset in which every class is the time reversal of
   another (moving left / right, up / down, growing / shrinking), so no frame, and no unordered set of
   frames, tells the classes apart.
2. Train a small UniFormerV2 from scratch (local MHRA, global UniBlocks, temporal downsampling) and the
   frame-only ablation (the same ViT without local MHRA or global blocks: per-frame class tokens averaged
   over time) with the same recipe, and test both on held-out videos.
3. Write ``report.json`` (top-1 of both, chance), training curves and confusion matrices, then run
   ``uniformerv2 predict`` on a test video.

Everything goes under the output folder (``demo-output/`` by default).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The recipe both models share; the frame-only one differs only in the model.
COMMON = {"head_dropout": 0.0, "global_mlp_dropout": 0.0}
MODELS = {
    "uniformerv2": {"preset": "tiny_ssv2_8x64", "options": COMMON},
    "frame_only": {"preset": "uniformerv2_tiny",
                   "options": {**COMMON, "local_mhra": "none", "global_layers": [], "temporal_downsample": False}},
}


WARMUP_STEPS = 100  # from scratch, a short warmup can leave the tiny model stuck at chance


def recipe(data_dir: Path, model: dict, classes: int, train_videos: int, epochs: int, seed: int,
           progress: bool) -> dict:
    steps_per_epoch = max(1, train_videos // 8)  # demo_synth's batch size
    return {
        "base": "demo_synth",
        "seed": seed,
        "model": {"preset": model["preset"], "options": {**model["options"], "num_classes": classes},
                  "labels": str(data_dir / "labels.txt")},
        "data": {"root": str(data_dir)},
        "train": {"epochs": epochs, "progress": progress,
                  "warmup_epochs": max(1.0, round(WARMUP_STEPS / steps_per_epoch, 2))},
    }


def run(output: str | Path = "demo-output", videos_per_class: int = 200, epochs: int = 12, seed: int = 0,
        classes: list[str] | None = None, progress: bool = True, predict: bool = True) -> dict:
    from . import synth
    from .engine import train

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    print(f"[1/4] generating the synthetic temporal-order dataset in {data} ...", flush=True)
    info = synth.generate(data, classes=classes, videos_per_class=videos_per_class, seed=seed, progress=progress)
    labels = info["classes"]
    print(f"      {len(labels)} classes ({', '.join(labels)}), "
          + ", ".join(f"{s} {v['count']}" for s, v in info["splits"].items()) + " videos", flush=True)

    results = {}
    for step, (name, model) in enumerate(MODELS.items(), start=2):
        run_dir = out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        title = "UniFormerV2 (local + global UniBlocks)" if name == "uniformerv2" else "frame-only ablation"
        print(f"[{step}/4] training {title} from scratch ...", flush=True)
        started = time.time()
        summary = train(recipe(data, model, len(labels), info["splits"]["train"]["count"], epochs, seed, progress),
                        run_dir)
        # the engine reports percentages; the report holds fractions
        results[name] = {"top1": summary["test"]["top1"] / 100, "top5": summary["test"]["top5"] / 100,
                         "train_seconds": round(time.time() - started, 1), "run_dir": str(run_dir)}
        print(f"      test top-1 {results[name]['top1']:.1%} ({time.time() - started:.0f} s)", flush=True)

    report = {
        "uniformerv2_top1": results["uniformerv2"]["top1"],
        "frame_only_top1": results["frame_only"]["top1"],
        "chance": 1.0 / len(labels),
        "classes": labels,
        "test_videos": info["splits"]["test"]["count"],
        "epochs": epochs,
        "runs": results,
        "curves": str(out / "uniformerv2" / "curves.png"),
        "confusion": str(out / "uniformerv2" / "test" / "confusion.png"),
    }
    if predict:
        report["prediction"] = _predict_one(out, data)
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print("\n| model (same data, same recipe) | test top-1 |")
    print("|---|---|")
    print(f"| UniFormerV2, local + global UniBlocks | {report['uniformerv2_top1']:.1%} |")
    print(f"| frame-only ViT (averaged class tokens) | {report['frame_only_top1']:.1%} |")
    print(f"| chance | {report['chance']:.1%} |")
    print(f"\nreport: {out / 'report.json'} ({report['seconds']:.0f} s in all)")
    return report


def _predict_one(out: Path, data: Path) -> dict:
    first = (data / "test.csv").read_text().splitlines()[0]
    rel, label = first.rsplit(",", 1)
    video = data / rel
    print(f"[4/4] uniformerv2 predict {video} --model {out / 'uniformerv2' / 'final'} --top-k 3", flush=True)
    cmd = [sys.executable, "-m", "uniformerv2", "predict", str(video), "--model", str(out / "uniformerv2" / "final"),
           "--top-k", "3", "--json", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    pred = json.loads(res.stdout)[0]
    labels = (data / "labels.txt").read_text().splitlines()
    for rank, p in enumerate(pred["top_k"], 1):
        print(f"      {rank}. {p['label']:<14} {p['prob']:.3f}")
    print(f"      (true class: {labels[int(label)]})")
    return {"video": str(video), "true_label": labels[int(label)], "top_k": pred["top_k"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m uniformerv2.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="demo-output")
    p.add_argument("--videos-per-class", type=int, default=200)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    run(args.output, args.videos_per_class, args.epochs, args.seed, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
