"""``uniformerv2 train --config FILE --output DIR [--resume] [key=value ...]`` (also under torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from .common import add_device, add_output, add_quiet, add_seed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train or fine-tune a model from a YAML recipe",
        description=(
            "Train as a YAML config says, into a run directory (config.yaml, metrics.jsonl, checkpoints/,\n"
            "final/). --config takes a file or the name of a shipped config; key=value pairs override it\n"
            "(values are YAML: train.epochs=3 data.root=/data/k400 model.options.drop_path_rate=0.1).\n"
            "Multi-GPU / multi-process: torchrun --nproc_per_node N -m uniformerv2 train ...\n"
            "train.batch_size is the global batch whatever the number of processes."),
        epilog="shipped configs: " + ", ".join(_shipped()))
    p.add_argument("--config", "-c", help="YAML file or shipped config name (default with --resume: DIR/config.yaml)")
    add_output(p, required=True, help="run directory (created if missing)")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--epochs", type=int, metavar="N", help="training epochs (train.epochs; default: the config's)")
    add_device(p, help="cpu, cuda, cuda:1, mps ... (train.device; default: the config's, auto = cuda if "
                       "available, else cpu)")
    add_seed(p, help="random seed (seed; default: the config's)")
    add_quiet(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def _shipped() -> list[str]:
    try:
        from ..engine.config import shipped_configs
        return shipped_configs()
    except Exception:  # pragma: no cover - help text only
        return []


def option_overrides(args) -> list[str]:
    """The options that stand for config keys, as ``key=value`` overrides (after the user's own)."""
    keys = {"train.epochs": args.epochs, "train.device": args.device, "seed": args.seed}
    out = [f"{k}={v}" for k, v in keys.items() if v is not None]
    if args.quiet:
        out.append("train.progress=false")
    return out


def run(args) -> int:
    import sys

    from ..engine import TrainingDiverged, train

    out = Path(args.output)
    config = args.config
    if config is None:
        if not (args.resume and (out / "config.yaml").is_file()):
            raise UserError("--config is required (or --resume with an existing run directory)")
        config = str(out / "config.yaml")
    elif not args.resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*.pt")):
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --output")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides must be key=value, got {bad[0]!r}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    try:
        summary = train(config, out, resume=args.resume, overrides=[*args.overrides, *option_overrides(args)])
    except TrainingDiverged as e:
        print(f"uniformerv2: training stopped: {e}", file=sys.stderr)
        return 1
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        msg = f"done: {summary['steps']} steps, final model in {out / 'final'}"
        if summary.get("best_val_top1") is not None:
            msg += f"; best val top-1 {summary['best_val_top1']:.2f} at step {summary['best_step']}"
        if "test" in summary:
            msg += f"; test top-1 {summary['test']['top1']:.2f} ({summary['test']['count']} videos)"
        print(msg)
    return 0
