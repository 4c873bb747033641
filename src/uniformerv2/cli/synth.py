"""``uniformerv2 synth OUT_DIR``: write the synthetic temporal-order benchmark (see ``uniformerv2.synth``)."""
from __future__ import annotations

import argparse

from ..errors import UserError


def add_parser(subparsers) -> None:
    from ..synth import AVAILABLE_CLASSES, DEFAULT_CLASSES

    p = subparsers.add_parser(
        "synth", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="generate a synthetic dataset whose classes differ only in the order of frames",
        description=(
            "Write a small Something-Something-like dataset of H.264 .mp4 clips to OUT_DIR, with\n"
            "train.csv/val.csv/test.csv ('videos/<class>/<n>.mp4,<label>') and labels.txt.\n"
            "Every class is the time reversal of another, so single frames (or a time-average of\n"
            "them) carry no information about the class; only a model of time can solve it."),
        epilog=("available classes (reversal pairs):\n  "
                + "\n  ".join(f"{a}  /  {b}" for a, b in zip(AVAILABLE_CLASSES[::2], AVAILABLE_CLASSES[1::2]))
                + f"\ndefault: {','.join(DEFAULT_CLASSES)}"))
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created if missing)")
    p.add_argument("--classes", help="comma-separated class names, in label order (default: 6 classes)")
    p.add_argument("--videos-per-class", type=int, default=200, metavar="N",
                   help="clips per class, split 70/15/15 into train/val/test (default: 200)")
    p.add_argument("--frames", type=int, default=16, metavar="N", help="frames per clip (default: 16)")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="frame height = width, even (default: 64)")
    p.add_argument("--fps", type=int, default=8, help="frame rate written to the files (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same clips (default: 0)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes (default: number of CPUs; 1 = no subprocesses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..synth import generate

    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise UserError("--classes is empty")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    s = generate(args.out_dir, classes=classes, videos_per_class=args.videos_per_class,
                 frames=args.frames, size=args.size, seed=args.seed, fps=args.fps,
                 workers=args.workers, progress=not args.quiet)
    counts = ", ".join(f"{k} {v['count']}" for k, v in s["splits"].items())
    print(f"wrote {s['videos']} videos ({len(s['classes'])} classes; {counts}) "
          f"of {s['frames']} frames at {s['size']}x{s['size']} to {s['root']} in {s['seconds']:.1f}s")
    print(f"labels: {s['labels']}")
    return 0
