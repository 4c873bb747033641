"""``uniformerv2 finetune DATA --output RUN [--from NAME_OR_PATH] [--kind scene|motion] [key=value ...]``."""
from __future__ import annotations

import argparse

from .common import add_device, add_output, add_quiet, add_seed, add_workers


def _intermixed(parser: argparse.ArgumentParser) -> None:
    """Let ``key=value`` overrides follow the options, as in ``train``: DATA and the overrides are two positional
    arguments, which plain argparse only takes side by side."""
    class Intermixed(type(parser)):
        _inside = False

        def parse_known_args(self, args=None, namespace=None):
            if self._inside:
                return super().parse_known_args(args, namespace)
            self._inside = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._inside = False

    parser.__class__ = Intermixed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="fine-tune on your own videos (class folders or a list) in one command",
        description=(
            "Fine-tune on your own videos: scan them (undecodable files are listed and left out), split\n"
            "train/val per class with a fixed seed, pick the starting weights and recipe by --kind, train,\n"
            "evaluate on val and end with a model directory for `predict` and `features`.\n"
            "  scene  (default) the Kinetics-710 B/16 model, global UniBlocks only, Kinetics augmentation\n"
            "  motion CLIP ViT-B/16 armed with local + global UniBlocks and temporal downsampling, no flip\n"
            "The LR is the official run's, scaled linearly to the global batch; RUN/config.yaml is the\n"
            "resolved recipe (uniformerv2 train --config RUN/config.yaml reproduces the run). key=value pairs\n"
            "override it as in `train`. Multi-GPU: torchrun --nproc_per_node N -m uniformerv2 finetune ...\n"
            "Details: docs/finetune.md."))
    p.add_argument("data", metavar="DATA",
                   help="a folder with one sub-folder per class (or train/ and val/ such trees), or a list file "
                        "('path,label' or 'path label' lines)")
    add_output(p, required=True, metavar="RUN", help="run directory (created if missing)")
    p.add_argument("--from", dest="weights", metavar="NAME_OR_PATH",
                   help="starting weights: a pretrained name (uniformerv2 models --pretrained), a model or run "
                        "directory, a checkpoint file or an image-ViT (CLIP...) file; default by --kind")
    p.add_argument("--kind", choices=["scene", "motion"], default="scene",
                   help="scene: what is in the video matters (Kinetics-like, default); motion: how things move "
                        "matters (Something-Something-like)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    p.add_argument("--frozen-backbone", action="store_true",
                   help="train only the global blocks, query and head (the official frozen variant; small data)")
    p.add_argument("--batch-size", type=int, metavar="B", help="global batch in videos (default: 16 per GPU, 4 "
                   "per CPU process, at most a quarter of the training set)")
    p.add_argument("--lr", type=float, help="peak learning rate, used as given (default: the recipe's, scaled "
                   "linearly to the global batch)")
    g = p.add_argument_group("data")
    g.add_argument("--val", metavar="LIST", help="val list (default: DATA's val/ folder or val list, else a split)")
    g.add_argument("--labels", metavar="FILE", help="class names of a list file, one per line")
    g.add_argument("--root", metavar="DIR", help="folder a list file's relative paths are under (default: its own)")
    g.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share of each class held out for val when there is no val split (default 0.2)")
    g.add_argument("--min-videos", type=int, default=2, metavar="N",
                   help="usable videos a class needs (default 2: one to train on, one to validate)")
    g.add_argument("--skip-small-classes", action="store_true",
                   help="leave out classes with fewer usable videos instead of stopping")
    add_seed(g, default=6666, help="seed of the split and the training (default 6666)")
    add_device(p, default="auto")
    add_workers(p, "data-loading processes per training process")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    add_quiet(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the resolved config")
    p.set_defaults(func=run)
    _intermixed(p)


def device_override(device: str) -> list[str]:
    """``cuda:1``: train on that device (the resolved config records the device type, ``cuda``, otherwise)."""
    return [f"train.device={device}"] if ":" in device else []


def run(args) -> int:
    import sys

    from ..engine import TrainingDiverged
    from ..engine.finetune import finetune
    from ..errors import UserError

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides must be key=value, got {bad[0]!r}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    args.overrides += device_override(args.device)
    try:
        finetune(args.data, args.output, weights=args.weights, kind=args.kind, epochs=args.epochs,
                 frozen_backbone=args.frozen_backbone, batch_size=args.batch_size, lr=args.lr, val=args.val,
                 labels=args.labels, root=args.root, val_fraction=args.val_fraction, min_videos=args.min_videos,
                 skip_small_classes=args.skip_small_classes, seed=args.seed, device=args.device,
                 workers=args.workers, resume=args.resume, overrides=args.overrides, progress=not args.quiet)
    except TrainingDiverged as e:
        print(f"uniformerv2: training stopped: {e}", file=sys.stderr)
        return 1
    return 0
