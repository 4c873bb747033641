"""``uniformerv2 ablate --study components|local|global|fusion|all [--config C] [--output DIR] [key=value ...]``.

Without ``--config`` the study runs on the synthetic temporal-order benchmark (``uniformerv2 synth``), written
once to ``DIR/data`` and trained with the demo's recipe; with it, on that dataset config.  The study itself is
``uniformerv2.engine.ablate.run_study``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..errors import UserError
from .common import add_output, add_quiet


def add_parser(subparsers) -> None:
    from ..engine.ablate import STUDY_CHOICES

    p = subparsers.add_parser(
        "ablate", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="rerun the paper's ablation studies (Tables 1-4) and write their table",
        description=(
            "Train every variant of one of the paper's ablation studies with the same recipe and seeds, and\n"
            "write DIR/ablation.md (variant, params, GFLOPs per clip, top-1, time), DIR/ablation.png and\n"
            "DIR/report.json.  With --seeds N: mean, s.d. and min-max over the seeds.  A stopped study resumes:\n"
            "run the same command again.  --jobs N trains N runs at once, each on cpus/N threads.\n"
            "  components  Table 1: none / global only / local only / local + global / + temporal downsampling\n"
            "  local       Table 2: local MHRA x1, x2, temporal MHSA, ST-Adapter\n"
            "  global      Table 3: with and without the DPE, which layers feed the global blocks\n"
            "  fusion      Table 4: the four multi-stage fusions\n"
            "Default data: the synthetic temporal-order benchmark (classes that differ only in the order of\n"
            "their frames), generated in DIR/data.  key=value pairs override the training recipe\n"
            "(train.epochs=3 data.num_workers=0 model.options.img_size=32 ...)."))
    p.add_argument("--study", choices=STUDY_CHOICES, default="components", help="which study (default: components)")
    p.add_argument("--config", "-c", help="a training config (file or shipped name) to run the study on instead "
                                          "of the synthetic benchmark; its model is the full model")
    add_output(p, default="ablation-output", help="output folder (default: ablation-output)")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per variant (default: 1)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="train N runs at once, each in its own process on cpus/N threads (default: 1); a small "
                        "model on a CPU trains faster as several one-thread runs than as one run on every core")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs per variant (default: the recipe's; synthetic: 12)")
    p.add_argument("--videos-per-class", type=int, default=200, metavar="N",
                   help="synthetic benchmark: clips per class, split 70/15/15 (default: 200)")
    p.add_argument("--classes", help="synthetic benchmark: comma-separated class names (default: 6 classes)")
    p.add_argument("--data", metavar="DIR", help="synthetic benchmark: use this dataset (written by `uniformerv2 "
                                                 "synth`) instead of generating DIR/data")
    add_quiet(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training-recipe overrides")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.ablate import run_study, synthetic_recipe

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides must be key=value, got {bad[0]!r}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    out = Path(args.output)
    overrides = list(args.overrides)
    if args.config is not None:
        if args.data or args.classes:
            raise UserError("--data and --classes are for the synthetic benchmark, not with --config")
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        recipe, chance, dataset = args.config, None, f"config {args.config}"
    else:
        data = Path(args.data) if args.data else _synthetic_data(out / "data", args)
        recipe = synthetic_recipe(data, epochs=args.epochs or 12)
        classes = [c for c in (data / "labels.txt").read_text().splitlines() if c.strip()]
        chance = 1.0 / len(classes)
        dataset = (f"synthetic temporal-order benchmark ({len(classes)} classes: {', '.join(classes)}; "
                   f"{_count(data / 'train.csv')} train / {_count(data / 'test.csv')} test videos)")
    run_study(args.study, recipe, out, seeds=args.seeds, overrides=overrides, progress=not args.quiet,
              chance=chance, dataset=dataset, jobs=args.jobs, cache=args.config is None)
    return 0


def _count(path: Path) -> int:
    return sum(1 for ln in path.read_text().splitlines() if ln.strip()) if path.is_file() else 0


def _synthetic_data(root: Path, args) -> Path:
    """The synthetic benchmark in ``root``, generated unless a finished one with the same arguments is there."""
    from ..fileio import atomic_write
    from ..synth import generate

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    wanted = {"classes": classes, "videos_per_class": args.videos_per_class, "seed": 0}
    stamp = root / "ablate-data.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("arguments") == wanted:
        print(f"synthetic benchmark: reusing {root}", file=sys.stderr)
        return root
    if root.exists():
        shutil.rmtree(root)
    print(f"synthetic benchmark: generating {root} ...", file=sys.stderr, flush=True)
    info = generate(root, classes=classes, videos_per_class=args.videos_per_class, seed=0,
                    progress=not args.quiet)
    atomic_write(stamp, lambda p: Path(p).write_text(json.dumps({"arguments": wanted, "summary": info}, indent=2)))
    return root
