"""The embedded default (``make demo``): why a video model needs time, in a few minutes on a CPU.

1. ``uniformerv2 synth``: a Something-Something-like dataset in which every class is the time reversal of
   another (moving left / right, up / down, growing / shrinking), so no frame tells the two classes of a
   pair apart; the video files are then decoded once into memory (``data.ClipCache``).
2. Train a small UniFormerV2 from scratch (local MHRA, global UniBlocks, temporal downsampling) and the
   frame-only ablation (the same ViT without local MHRA or global blocks: per-frame class tokens averaged
   over time) with the same recipe, side by side (one process and one core each), and test both on
   held-out videos.
3. Write ``report.json`` (top-1 of both, chance, seconds per step), training curves and confusion matrices,
   then run ``uniformerv2 predict`` on a test video.

Everything goes under the output folder (``demo-output/`` by default).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

# The recipe both models share; the frame-only one differs only in the model.
COMMON = {"head_dropout": 0.0, "global_mlp_dropout": 0.0}
MODELS = {
    "uniformerv2": {"preset": "tiny_ssv2_8x64", "options": COMMON,
                    "title": "UniFormerV2 (local + global UniBlocks)"},
    "frame_only": {"preset": "uniformerv2_tiny",
                   "options": {**COMMON, "local_mhra": "none", "global_layers": [], "temporal_downsample": False},
                   "title": "frame-only ablation"},
}
EPOCHS = 20
THREADS = 1         # per training: a model this small runs best on one core, and two side by side use two


def run(output: str | Path = "demo-output", videos_per_class: int = 200, epochs: int = EPOCHS, seed: int = 0,
        classes: list[str] | None = None, progress: bool = True, predict: bool = True,
        side_by_side: bool = True) -> dict:
    """Generate the data, train both models (``side_by_side``: in two processes at once), test, predict.

    Returns the report (also written to ``output/report.json``); ``report["seconds"]`` holds the wall time
    of each step."""
    from . import synth
    from .data import ClipCache
    from .engine.recipes import synthetic_recipe

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    seconds = {}
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    print(f"[1/3] generating the synthetic temporal-order dataset in {data} ...", flush=True)
    info = synth.generate(data, classes=classes, videos_per_class=videos_per_class, seed=seed, progress=progress)
    labels = info["classes"]
    seconds["generate"] = time.time() - t0
    started = time.time()
    cache = ClipCache()
    for split in ("train", "val", "test"):
        _decode_into(cache, data, split)  # once: both trainings read the frames from memory
    seconds["decode"] = time.time() - started
    print(f"      {len(labels)} classes ({', '.join(labels)}), "
          + ", ".join(f"{s} {v['count']}" for s, v in info["splits"].items())
          + f" videos ({seconds['generate']:.0f} s; decoded into memory: {cache.nbytes / 2**20:.0f} MiB, "
          f"{seconds['decode']:.0f} s)", flush=True)

    jobs = {}
    for name, model in MODELS.items():
        run_dir = out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        # the paths as given: the clips are cached under them; the clips come decoded from memory, so the
        # transforms alone are cheaper than a worker process
        cfg = synthetic_recipe(data, epochs=epochs, seed=seed, model=model, num_workers=0, progress=progress,
                               absolute=False)
        jobs[name] = (cfg, run_dir)
    how = ("side by side on one core each (the frame-only run logs to "
           f"{out / 'frame_only' / 'train.log'})") if side_by_side else "one after the other"
    print(f"[2/3] training {MODELS['uniformerv2']['title']} and the {MODELS['frame_only']['title']} from scratch, "
          f"{epochs} epochs,\n      {how} ...", flush=True)
    if side_by_side:
        summaries = _train_side_by_side(jobs, cache, out / "frame_only" / "train.log")
    else:
        summaries = {name: _train_one(cfg, run_dir, cache) for name, (cfg, run_dir) in jobs.items()}
    results = {}
    for name, summary in summaries.items():
        # the engine reports percentages; the report holds fractions
        results[name] = {"top1": summary["test"]["top1"] / 100, "top5": summary["test"]["top5"] / 100,
                         "best_val_top1": None if summary["best_val_top1"] is None else summary["best_val_top1"] / 100,
                         "train_seconds": round(summary["seconds"], 1), "cpu_seconds": round(summary["cpu"], 1),
                         "run_dir": str(jobs[name][1])}
        seconds[f"train_{name}"] = summary["seconds"]
        print(f"      {MODELS[name]['title'] + ':':<40} test top-1 {results[name]['top1']:6.1%} "
              f"({summary['seconds']:.0f} s, {summary['cpu']:.0f} s of CPU)", flush=True)

    report = {
        "uniformerv2_top1": results["uniformerv2"]["top1"],
        "frame_only_top1": results["frame_only"]["top1"],
        "chance": 1.0 / len(labels),
        "classes": labels,
        "test_videos": info["splits"]["test"]["count"],
        "epochs": epochs,
        "seed": seed,
        "side_by_side": side_by_side,
        "runs": results,
        "curves": str(out / "uniformerv2" / "curves.png"),
        "confusion": str(out / "uniformerv2" / "test" / "confusion.png"),
    }
    if predict:
        started = time.time()
        report["prediction"] = _predict_one(out, data)
        seconds["predict"] = time.time() - started
    seconds["total"] = time.time() - t0
    report["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print()
    for line in summary_lines(report):
        print(line)
    print(f"\nreport: {out / 'report.json'}")
    return report


def summary_lines(report: dict) -> list[str]:
    """The closing tables: test top-1 of both models and chance, then the seconds of each step."""
    s = report["seconds"]
    side = " (side by side)" if report.get("side_by_side") else ""
    lines = ["| model (same data, same recipe) | test top-1 |", "|---|---|",
             f"| UniFormerV2, local + global UniBlocks | {report['uniformerv2_top1']:.1%} |",
             f"| frame-only ViT (averaged class tokens) | {report['frame_only_top1']:.1%} |",
             f"| chance | {report['chance']:.1%} |", "",
             "| step | seconds |", "|---|---|",
             f"| generate the dataset | {s['generate']:.0f} |",
             f"| decode it into memory | {s['decode']:.0f} |",
             f"| train + test UniFormerV2{side} | {s['train_uniformerv2']:.0f} |",
             f"| train + test the frame-only ablation{side} | {s['train_frame_only']:.0f} |"]
    if "predict" in s:
        lines.append(f"| uniformerv2 predict | {s['predict']:.0f} |")
    lines.append(f"| total | {s['total']:.0f} |")
    return lines


def _decode_into(cache, data: Path, split: str) -> None:
    from .data import VideoListDataset, read_video_list

    items = read_video_list(data / f"{split}.csv", root=str(data))
    VideoListDataset(items, split=split, cache=cache).preload()


def _train_one(cfg: dict, run_dir: Path, cache) -> dict:
    """Train one model on the cached clips with ``THREADS`` threads; the engine's summary plus seconds."""
    import resource

    import torch

    from .engine import load_config, train
    from .engine.train import cached_datasets

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        t0 = time.time()
        c0 = resource.getrusage(resource.RUSAGE_SELF)
        summary = train(cfg, run_dir, datasets=cached_datasets(load_config(cfg), cache))
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        summary["seconds"] = time.time() - t0
        summary["cpu"] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        return summary
    finally:
        torch.set_num_threads(threads)


