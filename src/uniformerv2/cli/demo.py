"""``uniformerv2 demo [--output DIR]``: the embedded default (``make demo``, ``python -m uniformerv2.demo``)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from .. import demo

    p = subparsers.add_parser(
        "demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="why a video model needs time: train UniFormerV2 and a frame-only ablation on a synthetic task",
        description=demo.__doc__)
    demo.add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import demo

    return demo.run_args(args)
