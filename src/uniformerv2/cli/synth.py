"""``uniformerv2 synth --output DIR``: write the synthetic temporal-order benchmark (see ``uniformerv2.synth``)."""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .common import add_output, add_quiet, add_workers


def add_parser(subparsers) -> None:
    from ..synth import AVAILABLE_CLASSES, DEFAULT_CLASSES

    p = subparsers.add_parser(
        "synth", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="generate a synthetic dataset whose classes differ only in the order of frames",
        description=(
            "Write a small Something-Something-like dataset of H.264 .mp4 clips to --output DIR, with\n"
            "train.csv/val.csv/test.csv ('videos/<class>/<n>.mp4,<label>') and labels.txt.\n"
            "Every class is the time reversal of another, so single frames (or a time-average of\n"
            "them) carry no information about the class; only a model of time can solve it."),
        epilog=("available classes (reversal pairs):\n  "
                + "\n  ".join(f"{a}  /  {b}" for a, b in zip(AVAILABLE_CLASSES[::2], AVAILABLE_CLASSES[1::2]))
                + f"\ndefault: {','.join(DEFAULT_CLASSES)}"))
    add_output(p, required=True, positional="OUT_DIR", help="output folder (created if missing)")
    p.add_argument("--classes", help="comma-separated class names, in label order (default: 6 classes)")
    p.add_argument("--videos-per-class", type=int, default=200, metavar="N",
                   help="clips per class, split 70/15/15 into train/val/test (default: 200)")
    p.add_argument("--frames", type=int, default=16, metavar="N", help="frames per clip (default: 16)")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="frame height = width, even (default: 64)")
    p.add_argument("--fps", type=int, default=8, help="frame rate written to the files (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same clips (default: 0)")
    add_workers(p, "processes that write videos")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..synth import generate

    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise UserError("--classes is empty")
    s = generate(args.output, classes=classes, videos_per_class=args.videos_per_class,
                 frames=args.frames, size=args.size, seed=args.seed, fps=args.fps,
                 workers=args.workers, progress=not args.quiet)
    counts = ", ".join(f"{k} {v['count']}" for k, v in s["splits"].items())
    print(f"wrote {s['videos']} videos ({len(s['classes'])} classes; {counts}) "
          f"of {s['frames']} frames at {s['size']}x{s['size']} to {s['root']} in {s['seconds']:.1f}s", file=sys.stderr)
    print(f"labels: {s['labels']}", file=sys.stderr)
    return 0
