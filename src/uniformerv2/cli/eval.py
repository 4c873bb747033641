"""``uniformerv2 eval --config FILE --model PATH [--split test] [--output DIR] [key=value ...]``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="evaluate a model on a list of videos with multi-view testing",
        description=(
            "Multi-view evaluation (clips x crops, aggregated by summed softmax or mean logits): top-1,\n"
            "top-5, mean class accuracy; with --output also per_class.csv, predictions.json,\n"
            "confusion.png and metrics.json. --model: a model directory, a run directory (its best/ or\n"
            "final/), or a checkpoint file (ours or official) loaded into model.preset of the config.\n"
            "Sharded over processes under torchrun (each video counted once)."))
    p.add_argument("--config", "-c", required=True, help="YAML file or shipped config name")
    p.add_argument("--model", "-m", required=True, metavar="PATH", help="model dir, run dir or checkpoint file")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which list of the config (default: test)")
    p.add_argument("--output", "-o", metavar="DIR", help="write the evaluation files here")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def resolve_model(path: str, cfg: dict):
    """A model directory or run directory brings its own config; a weights file is loaded into the config's
    model (``model.preset`` + ``model.options``).  The config's ``data.pipeline`` applies on top."""
    from ..factory import load_model

    if Path(path).is_file():
        model = load_model(path, cfg["model"]["preset"], **cfg["model"]["options"])
    else:
        model = load_model(path)
    model.data_config = model.data_config.replace(**cfg["data"]["pipeline"])
    return model


def run(args) -> int:
    from ..accel import optimize
    from ..engine import distributed as dist
    from ..engine.config import load_config
    from ..engine.data import build_datasets
    from ..engine.evaluate import evaluate

    cfg = load_config(args.config, args.overrides)
    if not cfg["data"][args.split]:
        raise UserError(f"data.{args.split} is not set (a list file of 'path,label' lines)")
    info = dist.setup(cfg["train"]["device"])
    try:
        model = optimize(resolve_model(args.model, cfg).to(info.device), for_inference=True)  # fp32, no autocast
        cfg["data"]["test"] = cfg["data"][args.split]
        dataset = build_datasets(cfg, model.data_config, ("test",), model.labels, model.cfg.num_classes)["test"]
        workers = cfg["eval"]["num_workers"] if cfg["eval"]["num_workers"] is not None else cfg["data"]["num_workers"]
        res = evaluate(model, dataset, aggregate=cfg["eval"]["aggregate"], batch_size=cfg["eval"]["batch_size"],
                       num_workers=workers, labels=model.labels, out_dir=args.output,
                       video_key=cfg["eval"]["video_key"], progress=cfg["train"]["progress"] and info.is_main)
    finally:
        dist.cleanup()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"top-1 {res['top1']:.2f}  top-5 {res['top5']:.2f}  mean class accuracy "
              f"{res['mean_class_accuracy']:.2f}  ({res['count']} videos, {len(res['skipped'])} skipped, "
              f"{res['aggregate']} aggregation)")
        if "video_level" in res:
            v = res["video_level"]
            print(f"video level: top-1 {v['top1']:.2f}  top-5 {v['top5']:.2f}  ({v['count']} videos)")
        if args.output:
            print(f"wrote {args.output}/metrics.json, per_class.csv, predictions.json, confusion.png")
    return 0