def _train_side_by_side(jobs: dict, cache, log: Path) -> dict:
    """UniFormerV2 in this process (progress on the terminal), the frame-only ablation in a child process
    (output to ``log``); each on ``THREADS`` threads. The child is forked before this process runs any
    torch operator, and inherits the decoded clips; where fork is not available, it decodes them again."""
    import torch

    fork = "fork" in mp.get_all_start_methods() and not torch.cuda.is_initialized()
    ctx = mp.get_context("fork" if fork else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    cfg, run_dir = jobs["frame_only"]
    log.parent.mkdir(parents=True, exist_ok=True)
    child = ctx.Process(target=_child, args=({**cfg, "train": {**cfg["train"], "progress": False}}, run_dir,
                                             cache if fork else True, str(log), send), daemon=True)
    child.start()
    send.close()
    try:
        ours = _train_one(*jobs["uniformerv2"], cache)
        try:
            status, theirs = receive.recv()
        except EOFError:  # the child ended without a word
            child.join()
            status, theirs = "error", f"the process ended with exit code {child.exitcode}"
        child.join()
    finally:
        if child.is_alive():
            child.terminate()
            child.join()
    if status != "ok":
        raise RuntimeError(f"training the frame-only ablation failed (see {log}):\n{theirs}")
    return {"uniformerv2": ours, "frame_only": theirs}


def _child(cfg: dict, run_dir: Path, cache, log: str, send) -> None:
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        try:
            if cache is True:
                from .data import ClipCache
                cache = ClipCache()
            send.send(("ok", _train_one(cfg, run_dir, cache)))
        except BaseException:  # the parent reports it, with this log
            traceback.print_exc()
            f.flush()
            send.send(("error", traceback.format_exc(limit=-3)))
        finally:
            f.flush()
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _predict_one(out: Path, data: Path) -> dict:
    first = (data / "test.csv").read_text().splitlines()[0]
    rel, label = first.rsplit(",", 1)
    video = data / rel
    print(f"[3/3] uniformerv2 predict {video} --model {out / 'uniformerv2' / 'final'} --top-k 3", flush=True)
    cmd = [sys.executable, "-m", "uniformerv2", "predict", str(video), "--model", str(out / "uniformerv2" / "final"),
           "--top-k", "3", "--json", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    pred = json.loads(res.stdout)[0]
    labels = (data / "labels.txt").read_text().splitlines()
    for rank, p in enumerate(pred["top_k"], 1):
        print(f"      {rank}. {p['label']:<14} {p['prob']:.3f}")
    print(f"      (true class: {labels[int(label)]})", flush=True)
    return {"video": str(video), "true_label": labels[int(label)], "top_k": pred["top_k"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options: the same for ``python -m uniformerv2.demo`` and ``uniformerv2 demo``."""
    p.add_argument("--output", "-o", default="demo-output", metavar="DIR",
                   help="output folder (default: demo-output)")
    p.add_argument("--videos-per-class", type=int, default=200, metavar="N",
                   help="synthetic clips per class (default: 200)")
    p.add_argument("--epochs", type=int, default=EPOCHS, metavar="N", help=f"training epochs (default: {EPOCHS})")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--one-after-the-other", action="store_true",
                   help="train the two models in turn in this process (default: side by side, two processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_args(args) -> int:
    run(args.output, args.videos_per_class, args.epochs, args.seed, progress=not args.quiet,
        side_by_side=not args.one_after_the_other)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m uniformerv2.demo", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
