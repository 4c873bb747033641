"""``uniformerv2 eval --config FILE --model PATH [--split test] [--output DIR] [key=value ...]``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="evaluate a model on a list of videos with multi-view testing",
        description=(
            "Multi-view evaluation (clips x crops, aggregated by summed softmax or mean logits): top-1,\n"
            "top-5, mean class accuracy; with --output also per_class.csv, predictions.json,\n"
            "confusion.png, metrics.json and manifest.jsonl (resumable with --resume). --model: a model\n"
            "directory, a run directory (its best/ or final/), or a checkpoint file (ours or official)\n"
            "loaded into model.preset of the config. Decoding runs in --workers processes; sharded over\n"
            "processes under torchrun (each video counted once)."))
    p.add_argument("--config", "-c", required=True, help="YAML file or shipped config name")
    p.add_argument("--model", "-m", required=True, metavar="PATH", help="model dir, run dir or checkpoint file")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which list of the config (default: test)")
    p.add_argument("--list", metavar="FILE", help="labelled video list ('path,label' lines) instead of the config's")
    p.add_argument("--root", metavar="DIR", help="resolve relative paths of the list here (data.root)")
    p.add_argument("--output", "--out", "-o", metavar="DIR", help="write the evaluation files here")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes that decode videos (default: usable cores minus one, per process)")
    p.add_argument("--resume", action="store_true", help="continue the evaluation recorded in --output")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: try the failed videos again")
    p.add_argument("--overwrite", action="store_true", help="start again in an --output that holds a run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def resolve_model(path: str, cfg: dict):
    """The model of ``--model`` as ``factory.model_for_config`` resolves it against the config."""
    from ..factory import model_for_config

    return model_for_config(cfg, path)


def run(args) -> int:
    from ..accel import optimize
    from ..engine import distributed as dist
    from ..engine.config import load_config
    from ..engine.data import build_datasets
    from ..engine.evaluate import evaluate, evaluate_run
    from ..inference.pipeline import RunStats, default_workers, model_threads

    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if (args.resume or args.overwrite or args.retry_failed) and not args.output:
        raise UserError("--resume, --retry-failed and --overwrite need --output DIR (where the run is recorded)")
    if args.retry_failed and not args.resume:
        raise UserError("--retry-failed goes with --resume")
    cfg = load_config(args.config, args.overrides)
    if args.list:
        cfg["data"][args.split] = str(Path(args.list).resolve())
    if args.root:
        if not Path(args.root).is_dir():
            raise UserError(f"--root {args.root} is not a folder")
        cfg["data"]["root"] = args.root
    if not cfg["data"][args.split]:
        raise UserError(f"data.{args.split} is not set (a list file of 'path,label' lines; or --list FILE)")
    info = dist.setup(cfg["train"]["device"])
    try:
        model = optimize(resolve_model(args.model, cfg).to(info.device), for_inference=True)  # fp32, no autocast
        cfg["data"]["test"] = cfg["data"][args.split]
        dataset = build_datasets(cfg, model.data_config, ("test",), model.labels, model.cfg.num_classes)["test"]
        workers = args.workers
        if workers is None:
            workers = cfg["eval"]["num_workers"] if cfg["eval"]["num_workers"] is not None else default_workers()
        common = dict(aggregate=cfg["eval"]["aggregate"], batch_size=cfg["eval"]["batch_size"], num_workers=workers,
                      labels=model.labels, video_key=cfg["eval"]["video_key"])
        with model_threads(workers):   # the model's threads leave the input workers their cores
            if args.output:
                res = evaluate_run(model, dataset, args.output, resume=args.resume, retry_failed=args.retry_failed,
                                   overwrite=args.overwrite, progress=cfg["train"]["progress"] and info.is_main,
                                   signature={"model": str(Path(args.model).resolve()), "config": cfg["model"],
                                              "pipeline": model.data_config.to_dict()}, **common)
            else:
                res = evaluate(model, dataset, out_dir=None, fixed_batch=True,
                               progress=cfg["train"]["progress"] and info.is_main, **common)
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
            print(f"wrote {args.output}/metrics.json, per_class.csv, predictions.json, confusion.png, manifest.jsonl")
        print(RunStats.combine(res["figures"]).line(), file=sys.stderr)
    return 0
