"""``uniformerv2 predict PATH... --model M``: classify videos (files, folders, lists, globs), optionally per
time window; in parallel, over several processes under torchrun, resumable with ``--output DIR``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UserError
from .common import (add_backend, add_device, add_dtype, add_output, add_preset, add_quiet, add_views, add_workers,
                     backend_signature)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="a pretrained name (e.g. k400_b16_8x224: downloaded once; `uniformerv2 models "
                        "--pretrained`), a model or run directory, or a checkpoint file (official .pyth, MMAction2 "
                        ".pth, ours) with --preset")
    add_preset(g, help="preset of a checkpoint file, e.g. k400_b16_8x224")
    add_device(g)
    add_dtype(g)
    add_backend(g)


def add_window_args(p: argparse.ArgumentParser) -> None:
    add_views(p)
    p.add_argument("--window", type=float, metavar="S", help="classify windows of S seconds (long videos)")
    p.add_argument("--stride", type=float, metavar="S", help="seconds between window starts (default: --window)")


def add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video files, folders (searched recursively), list files (.txt/.csv: one video per "
                        "line) or quoted globs ('videos/**/*.mp4')")
    p.add_argument("--root", metavar="DIR", help="resolve relative video paths (arguments, globs, list entries) here")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running over many videos")
    add_workers(g, "processes that decode and crop videos")
    g.add_argument("--batch-size", type=int, metavar="V",
                   help="views per forward pass, shared by several videos (default: from the memory cap, at "
                        "most 64 on a GPU and 8 on a CPU)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run recorded in the output folder: skip the inputs it did (and those "
                        "that failed, unless --retry-failed)")
    g.add_argument("--retry-failed", action="store_true", help="with --resume: try the failed inputs again")
    g.add_argument("--overwrite", action="store_true", help="start again in an output folder that holds a run")
    add_quiet(g)


def check_run_args(args) -> None:
    if args.stride is not None and args.window is None:
        raise UserError("--stride needs --window")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.retry_failed and not args.resume:
        raise UserError("--retry-failed goes with --resume")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")


def load_classifier(args, device=None):
    """The model of ``--model`` (resolved by ``factory.load_model``) on ``device`` (default: ``--device``)."""
    from ..inference import VideoClassifier

    if args.stride is not None and args.window is None:
        raise UserError("--stride needs --window")
    return VideoClassifier.from_pretrained(args.model, preset=args.preset, device=device or args.device,
                                           dtype=args.dtype, backend=args.backend, quantize=args.quantize)


def collect(args) -> list:
    """The input videos: [(path, name relative to where it was found)]."""
    from ..inference.inputs import collect_videos

    return collect_videos(args.paths, root=args.root,
                          warn=lambda msg: print(f"uniformerv2: warning: {msg}", file=sys.stderr))


def setup_processes(args):
    """Join the torchrun process group if there is one (gloo on CPU, NCCL on GPUs, one GPU per process):
    (rank, world size, this process's device, cleanup)."""
    from ..engine import distributed as dist

    info = dist.setup(args.device or ("cpu" if getattr(args, "backend", "torch") != "torch" else "auto"))
    device = info.device if info.enabled else args.device
    return info.rank, info.world_size, device, dist.cleanup


def run_signature(args) -> dict:
    """What besides the views and the list decides a run's outputs: the model (checked on --resume)."""
    model = Path(args.model)
    return {"model": str(model.resolve()) if model.exists() else args.model, "preset": args.preset,
            **backend_signature(args)}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify videos (top-k labels, per-window timelines, annotated output)",
        description="Classify videos with the official test views (sparse clips x crops, summed softmax); "
                    "decoding runs in --workers processes. With --output DIR the run is recorded there and can "
                    "be resumed or spread over processes with torchrun. Exit code 0: all inputs classified; "
                    "1: some could not be read (reported per input); 2: bad usage.")
    add_input_args(p)
    add_model_args(p)
    p.add_argument("--top-k", type=int, metavar="K",
                   help="labels per prediction (default: 5; when resuming, the run's)")
    add_window_args(p)
    add_output(p, aliases=("--out",),
               help="write predictions.json, predictions.csv and manifest.jsonl here (resumable; needed "
                    "under torchrun)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per input, to stdout")
    p.add_argument("--csv", metavar="FILE", help="write one row per (input, window, rank) to FILE")
    p.add_argument("--output-video", metavar="OUT.mp4", help="write the (single) input with the labels drawn on it")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fileio import atomic_write
    from ..inference.run import predictions_csv, run_dataset

    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    check_run_args(args)
    if args.json and args.csv:
        raise UserError("--json and --csv exclude each other (with --output DIR both files are written there)")
    if (args.resume or args.overwrite) and not args.output:
        raise UserError("--resume and --overwrite need --output DIR (where the run is recorded)")
    if args.output_video and args.output:
        raise UserError("--output-video writes one annotated video; it does not go with --output")
    videos = [str(v) for v, _ in collect(args)]
    if args.output_video and len(videos) != 1:
        raise UserError(f"--output-video needs exactly one input video, got {len(videos)}")
    rank, world, device, cleanup = setup_processes(args)
    try:
        if world > 1 and not args.output:
            raise UserError("several processes need --output DIR, a folder that all of them can write")
        clf = load_classifier(args, device)
        if args.output:
            report = run_dataset(clf, videos, args.output, task="predict", views=args.views, window=args.window,
                                 stride=args.stride, top_k=args.top_k, workers=args.workers,
                                 batch_size=args.batch_size, resume=args.resume, retry_failed=args.retry_failed,
                                 overwrite=args.overwrite, signature=run_signature(args), progress=not args.quiet)
            if rank != 0:
                return 1 if report.failed else 0
            results, stats = report.results, report.stats
            if report.resumed:
                print(f"resumed: {report.resumed} inputs recorded earlier were skipped", file=sys.stderr)
            print(f"wrote {Path(args.output) / 'predictions.json'}, predictions.csv, manifest.jsonl", file=sys.stderr)
        else:
            stream = clf.predict_many(videos, top_k=args.top_k or 5, views=args.views, window=args.window,
                                      stride=args.stride, workers=args.workers, batch_size=args.batch_size)
            with _bar(len(videos), args.quiet) as bar:
                objects = []
                for r in stream:
                    objects.append(r)
                    bar.update(1)
            results, stats = [r.to_dict() for r in objects], stream.stats
            if args.output_video and objects[0].ok:
                from ..inference.annotate import write_annotated_video

                write_annotated_video(videos[0], args.output_video, objects[0], top_k=args.top_k or 5)
    finally:
        cleanup()
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        text = predictions_csv(results)
        atomic_write(Path(args.csv), lambda tmp: Path(tmp).write_text(text, newline=""))
    elif not args.output:
        _print_table(results)
    if args.output_video and results[0]["ok"] and not args.json:
        print(f"annotated video: {args.output_video}", file=sys.stderr)
    failed = sum(not r["ok"] for r in results)
    if failed:
        print(f"uniformerv2: {failed} of {len(results)} inputs failed", file=sys.stderr)
    print(stats.line(), file=sys.stderr)
    return 1 if failed else 0


def _bar(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", file=sys.stderr, disable=quiet or total < 2, dynamic_ncols=True)


def _print_table(results: list[dict]) -> None:
    for r in results:
        if not r["ok"]:
            print(f"{r['path']}\n  ERROR: {r['error']}\n")
            continue
        print(r["path"])
        for rank, s in enumerate(r["top_k"], 1):
            print(f"  {rank:>2}. {s['prob']:6.3f}  {s['label']}")
        for w in r.get("timeline") or []:
            labels = ", ".join(f"{s['label']} {s['prob']:.2f}" for s in w["top_k"][:3])
            print(f"      {w['start']:8.2f}-{w['end']:8.2f}s  {labels}")
        print()
