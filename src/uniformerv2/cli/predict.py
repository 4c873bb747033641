"""``uniformerv2 predict PATH... --model M``: classify videos (files or folders), optionally per time window."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from ..errors import UserError

FILES_PER_BATCH = 4  # whole-video predictions: the views of this many files share forward passes


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="a pretrained name (e.g. k400_b16_8x224: downloaded once; `uniformerv2 models "
                        "--pretrained`), a model directory, or a checkpoint file (official .pyth, MMAction2 .pth, "
                        "ours) with --preset")
    g.add_argument("--preset", metavar="NAME", help="preset of a checkpoint file, e.g. k400_b16_8x224")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="default: bf16 on GPU, fp32 on CPU")


def add_window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--views", metavar="CxK", help="test views, clips x crops (default: the model's, e.g. 4x3)")
    p.add_argument("--window", type=float, metavar="S", help="classify windows of S seconds (long videos)")
    p.add_argument("--stride", type=float, metavar="S", help="seconds between window starts (default: --window)")


def load_classifier(args):
    from ..inference import VideoClassifier

    if args.stride is not None and args.window is None:
        raise UserError("--stride needs --window")
    return VideoClassifier.from_pretrained(args.model, preset=args.preset, device=args.device, dtype=args.dtype)


def progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", file=sys.stderr, disable=quiet or total < 2, dynamic_ncols=True)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify videos (top-k labels, per-window timelines, annotated output)",
        description="Classify video files, or every video under folders, with the official test views "
                    "(sparse clips x crops, summed softmax). Exit code 0: all inputs classified; 1: some "
                    "could not be read (reported per input); 2: bad usage.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="labels per prediction (default: 5)")
    add_window_args(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list, one object per input, to stdout")
    out.add_argument("--csv", metavar="FILE", help="write one row per (input, window, rank) to FILE")
    p.add_argument("--output-video", metavar="OUT.mp4", help="write the (single) input with the labels drawn on it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference.inputs import collect_videos

    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    videos = [str(v) for v, _ in collect_videos(args.paths)]
    if args.output_video and len(videos) != 1:
        raise UserError(f"--output-video needs exactly one input video, got {len(videos)}")
    clf = load_classifier(args)
    kw = dict(top_k=args.top_k, views=args.views, window=args.window, stride=args.stride, on_error="return")
    results = []
    with progress(len(videos), args.quiet) as bar:
        step = 1 if args.window is not None else FILES_PER_BATCH
        for i in range(0, len(videos), step):
            group = videos[i:i + step]
            results += clf.predict(group, **kw)
            bar.update(len(group))
    if args.output_video and results[0].ok:
        from ..inference.annotate import write_annotated_video

        write_annotated_video(videos[0], args.output_video, results[0], top_k=args.top_k)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.csv:
        _write_csv(args.csv, results)
    else:
        _print_table(results)
    if args.output_video and results[0].ok and not args.json:
        print(f"annotated video: {args.output_video}", file=sys.stderr)
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"uniformerv2: {failed} of {len(results)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _print_table(results) -> None:
    for r in results:
        if not r.ok:
            print(f"{r.path}\n  ERROR: {r.error}\n")
            continue
        print(r.path)
        for rank, s in enumerate(r.top_k, 1):
            print(f"  {rank:>2}. {s.prob:6.3f}  {s.label}")
        for w in r.timeline or []:
            labels = ", ".join(f"{s.label} {s.prob:.2f}" for s in w.top_k[:3])
            print(f"      {w.start:8.2f}-{w.end:8.2f}s  {labels}")
        print()


def _write_csv(path, results) -> None:
    from ..fileio import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "ok", "start", "end", "rank", "label", "index", "prob", "error"])
    for r in results:
        if not r.ok:
            w.writerow([r.path, 0, "", "", "", "", "", "", r.error])
            continue
        rows = [("", "", r.top_k)] + [(e.start, e.end, e.top_k) for e in r.timeline or []]
        for start, end, scores in rows:
            for rank, s in enumerate(scores, 1):
                w.writerow([r.path, 1, start, end, rank, s.label, s.index, f"{s.prob:.6f}", ""])
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(buf.getvalue(), newline=""))
