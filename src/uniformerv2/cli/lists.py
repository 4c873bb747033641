"""``uniformerv2 lists DATASET ANNOTATION... --videos ROOT --output DIR``: a dataset's official annotation files
to the lists the recipes read (``DIR/train.csv``, ``val.csv``, ``test.csv``, ``labels.txt``), with
``DIR/report.json`` and ``DIR/missing.txt``; then ``uniformerv2 train --config RECIPE data.root=DIR``.

Which split and version each file holds is read from its name, folder, split column or classes, never from the
order of the arguments. A video counts as found when its file exists; ``--check`` also decodes it (the checker
``scan`` uses) and leaves out the undecodable ones. Exit code 0 when the lists are written, 2 on bad input
(a malformed row stops the run unless ``--skip-bad``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_output, add_quiet, add_workers, workers_for


def add_parser(subparsers):
    from ..data.official import DATASETS

    p = subparsers.add_parser("lists", help="a dataset's official annotation files to the recipes' list files",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=DATASETS, metavar="DATASET", help=", ".join(DATASETS))
    p.add_argument("annotations", nargs="+", metavar="ANNOTATION",
                   help="the official annotation files as distributed (any order)")
    p.add_argument("--videos", action="append", required=True, metavar="ROOT",
                   help="folder holding the videos (frame folders for sthv1), searched at any depth; repeatable "
                        "(kinetics710: the Kinetics-400, 600 and 700 folders)")
    add_output(p, required=True, help="folder to write train.csv, val.csv, test.csv, labels.txt, report.json, "
                                      "missing.txt into")
    add_workers(p, "processes that decode videos with --check")
    p.add_argument("--check", action="store_true", help="decode every found video; leave out undecodable ones")
    p.add_argument("--skip-bad", action="store_true", help="leave malformed rows out (counted) instead of stopping")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per video with --check (default 60)")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.official import build_lists, summary

    workers = args.workers
    if workers is None:
        workers = workers_for(10_000) if args.check else 0
    report = build_lists(args.dataset, args.annotations, args.videos, args.output, check=args.check,
                         skip_bad=args.skip_bad, workers=workers, timeout=args.timeout, progress=not args.quiet)
    for line in summary(report):
        print(line)
    out = Path(args.output)
    print(f"wrote {out / 'train.csv'}, val.csv, test.csv, labels.txt, missing.txt, report.json", file=sys.stderr)
    return 0
